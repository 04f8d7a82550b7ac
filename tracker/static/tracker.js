/*
 * tracker.js: records how a visitor moves through the site (page views with time on page,
 * clicks, scrolls, hovers, form interactions) and sends them in batches to /api/track.
 *
 *   <script src="/tracker.js" defer
 *           data-endpoint=""               base URL of the tracker API (default: same origin)
 *           data-user-id="alice"           identified user (default: an anonymous ID)
 *           data-token="..."               sent as `Authorization: Bearer` for identified users
 *           data-flush-interval-ms="2000"  how often queued events are sent
 *           data-hover-ms="500"            dwell over an interactive element that counts as a hover
 *           data-debug></script>           log what the tracker does to the console
 *
 * Privacy: nothing at all is sent under Do Not Track or Global Privacy Control, nor after
 * `tracker.optOut()` (in any of the site's tabs, until `tracker.optIn()` in any of them; kept in
 * localStorage and in a first-party cookie, `tracker_optout`, for where storage is blocked). Form
 * field values are never read; password and credit-card fields are not even reported as
 * touched. Elements inside `[data-tracker-ignore]` are not tracked.
 *
 * Plain ES2019 in one IIFE, no build step. Nothing in here may throw into the host page.
 */
(function () {
  'use strict';

  if (window.tracker && window.tracker.version) return; // included twice

  var KEYS = {
    session: 'tracking_session_id',
    sessionSeen: 'tracking_session_seen',
    user: 'tracking_user_id',
    optOut: 'tracking_opt_out',
    lastPage: 'tracking_last_page',
    pending: 'tracking_pending'
  };
  // The opt-out is also kept in a first-party cookie, which holds where localStorage is blocked
  // (a sandboxed frame, storage disabled). 400 days: the longest a browser keeps a cookie.
  var OPT_OUT_COOKIE = 'tracker_optout';
  var OPT_OUT_MAX_AGE_S = 400 * 24 * 3600;
  var MAX_QUEUE = 500;
  var FLUSH_AT = 20;
  var MAX_BATCH = 100;
  // Keepalive fetches and beacons share a 64 KB budget in browsers; the server takes 64 KB.
  var MAX_BODY_BYTES = 60000;
  var BACKOFF_BASE_MS = 1000;
  var BACKOFF_MAX_MS = 30000;
  var RETRY_AFTER_MAX_MS = 10 * 60 * 1000;
  var PENDING_MAX_AGE_MS = 24 * 60 * 60 * 1000;
  var SCROLL_DEBOUNCE_MS = 250;
  var FIELD_DEBOUNCE_MS = 1000;
  // Matches the server's session timeout: after this much idle time a visit is a new session.
  var SESSION_IDLE_MS = 30 * 60 * 1000;
  var MAX_ELEMENT = 512;
  var MAX_PATH = 2048;
  var ID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
  // The server takes a random (version 4) UUID as an anonymous visitor, who needs no token.
  var ANONYMOUS_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
  var INTERACTIVE = 'a,button,input,select,textarea,[role="button"],label,summary';
  var IGNORED = '[data-tracker-ignore]';
  var FIELD_RE = /^(input|select|textarea)$/i;

  var script = document.currentScript || document.querySelector('script[src*="tracker.js"]');

  function attr(name) {
    return script ? script.getAttribute(name) : null;
  }

  function msAttr(name, fallback) {
    var value = parseInt(attr(name), 10);
    return isFinite(value) && value >= 0 ? value : fallback;
  }

  var debugAttr = attr('data-debug');
  var config = {
    endpoint: (attr('data-endpoint') || '').replace(/\/+$/, ''),
    userId: attr('data-user-id'),
    token: attr('data-token'),
    flushIntervalMs: Math.max(50, msAttr('data-flush-interval-ms', 2000)),
    hoverMs: msAttr('data-hover-ms', 500),
    debug: debugAttr !== null && debugAttr !== 'false'
  };

  function log() {
    if (!config.debug || !window.console) return;
    try {
      console.debug.apply(console, ['[tracker]'].concat(Array.prototype.slice.call(arguments)));
    } catch (e) { /* no console: nothing to do */ }
  }

  // Every entry point from the page (listeners, timers, the public API) goes through this.
  function guard(fn) {
    return function () {
      try {
        return fn.apply(this, arguments);
      } catch (e) {
        log('error', e);
        return undefined;
      }
    };
  }

  function storageGet(area, key) {
    try { return window[area].getItem(key); } catch (e) { return null; }
  }

  function storageSet(area, key, value) {
    try { window[area].setItem(key, value); } catch (e) { /* storage full or disabled */ }
  }

  function storageRemove(area, key) {
    try { window[area].removeItem(key); } catch (e) { /* storage disabled */ }
  }

  function uuid() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') {
      try { return c.randomUUID(); } catch (e) { /* not a secure context */ }
    }
    var b = new Uint8Array(16);
    if (c && typeof c.getRandomValues === 'function') {
      c.getRandomValues(b);
    } else {
      for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    }
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    var hex = [];
    for (var j = 0; j < 16; j++) hex.push((b[j] + 0x100).toString(16).slice(1));
    return [hex.slice(0, 4), hex.slice(4, 6), hex.slice(6, 8), hex.slice(8, 10), hex.slice(10)]
      .map(function (part) { return part.join(''); })
      .join('-');
  }

  function storedId(area, key) {
    var id = storageGet(area, key);
    if (!id || !ID_RE.test(id)) {
      id = uuid();
      storageSet(area, key, id);
    }
    return id;
  }

  // At most `max` UTF-16 units of `value`, cut between characters. JSON.stringify sends half a
  // surrogate pair (an emoji cut in two, or a lone half a script put in an attribute) as
  // "\ud83d", which is not text: the server would refuse the whole batch for it.
  function clip(value, max) {
    var text = wellFormed(String(value));
    if (text.length <= max) return text;
    var last = text.charCodeAt(max - 1);
    return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
  }

  // `text` with each half of a surrogate pair that stands alone replaced by U+FFFD.
  function wellFormed(text) {
    if (!/[\ud800-\udfff]/.test(text)) return text;
    if (typeof text.toWellFormed === 'function') return text.toWellFormed();
    var out = '';
    for (var i = 0; i < text.length; i++) {
      var code = text.charCodeAt(i);
      if (code >= 0xd800 && code <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        out += text.charAt(i) + text.charAt(i + 1);
        i += 1;
      } else {
        out += (code & 0xf800) === 0xd800 ? '\ufffd' : text.charAt(i);
      }
    }
    return out;
  }

  function monotonicNow() {
    return window.performance && performance.now ? performance.now() : Date.now();
  }

  function privacySignal() {
    var n = navigator;
    return n.doNotTrack === '1' || window.doNotTrack === '1' || n.msDoNotTrack === '1' ||
      n.globalPrivacyControl === true;
  }

  function optOutCookie(maxAgeS) {
    var secure = window.location.protocol === 'https:' ? '; Secure' : '';
    try {
      document.cookie = OPT_OUT_COOKIE + '=' + (maxAgeS ? '1' : '') + '; Path=/; Max-Age=' +
        maxAgeS + '; SameSite=Lax' + secure;
    } catch (e) { /* cookies disabled too: nothing can remember the choice */ }
  }

  function optOutCookieSet() {
    try {
      return document.cookie.split(';').some(function (pair) {
        return pair.trim() === OPT_OUT_COOKIE + '=1';
      });
    } catch (e) { return false; }
  }

  function optedOut() {
    return storageGet('localStorage', KEYS.optOut) === '1' || optOutCookieSet();
  }

  // Whether to go on; stops when another tab opted out (checked before sending, as that tab's
  // `storage` event may not have arrived yet).
  function active() {
    if (state.enabled && optedOut()) stop();
    return state.enabled;
  }

  // ---------------------------------------------------------------- state

  var state = {
    enabled: false,
    installed: false,
    epoch: 0, // bumped on stop, so answers to requests sent before it are ignored
    userId: null,
    // User ID -> identity token, for every user this page was told of: events queued before
    // identify() or a log-out still go out with their own user's token.
    tokens: Object.create(null),
    sessionId: null,
    sessionOk: false,
    queue: [],
    inflight: false,
    sending: [], // the batch of a post() that has not answered
    keepaliveBytes: 0,
    attempt: 0,
    retryAt: 0,
    retryTimer: null,
    flushTimer: null,
    page: { path: null, visibleMs: 0, visibleSince: null },
    locationTimer: null,
    hover: { el: null, since: 0 },
    scrollTimer: null,
    fields: new Map() // field name -> its debounced report; names are the page's, any string
  };

  // ---------------------------------------------------------------- page facts

  // The server takes only paths that start with `/`; a frame's `about:srcdoc` has "srcdoc".
  function currentPath() {
    var path = window.location.pathname || '/';
    return clip(path.charAt(0) === '/' ? path : '/' + path, MAX_PATH);
  }

  function pageHeight() {
    var d = document.documentElement;
    var b = document.body;
    return Math.max(d ? d.scrollHeight : 0, b ? b.scrollHeight : 0, window.innerHeight || 0);
  }

  function pageMetrics() {
    return {
      viewportWidth: window.innerWidth,
      viewportHeight: window.innerHeight,
      pageHeight: pageHeight()
    };
  }

  function scrollPosition() {
    return { x: Math.round(window.scrollX || 0), y: Math.round(window.scrollY || 0) };
  }

  function ignored(el) {
    return !!(el && el.closest && el.closest(IGNORED));
  }

  // tag#id.class1.class2; getAttribute because an SVG element's className is not a string.
  function describe(el) {
    if (!el || !el.tagName) return 'unknown';
    var text = String(el.tagName).toLowerCase();
    var id = el.getAttribute('id');
    if (id) text += '#' + id;
    var classes = (el.getAttribute('class') || '').trim();
    if (classes) text += '.' + classes.split(/\s+/).join('.');
    return clip(text, MAX_ELEMENT);
  }

  function elementOf(target) {
    if (target && target.nodeType === 3) return target.parentElement; // a text node
    return target && target.nodeType === 1 ? target : null;
  }

  // ---------------------------------------------------------------- recording

  function record(event, data) {
    if (!state.enabled) return;
    var now = Date.now();
    touchSession(now);
    state.queue.push({
      userId: state.userId,
      sessionId: state.sessionId,
      timestamp: now,
      event: event,
      data: data,
      eventId: uuid()
    });
    trimQueue();
    log(event, data);
    if (state.queue.length >= FLUSH_AT) flush();
  }

  function trimQueue() {
    if (state.queue.length > MAX_QUEUE) state.queue.splice(0, state.queue.length - MAX_QUEUE);
  }

  function touchSession(now) {
    var seen = parseInt(storageGet('sessionStorage', KEYS.sessionSeen), 10);
    if (isFinite(seen) && now - seen > SESSION_IDLE_MS) {
      state.sessionId = uuid();
      storageSet('sessionStorage', KEYS.session, state.sessionId);
      state.sessionOk = false;
    }
    storageSet('sessionStorage', KEYS.sessionSeen, String(now));
  }

  // ---------------------------------------------------------------- page views

  function visibleMs() {
    var page = state.page;
    return page.visibleMs + (page.visibleSince === null ? 0 : monotonicNow() - page.visibleSince);
  }

  function pauseVisible() {
    state.page.visibleMs = visibleMs();
    state.page.visibleSince = null;
  }

  function resumeVisible() {
    if (state.page.visibleSince === null) state.page.visibleSince = monotonicNow();
  }

  function pageView(path, previousPath, previousDurationMs) {
    var data = { path: path, metadata: pageMetrics() };
    if (typeof previousDurationMs === 'number' && previousDurationMs >= 0) {
      data.duration = Math.round(previousDurationMs);
    }
    if (previousPath) data.metadata.referrerPath = clip(previousPath, MAX_PATH);
    state.page = {
      path: path,
      visibleMs: 0,
      visibleSince: document.visibilityState === 'hidden' ? null : monotonicNow()
    };
    record('page_view', data);
  }

  // The first page view of a document: the previous document left its time on page behind.
  function landingPageView() {
    var previous = null;
    try { previous = JSON.parse(storageGet('sessionStorage', KEYS.lastPage) || 'null'); } catch (e) { /* corrupt */ }
    storageRemove('sessionStorage', KEYS.lastPage);
    if (previous && typeof previous.path === 'string' && Date.now() - previous.at < SESSION_IDLE_MS) {
      pageView(currentPath(), previous.path, previous.duration);
      return;
    }
    var referrerPath = null;
    try {
      var referrer = new URL(document.referrer);
      if (referrer.origin === window.location.origin) referrerPath = referrer.pathname;
    } catch (e) { /* no or foreign referrer */ }
    pageView(currentPath(), referrerPath, null);
  }

  function rememberPage() {
    if (!state.page.path) return;
    storageSet('sessionStorage', KEYS.lastPage, JSON.stringify({
      path: state.page.path, duration: Math.round(visibleMs()), at: Date.now()
    }));
  }

  // Routers usually render right after pushState: look once the current task is done, so the
  // page height is the new view's, and a burst of redirects collapses into one page view.
  function locationMayHaveChanged() {
    if (!state.enabled || state.locationTimer !== null) return;
    state.locationTimer = setTimeout(guard(function () {
      state.locationTimer = null;
      var path = currentPath();
      if (!state.enabled || path === state.page.path) return;
      endHover();
      emitPendingScroll();
      emitPendingFields();
      pageView(path, state.page.path, visibleMs());
    }), 0);
  }

  function wrapHistory(name) {
    var original = history[name];
    if (typeof original !== 'function') return;
    history[name] = function () {
      var result = original.apply(this, arguments);
      try { locationMayHaveChanged(); } catch (e) { log('error', e); }
      return result;
    };
  }

  // ---------------------------------------------------------------- clicks, scrolls, hovers

  function onClick(e) {
    var el = elementOf(e.target);
    if (!state.enabled || ignored(el) || secret(el)) return;
    var scroll = scrollPosition();
    record('click', {
      path: currentPath(),
      element: describe(el),
      coordinates: { x: Math.round(e.clientX || 0), y: Math.round(e.clientY || 0) },
      scrollX: scroll.x,
      scrollY: scroll.y,
      metadata: pageMetrics()
    });
  }

  function onScroll() {
    if (!state.enabled) return;
    clearTimeout(state.scrollTimer);
    state.scrollTimer = setTimeout(guard(emitPendingScroll), SCROLL_DEBOUNCE_MS);
  }

  function emitPendingScroll() {
    if (state.scrollTimer === null) return;
    clearTimeout(state.scrollTimer);
    state.scrollTimer = null;
    var scroll = scrollPosition();
    var metadata = pageMetrics();
    var seen = (scroll.y + metadata.viewportHeight) / Math.max(1, metadata.pageHeight);
    metadata.scrollDepth = Math.max(0, Math.min(100, Math.round(seen * 100)));
    record('scroll', {
      path: state.page.path || currentPath(),
      scrollX: scroll.x,
      scrollY: scroll.y,
      metadata: metadata
    });
  }

  function interactive(target) {
    var el = elementOf(target);
    el = el && el.closest && !ignored(el) ? el.closest(INTERACTIVE) : null;
    return secret(el) ? null : el;
  }

  function onMouseOver(e) {
    if (!state.enabled) return;
    var el = interactive(e.target);
    if (el === state.hover.el) return;
    endHover();
    if (el) state.hover = { el: el, since: monotonicNow() };
  }

  function onMouseOut(e) {
    var current = state.hover.el;
    if (!current) return;
    if (e.relatedTarget && current.contains(e.relatedTarget)) return; // still inside it
    endHover();
  }

  function endHover() {
    var hover = state.hover;
    state.hover = { el: null, since: 0 };
    if (!hover.el) return;
    var duration = monotonicNow() - hover.since;
    if (duration > config.hoverMs) {
      record('hover', {
        path: state.page.path || currentPath(),
        element: describe(hover.el),
        duration: Math.round(duration)
      });
    }
  }

  // ---------------------------------------------------------------- forms

  // Which fields may be reported as touched. Their values are never read, whatever the type.
  function trackableField(el) {
    return !!el && !ignored(el) && FIELD_RE.test(el.tagName) && !secret(el);
  }

  // A password, hidden or payment card field: not even a click on it or a hover is reported.
  function secret(el) {
    if (!el || !FIELD_RE.test(el.tagName)) return false;
    var type = String(el.type || el.getAttribute('type') || '').toLowerCase();
    if (type === 'password' || type === 'hidden') return true;
    if (String(el.getAttribute('type') || '').toLowerCase() === 'password') return true;
    var autocomplete = String(el.getAttribute('autocomplete') || '').toLowerCase().split(/\s+/);
    for (var i = 0; i < autocomplete.length; i++) {
      if (autocomplete[i].indexOf('cc-') === 0) return true;
    }
    return false;
  }

  function onField(action) {
    return function (e) {
      var el = elementOf(e.target);
      if (!state.enabled || !trackableField(el)) return;
      var name = clip(el.getAttribute('name') || el.getAttribute('id') ||
        String(el.tagName).toLowerCase(), MAX_ELEMENT);
      var pending = state.fields.get(name);
      if (pending) clearTimeout(pending.timer);
      var fieldType = clip(el.type || String(el.tagName).toLowerCase(), 32);
      var path = currentPath();
      var entry = {
        fire: function () {
          state.fields.delete(name);
          record('form_interaction', {
            path: path, element: name, metadata: { action: action, fieldType: fieldType }
          });
        }
      };
      entry.timer = setTimeout(guard(entry.fire), FIELD_DEBOUNCE_MS);
      state.fields.set(name, entry);
    };
  }

  function emitPendingFields() {
    Array.from(state.fields.values()).forEach(function (entry) {
      clearTimeout(entry.timer);
      entry.fire();
    });
  }

  // ---------------------------------------------------------------- sending

  function utf8Length(text) {
    return window.TextEncoder ? new TextEncoder().encode(text).length : text.length * 3;
  }

  // Takes events off the front of the queue, as many as fit in one request body, all of one
  // user: the server refuses a request that mixes users, and checks one user's token.
  function takeBatch() {
    var batch = [];
    var bytes = 12; // {"events":[]}
    while (state.queue.length && batch.length < MAX_BATCH) {
      if (batch.length && state.queue[0].userId !== batch[0].userId) break;
      var size = utf8Length(JSON.stringify(state.queue[0])) + 1;
      if (size + 12 > MAX_BODY_BYTES) { state.queue.shift(); continue; } // can never be sent
      if (bytes + size > MAX_BODY_BYTES) break;
      bytes += size;
      batch.push(state.queue.shift());
    }
    return batch;
  }

  function requeue(batch) {
    state.queue = batch.concat(state.queue);
    trimQueue();
  }

  function headers(userId) {
    var h = { 'Content-Type': 'application/json' };
    var token = state.tokens[userId];
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  // Whether events of `userId` can be sent from this page: anonymous, or its token is known.
  function sendable(userId) {
    return ANONYMOUS_RE.test(userId) || !!state.tokens[userId];
  }

  // A keepalive fetch, which may outlive the page. Browsers refuse one that would take the
  // keepalive bodies out past 64 KB in all (asynchronously), so the bytes out are counted, until
  // the answer is read through: the browser counts a request until then.
  function send(path, userId, text, done) {
    var bytes = utf8Length(text);
    state.keepaliveBytes += bytes;
    var settle = guard(function (status, retryAfter) {
      state.keepaliveBytes -= bytes;
      done(status, retryAfter);
    });
    var request;
    try {
      request = fetch(config.endpoint + path, {
        method: 'POST',
        headers: headers(userId),
        body: text,
        credentials: 'include',
        keepalive: true
      });
    } catch (e) {
      request = Promise.reject(e); // answered later all the same: callers may be in a loop
    }
    request.then(function (response) {
      var answered = function () { settle(response.status, response.headers.get('Retry-After')); };
      Promise.resolve().then(function () { return response.text(); }).then(answered, answered);
    }, function () {
      settle(0, null);
    });
  }

  function post(path, userId, body, done) {
    var epoch = state.epoch;
    state.inflight = true;
    send(path, userId, JSON.stringify(body), function (status, retryAfter) {
      if (epoch !== state.epoch) return; // stopped meanwhile
      state.inflight = false;
      done(status, retryAfter);
    });
  }

  function retryable(status) {
    return status === 0 || status === 408 || status === 429 || status >= 500;
  }

  function parseRetryAfter(value) {
    if (!value) return null;
    var seconds = Number(value);
    var ms = isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
    return isFinite(ms) ? Math.min(RETRY_AFTER_MAX_MS, Math.max(0, ms)) : null;
  }

  function scheduleRetry(status, retryAfter) {
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, state.attempt));
    var delay = ceiling / 2 + Math.random() * ceiling / 2; // jitter, so clients do not stampede
    // At least what the server asks, and longer while it keeps refusing: its 503 asks for a
    // second each time, and a long outage must not have every visitor retry every second.
    var asked = (status === 429 || status === 503) ? parseRetryAfter(retryAfter) : null;
    if (asked !== null && asked > delay) delay = asked;
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(guard(function () {
      state.retryAt = 0;
      flush();
    }), delay);
    log('retrying in', Math.round(delay), 'ms after HTTP', status);
  }

  function succeeded() {
    state.attempt = 0;
    state.retryAt = 0;
  }

  function startSession() {
    var deviceInfo = { userAgent: clip(navigator.userAgent || 'unknown', 512) };
    try { deviceInfo.screenResolution = clip(screen.width + 'x' + screen.height, 32); } catch (e) { /* no screen */ }
    try {
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone) deviceInfo.timezone = clip(zone, 64);
    } catch (e) { /* no Intl */ }
    var body = { userId: state.userId, sessionId: state.sessionId, deviceInfo: deviceInfo };
    var token = state.tokens[body.userId];
    post('/api/track/session', body.userId, body, function (status, retryAfter) {
      if (status >= 200 && status < 300) {
        // identify() or a session rotation while this was in flight asks for another one
        state.sessionOk = body.userId === state.userId && body.sessionId === state.sessionId &&
          token === state.tokens[state.userId];
        succeeded();
        flush();
      } else if (retryable(status)) {
        scheduleRetry(status, retryAfter);
      } else {
        log('session refused with HTTP', status, '- tracking stops');
        stop();
      }
    });
  }

  function flush() {
    if (!active() || state.inflight || Date.now() < state.retryAt) return;
    if (!state.sessionOk) {
      startSession();
      return;
    }
    var batch = takeBatch();
    if (!batch.length) return;
    state.sending = batch;
    post('/api/track', batch[0].userId, { events: batch }, function (status, retryAfter) {
      state.sending = [];
      if (status >= 200 && status < 300) {
        succeeded();
        forget(batch);
        // Another user's events were cut off this batch: they go now, as they would have with it.
        var next = state.queue[0];
        if (next && (state.queue.length >= FLUSH_AT || next.userId !== batch[0].userId)) flush();
      } else if (retryable(status)) {
        requeue(batch);
        scheduleRetry(status, retryAfter);
        // A hidden page may be closed or discarded before the retry.
        if (document.visibilityState === 'hidden') savePending();
      } else {
        log('dropping', batch.length, 'events refused with HTTP', status);
      }
    });
  }

  // The page may be gone in a moment: hand the queue to the browser to deliver. A beacon
  // cannot carry an Authorization header, so identified users get a keepalive fetch instead.
  // Nobody may see how these end, so what would fail (the server asked to wait, the browser is
  // offline, the keepalive budget is spent) is saved for the site's next page instead.
  function flushOnHide() {
    if (!active()) return;
    endHover();
    emitPendingScroll();
    emitPendingFields();
    pauseVisible();
    rememberPage();
    var budget = Date.now() < state.retryAt || navigator.onLine === false ? 0 :
      MAX_BODY_BYTES - state.keepaliveBytes;
    while (state.queue.length) {
      var batch = takeBatch();
      if (!batch.length) break;
      var body = JSON.stringify({ events: batch });
      var bytes = utf8Length(body);
      var handed = false;
      if (bytes > budget) {
        handed = false;
      } else if (!state.tokens[batch[0].userId] && navigator.sendBeacon) {
        try {
          var blob = new Blob([body], { type: 'text/plain' });
          handed = navigator.sendBeacon(config.endpoint + '/api/track', blob);
        } catch (e) { handed = false; }
      } else {
        send('/api/track', batch[0].userId, body, sentOnHide(batch, state.epoch));
        handed = true;
      }
      if (!handed) {
        requeue(batch);
        break;
      }
      forget(batch); // the browser has it now
      budget -= bytes;
    }
    if (state.queue.length || state.sending.length) savePending();
  }

  // The answer to a keepalive fetch sent on hide, if the page is still here to see it.
  function sentOnHide(batch, epoch) {
    return function (status, retryAfter) {
      if (epoch !== state.epoch || !retryable(status)) return;
      requeue(batch);
      savePending();
      scheduleRetry(status, retryAfter);
    };
  }

  // ---------------------------------------------------------------- saved for later pages
  // Each page keeps the events it could not deliver under a localStorage key of its own
  // (`tracking_pending.<page id>`), and removes them once delivered; a later page of the site
  // takes every page's key over. Tabs never write the same key: the site's other tabs see a
  // write some time later, so two tabs hidden at once would each overwrite the other's events
  // in a shared key.
  var PENDING_KEY = KEYS.pending + '.' + uuid();

  function pendingKeys() {
    var keys = [];
    try {
      for (var i = 0; i < localStorage.length; i++) {
        var key = localStorage.key(i);
        if (key === KEYS.pending || (key && key.indexOf(KEYS.pending + '.') === 0)) keys.push(key);
      }
    } catch (e) { /* storage disabled */ }
    return keys;
  }

  function savedEvents(key) {
    var saved = null;
    try {
      saved = JSON.parse(storageGet('localStorage', key) || 'null');
    } catch (e) { /* corrupt */ }
    if (!Array.isArray(saved)) return [];
    return saved.filter(function (m) { return m && typeof m === 'object'; });
  }

  function writeSaved(events) {
    var json = JSON.stringify(events.slice(-MAX_QUEUE));
    if (events.length) storageSet('localStorage', PENDING_KEY, json);
    else storageRemove('localStorage', PENDING_KEY);
  }

  function without(events, gone) {
    var ids = new Set(gone.map(function (m) { return m.eventId; }));
    return events.filter(function (m) { return !ids.has(m.eventId); });
  }

  // Whatever the browser would not take is kept for the next page of this site, and so is a
  // batch still out: the page may be gone before its answer, and the request may fail. (What
  // this page restored and still holds is among them; what it kept for a user it cannot
  // send stays too.)
  function savePending() {
    var events = state.sending.concat(state.queue);
    writeSaved(without(savedEvents(PENDING_KEY), events).concat(events));
  }

  function forget(delivered) {
    if (storageGet('localStorage', PENDING_KEY) !== null) {
      writeSaved(without(savedEvents(PENDING_KEY), delivered));
    }
  }

  function forgetAllSaved() {
    pendingKeys().forEach(function (key) { storageRemove('localStorage', key); });
  }

  // Events another page of this site left behind. Those of a user whose token this page does
  // not know would only be refused: they stay saved until a page that knows it (or a day).
  function restorePending() {
    var now = Date.now();
    var restored = [];
    var kept = [];
    pendingKeys().forEach(function (key) {
      savedEvents(key).forEach(function (m) {
        if (!(now - m.timestamp < PENDING_MAX_AGE_MS)) return;
        (sendable(m.userId) ? restored : kept).push(m);
      });
      if (key !== PENDING_KEY) storageRemove('localStorage', key);
    });
    writeSaved(kept);
    state.queue = without(restored, state.queue).concat(state.queue);
    trimQueue();
  }

  // ---------------------------------------------------------------- lifecycle

  function onVisibility() {
    if (document.visibilityState === 'hidden') {
      flushOnHide();
    } else {
      storageRemove('sessionStorage', KEYS.lastPage); // still here after all
      resumeVisible();
    }
  }

  function onStorage(e) {
    if (e.key !== KEYS.optOut) return;
    if (e.newValue === null) {
      // Another tab opted in again. Its clearing of the cookie may reach this tab after the
      // storage event: a cookie still set here must not count as opted out, nor be renewed.
      optOutCookie(0);
      start(); // (start checks the privacy signals)
    } else active(); // another tab opted out
  }

  function onPageShow(e) {
    if (e.persisted && state.enabled) landingPageView(); // restored from the back/forward cache
  }

  function install() {
    if (state.installed) return;
    state.installed = true;
    var passive = { capture: true, passive: true };
    document.addEventListener('click', guard(onClick), passive);
    document.addEventListener('mouseover', guard(onMouseOver), passive);
    document.addEventListener('mouseout', guard(onMouseOut), passive);
    document.addEventListener('input', guard(onField('input')), passive);
    document.addEventListener('change', guard(onField('change')), passive);
    window.addEventListener('scroll', guard(onScroll), { passive: true });
    window.addEventListener('popstate', guard(locationMayHaveChanged));
    document.addEventListener('visibilitychange', guard(onVisibility));
    window.addEventListener('pagehide', guard(flushOnHide));
    window.addEventListener('pageshow', guard(onPageShow));
    wrapHistory('pushState');
    wrapHistory('replaceState');
  }

  function start() {
    if (state.enabled || privacySignal()) return;
    if (optedOut()) {
      optOutCookie(OPT_OUT_MAX_AGE_S); // each visit renews it, so the choice outlives the cap
      return;
    }
    state.enabled = true;
    state.epoch += 1;
    if (!state.userId) {
      var configured = config.userId && ID_RE.test(config.userId) ? config.userId : null;
      if (config.userId && !configured) log('ignoring invalid data-user-id');
      state.userId = configured || storedId('localStorage', KEYS.user);
      if (configured && config.token) state.tokens[configured] = config.token;
    }
    state.sessionId = storedId('sessionStorage', KEYS.session);
    state.sessionOk = false;
    install();
    restorePending();
    landingPageView();
    state.flushTimer = setInterval(guard(flush), config.flushIntervalMs);
    flush();
  }

  function stop() {
    state.enabled = false;
    state.epoch += 1;
    state.queue = [];
    state.sending = [];
    state.inflight = false;
    state.attempt = 0;
    state.retryAt = 0;
    [state.retryTimer, state.scrollTimer, state.locationTimer].forEach(clearTimeout);
    clearInterval(state.flushTimer);
    state.fields.forEach(function (entry) { clearTimeout(entry.timer); });
    state.fields = new Map();
    state.retryTimer = state.scrollTimer = state.locationTimer = state.flushTimer = null;
    state.hover = { el: null, since: 0 };
    forgetAllSaved();
    storageRemove('sessionStorage', KEYS.lastPage);
  }

  window.tracker = {
    version: '1',
    optOut: guard(function () {
      storageSet('localStorage', KEYS.optOut, '1');
      optOutCookie(OPT_OUT_MAX_AGE_S);
      stop();
    }),
    optIn: guard(function () {
      storageRemove('localStorage', KEYS.optOut);
      optOutCookie(0);
      start();
      return state.enabled; // false while Do Not Track or Global Privacy Control is on
    }),
    flush: guard(function () { flush(); }),
    identify: guard(function (userId, token) {
      if (userId !== null && userId !== undefined && !ID_RE.test(String(userId))) {
        log('identify: not 1-128 characters of [A-Za-z0-9._:@-]');
        return false;
      }
      if (state.enabled) flush(); // what was recorded so far goes out as the previous user
      if (userId === null || userId === undefined) {
        state.userId = storedId('localStorage', KEYS.user);
      } else {
        state.userId = String(userId);
        if (token) state.tokens[state.userId] = String(token);
        else delete state.tokens[state.userId];
      }
      state.sessionOk = false;
      if (state.enabled) {
        restorePending(); // events an earlier page saved for this user
        if (!state.inflight) flush();
      }
      return true;
    }),
    isEnabled: function () { return state.enabled; }
  };

  // Listened to even while not tracking: a tab that opened opted out starts when another opts in.
  guard(function () { window.addEventListener('storage', guard(onStorage)); })();
  guard(start)();
})();
