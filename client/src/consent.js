// Whether this visitor may be tracked: Do Not Track, Global Privacy Control and the opt-out,
// which is kept in localStorage and in a first-party cookie (`tracker_optout`) that holds where
// storage is blocked (a sandboxed frame, storage disabled).
import { KEYS } from './config.js';
import { storageGet } from './util.js';

const OPT_OUT_COOKIE = 'tracker_optout';
// 400 days: the longest a browser keeps a cookie.
export const OPT_OUT_MAX_AGE_S = 400 * 24 * 3600;

export function privacySignal() {
  const n = navigator;
  return n.doNotTrack === '1' || window.doNotTrack === '1' || n.msDoNotTrack === '1' ||
    n.globalPrivacyControl === true;
}

export function optOutCookie(maxAgeS) {
  const secure = window.location.protocol === 'https:' ? '; Secure' : '';
  try {
    document.cookie = `${OPT_OUT_COOKIE}=${maxAgeS ? '1' : ''}; Path=/; Max-Age=${maxAgeS}; SameSite=Lax${secure}`;
  } catch (e) { /* cookies disabled too: nothing can remember the choice */ }
}

function optOutCookieSet() {
  try {
    return document.cookie.split(';').some((pair) => pair.trim() === `${OPT_OUT_COOKIE}=1`);
  } catch (e) { return false; }
}

export const optedOut = () => storageGet('localStorage', KEYS.optOut) === '1' || optOutCookieSet();

// A browser driven by a program: WebDriver (Playwright, Selenium, Puppeteer set it) or a
// headless build. The server flags such sessions as bots; they are still recorded.
export function automated() {
  const n = navigator;
  return n.webdriver === true || /Headless|PhantomJS/.test(n.userAgent || '') ||
    !!(window._phantom || window.callPhantom || window.__nightmare);
}
