// The queue of recorded events, and the batches taken off it.
import { KEYS, MAX_BATCH, MAX_BODY_BYTES, MAX_QUEUE, SESSION_IDLE_MS } from './config.js';
import { state } from './state.js';
import { log, storageGet, storageSet, utf8Length, uuid } from './util.js';

let flushNow = () => {};
// The transport registers how a full queue is sent (the queue does not import the transport).
export const onFull = (fn) => { flushNow = fn; };

export function record(event, data) {
  if (!state.enabled) return;
  const now = Date.now();
  touchSession(now);
  state.queue.push({
    userId: state.userId,
    sessionId: state.sessionId,
    timestamp: now,
    event,
    data,
    eventId: uuid(),
  });
  trimQueue();
  log(event, data);
  if (state.queue.length >= state.flushAt) flushNow();
}

export function trimQueue() {
  if (state.queue.length > MAX_QUEUE) state.queue.splice(0, state.queue.length - MAX_QUEUE);
}

function touchSession(now) {
  const seen = parseInt(storageGet('sessionStorage', KEYS.sessionSeen), 10);
  if (isFinite(seen) && now - seen > SESSION_IDLE_MS) {
    state.sessionId = uuid();
    storageSet('sessionStorage', KEYS.session, state.sessionId);
    state.sessionOk = false;
  }
  storageSet('sessionStorage', KEYS.sessionSeen, String(now));
}

// Takes events off the front of the queue, as many as fit in one request body, all of one
// user: the server refuses a request that mixes users, and checks one user's token.
export function takeBatch() {
  const batch = [];
  let bytes = 12; // {"events":[]}
  while (state.queue.length && batch.length < MAX_BATCH) {
    if (batch.length && state.queue[0].userId !== batch[0].userId) break;
    const size = utf8Length(JSON.stringify(state.queue[0])) + 1;
    if (size + 12 > MAX_BODY_BYTES) { state.queue.shift(); continue; } // can never be sent
    if (bytes + size > MAX_BODY_BYTES) break;
    bytes += size;
    batch.push(state.queue.shift());
  }
  return batch;
}

export function requeue(batch) {
  state.queue = batch.concat(state.queue);
  trimQueue();
}
