/*
 * The analytics dashboard at /analytics. Plain DOM and SVG, no library.
 *
 * Auth: the admin token is posted once to /api/admin/login, which answers with an HttpOnly
 * cookie; the token itself is never stored, nor put in a URL. A 401 anywhere shows the login.
 * Safety: every string that came from visitors (paths, element descriptors, user IDs, device
 * info) reaches the page through textContent or SVG text nodes, never through HTML parsing.
 * Visitor strings are data, never keys of plain objects ("__proto__" is a path like any
 * other): tallies keyed by them are Maps. Each panel is drawn on its own, so one that fails
 * shows its error and the others still draw.
 */
(function () {
  'use strict';

  var SVG_NS = 'http://www.w3.org/2000/svg';
  var RANGES_MS = { hour: 3600 * 1000, day: 24 * 3600 * 1000, week: 7 * 24 * 3600 * 1000 };
  var EVENT_TYPES = ['page_view', 'click', 'scroll', 'hover', 'form_interaction'];
  var EVENT_LABELS = new Map([
    ['page_view', 'Page views'], ['click', 'Clicks'], ['scroll', 'Scrolls'], ['hover', 'Hovers'],
    ['form_interaction', 'Form fields']
  ]);
  var REFRESH_MIN_INTERVAL_MS = 1000;
  var IDLE_REFRESH_MS = 30000;
  var RECONNECT_MS = 5000;
  // The heatmap's x is relative (40 bins of the viewport width); draw it on a typical desktop.
  var HEATMAP_PAGE_WIDTH_PX = 1280;
  var HEATMAP_FOLD_PX = 800;
  var TIMELINE_LIMIT = 300;
  var TIMELINE_LEAD_MS = 15 * 60 * 1000;

  var state = {
    range: 'day',
    path: null,
    data: null,
    loading: false,
    again: false,
    lastFetch: 0,
    refreshTimer: null,
    source: null,
    reconnectTimer: null,
    liveCount: 0,
    signedIn: false,
    user: null
  };

  function $(id) { return document.getElementById(id); }

  // ------------------------------------------------------------------ DOM helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAll(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    setAll(node, attrs);
    append(node, children);
    return node;
  }

  function setAll(node, attrs) {
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'onclick') node.addEventListener('click', value);
      else node.setAttribute(key, String(value));
    });
  }

  function append(node, children) {
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    });
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function svgText(x, y, content, attrs) {
    var node = svg('text', Object.assign({ x: x, y: y }, attrs || {}));
    node.textContent = text(content);
    return node;
  }

  function tooltip(content) {
    var node = svg('title');
    node.textContent = text(content);
    return node;
  }

  function empty(container, message) {
    clear(container).appendChild(el('p', { class: 'empty', text: message }));
  }

  // A value meant as text: anything else a response holds in its place (an object, say,
  // whose "toString" is not a function) shows as nothing rather than throwing.
  function text(value) {
    if (typeof value === 'string') return value;
    return typeof value === 'number' || typeof value === 'boolean' ? String(value) : '';
  }

  // For SVG text, which CSS cannot end with an ellipsis: at most `max` characters, cut between
  // characters (never inside an emoji's surrogate pair). HTML cells use CSS ellipsis instead.
  function short(value, max) {
    var chars = Array.from(text(value));
    return chars.length > max ? chars.slice(0, max - 1).join('') + '…' : chars.join('');
  }

  // A visitor string inside a sentence, between Unicode isolates, so that right-to-left text
  // (or a stray direction override) cannot reorder the words around it.
  function isolate(value) {
    return '\u2068' + text(value) + '\u2069';
  }

  function label(type) {
    return EVENT_LABELS.get(type) || text(type);
  }

  // ------------------------------------------------------------------ formatting

  var numberFormat = new Intl.NumberFormat();
  var compactFormat;
  try { compactFormat = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 }); } catch (e) { compactFormat = numberFormat; }

  function num(n) { return numberFormat.format(Number(n) || 0); }
  function compact(n) { return (Number(n) || 0) >= 10000 ? compactFormat.format(n) : num(n); }

  function clock(ms, withSeconds) {
    var opts = { hour: '2-digit', minute: '2-digit' };
    if (withSeconds) opts.second = '2-digit';
    return new Date(ms).toLocaleTimeString([], opts);
  }

  function dateTime(ms) {
    return new Date(ms).toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  function ago(ms) {
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 45) return 'just now';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return Math.round(s / 3600) + ' h ago';
    return Math.round(s / 86400) + ' d ago';
  }

  function duration(ms) {
    var s = Math.round((Number(ms) || 0) / 1000);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function device(info) {
    if (!info || typeof info !== 'object') return 'unknown device';
    var ua = text(info.userAgent);
    var browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' :
      /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
    var os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' :
      /Windows/.test(ua) ? 'Windows' : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : '';
    return [browser + (os ? ' on ' + os : ''), text(info.screenResolution), text(info.timezone)]
      .filter(Boolean).join(' · ');
  }

  // ------------------------------------------------------------------ API

  function AuthError() { this.name = 'AuthError'; }

  function api(url, options) {
    var opts = Object.assign({ credentials: 'same-origin', headers: { Accept: 'application/json' } }, options || {});
    return fetch(url, opts).then(function (response) {
      if (response.status === 401) throw new AuthError();
      if (!response.ok) {
        var error = new Error('HTTP ' + response.status);
        error.status = response.status;
        throw error;
      }
      var type = response.headers.get('Content-Type') || '';
      return type.indexOf('json') >= 0 ? response.json() : response.text();
    });
  }

  function failed(error, what) {
    if (error instanceof AuthError) {
      showLogin(state.signedIn ? 'Your session has ended. Sign in again.' : '');
      return;
    }
    toast('Could not ' + what + ' (' + (error && error.message ? error.message : 'network error') + ').', true);
  }

  // ------------------------------------------------------------------ login

  function showLogin(message) {
    state.signedIn = false;
    disconnectLive();
    closeUser();
    $('app').hidden = true;
    $('login-view').hidden = false;
    $('login-error').textContent = message || '';
    $('admin-token').focus();
  }

  function showApp() {
    state.signedIn = true;
    $('login-view').hidden = true;
    $('app').hidden = false;
    connectLive();
  }

  function onLogin(e) {
    e.preventDefault();
    var input = $('admin-token');
    var token = input.value;
    if (!token) return;
    var button = $('login-submit');
    button.disabled = true;
    $('login-error').textContent = '';
    fetch('/api/admin/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: token })
    }).then(function (response) {
      if (response.ok) {
        input.value = '';
        showApp();
        load();
      } else if (response.status === 401 || response.status === 403) {
        $('login-error').textContent = 'That token was not accepted.';
      } else if (response.status === 429) {
        $('login-error').textContent = 'Too many attempts. Wait a moment and try again.';
      } else {
        $('login-error').textContent = 'Sign-in failed (HTTP ' + response.status + ').';
      }
    }, function () {
      $('login-error').textContent = 'Could not reach the server.';
    }).then(function () { button.disabled = false; });
  }

  function onLogout() {
    fetch('/api/admin/logout', { method: 'POST', credentials: 'same-origin' })
      .catch(function () { /* the cookie expires anyway */ })
      .then(function () { showLogin('Signed out.'); });
  }

  // ------------------------------------------------------------------ loading

  function query() {
    var params = new URLSearchParams();
    params.set('from', String(Date.now() - RANGES_MS[state.range]));
    if (state.path) params.set('path', state.path);
    // The site panels (dashboard-analytics.js) add their filters.
    document.dispatchEvent(new CustomEvent('dashboard:params', { detail: params }));
    return params.toString();
  }

  function load() {
    if (state.loading) {
      state.again = true;
      return;
    }
    state.loading = true;
    state.lastFetch = Date.now();
    api('/api/analytics?' + query()).then(function (data) {
      if (!state.signedIn) showApp();
      state.data = data || {};
      render(state.data);
      document.dispatchEvent(new CustomEvent('dashboard:data', { detail: state.data }));
      $('updated-at').textContent = 'Updated ' + clock(Date.now(), true);
    }).catch(function (error) {
      failed(error, 'load analytics');
    }).then(function () {
      state.loading = false;
      if (state.again) {
        state.again = false;
        refreshSoon();
      }
    });
  }

  // At most one fetch a second however fast updates arrive; the last update always lands.
  function refreshSoon() {
    if (!state.signedIn) return;
    if (state.loading) {
      state.again = true;
      return;
    }
    if (state.refreshTimer !== null) return;
    var wait = Math.max(0, state.lastFetch + REFRESH_MIN_INTERVAL_MS - Date.now());
    state.refreshTimer = setTimeout(function () {
      state.refreshTimer = null;
      load();
    }, wait);
  }

  // ------------------------------------------------------------------ live

  function setLive(mode, label) {
    var indicator = $('live-indicator');
    indicator.className = 'live ' + mode;
    $('live-label').textContent = label;
  }

  function connectLive() {
    if (state.source || !window.EventSource) {
      if (!window.EventSource) setLive('offline', 'No live updates');
      return;
    }
    clearTimeout(state.reconnectTimer);
    setLive('connecting', 'Connecting');
    var source = new EventSource('/api/analytics/stream');
    state.source = source;
    source.addEventListener('open', function () { setLive('on', 'Live'); });
    source.addEventListener('update', function (e) {
      var count = 1;
      try {
        var message = JSON.parse(e.data);
        if (typeof message.events === 'number' && message.events >= 0) count = message.events;
      } catch (err) { /* a malformed message still means something happened */ }
      state.liveCount += count;
      $('live-count').textContent = compact(state.liveCount);
      setLive('on pulse', 'Live');
      setTimeout(function () { if (state.source === source) setLive('on', 'Live'); }, 600);
      refreshSoon();
    });
    source.addEventListener('error', function () {
      if (source.readyState !== EventSource.CLOSED) {
        setLive('connecting', 'Reconnecting');
        return;
      }
      // Closed for good: maybe the admin cookie expired. load() shows the login if so.
      source.close();
      if (state.source === source) state.source = null;
      setLive('offline', 'Offline');
      if (!state.signedIn) return;
      load();
      state.reconnectTimer = setTimeout(function () { if (state.signedIn) connectLive(); }, RECONNECT_MS);
    });
  }

  function disconnectLive() {
    clearTimeout(state.reconnectTimer);
    if (state.source) state.source.close();
    state.source = null;
    setLive('offline', 'Offline');
  }

  // ------------------------------------------------------------------ render

  function list(value) {
    return Array.isArray(value) ? value.filter(function (item) { return item && typeof item === 'object'; }) : [];
  }

  function render(d) {
    [
      [null, function () { renderKpis(d); }], // four tiles of numbers: a failure is logged only
      ['event-types', function () { renderEventTypes(d.eventsByType); }],
      ['chart-events', function () { renderTimeline(list(d.eventsPerMinute)); }],
      ['top-pages', function () { renderTopPages(list(d.topPages)); }],
      ['top-elements', function () { renderTopElements(list(d.topElements)); }],
      ['heatmap', function () { renderHeatmapPaths(d); renderHeatmap(d.heatmap); }],
      ['journeys', function () { renderJourneys(list(d.journeys)); }],
      ['scroll-depth', function () { renderScrollDepth(list(d.scrollDepth)); }],
      ['rage-clicks', function () { renderRageClicks(list(d.rageClicks)); }],
      ['recent-activity', function () { renderRecent(list(d.recentActivity)); }]
    ].forEach(function (panel) {
      try {
        panel[1]();
      } catch (error) {
        if (window.console) console.error('dashboard panel ' + (panel[0] || 'kpis'), error);
        if (panel[0]) clear($(panel[0])).appendChild(el('p', { class: 'panel-error', role: 'alert',
          text: 'Could not draw this panel (' + text(error && error.message) + ').' }));
      }
    });
  }

  function renderKpis(d) {
    [['kpi-active-users', d.activeUsers], ['kpi-total-users', d.totalUsers],
      ['kpi-sessions', d.totalSessions], ['kpi-events', d.totalEvents]].forEach(function (pair) {
      var value = $(pair[0]).querySelector('.kpi-value');
      value.textContent = compact(pair[1]);
      value.setAttribute('title', num(pair[1]));
      $(pair[0]).setAttribute('data-value', String(Number(pair[1]) || 0)); // exact, for tests
    });
    $('kpi-active-users').classList.toggle('has-active', Number(d.activeUsers) > 0);
  }

  function renderEventTypes(byType) {
    var box = clear($('event-types'));
    var counts = new Map(byType && typeof byType === 'object' ? Object.entries(byType) : []);
    var keys = EVENT_TYPES.concat(Array.from(counts.keys()).filter(function (k) { return EVENT_TYPES.indexOf(k) < 0; }));
    keys.forEach(function (type) {
      if (!counts.has(type)) return;
      box.appendChild(el('span', { class: 'chip' }, [
        el('span', { class: 'swatch type-' + (EVENT_TYPES.indexOf(type) >= 0 ? type : 'other') }),
        el('span', { class: 'visitor', text: label(type) }), ' ', el('strong', { text: compact(counts.get(type)) })
      ]));
    });
  }

  // Minutes are re-binned so a week is still ~120 readable points.
  function binEvents(points) {
    var valid = points.filter(function (p) { return p && isFinite(p.t) && isFinite(p.count); });
    var busy = valid.filter(function (p) { return p.count > 0; });
    if (!busy.length) return [];
    var minute = 60000;
    var end = Math.max(valid[valid.length - 1].t, Math.floor(Date.now() / minute) * minute);
    var start = Math.min(valid[0].t, end - RANGES_MS[state.range] + minute);
    // The series has a zero for every empty minute: do not draw a week of nothing before
    // the first event, only a little lead-in.
    start = Math.max(start, busy[0].t - TIMELINE_LEAD_MS);
    var step = Math.max(1, Math.ceil((end - start) / minute / 120)) * minute;
    var bins = [];
    for (var t = start; t <= end; t += step) bins.push({ t: t, count: 0 });
    valid.forEach(function (p) {
      var i = Math.floor((p.t - start) / step);
      if (i >= 0 && i < bins.length) bins[i].count += p.count;
    });
    return bins;
  }

  // A round axis maximum whose quarters are round too (4 grid lines).
  function niceMax(value) {
    var quarter = Math.max(1, value / 4);
    var magnitude = Math.pow(10, Math.floor(Math.log10(quarter)));
    var steps = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * magnitude >= quarter) return 4 * steps[i] * magnitude;
    return 40 * magnitude;
  }

  function renderTimeline(points) {
    var box = clear($('chart-events'));
    var bins = binEvents(points);
    if (!bins.length) return empty(box, 'No events in this range yet.');
    var W = 900, H = 240, left = 44, right = 12, top = 14, bottom = 28;
    var max = niceMax(Math.max.apply(null, bins.map(function (b) { return b.count; })));
    var x = function (i) { return left + (bins.length === 1 ? 0 : i * (W - left - right) / (bins.length - 1)); };
    var y = function (v) { return top + (H - top - bottom) * (1 - v / max); };
    var chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'timeline', role: 'img', 'aria-label': 'Events over time' });
    chart.appendChild(svg('defs', {}, [svg('linearGradient', { id: 'area-fill', x1: 0, y1: 0, x2: 0, y2: 1 }, [
      svg('stop', { offset: '0%', class: 'area-stop-top' }), svg('stop', { offset: '100%', class: 'area-stop-bottom' })
    ])]));
    for (var g = 0; g <= 4; g++) {
      var value = max * g / 4;
      chart.appendChild(svg('line', { class: 'grid-line', x1: left, x2: W - right, y1: y(value), y2: y(value) }));
      chart.appendChild(svgText(left - 8, y(value) + 4, compact(value), { class: 'axis-label', 'text-anchor': 'end' }));
    }
    var spanMs = bins[bins.length - 1].t - bins[0].t;
    var ticks = Math.min(6, bins.length);
    for (var k = 0; k < ticks; k++) {
      var i = Math.round(k * (bins.length - 1) / Math.max(1, ticks - 1));
      var label = spanMs > 36 * 3600 * 1000
        ? new Date(bins[i].t).toLocaleDateString([], { weekday: 'short', day: 'numeric' })
        : clock(bins[i].t);
      chart.appendChild(svgText(x(i), H - 8, label, { class: 'axis-label', 'text-anchor': k === 0 ? 'start' : k === ticks - 1 ? 'end' : 'middle' }));
    }
    var line = bins.map(function (b, i) { return (i ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(b.count).toFixed(1); }).join(' ');
    chart.appendChild(svg('path', { class: 'area', d: line + ' L' + x(bins.length - 1) + ' ' + y(0) + ' L' + x(0) + ' ' + y(0) + ' Z', fill: 'url(#area-fill)' }));
    chart.appendChild(svg('path', { class: 'line', d: line }));

    // Hover read-out: the nearest bin's time and count.
    var cursor = svg('g', { class: 'cursor', visibility: 'hidden' });
    var cursorLine = svg('line', { y1: top, y2: H - bottom });
    var cursorDot = svg('circle', { r: 4 });
    var cursorBox = svg('rect', { class: 'cursor-box', width: 132, height: 24, rx: 6 });
    var cursorText = svgText(0, 0, '', { class: 'cursor-text' });
    append(cursor, [cursorLine, cursorDot, cursorBox, cursorText]);
    chart.appendChild(cursor);
    chart.appendChild(svg('rect', { class: 'hit', x: left, y: top, width: W - left - right, height: H - top - bottom }));
    chart.addEventListener('mousemove', function (e) {
      var rect = chart.getBoundingClientRect();
      var px = (e.clientX - rect.left) * W / rect.width;
      var i = Math.max(0, Math.min(bins.length - 1, Math.round((px - left) / Math.max(1, (W - left - right)) * (bins.length - 1))));
      var cx = x(i), cy = y(bins[i].count);
      cursorLine.setAttribute('x1', cx); cursorLine.setAttribute('x2', cx);
      cursorDot.setAttribute('cx', cx); cursorDot.setAttribute('cy', cy);
      var bx = Math.min(W - right - 132, Math.max(left, cx - 66));
      cursorBox.setAttribute('x', bx); cursorBox.setAttribute('y', top);
      cursorText.setAttribute('x', bx + 66); cursorText.setAttribute('y', top + 16);
      cursorText.textContent = clock(bins[i].t) + ' · ' + num(bins[i].count) + ' events';
      cursor.setAttribute('visibility', 'visible');
    });
    chart.addEventListener('mouseleave', function () { cursor.setAttribute('visibility', 'hidden'); });
    box.appendChild(chart);
  }

  // Horizontal bars: label above, bar below, count at the right. One SVG scales uniformly.
  function bars(container, rows, emptyMessage) {
    clear(container);
    if (!rows.length) return empty(container, emptyMessage);
    var W = 600, rowH = 40;
    var max = Math.max.apply(null, rows.map(function (r) { return r.count; })) || 1;
    var chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + rows.length * rowH, class: 'bar-chart', role: 'list' });
    rows.forEach(function (row, i) {
      var y0 = i * rowH;
      var g = svg('g', { class: 'bar-row' + (row.onclick ? ' clickable' : ''), role: 'listitem' });
      g.appendChild(tooltip(row.title || row.label));
      g.appendChild(svg('rect', { class: 'bar-hit', x: 0, y: y0, width: W, height: rowH }));
      var label = svgText(0, y0 + 15, short(row.label, 64), { class: 'bar-label' });
      if (row.sub) {
        var sub = svg('tspan', { class: 'bar-sub', dx: 8 });
        sub.textContent = short(row.sub, 40);
        label.appendChild(sub);
      }
      g.appendChild(label);
      g.appendChild(svgText(W, y0 + 15, num(row.count), { class: 'bar-count', 'text-anchor': 'end' }));
      g.appendChild(svg('rect', { class: 'bar-track', x: 0, y: y0 + 22, width: W, height: 9, rx: 4.5 }));
      g.appendChild(svg('rect', { class: 'bar ' + (row.cls || ''), x: 0, y: y0 + 22, width: Math.max(4, W * row.count / max), height: 9, rx: 4.5 }));
      if (row.onclick) g.addEventListener('click', row.onclick);
      chart.appendChild(g);
    });
    container.appendChild(chart);
  }

  function renderTopPages(pages) {
    bars($('top-pages'), pages.slice(0, 8).map(function (p) {
      return {
        label: text(p.path), count: Number(p.count) || 0, cls: 'bar-pages',
        onclick: function () { selectHeatmapPath(text(p.path)); }
      };
    }), 'No page views yet.');
  }

  function renderTopElements(elements) {
    bars($('top-elements'), elements.slice(0, 8).map(function (e) {
      return { label: text(e.element), sub: text(e.path), count: Number(e.count) || 0, cls: 'bar-elements',
        title: isolate(e.element) + (text(e.path) ? ' on ' + isolate(e.path) : '') };
    }), 'No clicks yet.');
  }

  // ------------------------------------------------------------------ heatmap

  function renderHeatmapPaths(d) {
    var select = $('heatmap-path');
    var paths = list(d.topPages).map(function (p) { return text(p.path); });
    var current = d.heatmap && text(d.heatmap.path) ? text(d.heatmap.path) : state.path;
    if (current && paths.indexOf(current) < 0) paths.unshift(current);
    clear(select);
    if (!paths.length) select.appendChild(el('option', { value: '', text: 'No pages yet' }));
    paths.forEach(function (path) {
      select.appendChild(el('option', { value: path, text: short(path, 60), title: path, selected: path === current }));
    });
  }

  function selectHeatmapPath(path) {
    state.path = path;
    load();
  }

  function renderHeatmap(heatmap) {
    var box = clear($('heatmap'));
    var cells = heatmap && Array.isArray(heatmap.cells) ? heatmap.cells : [];
    if (!cells.length) return empty(box, heatmap && heatmap.path ? 'No clicks on this page yet.' : 'No clicks yet.');
    var binsX = Number(heatmap.binsX) || 40;
    var binPx = Number(heatmap.binHeightPx) || 25;
    var W = 400, bar = 22;
    var scale = W / HEATMAP_PAGE_WIDTH_PX;
    var cellW = W / binsX, cellH = binPx * scale;
    var maxRow = 0, maxCount = 0, total = 0;
    cells.forEach(function (c) {
      maxRow = Math.max(maxRow, Number(c.y) || 0);
      maxCount = Math.max(maxCount, Number(c.count) || 0);
      total += Number(c.count) || 0;
    });
    var pageRows = Math.max(maxRow + 4, Math.ceil(HEATMAP_FOLD_PX / binPx));
    var H = bar + pageRows * cellH;
    var map = svg('svg', { viewBox: '-34 0 ' + (W + 36) + ' ' + (H + 2), class: 'heatmap-svg', role: 'img',
      'aria-label': 'Clicks on ' + (text(heatmap.path) ? isolate(heatmap.path) : 'the page') });
    map.appendChild(svg('rect', { class: 'page', x: 0, y: 0, width: W, height: H + 1, rx: 6 }));
    map.appendChild(svg('rect', { class: 'page-bar', x: 0, y: 0, width: W, height: bar, rx: 6 }));
    [10, 20, 30].forEach(function (cx) { map.appendChild(svg('circle', { class: 'page-dot', cx: cx, cy: bar / 2, r: 3 })); });
    map.appendChild(svg('rect', { class: 'page-address', x: 42, y: 5, width: W - 52, height: bar - 10, rx: 6 }));
    map.appendChild(svgText(50, bar / 2 + 3.5, short(text(heatmap.path) || '/', 60), { class: 'page-path' }));
    // Height marks every 500 px of page, and the fold of a typical screen.
    for (var px = 500; px < pageRows * binPx; px += 500) {
      var yy = bar + px * scale;
      map.appendChild(svg('line', { class: 'page-rule', x1: 0, x2: W, y1: yy, y2: yy }));
      map.appendChild(svgText(-6, yy + 3, px + 'px', { class: 'page-mark', 'text-anchor': 'end' }));
    }
    var fold = bar + HEATMAP_FOLD_PX * scale;
    map.appendChild(svg('line', { class: 'page-fold', x1: 0, x2: W, y1: fold, y2: fold }));
    map.appendChild(svgText(W - 4, fold - 4, 'typical fold', { class: 'page-mark', 'text-anchor': 'end' }));
    // A light blur turns the grid of bins into the familiar glow without losing the bins.
    map.appendChild(svg('defs', {}, [svg('filter', { id: 'heat-blur', x: '-10%', y: '-10%', width: '120%', height: '120%' }, [
      svg('feGaussianBlur', { stdDeviation: 3 })
    ])]));
    var layer = svg('g', { class: 'heat-layer', filter: 'url(#heat-blur)' });
    cells.forEach(function (c) {
      var count = Number(c.count) || 0;
      var share = maxCount ? count / maxCount : 0;
      var rect = svg('rect', {
        class: 'heat-cell' + (share > 0.66 ? ' hot' : share > 0.33 ? ' warm' : ''),
        x: (Number(c.x) || 0) * cellW, y: bar + (Number(c.y) || 0) * cellH,
        width: cellW, height: cellH, rx: 1.5,
        'fill-opacity': (0.3 + 0.7 * Math.sqrt(share)).toFixed(3),
        'data-count': count
      });
      rect.appendChild(tooltip(num(count) + ' clicks · ' + Math.round(c.y * binPx) + '–' + Math.round((c.y + 1) * binPx) + ' px down'));
      layer.appendChild(rect);
    });
    map.appendChild(layer);
    box.appendChild(el('div', { class: 'heatmap-scroll' }, [map]));
    box.appendChild(el('div', { class: 'heat-legend' }, [
      el('span', { text: num(total) + ' clicks' }),
      el('span', { class: 'heat-scale' }, [el('span', { text: 'fewer' }), el('span', { class: 'heat-gradient' }), el('span', { text: 'more' })])
    ]));
  }

  // ------------------------------------------------------------------ journeys (two-column Sankey)

  function renderJourneys(journeys) {
    var box = clear($('journeys'));
    var top = journeys.filter(function (j) { return Number(j.count) > 0; })
      .map(function (j) { return { from: text(j.from), to: text(j.to), count: Number(j.count) }; })
      .sort(function (a, b) { return b.count - a.count; }).slice(0, 10);
    if (!top.length) return empty(box, 'No page-to-page journeys yet.');
    // Node names are visitors' paths: a Map, where a plain object would take "__proto__" as
    // its prototype and lose the node.
    function nodes(key) {
      var byName = new Map();
      top.forEach(function (j) {
        var node = byName.get(j[key]);
        if (!node) byName.set(j[key], node = { name: j[key], total: 0, used: 0 });
        node.total += j.count;
      });
      return Array.from(byName.values()).sort(function (a, b) { return b.total - a.total; });
    }
    var from = nodes('from'), to = nodes('to');
    // Each node gets at least a slot tall enough for its label and count, so small flows
    // never make labels collide; the flows themselves stay proportional.
    var W = 600, head = 22, gap = 8, minSlot = 30, nodeW = 10, leftX = 170, rightX = W - 170 - nodeW;
    var total = top.reduce(function (n, j) { return n + Number(j.count); }, 0);
    var k = (240 - gap * (Math.max(from.length, to.length) - 1)) / total;
    function size(list) {
      list.forEach(function (node) { node.h = Math.max(2, node.total * k); node.slot = Math.max(node.h, minSlot); });
      return list.reduce(function (n, node) { return n + node.slot; }, 0) + gap * (list.length - 1);
    }
    var fromH = size(from), toH = size(to);
    var H = head + Math.max(fromH, toH) + 4;
    function place(list, used) {
      var y0 = head + (H - head - used) / 2;
      list.forEach(function (node) { node.y = y0 + (node.slot - node.h) / 2; y0 += node.slot + gap; });
    }
    place(from, fromH);
    place(to, toH);
    var byName = function (nodeList, name) { return nodeList.filter(function (n) { return n.name === name; })[0]; };
    var chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'sankey', role: 'img', 'aria-label': 'Journeys between pages' });
    chart.appendChild(svgText(leftX + nodeW, 11, 'FROM', { class: 'column-label', 'text-anchor': 'end' }));
    chart.appendChild(svgText(rightX, 11, 'TO', { class: 'column-label' }));
    top.forEach(function (j) {
      var a = byName(from, j.from), b = byName(to, j.to);
      var h = Math.max(1.5, j.count * k);
      var y1 = a.y + a.used, y2 = b.y + b.used;
      a.used += h; b.used += h;
      var x1 = leftX + nodeW, x2 = rightX, mid = (x1 + x2) / 2;
      var d = 'M' + x1 + ' ' + y1 + ' C' + mid + ' ' + y1 + ' ' + mid + ' ' + y2 + ' ' + x2 + ' ' + y2 +
        ' L' + x2 + ' ' + (y2 + h) + ' C' + mid + ' ' + (y2 + h) + ' ' + mid + ' ' + (y1 + h) + ' ' + x1 + ' ' + (y1 + h) + ' Z';
      var link = svg('path', { class: 'link link-' + (from.indexOf(a) % 6), d: d });
      link.appendChild(tooltip(isolate(j.from) + ' → ' + isolate(j.to) + ': ' + num(j.count)));
      chart.appendChild(link);
    });
    from.forEach(function (node, i) {
      chart.appendChild(svg('rect', { class: 'node node-' + (i % 6), x: leftX, y: node.y, width: nodeW, height: node.h, rx: 2 }));
      var label = svgText(leftX - 8, node.y + node.h / 2 - 1, short(node.name, 22), { class: 'node-label', 'text-anchor': 'end' });
      label.appendChild(tooltip(node.name));
      chart.appendChild(label);
      chart.appendChild(svgText(leftX - 8, node.y + node.h / 2 + 11, num(node.total), { class: 'node-count', 'text-anchor': 'end' }));
    });
    to.forEach(function (node) {
      chart.appendChild(svg('rect', { class: 'node node-to', x: rightX, y: node.y, width: nodeW, height: node.h, rx: 2 }));
      var label = svgText(rightX + nodeW + 8, node.y + node.h / 2 - 1, short(node.name, 22), { class: 'node-label' });
      label.appendChild(tooltip(node.name));
      chart.appendChild(label);
      chart.appendChild(svgText(rightX + nodeW + 8, node.y + node.h / 2 + 11, num(node.total), { class: 'node-count' }));
    });
    box.appendChild(chart);
  }

  // ------------------------------------------------------------------ scroll depth

  function renderScrollDepth(buckets) {
    var box = clear($('scroll-depth'));
    var counts = new Map();
    buckets.forEach(function (b) {
      var bucket = Number(b.bucket);
      counts.set(bucket, (counts.get(bucket) || 0) + (Number(b.count) || 0));
    });
    var total = 0, deep = 0;
    counts.forEach(function (count, bucket) {
      total += count;
      if (bucket >= 50) deep += count;
    });
    $('scroll-summary').textContent = '';
    if (!total) return empty(box, 'No scrolling yet.');
    $('scroll-summary').textContent = Math.round(100 * deep / total) + '% reached half the page';
    var W = 600, H = 220, left = 8, bottom = 26, top = 18;
    var slots = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    var max = Math.max.apply(null, slots.map(function (s) { return counts.get(s) || 0; })) || 1;
    var slotW = (W - left * 2) / slots.length;
    var chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'histogram', role: 'img', 'aria-label': 'Scroll depth' });
    chart.appendChild(svg('line', { class: 'grid-line', x1: 0, x2: W, y1: H - bottom, y2: H - bottom }));
    slots.forEach(function (slot, i) {
      var count = counts.get(slot) || 0;
      var h = (H - bottom - top) * count / max;
      var x = left + i * slotW + 6;
      var rect = svg('rect', { class: 'depth-bar depth-' + slot, x: x, y: H - bottom - h, width: slotW - 12, height: Math.max(count ? 2 : 0, h), rx: 4 });
      rect.appendChild(tooltip(num(count) + ' scrolls reached ' + slot + '%'));
      chart.appendChild(rect);
      if (count) chart.appendChild(svgText(x + (slotW - 12) / 2, H - bottom - h - 5, compact(count), { class: 'bar-value', 'text-anchor': 'middle' }));
      chart.appendChild(svgText(x + (slotW - 12) / 2, H - 8, slot + '%', { class: 'axis-label', 'text-anchor': 'middle' }));
    });
    box.appendChild(chart);
  }

  // ------------------------------------------------------------------ tables

  function table(headers, rows) {
    return el('table', { class: 'data-table' }, [
      el('thead', {}, [el('tr', {}, headers.map(function (h) { return el('th', { text: h }); }))]),
      el('tbody', {}, rows.map(function (cells) {
        return el('tr', {}, cells.map(function (cell) {
          return el('td', {}, [cell]);
        }));
      }))
    ]);
  }

  function userLink(userId) {
    userId = text(userId);
    return el('button', { class: 'user-link', type: 'button', text: userId, title: userId,
      'data-user-id': userId, onclick: function () { openUser(userId); } });
  }

  function when(ms) {
    return el('span', { text: ago(ms), title: new Date(ms).toLocaleString() });
  }

  function renderRageClicks(rows) {
    var box = clear($('rage-clicks'));
    if (!rows.length) return empty(box, 'No rage clicks. Visitors seem calm.');
    box.appendChild(table(['Page', 'Element', 'Position', 'Clicks', 'User', 'When'], rows.slice(0, 20).map(function (r) {
      return [
        el('span', { class: 'mono visitor', text: text(r.path), title: text(r.path) }),
        el('span', { class: 'mono visitor', text: text(r.element), title: text(r.element) }),
        el('span', { class: 'muted', text: Math.round(r.x) + ', ' + Math.round(r.y) }),
        el('span', { class: 'rage-count', text: num(r.count) }),
        r.userId ? userLink(r.userId) : '',
        r.timestamp ? when(r.timestamp) : ''
      ];
    })));
  }

  function renderRecent(sessions) {
    var box = clear($('recent-activity'));
    if (!sessions.length) return empty(box, 'Nobody has visited yet.');
    // Summaries may come without device facts; then a column of "unknown" says nothing.
    var devices = sessions.some(function (s) { return s.deviceInfo; });
    var headers = ['User', 'Session', 'Started', 'Last activity', 'Events'];
    box.appendChild(table(devices ? headers.concat(['Device']) : headers, sessions.map(function (s) {
      var cells = [
        userLink(s.userId),
        el('span', { class: 'mono muted visitor session-id', text: text(s.sessionId), title: text(s.sessionId) }),
        el('span', { text: dateTime(s.startTime) }),
        when(s.lastActivity),
        el('span', { class: 'num', text: num(s.movementCount) })
      ];
      if (devices) cells.push(el('span', { class: 'muted', text: device(s.deviceInfo) }));
      return cells;
    })));
  }

  // ------------------------------------------------------------------ per-user view

  function openUser(userId) {
    state.user = userId;
    $('user-title').textContent = userId;
    $('user-export').setAttribute('href', '/api/users/' + encodeURIComponent(userId) + '/export');
    var body = clear($('user-body'));
    body.appendChild(el('p', { class: 'muted', text: 'Loading…' }));
    $('user-overlay').hidden = false;
    $('user-panel').hidden = false;
    document.body.classList.add('panel-open');
    api('/api/users/' + encodeURIComponent(userId)).then(function (data) {
      if (state.user === userId) renderUser(data || {});
    }).catch(function (error) {
      if (error instanceof AuthError) return failed(error);
      empty(clear(body), error.status === 404 ? 'Nothing is stored for this user.' : 'Could not load this user (' + error.message + ').');
    });
  }

  function closeUser() {
    state.user = null;
    $('user-overlay').hidden = true;
    $('user-panel').hidden = true;
    document.body.classList.remove('panel-open');
  }

  // One line about an event. Metadata is whatever the visitor sent: only its strings and
  // numbers are shown, each isolated from the words around it.
  function eventDetail(m) {
    var data = m.data && typeof m.data === 'object' ? m.data : {};
    var meta = data.metadata && typeof data.metadata === 'object' ? data.metadata : {};
    var element = text(data.element);
    var coordinates = data.coordinates && typeof data.coordinates === 'object' ? data.coordinates : null;
    switch (m.event) {
      case 'page_view':
        return (text(meta.referrerPath) ? 'from ' + isolate(meta.referrerPath) : 'landed') +
          (typeof data.duration === 'number' ? ' · ' + duration(data.duration) + ' on the previous page' : '');
      case 'click':
        return isolate(element) + (coordinates ? ' at ' + Math.round(coordinates.x) + ', ' + Math.round(coordinates.y) : '');
      case 'scroll':
        return (typeof meta.scrollDepth === 'number' ? meta.scrollDepth + '% of the page seen' : 'scrolled') +
          (typeof data.scrollY === 'number' ? ' · y ' + Math.round(data.scrollY) : '');
      case 'hover':
        return isolate(element) + (typeof data.duration === 'number' ? ' for ' + duration(data.duration) : '');
      case 'form_interaction':
        return 'field ' + isolate(element || '?') + (text(meta.action) ? ' (' + isolate(meta.action) + ')' : '');
      default:
        return isolate(element);
    }
  }

  function renderUser(data) {
    var body = clear($('user-body'));
    var sessions = (Array.isArray(data.sessions) ? data.sessions : []).slice()
      .sort(function (a, b) { return (b.startTime || 0) - (a.startTime || 0); });
    if (!sessions.length) return empty(body, 'No active session. Ended sessions are in the export.');
    var events = sessions.reduce(function (n, s) { return n + (s.movements ? s.movements.length : 0); }, 0);
    var first = Math.min.apply(null, sessions.map(function (s) { return s.startTime || Date.now(); }));
    var last = Math.max.apply(null, sessions.map(function (s) { return s.lastActivity || 0; }));
    body.appendChild(el('div', { class: 'user-stats' }, [
      stat('Sessions', num(sessions.length)), stat('Events', num(events)),
      stat('First seen', dateTime(first)), stat('Last seen', ago(last))
    ]));
    sessions.forEach(function (s) {
      var movements = (Array.isArray(s.movements) ? s.movements : []).slice()
        .sort(function (a, b) { return (a.timestamp || 0) - (b.timestamp || 0); });
      var pages = movements.filter(function (m) { return m.event === 'page_view' && m.data && text(m.data.path); })
        .map(function (m) { return text(m.data.path); });
      var card = el('section', { class: 'session-card', 'data-session-id': text(s.sessionId) }, [
        el('div', { class: 'session-head' }, [
          el('strong', { class: 'mono visitor session-id', text: text(s.sessionId), title: text(s.sessionId) }),
          el('span', { class: 'muted', text: dateTime(s.startTime) + ' · ' + duration((s.lastActivity || 0) - (s.startTime || 0)) + ' · ' + num(movements.length) + ' events' })
        ]),
        el('p', { class: 'muted small', text: device(s.deviceInfo) })
      ]);
      if (pages.length) {
        var trail = el('div', { class: 'page-trail' });
        pages.slice(0, 20).forEach(function (path, i) {
          if (i) trail.appendChild(el('span', { class: 'trail-arrow', text: '→' }));
          trail.appendChild(el('span', { class: 'trail-page mono visitor', text: path, title: path }));
        });
        if (pages.length > 20) trail.appendChild(el('span', { class: 'muted', text: ' +' + (pages.length - 20) + ' more' }));
        card.appendChild(trail);
      }
      var items = el('ol', { class: 'timeline-list' });
      movements.slice(-TIMELINE_LIMIT).forEach(function (m) {
        var type = EVENT_TYPES.indexOf(m.event) >= 0 ? m.event : 'other';
        var path = m.data ? text(m.data.path) : '';
        var detail = eventDetail(m);
        items.appendChild(el('li', { class: 'timeline-item' }, [
          el('span', { class: 'dot type-' + type }),
          el('span', { class: 'time mono', text: m.timestamp ? clock(m.timestamp, true) : '' }),
          el('span', { class: 'badge type-' + type, text: label(m.event).replace(/s$/, '') }),
          el('span', { class: 'mono path visitor', text: path, title: path }),
          el('span', { class: 'detail', text: detail, title: detail })
        ]));
      });
      if (movements.length > TIMELINE_LIMIT) {
        card.appendChild(el('p', { class: 'muted small', text: 'Showing the last ' + TIMELINE_LIMIT + ' of ' + num(movements.length) + ' events.' }));
      }
      card.appendChild(items);
      body.appendChild(card);
    });
  }

  function stat(label, value) {
    return el('div', { class: 'stat' }, [el('span', { class: 'muted small', text: label }), el('strong', { text: value })]);
  }

  function eraseUser() {
    var userId = state.user;
    if (!userId || !window.confirm('Erase everything stored about ' + isolate(userId) + '? This cannot be undone.')) return;
    api('/api/users/' + encodeURIComponent(userId), { method: 'DELETE' }).then(function () {
      closeUser();
      toast('Erased ' + isolate(short(userId, 40)) + '.');
      load();
    }).catch(function (error) { failed(error, 'erase this user'); });
  }

  // ------------------------------------------------------------------ toast

  var toastTimer = null;
  function toast(message, isError) {
    var box = $('toast');
    box.textContent = message;
    box.className = 'toast visible' + (isError ? ' error' : '');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.className = 'toast'; }, 4000);
  }

  // ------------------------------------------------------------------ wiring

  $('login-form').addEventListener('submit', onLogin);
  $('logout-button').addEventListener('click', onLogout);
  $('refresh-button').addEventListener('click', load);
  document.addEventListener('dashboard:refresh', load);
  $('range-select').addEventListener('change', function (e) {
    state.range = RANGES_MS[e.target.value] ? e.target.value : 'day';
    load();
  });
  $('heatmap-path').addEventListener('change', function (e) { selectHeatmapPath(e.target.value || null); });
  $('user-close').addEventListener('click', closeUser);
  $('user-overlay').addEventListener('click', closeUser);
  $('user-delete').addEventListener('click', eraseUser);
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape' && state.user) closeUser(); });
  setInterval(function () { if (state.signedIn && !document.hidden) refreshSoon(); }, IDLE_REFRESH_MS);
  load();
})();
