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
  const props = {};
  const entries = Object.entries(properties || {});
  const valid = typeof name === 'string' && name.length > 0 && name.length <= 64 &&
    entries.length <= MAX_PROPERTIES && entries.every(([key, value]) => {
      const kind = typeof value;
      props[key] = kind === 'string' ? clip(value, 256) : value;
      return kind === 'string' || kind === 'boolean' || (kind === 'number' && isFinite(value));
    });
  if (!valid) log('track: invalid name or properties');
  else record('custom', { path: currentPath(), name, properties: props });
  return valid && state.enabled;
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
