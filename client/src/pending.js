// Events saved for the site's later pages. Each page keeps the events it could not deliver
// under a localStorage key of its own (`tracking_pending.<page id>`), and removes them once
// delivered; a later page of the site takes every page's key over. Tabs never write the same
// key: the site's other tabs see a write some time later, so two tabs hidden at once would
// each overwrite the other's events in a shared key.
import { ANONYMOUS_RE, KEYS, MAX_QUEUE } from './config.js';
import { trimQueue } from './queue.js';
import { state } from './state.js';
import { storageGet, storageRemove, storageSet, uuid } from './util.js';

const PENDING_MAX_AGE_MS = 24 * 60 * 60 * 1000;
const PENDING_KEY = `${KEYS.pending}.${uuid()}`;

// Whether events of `userId` can be sent from this page: anonymous, or its token is known.
const sendable = (userId) => ANONYMOUS_RE.test(userId) || !!state.tokens[userId];

function pendingKeys() {
  const keys = [];
  try {
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (key === KEYS.pending || (key && key.indexOf(KEYS.pending + '.') === 0)) keys.push(key);
    }
  } catch (e) { /* storage disabled */ }
  return keys;
}

function savedEvents(key) {
  let saved = null;
  try {
    saved = JSON.parse(storageGet('localStorage', key) || 'null');
  } catch (e) { /* corrupt */ }
  return Array.isArray(saved) ? saved.filter((m) => m && typeof m === 'object') : [];
}

function writeSaved(events) {
  if (events.length) storageSet('localStorage', PENDING_KEY, JSON.stringify(events.slice(-MAX_QUEUE)));
  else storageRemove('localStorage', PENDING_KEY);
}

function without(events, gone) {
  const ids = new Set(gone.map((m) => m.eventId));
  return events.filter((m) => !ids.has(m.eventId));
}

// Whatever the browser would not take is kept for the next page of this site, and so is a
// batch still out: the page may be gone before its answer, and the request may fail. (What
// this page restored and still holds is among them; what it kept for a user it cannot
// send stays too.)
export function savePending() {
  const events = state.sending.concat(state.queue);
  writeSaved(without(savedEvents(PENDING_KEY), events).concat(events));
}

export function forget(delivered) {
  if (storageGet('localStorage', PENDING_KEY) !== null) {
    writeSaved(without(savedEvents(PENDING_KEY), delivered));
  }
}

export function forgetAllSaved() {
  pendingKeys().forEach((key) => storageRemove('localStorage', key));
}

// Events another page of this site left behind. Those of a user whose token this page does
// not know would only be refused: they stay saved until a page that knows it (or a day).
export function restorePending() {
  const now = Date.now();
  const restored = [];
  const kept = [];
  pendingKeys().forEach((key) => {
    savedEvents(key).forEach((m) => {
      if (!(now - m.timestamp < PENDING_MAX_AGE_MS)) return;
      (sendable(m.userId) ? restored : kept).push(m);
    });
    if (key !== PENDING_KEY) storageRemove('localStorage', key);
  });
  writeSaved(kept);
  state.queue = without(restored, state.queue).concat(state.queue);
  trimQueue();
}
