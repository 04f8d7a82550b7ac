/*
 * The dashboard's site panels: sources and campaigns, technology, countries, engagement and
 * custom events, from the figures /api/analytics computes over the users' histories; a
 * filter bar whose filters are set by clicking any row; the comparison with the previous
 * range as deltas.
 *
 * It adds its parameters to the dashboard's request (`dashboard:params`), draws from each
 * answer (`dashboard:data`) and asks for a new one when a filter changes
 * (`dashboard:refresh`). Visitor strings reach the page through textContent only.
 */
(function () {
  'use strict';

  var FILTERS = ['path', 'referrer', 'channel', 'country', 'browser', 'os', 'device', 'event'];
  var LABELS = {
    path: 'Page', referrer: 'Referrer', channel: 'Channel', country: 'Country',
    browser: 'Browser', os: 'OS', device: 'Device', event: 'Event'
  };
  var state = { filters: new Map(), compare: false, bots: false };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'onclick') node.addEventListener('click', value);
      else node.setAttribute(key, String(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function list(value) {
    return Array.isArray(value) ? value.filter(function (row) { return row && typeof row === 'object'; }) : [];
  }

  function number(value) { return typeof value === 'number' && isFinite(value) ? value : 0; }

  function duration(ms) {
    var s = Math.round(number(ms) / 1000);
    if (s < 60) return s + 's';
    return Math.floor(s / 60) + 'm ' + String(s % 60).padStart(2, '0') + 's';
  }

  function percent(share) { return Math.round(number(share) * 1000) / 10 + '%'; }

  function refresh() { document.dispatchEvent(new CustomEvent('dashboard:refresh')); }

  function setFilter(name, value) {
    if (value === null || value === undefined || value === '(other)') return;
    state.filters.set(name, String(value));
    refresh();
  }

  document.addEventListener('dashboard:params', function (event) {
    var params = event.detail;
    state.filters.forEach(function (value, name) { params.set(name, value); });
    if (state.compare) params.set('compare', 'previous');
    if (state.bots) params.set('bots', 'include');
  });

  document.addEventListener('dashboard:data', function (event) {
    var root = $('site-analytics');
    if (!root) return;
    var d = event.detail || {};
    root.hidden = false;
    root.textContent = '';
    root.appendChild(filterBar());
    root.appendChild(engagement(d, d.previous || null));
    root.appendChild(card('Sources', 'sources', [
      table(['Channel', 'Visitors'], list(d.channels), function (r) { return [r.channel]; }, 'channel', 'channel'),
      table(['Referrer', 'Visitors'], list(d.referrers), function (r) { return [r.source]; }, 'referrer', 'source')
    ]));
    root.appendChild(card('Campaigns', 'campaigns', [
      table(['Source', 'Medium', 'Campaign', 'Visitors'], list(d.campaigns),
        function (r) { return [r.source, r.medium || '–', r.campaign || '–']; }, null, null)
    ]));
    root.appendChild(card('Technology', 'technology', [
      table(['Browser', 'Visitors'], list(d.browsers), function (r) { return [r.name]; }, 'browser', 'name'),
      table(['OS', 'Visitors'], list(d.os), function (r) { return [r.name]; }, 'os', 'name'),
      table(['Device', 'Visitors'], list(d.devices), function (r) { return [r.name]; }, 'device', 'name')
    ]));
    root.appendChild(card('Countries', 'countries', [
      table(['Country', 'Visitors'], list(d.countries), function (r) { return [r.name]; }, 'country', 'name')
    ]));
    root.appendChild(card('Entry and exit pages', 'pages', [
      table(['Entry page', 'Visitors'], list(d.entryPages), function (r) { return [r.path]; }, 'path', 'path'),
      table(['Exit page', 'Visitors'], list(d.exitPages), function (r) { return [r.path]; }, 'path', 'path')
    ]));
    root.appendChild(card('Custom events', 'custom-events', [customEvents(list(d.customEvents))]));
  });

  function filterBar() {
    var chips = [];
    state.filters.forEach(function (value, name) {
      chips.push(el('span', { class: 'filter-chip', 'data-filter': name }, [
        el('span', { class: 'muted', text: LABELS[name] + ': ' }), value,
        el('button', { type: 'button', class: 'chip-remove', 'aria-label': 'Remove filter ' + LABELS[name],
          text: '✕', onclick: function () { state.filters.delete(name); refresh(); } })
      ]));
    });
    if (!chips.length) chips.push(el('span', { class: 'muted', text: 'Click any row below to filter by it.' }));
    var compare = el('input', { type: 'checkbox', id: 'compare-previous', 'data-testid': 'compare-previous' });
    compare.checked = state.compare;
    compare.addEventListener('change', function () { state.compare = compare.checked; refresh(); });
    var bots = el('input', { type: 'checkbox', id: 'include-bots', 'data-testid': 'include-bots' });
    bots.checked = state.bots;
    bots.addEventListener('change', function () { state.bots = bots.checked; refresh(); });
    return el('div', { class: 'filter-bar', 'data-testid': 'filter-bar' }, [
      el('div', { class: 'filter-chips' }, chips),
      el('label', { class: 'toggle' }, [compare, ' Compare with the previous range']),
      el('label', { class: 'toggle' }, [bots, ' Include bots'])
    ]);
  }

  function delta(now, before, lowerIsBetter) {
    if (before === null || before === undefined) return null;
    var change = number(before) ? (number(now) - number(before)) / number(before) : (number(now) ? 1 : 0);
    var better = lowerIsBetter ? change < 0 : change > 0;
    var sign = change > 0 ? '+' : '';
    return el('span', { class: 'delta ' + (change === 0 ? 'same' : better ? 'up' : 'down'),
      'data-testid': 'delta', text: sign + Math.round(change * 100) + '%' });
  }

  function engagement(d, previous) {
    var p = previous || {};
    var tiles = [
      ['Visitors', String(number(d.visitors)), delta(d.visitors, previous && p.visitors)],
      ['Visits', String(number(d.visits)), delta(d.visits, previous && p.visits)],
      ['Bounce rate', percent(d.bounceRate), delta(d.bounceRate, previous && p.bounceRate, true)],
      ['Visit duration', duration(d.visitDuration && d.visitDuration.median),
        delta(d.visitDuration && d.visitDuration.median, previous && p.visitDuration && p.visitDuration.median)],
      ['Pages per visit', (Math.round(number(d.pagesPerVisit) * 10) / 10).toFixed(1),
        delta(d.pagesPerVisit, previous && p.pagesPerVisit)],
      ['Bots', String(number(d.bots && d.bots.visitors)), null]
    ];
    return el('section', { class: 'card wide', 'data-testid': 'engagement' }, [
      el('div', { class: 'card-head' }, [el('h2', { text: 'Engagement' }),
        el('span', { class: 'hint', text: 'median visit duration; bots counted apart' })]),
      el('div', { class: 'site-kpis' }, tiles.map(function (tile) {
        return el('div', { class: 'site-kpi' }, [
          el('span', { class: 'kpi-label', text: tile[0] }),
          el('span', { class: 'site-kpi-value', text: tile[1] }), tile[2]
        ]);
      }))
    ]);
  }

  function card(title, id, parts) {
    return el('section', { class: 'card', 'data-testid': id }, [
      el('div', { class: 'card-head' }, [el('h2', { text: title })])
    ].concat(parts));
  }

  function table(heads, rows, cells, filter, key) {
    if (!rows.length) return el('p', { class: 'muted empty', text: 'Nothing in this range.' });
    var max = Math.max.apply(null, rows.map(function (r) { return number(r.visitors); }).concat([1]));
    return el('table', { class: 'site-table' }, [
      el('thead', {}, [el('tr', {}, heads.map(function (h) { return el('th', { text: h }); }))]),
      el('tbody', {}, rows.map(function (r) {
        var clickable = filter && !r.other;
        var bar = el('span', { class: 'row-bar' });
        bar.style.width = (number(r.visitors) / max * 100) + '%';
        var first = cells(r);
        var tds = first.map(function (value, i) {
          return el('td', { class: i === 0 ? 'row-name' : '' }, [i === 0 ? bar : null, String(value)]);
        });
        tds.push(el('td', { class: 'num', text: String(number(r.visitors)) }));
        return el('tr', { class: clickable ? 'clickable' : '', title: clickable ? 'Filter by this' : null,
          'data-value': clickable ? String(r[key]) : null,
          onclick: clickable ? function () { setFilter(filter, r[key]); } : null }, tds);
      }))
    ]);
  }

  function customEvents(rows) {
    if (!rows.length) return el('p', { class: 'muted empty', text: 'No custom events in this range.' });
    return el('table', { class: 'site-table' }, [
      el('thead', {}, [el('tr', {}, ['Event', 'Count', 'Visitors', 'Properties'].map(function (h) {
        return el('th', { text: h });
      }))]),
      el('tbody', {}, rows.map(function (r) {
        var props = r.properties && typeof r.properties === 'object' ? r.properties : {};
        var summary = Object.keys(props).map(function (name) {
          var top = list(props[name])[0];
          return name + ': ' + (top ? top.value + ' (' + number(top.count) + ')' : '–');
        }).join(', ');
        return el('tr', { class: 'clickable', title: 'Filter by this', 'data-value': String(r.name),
          onclick: function () { setFilter('event', r.name); } }, [
          el('td', { class: 'row-name', text: String(r.name) }),
          el('td', { class: 'num', text: String(number(r.count)) }),
          el('td', { class: 'num', text: String(number(r.visitors)) }),
          el('td', { class: 'muted small', text: summary || '–' })
        ]);
      }))
    ]);
  }

  window.trackerSiteFilters = { filters: FILTERS };
})();
