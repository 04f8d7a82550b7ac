// Sending: the session request, batches by keepalive fetch with retries and back-off, and on
// hide by beacon; or by another transport (the WebSocket) while it takes them.
import { KEYS, MAX_BODY_BYTES, config } from './config.js';
import { automated } from './consent.js';
import { active, stop } from './lifecycle.js';
import { forget, savePending } from './pending.js';
import { onFull, requeue, takeBatch } from './queue.js';
import { pendingCaptures, state, transports } from './state.js';
import { clip, guard, log, storageGet, storageSet, utf8Length } from './util.js';
import { pauseVisible, rememberPage } from './pageviews.js';

const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const RETRY_AFTER_MAX_MS = 10 * 60 * 1000;

export function headers(userId) {
  const h = { 'Content-Type': 'application/json' };
  const token = state.tokens[userId];
  if (token) h.Authorization = 'Bearer ' + token;
  return h;
}

// A keepalive fetch, which may outlive the page. Browsers refuse one that would take the
// keepalive bodies out past 64 KB in all (asynchronously), so the bytes out are counted, until
// the answer is read through: the browser counts a request until then.
export function send(path, userId, text, done) {
  const bytes = utf8Length(text);
  state.keepaliveBytes += bytes;
  const settle = guard((status, retryAfter) => {
    state.keepaliveBytes -= bytes;
    done(status, retryAfter);
  });
  let request;
  try {
    request = fetch(config.endpoint + path, {
      method: 'POST',
      headers: headers(userId),
      body: text,
      credentials: 'include',
      keepalive: true,
    });
  } catch (e) {
    request = Promise.reject(e); // answered later all the same: callers may be in a loop
  }
  request.then((response) => {
    const answered = () => settle(response.status, response.headers.get('Retry-After'));
    Promise.resolve().then(() => response.text()).then(answered, answered);
  }, () => settle(0, null));
}

function post(path, userId, body, done) {
  const epoch = state.epoch;
  state.inflight = true;
  send(path, userId, JSON.stringify(body), (status, retryAfter) => {
    if (epoch !== state.epoch) return; // stopped meanwhile
    state.inflight = false;
    done(status, retryAfter);
  });
}

const retryable = (status) => status === 0 || status === 408 || status === 429 || status >= 500;

function parseRetryAfter(value) {
  if (!value) return null;
  const seconds = Number(value);
  const ms = isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return isFinite(ms) ? Math.min(RETRY_AFTER_MAX_MS, Math.max(0, ms)) : null;
}

function scheduleRetry(status, retryAfter) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, state.attempt));
  let delay = ceiling / 2 + Math.random() * ceiling / 2; // jitter, so clients do not stampede
  // At least what the server asks, and longer while it keeps refusing: its 503 asks for a
  // second each time, and a long outage must not have every visitor retry every second.
  const asked = (status === 429 || status === 503) ? parseRetryAfter(retryAfter) : null;
  if (asked !== null && asked > delay) delay = asked;
  state.attempt += 1;
  state.retryAt = Date.now() + delay;
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(guard(() => {
    state.retryAt = 0;
    flush();
  }), delay);
  log('retry', status, Math.round(delay));
}

function succeeded() {
  state.attempt = 0;
  state.retryAt = 0;
}

// The time zone's name. Intl's first use on a page loads its locale data, a cost of
// milliseconds: the name is kept for the visitor's later pages, and asked again only when the
// clock's offset from UTC changes (travel, daylight saving time).
let zoneKnown = null;
export function timeZone() {
  if (zoneKnown) return zoneKnown;
  const offset = String(new Date().getTimezoneOffset());
  const [kept, name] = (storageGet('localStorage', KEYS.timeZone) || '').split('|');
  if (kept === offset && name) return (zoneKnown = name);
  try {
    zoneKnown = Intl.DateTimeFormat().resolvedOptions().timeZone;
    storageSet('localStorage', KEYS.timeZone, `${offset}|${zoneKnown}`);
    return zoneKnown;
  } catch (e) {
    return null; // no Intl
  }
}

let oldServer = false;

