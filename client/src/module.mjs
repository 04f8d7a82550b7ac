// tracker.mjs: tracker.js as an ES module, for apps that import rather than add a script tag
// (a SvelteKit layout, say). It adds tracker.js's tag once, with the settings given to
// `load`, and each function waits for the script before calling it.
//
//   import { load, track, identify, variant } from 'https://tracker.example.com/tracker.mjs';
//   load({ endpoint: 'https://tracker.example.com' });
//   track('signup', { plan: 'pro' });
//
// Page views need nothing: tracker.js follows the History API, so a router's navigation is
// one page view, and must not be reported again from the router's own hooks.

/**
 * @typedef {object} Options
 * @property {string} [endpoint] base URL of the tracker (default: where this module is served)
 * @property {string} [userId] an identified user (default: an anonymous visitor)
 * @property {string} [token] the identified user's identity token
 * @property {number} [flushIntervalMs] how often queued events are sent
 * @property {boolean} [hover] also report hovers
 * @property {number} [hoverMs] dwell that counts as a hover
 * @property {boolean} [websocket] send over a WebSocket while one is open
 * @property {boolean} [experiments] load the experiments file at once
 * @property {boolean} [debug] log what the tracker does
 */

/**
 * @typedef {object} Tracker
 * @property {string} version
 * @property {(name: string, properties?: Record<string, string | number | boolean>) => boolean} track
 * @property {(userId: string | null, token?: string) => boolean} identify
 * @property {(name: string) => Promise<string>} variant
 * @property {() => void} optOut
 * @property {() => boolean} optIn
 * @property {() => void} flush
 * @property {() => boolean} isEnabled
 */

const here = new URL('.', import.meta.url);
/** @type {Promise<Tracker> | null} */
let loaded = null;

const ATTRIBUTES = {
  endpoint: 'data-endpoint',
  userId: 'data-user-id',
  token: 'data-token',
  flushIntervalMs: 'data-flush-interval-ms',
  hover: 'data-hover',
  hoverMs: 'data-hover-ms',
  websocket: 'data-websocket',
  experiments: 'data-experiments',
  debug: 'data-debug',
};

/**
 * Adds tracker.js to the page (once) and resolves to `window.tracker`.
 * @param {Options} [options]
 * @returns {Promise<Tracker>}
 */
export function load(options = {}) {
  if (loaded) return loaded;
  loaded = new Promise((resolve, reject) => {
    const existing = /** @type {any} */ (window).tracker;
    if (existing && existing.version) {
      resolve(existing);
      return;
    }
    const tag = document.createElement('script');
    const endpoint = options.endpoint === undefined ? here.href.replace(/\/$/, '') : options.endpoint;
    tag.src = new URL('tracker.js', endpoint ? `${endpoint}/` : here).href;
    tag.setAttribute('data-endpoint', endpoint);
    for (const [key, name] of Object.entries(ATTRIBUTES)) {
      const value = /** @type {any} */ (options)[key];
      if (key === 'endpoint' || value === undefined || value === false) continue;
      tag.setAttribute(name, value === true ? '' : String(value));
    }
    tag.onload = () => resolve(/** @type {any} */ (window).tracker);
    tag.onerror = () => {
      loaded = null;
      reject(new Error(`tracker.js could not be loaded from ${tag.src}`));
    };
    document.head.appendChild(tag);
  });
  return loaded;
}

/** @returns {Promise<Tracker>} */
const ready = () => load();

/**
 * Records a custom event.
 * @param {string} name 1 to 64 characters
 * @param {Record<string, string | number | boolean>} [properties] at most 20
 * @returns {Promise<boolean>} whether it was recorded
 */
export const track = (name, properties) => ready().then((t) => t.track(name, properties));

/**
 * Tracks as `userId` from now on (after a log-in), linking the anonymous visitor to it; `null`
 * goes back to the anonymous visitor (after a log-out).
 * @param {string | null} userId
 * @param {string} [token] the user's identity token, minted by the site's backend
 * @returns {Promise<boolean>}
 */
export const identify = (userId, token) => ready().then((t) => t.identify(userId, token));

/**
 * This visitor's variant of an experiment.
 * @param {string} name
 * @returns {Promise<string>}
 */
export const variant = (name) => ready().then((t) => t.variant(name));

/** @returns {Promise<void>} */
export const optOut = () => ready().then((t) => t.optOut());

/** @returns {Promise<boolean>} */
export const optIn = () => ready().then((t) => t.optIn());

/** @returns {Promise<void>} */
export const flush = () => ready().then((t) => t.flush());
