// Page views: the landing one (with the referrer's host and the campaign when the visit
// enters from elsewhere), SPA navigation through the History API, and time on page.
import { KEYS, MAX_PATH, SESSION_IDLE_MS } from './config.js';
import { currentPath, laterMetrics } from './page.js';
import { record } from './queue.js';
import { state } from './state.js';
import { clip, guard, log, monotonicNow, storageGet, storageRemove, storageSet } from './util.js';
import { emitPending } from './transport.js';

const UTM = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content'];
let locationTimer = null;

export function visibleMs() {
  const page = state.page;
  return page.visibleMs + (page.visibleSince === null ? 0 : monotonicNow() - page.visibleSince);
}

export function pauseVisible() {
  state.page.visibleMs = visibleMs();
  state.page.visibleSince = null;
}

export function resumeVisible() {
  if (state.page.visibleSince === null) state.page.visibleSince = monotonicNow();
}

function pageView(path, previousPath, previousDurationMs, entry) {
  const data = { path, metadata: laterMetrics(), ...entry };
  if (typeof previousDurationMs === 'number' && previousDurationMs >= 0) {
    data.duration = Math.round(previousDurationMs);
  }
  if (previousPath) data.metadata.referrerPath = clip(previousPath, MAX_PATH);
  state.page = {
    path,
    visibleMs: 0,
    visibleSince: document.visibilityState === 'hidden' ? null : monotonicNow(),
  };
  record('page_view', data);
}

// www.example.com and example.com are one site; a subdomain of this host is this site.
const bare = (host) => host.toLowerCase().replace(/^www\./, '');
function sameSite(host) {
  const a = bare(host);
  const b = bare(window.location.hostname);
  return a === b || a.endsWith('.' + b) || b.endsWith('.' + a);
}

// Where the visit comes from: the referrer's host (not its path or query, which may hold
// anything) unless it is this site, and the landing URL's campaign (`utm_*`) parameters, the
// only part of a query string ever sent.
function entryOf(referrer) {
  const entry = {};
  if (referrer && referrer.host && !sameSite(referrer.hostname)) entry.referrer = clip(referrer.host, 2048);
  const utm = {};
  let params;
  try { params = new URLSearchParams(window.location.search); } catch (e) { return entry; }
  UTM.forEach((key) => {
    const value = params.get(key);
    if (value) utm[key] = clip(value, 256);
  });
  if (Object.keys(utm).length) entry.utm = utm;
  return entry;
}

// The first page view of a document: the previous document left its time on page behind.
export function landingPageView() {
  let previous = null;
  try { previous = JSON.parse(storageGet('sessionStorage', KEYS.lastPage) || 'null'); } catch (e) { /* corrupt */ }
  storageRemove('sessionStorage', KEYS.lastPage);
  let referrer = null;
  try { referrer = new URL(document.referrer); } catch (e) { /* no referrer */ }
  const entry = entryOf(referrer);
  state.entry = entry;
  if (previous && typeof previous.path === 'string' && Date.now() - previous.at < SESSION_IDLE_MS) {
    pageView(currentPath(), previous.path, previous.duration, entry);
    return;
  }
  const referrerPath = referrer && referrer.origin === window.location.origin ? referrer.pathname : null;
  pageView(currentPath(), referrerPath, null, entry);
}

export function rememberPage() {
  if (!state.page.path) return;
  storageSet('sessionStorage', KEYS.lastPage, JSON.stringify({
    path: state.page.path, duration: Math.round(visibleMs()), at: Date.now(),
  }));
}

// Called as the location changes (pushState, replaceState, popstate), before the router
// renders the new view: what the captures hold back is the old view's, and the page is still
// laid out as it was, so reading it costs nothing. The page view itself waits for the current
// task to end, so a burst of redirects collapses into one page view.
export function locationMayHaveChanged() {
  if (!state.enabled || currentPath() === state.page.path) return;
  emitPending();
  if (locationTimer !== null) return;
  locationTimer = setTimeout(guard(() => {
    locationTimer = null;
    const path = currentPath();
    if (!state.enabled || path === state.page.path) return;
    emitPending();
    pageView(path, state.page.path, visibleMs(), {});
  }), 0);
}

export function stopPageViews() {
  clearTimeout(locationTimer);
  locationTimer = null;
}

export function wrapHistory(name) {
  const original = history[name];
  if (typeof original !== 'function') return;
  history[name] = function (...args) {
    const result = original.apply(this, args);
    try { locationMayHaveChanged(); } catch (e) { log('error', e); }
    return result;
  };
}
