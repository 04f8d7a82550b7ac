import { FLUSH_AT } from './config.js';

// What the modules share about this page's tracking.
export const state = {
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
  // A queue this long is sent at once; over an open WebSocket every event is.
  flushAt: FLUSH_AT,
  inflight: false,
  sending: [], // the batch of a send that has not answered
  keepaliveBytes: 0,
  attempt: 0,
  retryAt: 0,
  retryTimer: null,
  flushTimer: null,
  page: { path: null, visibleMs: 0, visibleSince: null },
  // Where this visit came from (referrer host, campaign), sent with the session it starts.
  entry: {},
};

// What captures hold back (a scroll settling, a field being typed in, a hover) and must hand
// over before a page view changes the page, or before the page is hidden; and what they
// clear when tracking stops.
export const pendingCaptures = [];
export const stoppers = [];

// Another transport (the WebSocket) may take a batch: `(batch, done) => boolean`.
export const transports = { socket: null };