function startSession() {
  const deviceInfo = { userAgent: clip(navigator.userAgent || 'unknown', 512) };
  try { deviceInfo.screenResolution = clip(screen.width + 'x' + screen.height, 32); } catch (e) { /* no screen */ }
  const zone = timeZone();
  if (zone) deviceInfo.timezone = clip(zone, 64);
  const body = { userId: state.userId, sessionId: state.sessionId, deviceInfo };
  const additions = { ...state.entry };
  if (automated()) additions.automation = true;
  // A server older than this script (a replica not yet upgraded) refuses what it does not
  // know: the session is asked for again without the visit's origin and automation flag.
  const plain = oldServer || !Object.keys(additions).length;
  if (!plain) Object.assign(body, additions);
  const token = state.tokens[body.userId];
  post('/api/track/session', body.userId, body, (status, retryAfter) => {
    if (status >= 200 && status < 300) {
      // identify() or a session rotation while this was in flight asks for another one
      state.sessionOk = body.userId === state.userId && body.sessionId === state.sessionId &&
        token === state.tokens[state.userId];
      succeeded();
      flush();
    } else if (retryable(status)) {
      scheduleRetry(status, retryAfter);
    } else if (status === 422 && !plain) {
      oldServer = true;
      flush();
    } else {
      log('session refused', status);
      stop();
    }
  });
}

// What becomes of a batch once its transport answers (an HTTP status, 0 for no answer).
function delivered(batch, status, retryAfter) {
  state.sending = [];
  if (status >= 200 && status < 300) {
    succeeded();
    forget(batch);
    // Another user's events were cut off this batch: they go now, as they would have with it.
    const next = state.queue[0];
    if (next && (state.queue.length >= state.flushAt || next.userId !== batch[0].userId)) flush();
  } else if (retryable(status)) {
    requeue(batch);
    scheduleRetry(status, retryAfter);
    // A hidden page may be closed or discarded before the retry.
    if (document.visibilityState === 'hidden') savePending();
  } else {
    log('refused', status, batch);
  }
}

export function flush() {
  if (!active() || state.inflight || Date.now() < state.retryAt) return;
  if (!state.sessionOk) {
    startSession();
    return;
  }
  const batch = takeBatch();
  if (!batch.length) return;
  state.sending = batch;
  const epoch = state.epoch;
  const socket = transports.socket;
  if (socket) {
    state.inflight = true;
    const taken = socket(batch, (status) => {
      if (epoch !== state.epoch) return;
      state.inflight = false;
      delivered(batch, status, null);
    });
    if (taken) return;
    state.inflight = false;
  }
  post('/api/track', batch[0].userId, { events: batch }, (status, retryAfter) => delivered(batch, status, retryAfter));
}
onFull(flush);

// What the captures hold back goes into the queue now.
export const emitPending = () => pendingCaptures.forEach((emit) => emit());

// The page may be gone in a moment: hand the queue to the browser to deliver. A beacon
// cannot carry an Authorization header, so identified users get a keepalive fetch instead.
// Nobody may see how these end, so what would fail (the server asked to wait, the browser is
// offline, the keepalive budget is spent) is saved for the site's next page instead.
export function flushOnHide() {
  if (!active()) return;
  emitPending();
  pauseVisible();
  rememberPage();
  let budget = Date.now() < state.retryAt || navigator.onLine === false ? 0 :
    MAX_BODY_BYTES - state.keepaliveBytes;
  while (state.queue.length) {
    const batch = takeBatch();
    if (!batch.length) break;
    const body = JSON.stringify({ events: batch });
    const bytes = utf8Length(body);
    let handed = false;
    if (bytes > budget) {
      handed = false;
    } else if (!state.tokens[batch[0].userId] && navigator.sendBeacon) {
      try {
        handed = navigator.sendBeacon(config.endpoint + '/api/track', new Blob([body], { type: 'text/plain' }));
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
  return (status, retryAfter) => {
    if (epoch !== state.epoch || !retryable(status)) return;
    requeue(batch);
    savePending();
    scheduleRetry(status, retryAfter);
  };
}
