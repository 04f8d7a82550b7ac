// The settings a site gives on the script tag, read once, and the client's fixed limits.
//
//   <script src="/tracker.js" defer
//           data-endpoint=""               base URL of the tracker API (default: same origin)
//           data-user-id="alice"           identified user (default: an anonymous ID)
//           data-token="..."               sent as `Authorization: Bearer` for identified users
//           data-flush-interval-ms="2000"  how often queued events are sent
//           data-hover                     also report hovers (a file of its own, loaded then)
//           data-hover-ms="500"            dwell over an interactive element that counts as a
//                                          hover (setting it turns hovers on too)
//           data-websocket                 send over a WebSocket while one is open
//           data-experiments               load the experiments file at once (tracker.variant
//                                          loads it on first use anyway)
//           data-debug></script>           log what the tracker does to the console

export const script = document.currentScript || document.querySelector('script[src*="tracker"]');

const attr = (name) => (script ? script.getAttribute(name) : null);

const flag = (name) => {
  const value = attr(name);
  return value !== null && value !== 'false';
};

const msAttr = (name, fallback) => {
  const value = parseInt(attr(name), 10);
  return isFinite(value) && value >= 0 ? value : fallback;
};

export const config = {
  endpoint: (attr('data-endpoint') || '').replace(/\/+$/, ''),
  userId: attr('data-user-id'),
  token: attr('data-token'),
  flushIntervalMs: Math.max(50, msAttr('data-flush-interval-ms', 2000)),
  hover: flag('data-hover') || attr('data-hover-ms') !== null,
  hoverMs: msAttr('data-hover-ms', 500),
  websocket: flag('data-websocket'),
  experiments: flag('data-experiments'),
  debug: flag('data-debug'),
};

export const MAX_QUEUE = 500;
export const FLUSH_AT = 20;
export const MAX_BATCH = 100;
// Keepalive fetches and beacons share a 64 KB budget in browsers; the server takes 64 KB.
export const MAX_BODY_BYTES = 60000;
// Matches the server's session timeout: after this much idle time a visit is a new session.
export const SESSION_IDLE_MS = 30 * 60 * 1000;
export const MAX_ELEMENT = 512;
export const MAX_PATH = 2048;
export const ID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
// The server takes a random (version 4) UUID as an anonymous visitor, who needs no token.
export const ANONYMOUS_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export const KEYS = {
  session: 'tracking_session_id',
  sessionSeen: 'tracking_session_seen',
  user: 'tracking_user_id',
  optOut: 'tracking_opt_out',
  lastPage: 'tracking_last_page',
  pending: 'tracking_pending',
  timeZone: 'tracking_time_zone',
};
