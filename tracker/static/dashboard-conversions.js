/*
 * The dashboard's conversions panels: goals, funnels (bars with the drop-off between steps),
 * retention (the cohort triangle) and experiments (rate, difference from control with its 95%
 * interval, p-value, and a warning when the split does not match the weights).
 *
 * Drawn on their own, beside dashboard.js: they load when the dashboard is shown, and again on
 * its Refresh button and range choice. Names and paths reach the page through textContent only.
 * A 401 is left to dashboard.js, which shows the login.
 */
(function () {
  'use strict';

  var RANGES_MS = { hour: 3600 * 1000, day: 24 * 3600 * 1000, week: 7 * 24 * 3600 * 1000 };
  var WEEK_MS = 7 * 24 * 3600 * 1000;
  var RETENTION_WEEKS = 8;
  var SRM_ALERT_P = 0.001;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === 'text') node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function get(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(function (response) {
      if (!response.ok) {
        var error = new Error('HTTP ' + response.status);
        error.status = response.status;
        throw error;
      }
      return response.json();
    });
  }

  function percent(x) { return (x * 100).toFixed(1) + '%'; }
  function signed(x) { return (x >= 0 ? '+' : '') + (x * 100).toFixed(1) + ' pts'; }
  function duration(ms) {
    if (ms === null || ms === undefined) return '–';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 120000) return (ms / 1000).toFixed(1) + ' s';
    return (ms / 60000).toFixed(1) + ' min';
  }
  function describe(match) {
    if (match.event === 'page_view') return 'view ' + match.path;
    if (match.event === 'custom') return 'event ' + match.name;
    return 'click ' + match.element;
  }

  function range() {
    var chosen = $('range-select');
    var span = RANGES_MS[chosen && chosen.value] || RANGES_MS.day;
    var to = Date.now();
    return 'from=' + (to - span) + '&to=' + to;
  }

  function panel(id, title, hint) {
    var body = el('div', { id: id, 'data-testid': id, class: 'table-wrap' });
    var head = el('div', { class: 'card-head' }, [el('h2', { text: title }), hint ? el('span', { class: 'hint', text: hint }) : null]);
    return { node: el('div', { class: 'conversions-panel' }, [head, body]), body: body };
  }

  function table(headers, rows) {
    var head = el('tr', {}, headers.map(function (h) { return el('th', { text: h }); }));
    var body = rows.map(function (cells) {
      return el('tr', {}, cells.map(function (cell) {
        return cell instanceof Node ? el('td', {}, [cell]) : el('td', { text: String(cell) });
      }));
    });
    return el('table', { class: 'table' }, [el('thead', {}, [head]), el('tbody', {}, body)]);
  }

  function empty(body, text) { body.replaceChildren(el('p', { class: 'muted small', text: text })); }

  function shown(body, promise, what) {
    return promise.catch(function (error) {
      if (error.status !== 401) empty(body, 'Could not load ' + what + ' (' + error.message + ').');
    });
  }

  function drawGoals(body, data) {
    if (!data.goals.length) return empty(body, 'No goals yet: PUT /api/goals/{name}.');
    body.replaceChildren(table(['Goal', 'Matches', 'Visitors', 'Conversions', 'Rate'], data.goals.map(function (g) {
      return [g.name, describe(g.match), g.visitors, g.conversions, percent(g.conversionRate)];
    })));
  }

  function drawFunnel(report) {
    var top = Math.max(1, report.steps[0].visitors);
    var rows = report.steps.map(function (step, i) {
      var fill = el('div', { class: 'funnel-fill' });
      fill.style.width = (100 * step.visitors / top).toFixed(1) + '%';
      var note = i ? percent(step.conversion) + ' of step 1 · ' + percent(step.dropoff) + ' dropped · median ' + duration(step.medianMsFromPrevious) : '';
      return el('div', { class: 'funnel-step', 'data-testid': 'funnel-step' }, [
        el('div', { class: 'funnel-label', text: (i + 1) + '. ' + describe(step.match) }),
        el('div', { class: 'funnel-track' }, [fill]),
        el('div', { class: 'funnel-count', text: step.visitors + ' visitors' }),
        el('div', { class: 'muted small', text: note })
      ]);
    });
    return el('div', { class: 'funnel', 'data-testid': 'funnel' }, [el('h3', { text: report.name })].concat(rows));
  }

  function drawRetention(body, data) {
    if (!data.cohorts.length) return empty(body, 'No visitors in these weeks.');
    var width = data.cohorts[0].returning.length;
    var headers = ['Week of', 'Visitors'];
    for (var i = 1; i <= width; i++) headers.push('+' + i);
    body.replaceChildren(table(headers, data.cohorts.map(function (c) {
      var cells = [new Date(c.start).toISOString().slice(0, 10), c.size];
      for (var k = 0; k < width; k++) cells.push(k < c.returning.length ? percent(c.size ? c.returning[k] / c.size : 0) : '');
      return cells;
    })));
  }

  function drawExperiment(report) {
    var rows = report.variants.map(function (v) {
      var isControl = v.name === report.control;
      return [
        v.name + (isControl ? ' (control)' : ''), v.exposed, v.converted, percent(v.rate),
        isControl ? '–' : signed(v.difference) + ' [' + signed(v.ciLow) + ', ' + signed(v.ciHigh) + ']',
        v.pValue === null ? '–' : v.pValue.toPrecision(3)
      ];
    });
    var parts = [el('h3', { text: report.name + ' → ' + report.goal + (report.stopped ? ' (stopped)' : '') }),
      table(['Variant', 'Exposed', 'Converted', 'Rate', 'Difference [95% CI]', 'p-value'], rows)];
    if (report.sampleRatioMismatch) {
      parts.push(el('p', { class: 'srm-warning', role: 'alert', 'data-testid': 'srm-warning',
        text: 'Sample ratio mismatch (p = ' + report.sampleRatioP.toPrecision(2) + ' < ' + SRM_ALERT_P + '): the split does not match the weights; do not trust these results.' }));
    }
    return el('div', { class: 'experiment', 'data-testid': 'experiment' }, parts);
  }

  function load() {
    var root = $('conversions');
    if (!root || $('app').hidden) return;
    var goals = panel('conversion-goals', 'Goals', 'visitors who reached them');
    var funnels = panel('conversion-funnels', 'Funnels', 'visitors at each step');
    var retention = panel('conversion-retention', 'Retention', 'weekly cohorts: share returning');
    var experiments = panel('conversion-experiments', 'Experiments', 'A/B tests against control');
    root.replaceChildren(goals.node, funnels.node, retention.node, experiments.node);
    var when = range();
    shown(goals.body, get('/api/goals?' + when).then(function (d) { drawGoals(goals.body, d); }), 'goals');
    var to = Date.now();
    shown(retention.body, get('/api/retention?period=week&from=' + (to - RETENTION_WEEKS * WEEK_MS) + '&to=' + to)
      .then(function (d) { drawRetention(retention.body, d); }), 'retention');
    shown(funnels.body, get('/api/conversions').then(function (defs) {
      var names = Object.keys(defs.funnels).sort();
      var tests = Object.keys(defs.experiments).sort();
      if (!tests.length) empty(experiments.body, 'No experiments yet: PUT /api/experiments/{name}.');
      else {
        shown(experiments.body, Promise.all(tests.map(function (n) { return get('/api/experiments/' + encodeURIComponent(n)); }))
          .then(function (reports) { experiments.body.replaceChildren.apply(experiments.body, reports.map(drawExperiment)); }), 'experiments');
      }
      if (!names.length) return empty(funnels.body, 'No funnels yet: PUT /api/funnels/{name}.');
      return Promise.all(names.map(function (n) { return get('/api/funnels/' + encodeURIComponent(n) + '?' + when); }))
        .then(function (reports) { funnels.body.replaceChildren.apply(funnels.body, reports.map(drawFunnel)); });
    }), 'funnels');
  }

  var app = $('app');
  if (!app) return;
  new MutationObserver(function () { if (!app.hidden) load(); }).observe(app, { attributes: true, attributeFilter: ['hidden'] });
  $('refresh-button').addEventListener('click', load);
  $('range-select').addEventListener('change', load);
  load();
})();
