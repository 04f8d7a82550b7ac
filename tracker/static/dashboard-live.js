/* The dashboard's "Follow a user live" panel: one user's movements as they are stored, over
   GET /api/users/{userId}/live (a WebSocket; the admin's login cookie goes with it).
   docs/realtime.md describes the socket. */
(function () {
  'use strict';

  var MAX_ROWS = 200;
  var RETRY_MS = 3000;
  var current = null; // {userId, socket, retry}

  function el(tag, attrs, content) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function time(ms) {
    return new Date(ms).toLocaleTimeString(undefined, { hour12: false });
  }

  function build() {
    var main = document.querySelector('main.dashboard');
    if (!main) return null;
    var section = el('section', { 'class': 'card wide', 'data-testid': 'live-user' });
    var head = el('div', { 'class': 'card-head' });
    head.appendChild(el('h2', {}, 'Follow a user live'));
    var status = el('span', { 'class': 'hint', 'data-testid': 'live-user-status' }, 'enter a user ID');
    head.appendChild(status);
    var form = el('form', { 'class': 'live-user-form' });
    var input = el('input', {
      type: 'text', name: 'userId', placeholder: 'user ID', 'aria-label': 'User ID',
      autocomplete: 'off', maxlength: '128', 'data-testid': 'live-user-id'
    });
    var follow = el('button', { type: 'submit', 'class': 'btn primary' }, 'Follow');
    var stopButton = el('button', { type: 'button', 'class': 'btn ghost' }, 'Stop');
    form.appendChild(input);
    form.appendChild(follow);
    form.appendChild(stopButton);
    var list = el('ol', { 'class': 'live-user-list', 'data-testid': 'live-user-list' });
    section.appendChild(head);
    section.appendChild(form);
    section.appendChild(list);
    main.appendChild(section);
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var userId = input.value.trim();
      if (userId) start(userId, status, list);
    });
    stopButton.addEventListener('click', function () { stop(); status.textContent = 'stopped'; });
    return section;
  }

  function row(movement) {
    var data = movement.data || {};
    var item = el('li', { 'data-event-id': movement.eventId || '' });
    item.appendChild(el('span', { 'class': 'muted small' }, time(movement.timestamp)));
    item.appendChild(document.createTextNode(' '));
    item.appendChild(el('strong', {}, movement.event));
    item.appendChild(document.createTextNode(' ' + (data.path || '') +
      (data.element ? ' · ' + data.element : '')));
    return item;
  }

  function stop() {
    if (!current) return;
    clearTimeout(current.retry);
    var socket = current.socket;
    current = null;
    if (socket) socket.close(1000);
  }

  function start(userId, status, list) {
    stop();
    while (list.firstChild) list.removeChild(list.firstChild);
    current = { userId: userId, socket: null, retry: null };
    connect(current, status, list);
  }

  function connect(following, status, list) {
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    var socket = new WebSocket(scheme + location.host + '/api/users/' +
      encodeURIComponent(following.userId) + '/live');
    following.socket = socket;
    status.textContent = 'connecting…';
    socket.addEventListener('open', function () {
      if (current === following) status.textContent = 'following ' + following.userId;
    });
    socket.addEventListener('message', function (e) {
      if (current !== following) return;
      var message = JSON.parse(e.data);
      message.movements.forEach(function (movement) {
        list.insertBefore(row(movement), list.firstChild);
      });
      while (list.childNodes.length > MAX_ROWS) list.removeChild(list.lastChild);
    });
    socket.addEventListener('close', function (e) {
      if (current !== following) return;
      if (e.code === 1011) {
        // The host or the aggregator is unavailable for now: try again shortly.
        status.textContent = 'unavailable; retrying';
        following.retry = setTimeout(function () { connect(following, status, list); }, RETRY_MS);
      } else {
        status.textContent = e.code === 1008 ? 'signed out: sign in again' : 'closed';
        current = null;
      }
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', build);
  } else {
    build();
  }
})();
