// Scroll depth: one event once scrolling settles, with the position and how deep it reached.
import { currentPath, pageMetrics, scrollPosition } from './page.js';
import { record } from './queue.js';
import { pendingCaptures, state, stoppers } from './state.js';
import { guard } from './util.js';

const SCROLL_DEBOUNCE_MS = 250;
let timer = null;

// Passive and debounced: a scroll costs the page one timer reset until it settles.
export function onScroll() {
  if (!state.enabled) return;
  clearTimeout(timer);
  timer = setTimeout(guard(emitPendingScroll), SCROLL_DEBOUNCE_MS);
}

function emitPendingScroll() {
  if (timer === null) return;
  clearTimeout(timer);
  timer = null;
  const scroll = scrollPosition();
  const metadata = pageMetrics();
  const seen = (scroll.y + metadata.viewportHeight) / Math.max(1, metadata.pageHeight);
  metadata.scrollDepth = Math.max(0, Math.min(100, Math.round(seen * 100)));
  record('scroll', { path: state.page.path || currentPath(), scrollX: scroll.x, scrollY: scroll.y, metadata });
}

pendingCaptures.push(emitPendingScroll);
stoppers.push(() => {
  clearTimeout(timer);
  timer = null;
});
