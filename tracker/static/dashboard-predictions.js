/* The dashboard's predictions panels: the next pages after a chosen page, the live sessions
   ranked by the probability of reaching a chosen goal, and the models' evaluation against
   their baselines. Built with DOM calls only (paths and IDs are visitors' data: never HTML). */
(function () {
  'use strict';

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return node;
  }

  function get(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.error || body.message || ('HTTP ' + response.status));
          return body;
        });
      });
  }

  function percent(x) { return x === null || x === undefined ? 'n/a' : (100 * x).toFixed(1) + '%'; }
  function fixed(x, n) { return x === null || x === undefined ? 'n/a' : x.toFixed(n); }

  function table(head, rows) {
    return el('table', { 'class': 'table' }, [
      el('thead', {}, [el('tr', {}, head.map(function (h) { return el('th', {}, [h]); }))]),
      el('tbody', {}, rows.map(function (r) {
        return el('tr', {}, r.map(function (c) { return el('td', {}, [String(c)]); }));
      }))
    ]);
  }

  function show(box, node) {
    box.textContent = '';
    box.appendChild(node);
  }

  function failed(box, error) { show(box, el('p', { 'class': 'muted small', role: 'alert' }, [error.message])); }

  function card(title, hint, controls, testid) {
    var body = el('div', { 'data-testid': testid, 'class': 'table-wrap' });
    var head = el('div', { 'class': 'card-head' }, [el('h2', {}, [title]), el('span', { 'class': 'hint' }, [hint])]);
    controls.forEach(function (c) { head.appendChild(c); });
    return { section: el('section', { 'class': 'card wide' }, [head, body]), body: body };
  }

  var pathInput = el('input', { type: 'text', value: '/', 'aria-label': 'Page', 'data-testid': 'next-page-path' });
  var pathButton = el('button', { type: 'button', 'class': 'btn' }, ['Predict']);
  var next = card('Next page', 'likeliest pages after this one', [pathInput, pathButton], 'next-pages');

  var goalSelect = el('select', { 'aria-label': 'Goal', 'data-testid': 'propensity-goal' });
  var sessions = card('Likely to convert', 'live sessions by probability of the goal', [goalSelect], 'propensity-sessions');

  var trainButton = el('button', { type: 'button', 'class': 'btn' }, ['Train now']);
  var evaluation = card('Prediction quality', 'time-split hold-out against baselines', [trainButton], 'prediction-evaluation');

  function loadNext() {
    var path = pathInput.value || '/';
    get('/api/predictions/next?path=' + encodeURIComponent(path)).then(function (list) {
      show(next.body, list.length
        ? table(['next page', 'probability'], list.map(function (p) { return [p.path, percent(p.probability)]; }))
        : el('p', { 'class': 'muted small' }, ['No page views counted yet.']));
    }, function (e) { failed(next.body, e); });
  }

  function loadGoals() {
    return get('/api/conversions').then(function (found) {
      var chosen = goalSelect.value;
      goalSelect.textContent = '';
      Object.keys(found.goals || {}).forEach(function (name) {
        goalSelect.appendChild(el('option', { value: name }, [name]));
      });
      if (chosen) goalSelect.value = chosen;
    });
  }

  function loadSessions() {
    if (!goalSelect.value) {
      show(sessions.body, el('p', { 'class': 'muted small' }, ['Define a goal to rank live sessions by it.']));
      return;
    }
    get('/api/predictions/sessions?goal=' + encodeURIComponent(goalSelect.value)).then(function (found) {
      var rows = found.sessions.map(function (s) {
        return [s.userId, percent(s.probability), s.pages, s.entry, s.channel, s.device];
      });
      var note = found.live + ' live sessions; model of ' + found.samples + ' sessions, base rate ' + percent(found.baseRate);
      var box = el('div', {}, [el('p', { 'class': 'muted small' }, [note])]);
      if (rows.length) box.appendChild(table(['user', 'probability', 'pages', 'entry', 'channel', 'device'], rows));
      show(sessions.body, box);
    }, function (e) { failed(sessions.body, e); });
  }

  function renderEvaluation(found) {
    var pages = found.nextPage;
    var rows = [
      ['next page top-1', percent(pages.top1), percent(pages.baselineTop1), pages.test + ' transitions'],
      ['next page top-3', percent(pages.top3), percent(pages.baselineTop3), pages.test + ' transitions']
    ];
    found.propensity.forEach(function (g) {
      rows.push([g.goal + ': AUC', fixed(g.auc, 3), fixed(g.baselineAuc, 3), g.test + ' sessions']);
      rows.push([g.goal + ': Brier', fixed(g.brier, 4), fixed(g.baselineBrier, 4), g.test + ' sessions']);
    });
    show(evaluation.body, table(['figure', 'model', 'baseline', 'tested on'], rows));
  }

  function loadEvaluation() {
    get('/api/predictions/evaluation').then(renderEvaluation, function (e) { failed(evaluation.body, e); });
  }

  function trainNow() {
    fetch('/api/predictions/train', { method: 'POST', credentials: 'same-origin' })
      .then(function () { loadEvaluation(); loadSessions(); });
  }

  function loadAll() {
    loadNext();
    loadGoals().then(loadSessions, function (e) { failed(sessions.body, e); });
    loadEvaluation();
  }

  function start() {
    var main = document.querySelector('#app main');
    var app = document.getElementById('app');
    if (!main || !app) return;
    [next, sessions, evaluation].forEach(function (c) { main.appendChild(c.section); });
    pathButton.addEventListener('click', loadNext);
    pathInput.addEventListener('keydown', function (e) { if (e.key === 'Enter') loadNext(); });
    goalSelect.addEventListener('change', loadSessions);
    trainButton.addEventListener('click', trainNow);
    // The panels load once the admin is signed in (the app is shown), and again each time.
    new MutationObserver(function () { if (!app.hidden) loadAll(); })
      .observe(app, { attributes: true, attributeFilter: ['hidden'] });
    if (!app.hidden) loadAll();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
