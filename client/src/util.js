// What every module needs: logging, the guard around entry points, storage that may be
// blocked, IDs, and text cut safely.
import { config } from './config.js';

export function log(...args) {
  if (config.debug) console.debug('[tracker]', ...args);
}

// Every entry point from the page (listeners, timers, the public API) goes through this:
// nothing in the tracker may throw into the host page.
export function guard(fn) {
  return function (...args) {
    try {
      return fn.apply(this, args);
    } catch (e) {
      log('error', e);
      return undefined;
    }
  };
}

// Storage may be blocked (a sandboxed frame, storage disabled) or full.
function storage(area, fn) {
  try { return fn(window[area]); } catch (e) { return null; }
}
export const storageGet = (area, key) => storage(area, (s) => s.getItem(key));
export const storageSet = (area, key, value) => storage(area, (s) => s.setItem(key, value));
export const storageRemove = (area, key) => storage(area, (s) => s.removeItem(key));

export function uuid() {
  try { return crypto.randomUUID(); } catch (e) { /* not there, or not a secure context */ }
  // Version 4, RFC 4122 variant: each hex digit of the pattern below is random where it is 0.
  const random = new Uint8Array(32);
  crypto.getRandomValues(random);
  let i = 0;
  return '00000000-0000-4000-8000-000000000000'.replace(/[08]/g, (c) => (c ^ (random[i++] & (c === '8' ? 3 : 15))).toString(16));
}

// `text` with each half of a surrogate pair that stands alone replaced by U+FFFD.
const wellFormed = (text) => text.replace(/[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]/g, (m) => (m.length > 1 ? m : '\ufffd'));

// At most `max` UTF-16 units of `value`, cut between characters. JSON.stringify sends half a
// surrogate pair (an emoji cut in two, or a lone half a script put in an attribute) as
// "\ud83d", which is not text: the server would refuse the whole batch for it.
export function clip(value, max) {
  const text = wellFormed(String(value));
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

export const monotonicNow = () => performance.now();

export const utf8Length = (text) => new TextEncoder().encode(text).length;
