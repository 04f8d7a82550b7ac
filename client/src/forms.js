// Form interactions: which field was typed in or changed, never its value; password, hidden
// and payment card fields are not reported at all.
import { MAX_ELEMENT } from './config.js';
import { FIELD_RE, currentPath, elementOf, ignored, secret } from './page.js';
import { record } from './queue.js';
import { pendingCaptures, state, stoppers } from './state.js';
import { clip, guard } from './util.js';

const FIELD_DEBOUNCE_MS = 1000;
// field name -> its debounced report; names are the page's, any string
let fields = new Map();

const trackableField = (el) => !!el && !ignored(el) && FIELD_RE.test(el.tagName) && !secret(el);

export const onField = (action) => (e) => {
  const el = elementOf(e.target);
  if (!state.enabled || !trackableField(el)) return;
  const tag = String(el.tagName).toLowerCase();
  const name = clip(el.getAttribute('name') || el.getAttribute('id') || tag, MAX_ELEMENT);
  const pending = fields.get(name);
  if (pending) clearTimeout(pending.timer);
  const fieldType = clip(el.type || tag, 32);
  const path = currentPath();
  const entry = {
    fire() {
      fields.delete(name);
      record('form_interaction', { path, element: name, metadata: { action, fieldType } });
    },
  };
  entry.timer = setTimeout(guard(entry.fire), FIELD_DEBOUNCE_MS);
  fields.set(name, entry);
};

pendingCaptures.push(() => Array.from(fields.values()).forEach((entry) => {
  clearTimeout(entry.timer);
  entry.fire();
}));
stoppers.push(() => {
  fields.forEach((entry) => clearTimeout(entry.timer));
  fields = new Map();
});
