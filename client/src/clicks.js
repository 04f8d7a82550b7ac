// Clicks: the element, viewport coordinates (the heatmap's), scroll position and page size.
import { describe, elementOf, ignored, pageMetrics, scrollPosition, secret, currentPath } from './page.js';
import { record } from './queue.js';
import { state } from './state.js';
import { trackElement } from './custom.js';

export function onClick(e) {
  const el = elementOf(e.target);
  if (!state.enabled || ignored(el) || secret(el)) return;
  const scroll = scrollPosition();
  record('click', {
    path: currentPath(),
    element: describe(el),
    coordinates: { x: Math.round(e.clientX || 0), y: Math.round(e.clientY || 0) },
    scrollX: scroll.x,
    scrollY: scroll.y,
    metadata: pageMetrics(),
  });
  trackElement(el);
}
