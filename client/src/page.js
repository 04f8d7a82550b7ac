// Facts about the page and its elements, as events report them.
import { MAX_ELEMENT, MAX_PATH } from './config.js';
import { clip } from './util.js';

const IGNORED = '[data-tracker-ignore]';
export const FIELD_RE = /^(input|select|textarea)$/i;

// The server takes only paths that start with `/`; a frame's `about:srcdoc` has "srcdoc".
export function currentPath() {
  const path = window.location.pathname || '/';
  return clip(path.charAt(0) === '/' ? path : '/' + path, MAX_PATH);
}

function pageHeight() {
  const d = document.documentElement;
  const b = document.body;
  return Math.max(d ? d.scrollHeight : 0, b ? b.scrollHeight : 0, window.innerHeight || 0);
}

export const pageMetrics = () => ({
  viewportWidth: window.innerWidth,
  viewportHeight: window.innerHeight,
  pageHeight: pageHeight(),
});

// The same, read when the event is sent. Reading them makes the browser lay the page out
// if it has changed since the last frame: right after a router renders a view, or while the
// page itself loads, that is a whole layout done early, inside the tracker's time. By the
// time a batch goes out, a frame has laid the page out already.
export function laterMetrics() {
  let read = null;
  const get = (key) => (read || (read = pageMetrics()))[key];
  return {
    get viewportWidth() { return get('viewportWidth'); },
    get viewportHeight() { return get('viewportHeight'); },
    get pageHeight() { return get('pageHeight'); },
  };
}

export const scrollPosition = () => ({
  x: Math.round(window.scrollX || 0),
  y: Math.round(window.scrollY || 0),
});

export const ignored = (el) => !!(el && el.closest && el.closest(IGNORED));

// tag#id.class1.class2; getAttribute because an SVG element's className is not a string.
export function describe(el) {
  if (!el || !el.tagName) return 'unknown';
  let text = String(el.tagName).toLowerCase();
  const id = el.getAttribute('id');
  if (id) text += '#' + id;
  const classes = (el.getAttribute('class') || '').trim();
  if (classes) text += '.' + classes.split(/\s+/).join('.');
  return clip(text, MAX_ELEMENT);
}

export function elementOf(target) {
  if (target && target.nodeType === 3) return target.parentElement; // a text node
  return target && target.nodeType === 1 ? target : null;
}

// A password, hidden or payment card field: not even a click on it or a hover is reported.
export function secret(el) {
  if (!el || !FIELD_RE.test(el.tagName)) return false;
  const type = String(el.type || el.getAttribute('type') || '').toLowerCase();
  if (type === 'password' || type === 'hidden') return true;
  if (String(el.getAttribute('type') || '').toLowerCase() === 'password') return true;
  return String(el.getAttribute('autocomplete') || '').toLowerCase().split(/\s+/)
    .some((token) => token.indexOf('cc-') === 0);
}
