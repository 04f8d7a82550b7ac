// Starting and stopping: listeners installed once, tracking started unless a privacy signal or
// the opt-out says no, and everything dropped when it stops.
import { ID_RE, KEYS, config } from './config.js';
import { OPT_OUT_MAX_AGE_S, optOutCookie, optedOut, privacySignal } from './consent.js';
import { onClick } from './clicks.js';
import { onField } from './forms.js';
import { load } from './lazy.js';
import { landingPageView, locationMayHaveChanged, resumeVisible, stopPageViews, wrapHistory } from './pageviews.js';
import { forgetAllSaved, restorePending } from './pending.js';
import { onScroll } from './scroll.js';
import { state, stoppers } from './state.js';
import { flush, flushOnHide, timeZone } from './transport.js';
import { guard, storageGet, storageRemove, storageSet, uuid } from './util.js';

export function storedId(area, key) {
  let id = storageGet(area, key);
  if (!id || !ID_RE.test(id)) {
    id = uuid();
    storageSet(area, key, id);
  }
  return id;
}

// Whether to go on; stops when another tab opted out (checked before sending, as that tab's
// `storage` event may not have arrived yet).
export function active() {
  if (state.enabled && optedOut()) stop();
  return state.enabled;
}

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
  const passive = { capture: true, passive: true };
  const on = (target, type, fn, options) => target.addEventListener(type, guard(fn), options);
  on(document, 'click', onClick, passive);
  on(document, 'input', onField('input'), passive);
  on(document, 'change', onField('change'), passive);
  on(window, 'scroll', onScroll, { passive: true });
  // Capturing: before the site's own listener renders the view it goes back to.
  on(window, 'popstate', locationMayHaveChanged, true);
  on(document, 'visibilitychange', onVisibility);
  on(window, 'pagehide', flushOnHide);
  on(window, 'pageshow', onPageShow);
  wrapHistory('pushState');
  wrapHistory('replaceState');
  // What the site asked for beyond the default; each starts with tracking, as a file loads.
  ['hover', 'websocket', 'experiments'].forEach((name) => {
    if (config[name]) load(name).catch(() => {});
  });
}

export function start() {
  if (state.enabled || privacySignal()) return;
  if (optedOut()) {
    optOutCookie(OPT_OUT_MAX_AGE_S); // each visit renews it, so the choice outlives the cap
    return;
  }
  state.enabled = true;
  state.epoch += 1;
  if (!state.userId) {
    const configured = config.userId && ID_RE.test(config.userId) ? config.userId : null;
    state.userId = configured || storedId('localStorage', KEYS.user);
    if (configured && config.token) state.tokens[configured] = config.token;
  }
  state.sessionId = storedId('sessionStorage', KEYS.session);
  state.sessionOk = false;
  install();
  restorePending();
  landingPageView();
  state.flushTimer = setInterval(guard(flush), config.flushIntervalMs);
  // The time zone (Intl's first use, on a visitor's first page) and the session request
  // each in a task of its own: no task of the page is made much longer.
  setTimeout(guard(timeZone), 0);
  setTimeout(guard(flush), 0);
}

export function stop() {
  state.enabled = false;
  state.epoch += 1;
  state.queue = [];
  state.sending = [];
  state.inflight = false;
  state.attempt = 0;
  state.retryAt = 0;
  clearTimeout(state.retryTimer);
  clearInterval(state.flushTimer);
  state.retryTimer = state.flushTimer = null;
  stopPageViews();
  stoppers.forEach((fn) => fn());
  forgetAllSaved();
  storageRemove('sessionStorage', KEYS.lastPage);
}

// Listened to even while not tracking: a tab that opened opted out starts when another opts in.
export const listenForConsent = () => window.addEventListener('storage', guard(onStorage));
