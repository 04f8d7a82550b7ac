// Experiments: this visitor's variant of an experiment, from
// GET /api/experiments/{name}/variant, asked once per page and user.
window.tracker._register('experiments', (core) => {
  const SESSION_WAIT_MS = 10000;
  const cache = {};

  // The variant route asks the visitor's proof: the cookie the session request sets, or the
  // identity token. So the session goes first.
  function sessionStarted() {
    const until = Date.now() + SESSION_WAIT_MS;
    return new Promise((resolve, reject) => {
      const check = core.guard(() => {
        if (core.state.sessionOk) resolve();
        else if (!core.state.enabled || Date.now() > until) reject(new Error('tracker: no session'));
        else setTimeout(check, 50);
      });
      core.flush();
      check();
    });
  }

  function ask(name, userId) {
    const query = `?userId=${encodeURIComponent(userId)}`;
    const headers = core.headers(userId);
    delete headers['Content-Type'];
    return fetch(`${core.config.endpoint}/api/experiments/${encodeURIComponent(name)}/variant${query}`, {
      credentials: 'include',
      headers,
    }).then((response) => {
      if (!response.ok) throw new Error(`tracker: variant of ${name}: HTTP ${response.status}`);
      return response.json();
    }).then((answer) => String(answer.variant));
  }

  return {
    variant(name) {
      const userId = core.state.userId;
      const key = `${userId}\n${name}`;
      if (!cache[key]) {
        cache[key] = sessionStarted().then(() => ask(name, userId));
        cache[key].catch(() => { delete cache[key]; }); // asked again next time
      }
      return cache[key];
    },
  };
});
