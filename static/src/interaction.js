// Mouse and keyboard bindings of the viewer (the only ones: the page binds nothing on the viewports).
// Wheel: slices, all viewports follow. Left-drag: window/level of that viewport. Right-drag: zoom,
// middle-drag or Shift+left-drag: pan, both for all viewports. "m": mask overlay on/off.
// Digit keys and Enter are left alone: the answer form uses them.

const ZOOM_PER_PIXEL = 0.01;

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

export function bindInteraction(viewer) {
  const listen = (target, type, handler, options) => target.addEventListener(type, handler, options);

  viewer.views.forEach((view) => {
    const element = view.viewport.element;
    let drag = null; // { mode, x, y } while a button is held

    listen(element, 'wheel', (event) => {
      event.preventDefault();
      if (event.deltaY) viewer.scrollSlices(view, Math.sign(event.deltaY));
    }, { passive: false });

    listen(element, 'contextmenu', (event) => event.preventDefault());
    // Stops the browser's middle-button autoscroll.
    listen(element, 'mousedown', (event) => event.button === 1 && event.preventDefault());

    listen(element, 'pointerdown', (event) => {
      const mode =
        event.button === 2 ? 'zoom' : event.button === 1 || (event.button === 0 && event.shiftKey) ? 'pan' : event.button === 0 ? 'window' : null;
      if (!mode || view.cell.dataset.state !== 'ready') return;
      event.preventDefault();
      element.setPointerCapture(event.pointerId);
      drag = { mode, x: event.clientX, y: event.clientY };
    });

    listen(element, 'pointermove', (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      drag.x = event.clientX;
      drag.y = event.clientY;
      if (drag.mode === 'window') viewer.windowBy(view, dx, dy);
      else if (drag.mode === 'pan') viewer.panBy(view, dx, dy);
      else viewer.zoomBy(Math.exp(dy * ZOOM_PER_PIXEL));
    });

    const endDrag = () => {
      drag = null;
    };
    listen(element, 'pointerup', endDrag);
    listen(element, 'pointercancel', endDrag);
  });

  listen(document, 'keydown', (event) => {
    if (event.key !== 'm' || event.ctrlKey || event.altKey || event.metaKey || isTyping(event.target)) return;
    viewer.toggleMask();
  });
}
