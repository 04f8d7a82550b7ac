// The WebSocket transport: while a socket to /api/track/ws is open, batches go over it, each
// with a `seq` the server acknowledges once the batch is durable. A batch unacknowledged when
// the socket closes is sent again (over the next socket, or by fetch: event IDs make that
// safe). The socket is closed when the page is hidden, so it never holds the page open (nor
// keeps it out of the back/forward cache), and opened again when there is something to send.
// Identified users' batches carry a token, which a browser socket cannot send in a header:
// they go by fetch.
window.tracker._register('websocket', (core) => {
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 60000;
  const TRY_AGAIN_LATER = 1013; // the server is full
  const FLUSH_AT = core.state.flushAt;
  let socket = null;
  let open = false;
  let seq = 0;
  let failures = 0;
  let nextTryAt = 0;
  const waiting = new Map(); // seq -> the batch's done(status)

  function address() {
    const url = new URL(`${core.config.endpoint}/api/track/ws`, window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.href;
  }

  function closed() {
    socket = null;
    open = false;
    core.state.flushAt = FLUSH_AT;
  }

  function settleAll(status) {
    const done = Array.from(waiting.values());
    waiting.clear();
    done.forEach((fn) => fn(status));
  }

  function connect() {
    if (socket || Date.now() < nextTryAt || document.visibilityState === 'hidden' || !core.state.enabled) return;
    const ws = new WebSocket(address());
    socket = ws;
    ws.onopen = core.guard(() => {
      open = true;
      failures = 0;
      core.state.flushAt = 1;
      core.flush();
    });
    ws.onmessage = core.guard((message) => {
      const answer = JSON.parse(message.data);
      const done = waiting.get(answer.seq);
      if (!done) return;
      waiting.delete(answer.seq);
      if (answer.error) core.log('refused over the socket:', answer.error, answer.field);
      done(answer.error ? 422 : 200);
    });
    ws.onclose = core.guard((event) => {
      if (socket !== ws) return;
      if (!open || event.code === TRY_AGAIN_LATER) failures += 1;
      closed();
      const backoff = failures ? Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** failures) : 0;
      nextTryAt = Date.now() + backoff;
      settleAll(0); // sent again, by fetch or the next socket
    });
  }

  function close() {
    const ws = socket;
    if (!ws) return;
    closed();
    try { ws.close(1000); } catch (e) { /* already closing */ }
    settleAll(0);
  }

  core.transports.socket = (batch, done) => {
    if (!open || core.state.tokens[batch[0].userId]) {
      connect();
      return false;
    }
    seq += 1;
    waiting.set(seq, done);
    socket.send(JSON.stringify({ events: batch, seq }));
    return true;
  };
  const hidden = core.guard(() => { if (document.visibilityState === 'hidden') close(); });
  document.addEventListener('visibilitychange', hidden);
  window.addEventListener('pagehide', core.guard(close));
  core.stoppers.push(close);
  connect();
  return {};
});
