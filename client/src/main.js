// tracker.js: records how a visitor moves through the site (page views with time on page,
// clicks, scroll depth, form interactions, custom events) and sends them in batches to
// /api/track. Hovers, the WebSocket transport and experiments are files of their own, loaded
// when the site asks (config.js).
//
// Privacy: nothing at all is sent under Do Not Track or Global Privacy Control, nor after
// `tracker.optOut()` (in any of the site's tabs, until `tracker.optIn()` in any of them). Form
// field values are never read; password and credit-card fields are not even reported as
// touched. Elements inside `[data-tracker-ignore]` are not tracked. Nothing in here may throw
// into the host page.
import { ANONYMOUS_RE, ID_RE, KEYS, config } from './config.js';
import { OPT_OUT_MAX_AGE_S, optOutCookie } from './consent.js';
import { track } from './custom.js';
import { load, provide, register } from './lazy.js';
import { active, listenForConsent, start, stop, storedId } from './lifecycle.js';
import { currentPath, describe, elementOf, ignored, secret } from './page.js';
import { restorePending } from './pending.js';
import { record } from './queue.js';
import { pendingCaptures, state, stoppers, transports } from './state.js';
import { flush, headers, send } from './transport.js';
import { guard, log, monotonicNow, storageRemove, storageSet } from './util.js';

// Links the anonymous visitor this page tracked to the user who logged in; the visitor
// cookie proves the anonymous ID, the token the user.
function link(anonymousId, userId, token) {
  const body = JSON.stringify({ anonymousId, userId, token });
  send('/api/track/identify', userId, body, (status) => log('identify answered', status));
}

function identify(userId, token) {
  if (userId !== null && userId !== undefined && !ID_RE.test(String(userId))) {
    log('identify: invalid user ID');
    return false;
  }
  if (state.enabled) flush(); // what was recorded so far goes out as the previous user
  const previous = state.userId;
  if (userId === null || userId === undefined) {
    state.userId = storedId('localStorage', KEYS.user);
  } else {
    state.userId = String(userId);
    if (token) state.tokens[state.userId] = String(token);
    else delete state.tokens[state.userId];
    if (state.enabled && token && ANONYMOUS_RE.test(previous || '')) link(previous, state.userId, String(token));
  }
  state.sessionOk = false;
  if (state.enabled) {
    restorePending(); // events an earlier page saved for this user
    if (!state.inflight) flush();
  }
  return true;
}

(function () {
  if (window.tracker && window.tracker.version) return; // included twice
  provide({
    state, config, record, guard, log, describe, elementOf, ignored, secret, currentPath,
    monotonicNow, pendingCaptures, stoppers, transports, flush, headers,
  });
  const api = {
    version: '2',
    optOut: guard(() => {
      storageSet('localStorage', KEYS.optOut, '1');
      optOutCookie(OPT_OUT_MAX_AGE_S);
      stop();
    }),
    optIn: guard(() => {
      storageRemove('localStorage', KEYS.optOut);
      optOutCookie(0);
      start();
      return state.enabled; // false while Do Not Track or Global Privacy Control is on
    }),
    flush: guard(() => { flush(); }),
    identify: guard(identify),
    track: guard(track),
    // A promise of this visitor's variant of experiment `name`; it fails while tracking is off
    // (Do Not Track, opted out), so a site shows its control then.
    variant: (name) => (active()
      ? load('experiments').then((experiments) => experiments.variant(String(name)))
      : Promise.reject(new Error('tracker: tracking is off'))),
    isEnabled: () => state.enabled,
  };
  Object.defineProperty(api, '_register', { value: register });
  window.tracker = api;
  guard(listenForConsent)();
  guard(start)();
})();
