// Hovers: the dwell over an interactive element (a link, a button, a field) longer than
// data-hover-ms. Listeners are passive, and a mouse move costs one `closest` lookup.
window.tracker._register('hover', (core) => {
  const INTERACTIVE = 'a,button,input,select,textarea,[role="button"],label,summary';
  let hover = { el: null, since: 0 };

  function interactive(target) {
    let el = core.elementOf(target);
    el = el && el.closest && !core.ignored(el) ? el.closest(INTERACTIVE) : null;
    return core.secret(el) ? null : el;
  }

  function endHover() {
    const ended = hover;
    hover = { el: null, since: 0 };
    if (!ended.el) return;
    const duration = core.monotonicNow() - ended.since;
    if (duration > core.config.hoverMs) {
      core.record('hover', {
        path: core.state.page.path || core.currentPath(),
        element: core.describe(ended.el),
        duration: Math.round(duration),
      });
    }
  }

  function onMouseOver(e) {
    if (!core.state.enabled) return;
    const el = interactive(e.target);
    if (el === hover.el) return;
    endHover();
    if (el) hover = { el, since: core.monotonicNow() };
  }

  function onMouseOut(e) {
    if (!hover.el) return;
    if (e.relatedTarget && hover.el.contains(e.relatedTarget)) return; // still inside it
    endHover();
  }

  const passive = { capture: true, passive: true };
  document.addEventListener('mouseover', core.guard(onMouseOver), passive);
  document.addEventListener('mouseout', core.guard(onMouseOut), passive);
  core.pendingCaptures.push(endHover);
  core.stoppers.push(() => { hover = { el: null, since: 0 }; });
  return {};
});
