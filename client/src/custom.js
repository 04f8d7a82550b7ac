// Custom events: `tracker.track(name, properties)`, and a click on an element carrying
// `data-tracker-event="name"` with its `data-tracker-prop-*` attributes as properties.
import { currentPath } from './page.js';
import { record } from './queue.js';
import { state } from './state.js';
import { clip, log } from './util.js';

const MAX_PROPERTIES = 20;
const PROP_ATTR = 'data-tracker-prop-';

// Whether it was recorded: a name of 1 to 64 characters, properties a flat object of at most
// 20 strings, finite numbers or booleans (the server refuses the whole batch otherwise).
export function track(name, properties) {
  if (!state.enabled) return false;
  if (typeof name !== 'string' || name.length < 1 || name.length > 64) {
    log('track: a name is 1-64 characters');
    return false;
  }
  const props = {};
  const entries = Object.entries(properties || {});
  if (entries.length > MAX_PROPERTIES) {
    log('track: at most', MAX_PROPERTIES, 'properties');
    return false;
  }
  for (const [key, value] of entries) {
    const kind = typeof value;
    if (kind === 'string') props[key] = clip(value, 256);
    else if (kind === 'boolean' || (kind === 'number' && isFinite(value))) props[key] = value;
    else {
      log('track: property', key, 'is not a string, number or boolean');
      return false;
    }
  }
  record('custom', { path: currentPath(), name: clip(name, 64), properties: props });
  return true;
}

export function trackElement(el) {
  const tagged = el && el.closest && el.closest('[data-tracker-event]');
  if (!tagged) return;
  const properties = {};
  Array.from(tagged.attributes).forEach((a) => {
    if (a.name.indexOf(PROP_ATTR) === 0) properties[a.name.slice(PROP_ATTR.length)] = a.value;
  });
  track(tagged.getAttribute('data-tracker-event'), properties);
}
