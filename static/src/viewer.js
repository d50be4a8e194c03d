// LiverRead viewer: seven axial volume viewports (one per MRI sequence) showing one lesion, with a
// lesion-mask overlay, an optional saliency overlay, and slice / zoom / pan kept in step across all
// seven relative to each sequence's own lesion focus. Bundled as the global LiverReadViewer.
import {
  Enums,
  RenderingEngine,
  cache,
  getConfiguration,
  metaData,
  init as initCornerstone,
  utilities,
  volumeLoader,
} from '@cornerstonejs/core';
import { bindInteraction } from './interaction.js';
import { MaskOutline } from './maskOutline.js';
import { loadNifti } from './nifti.js';

export const SEQUENCES = ['T2WI', 'DWI', 'ADC', 'T1WI', 'LAP', 'PVP', 'DP'];

const HEAT_COLORMAP = 'Inferno (matplotlib)';
const HEAT_OPACITY = [
  { value: 0, opacity: 0 },
  { value: 0.2, opacity: 0 },
  { value: 0.4, opacity: 0.55 },
  { value: 1, opacity: 0.8 },
];
// Without this the heat overlay's opacity comes out far below the nominal one (see docs/machines.md).
const OVERLAY_OPACITY_UNIT_DISTANCE = 0.1;
const FIT_MARGIN = 1.05;
const { IMAGE_PLANE: PLANE, IMAGE_PIXEL: PIXEL } = Enums.MetadataModules;

let cornerstoneReady = false;
let engineCount = 0;

function initOnce() {
  if (cornerstoneReady) return;
  initCornerstone();
  if (getConfiguration().rendering.useCPURendering) {
    throw new Error('WebGL is not available in this browser; the viewer needs it');
  }
  cornerstoneReady = true;
}

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const addScaled = (a, b, s) => [a[0] + b[0] * s, a[1] + b[1] * s, a[2] + b[2] * s];
const absoluteUrl = (url) => new URL(url, document.baseURI).href;

function buildGrid(element) {
  element.classList.add('lr-viewer');
  element.replaceChildren();
  const cells = SEQUENCES.map((name) => {
    const cell = document.createElement('div');
    cell.className = 'lr-cell';
    cell.dataset.sequence = name;
    cell.dataset.state = 'loading';
    cell.innerHTML =
      '<div class="lr-viewport"></div><div class="lr-label"></div>' +
      '<div class="lr-offset"></div><div class="lr-status" role="status">Loading…</div>';
    cell.querySelector('.lr-label').textContent = name;
    element.append(cell);
    return cell;
  });
  const help = document.createElement('div');
  help.className = 'lr-help';
  help.innerHTML =
    '<b>Wheel</b> slice (all follow)<br><b>Left-drag</b> window/level<br>' +
    '<b>Right-drag</b> zoom<br><b>Middle / Shift+left-drag</b> pan<br><b>M</b> mask on/off';
  element.append(help);
  return cells;
}

function waitForRender(viewport) {
  return new Promise((resolve) => {
    viewport.element.addEventListener(Enums.Events.IMAGE_RENDERED, resolve, { once: true });
  });
}

// Volume ids carry no ":" so that cornerstone does not try to fetch their slices as image ids.
function createVolume(volumeId, nifti) {
  const volume = volumeLoader.createLocalVolume(volumeId, { ...nifti, metadata: { Modality: 'MR' } });
  // createLocalVolume gives every slice the volume's origin; slice lookups need each slice's own.
  const { origin, spacing, direction } = nifti;
  volume.imageIds.forEach((imageId, k) => {
    const plane = metaData.get(PLANE, imageId);
    const imagePositionPatient = addScaled(origin, direction.slice(6, 9), k * spacing[2]);
    utilities.genericMetadataProvider.addRaw(imageId, { type: PLANE, metadata: { ...plane, imagePositionPatient } });
  });
  volume.modified(); // flags every slice for upload to the GPU texture
  return volume;
}

function freeVolume(volumeId) {
  const volume = cache.getVolume(volumeId);
  if (!volume) return;
  const imageIds = volume.imageIds ?? [];
  cache.removeVolumeLoadObject(volumeId);
  imageIds.forEach((imageId) => {
    if (cache.getImageLoadObject(imageId)) cache.removeImageLoadObject(imageId);
    [PLANE, PIXEL].forEach((type) => utilities.genericMetadataProvider.addRaw(imageId, { type, metadata: undefined }));
  });
}

function heatCallback({ volumeActor }) {
  volumeActor.getProperty().setScalarOpacityUnitDistance(0, OVERLAY_OPACITY_UNIT_DISTANCE);
}

class Viewer {
  constructor(element, onStatus) {
    this.element = element;
    this.onStatus = onStatus;
    this.cells = buildGrid(element);
    this.engine = new RenderingEngine(`liverread-${++engineCount}`);
    this.engine.setViewports(
      this.cells.map((cell, i) => ({
        viewportId: SEQUENCES[i],
        type: Enums.ViewportType.ORTHOGRAPHIC,
        element: cell.querySelector('.lr-viewport'),
        defaultOptions: { orientation: Enums.OrientationAxis.AXIAL, background: [0, 0, 0] },
      })),
    );
    // One entry per sequence: its cell, viewport and mask outline, and the shown lesion's volume ids,
    // focus, initial window and image geometry.
    this.views = SEQUENCES.map((name, i) => {
      const viewport = this.engine.getViewport(name);
      const outline = new MaskOutline(this.cells[i], viewport);
      viewport.element.addEventListener(Enums.Events.IMAGE_RENDERED, () => outline.draw());
      return { name, cell: this.cells[i], viewport, outline };
    });
    this.maskVisible = true;
    this.showCount = 0;
    this.resizeObserver = new ResizeObserver(() => this.engine.resize(true, true));
    this.resizeObserver.observe(element);
    bindInteraction(this);
  }

  setStatus(text, kind) {
    this.onStatus?.(text, kind);
  }

  setCellState(view, state, text = '') {
    view.cell.dataset.state = state;
    view.cell.querySelector('.lr-status').textContent = text;
  }

  async show(lesion) {
    const token = ++this.showCount;
    const byName = new Map((lesion?.sequences ?? []).map((s) => [s.name, s]));
    this.setStatus('Loading lesion…', 'loading');
    this.clearSaliency({ render: false }); // the viewports are redrawn with the new lesion anyway
    this.views.forEach((view) => this.setCellState(view, 'loading', 'Loading…'));
    const loads = await Promise.allSettled(
      this.views.map(async (view) => {
        const spec = byName.get(view.name);
        if (!spec) throw new Error('missing from the lesion');
        if (!Array.isArray(spec.focus) || spec.focus.length !== 3 || !Array.isArray(spec.window)) {
          throw new Error('needs focus [x, y, z] and window [lower, upper]');
        }
        const [image, mask] = await Promise.all(
          [['image', spec.image], ['mask', spec.mask]].map(([what, url]) =>
            loadNifti(absoluteUrl(url)).catch((e) => {
              throw new Error(`${what} ${url}: ${e.message}`);
            }),
          ),
        );
        return { spec, image, mask };
      }),
    );
    if (token !== this.showCount) throw new Error('superseded by a newer show()');

    const previous = this.views.map((view) => view.imageId).filter(Boolean);
    this.views.forEach((view) => {
      view.imageId = undefined;
      view.outline.setMask(null);
    });
    const prepared = await Promise.allSettled(
      this.views.map((view, i) =>
        loads[i].status === 'fulfilled' ? this.prepare(view, token, loads[i].value) : Promise.reject(loads[i].reason),
      ),
    );
    const shown = this.views.filter((view, i) => prepared[i].status === 'fulfilled');
    const scale = FIT_MARGIN * Math.max(...shown.map((view) => this.fitScale(view)));
    shown.forEach((view) => this.centreOnFocus(view, scale));
    const failures = this.views.flatMap((view, i) => {
      if (prepared[i].status === 'fulfilled') return [];
      view.viewport.removeAllActors();
      const message = `${view.name}: ${prepared[i].reason?.message ?? prepared[i].reason}`;
      this.setCellState(view, 'error', message);
      return [message];
    });
    const rendered = this.views.map((view) => waitForRender(view.viewport));
    this.engine.renderViewports(SEQUENCES);
    await Promise.all(rendered);
    previous.forEach(freeVolume);
    if (token !== this.showCount) throw new Error('superseded by a newer show()');
    shown.forEach((view) => this.setCellState(view, 'ready'));
    this.updateOffsets();
    if (failures.length) {
      const message = `Could not show the lesion. ${failures.join('; ')}`;
      this.setStatus(message, 'error');
      throw new Error(message);
    }
    this.setStatus('Ready', 'ready');
  }

  // Puts one sequence's image into its viewport with its window, and its mask into the outline.
  async prepare(view, token, { spec, image, mask }) {
    const imageId = `liverread-${token}-${view.name}-image`;
    createVolume(imageId, image);
    const { viewport } = view;
    await viewport.setVolumes([{ volumeId: imageId, actorUID: imageId }]);
    view.outline.setMask(mask);
    Object.assign(view, {
      imageId,
      focus: spec.focus.map(Number),
      window: { lower: Number(spec.window[0]), upper: Number(spec.window[1]) },
      geometry: image,
    });
    viewport.setProperties({ voiRange: view.window }, imageId);
  }

  // The parallel scale at which the whole volume is visible with the focus in the middle.
  fitScale({ viewport, geometry, focus }) {
    const { viewUp, viewPlaneNormal: n } = viewport.getCamera();
    const right = [
      viewUp[1] * n[2] - viewUp[2] * n[1],
      viewUp[2] * n[0] - viewUp[0] * n[2],
      viewUp[0] * n[1] - viewUp[1] * n[0],
    ];
    let halfWidth = 0;
    let halfHeight = 0;
    const { dimensions, spacing, origin, direction } = geometry;
    for (let corner = 0; corner < 8; corner++) {
      let point = origin;
      for (let axis = 0; axis < 3; axis++) {
        const steps = corner & (1 << axis) ? dimensions[axis] - 0.5 : -0.5;
        point = addScaled(point, direction.slice(axis * 3, axis * 3 + 3), steps * spacing[axis]);
      }
      const d = sub(point, focus);
      halfWidth = Math.max(halfWidth, Math.abs(dot(d, right)));
      halfHeight = Math.max(halfHeight, Math.abs(dot(d, viewUp)));
    }
    const { clientWidth, clientHeight } = viewport.canvas;
    return Math.max(halfHeight, clientWidth && clientHeight ? (halfWidth * clientHeight) / clientWidth : halfWidth);
  }

  // Focus slice, focus in the middle of the viewport, at the shared zoom.
  centreOnFocus(view, parallelScale) {
    const camera = view.viewport.getCamera();
    const focalPoint = this.snapToSlice(view, view.focus);
    view.viewport.setCamera({
      focalPoint,
      position: addScaled(focalPoint, sub(camera.position, camera.focalPoint), 1),
      parallelScale,
    });
  }

  // Each cell says how far its slice is from the lesion focus (superior positive).
  updateOffsets() {
    this.views.forEach((view) => {
      const label = view.cell.querySelector('.lr-offset');
      if (view.cell.dataset.state !== 'ready') {
        label.textContent = '';
        return;
      }
      const mm = dot(sub(view.viewport.getCamera().focalPoint, view.focus), [0, 0, 1]);
      label.textContent = Math.abs(mm) < 0.05 ? 'focus slice' : `${mm > 0 ? '+' : '−'}${Math.abs(mm).toFixed(1)} mm S`;
    });
  }

  // The point on the slice plane of `view`'s volume nearest to `point` along the view normal.
  snapToSlice(view, point) {
    const { viewport, geometry } = view;
    const normal = viewport.getCamera().viewPlaneNormal;
    const { dimensions, spacing, origin, direction } = geometry;
    const kAxis = direction.slice(6, 9);
    const along = dot(kAxis, normal);
    if (Math.abs(along) < 1e-3) return point; // slices not across the view normal: no snapping
    const index = dot(sub(point, origin), normal) / (along * spacing[2]);
    const k = Math.min(dimensions[2] - 1, Math.max(0, Math.round(index)));
    return addScaled(point, normal, (k - index) * along * spacing[2]);
  }

  ready() {
    return this.views.filter((view) => view.cell.dataset.state === 'ready');
  }

  offsetOf(view) {
    const camera = view.viewport.getCamera();
    return dot(sub(camera.focalPoint, view.focus), camera.viewPlaneNormal);
  }

  // Moves `view` to the slice nearest `offset` mm from its focus along the view normal.
  moveToOffset(view, offset) {
    const camera = view.viewport.getCamera();
    const normal = camera.viewPlaneNormal;
    const wanted = addScaled(camera.focalPoint, normal, offset - this.offsetOf(view));
    const shift = dot(sub(this.snapToSlice(view, wanted), camera.focalPoint), normal);
    if (Math.abs(shift) < 1e-6) return;
    view.viewport.setCamera({
      focalPoint: addScaled(camera.focalPoint, normal, shift),
      position: addScaled(camera.position, normal, shift),
    });
  }

  // Scrolls the hovered viewport by whole slices; every other viewport follows relative to its focus.
  scrollSlices(source, slices) {
    if (source.cell.dataset.state !== 'ready') return;
    const { spacing, direction } = source.geometry;
    const step = spacing[2] * Math.abs(dot(direction.slice(6, 9), source.viewport.getCamera().viewPlaneNormal));
    this.moveToOffset(source, this.offsetOf(source) + slices * step);
    const offset = this.offsetOf(source);
    this.ready().forEach((view) => view !== source && this.moveToOffset(view, offset));
    this.updateOffsets();
    this.renderAll();
  }

  zoomBy(factor) {
    this.ready().forEach(({ viewport }) => {
      viewport.setCamera({ parallelScale: viewport.getCamera().parallelScale * factor });
    });
    this.renderAll();
  }

  // Pans every viewport by the same on-screen drag (in CSS pixels of the source viewport).
  panBy(source, dx, dy) {
    const a = source.viewport.canvasToWorld([0, 0]);
    const b = source.viewport.canvasToWorld([dx, dy]);
    const shift = sub(a, b);
    this.ready().forEach(({ viewport }) => {
      const camera = viewport.getCamera();
      viewport.setCamera({
        focalPoint: addScaled(camera.focalPoint, shift, 1),
        position: addScaled(camera.position, shift, 1),
      });
    });
    this.renderAll();
  }

  // Window/level of one viewport: horizontal drag widens the window, vertical drag moves its centre.
  windowBy(view, dx, dy) {
    if (view.cell.dataset.state !== 'ready') return;
    const { lower, upper } = view.viewport.getProperties(view.imageId).voiRange;
    const perPixel = Math.max(view.window.upper - view.window.lower, 1e-3) / 200;
    const width = Math.max(upper - lower + dx * perPixel, perPixel);
    const centre = (upper + lower) / 2 + dy * perPixel;
    view.viewport.setProperties({ voiRange: { lower: centre - width / 2, upper: centre + width / 2 } }, view.imageId);
    view.viewport.render();
  }

  renderAll() {
    this.engine.renderViewports(this.ready().map((view) => view.name));
  }

  toggleMask() {
    this.setMaskVisible(!this.maskVisible);
  }

  setMaskVisible(visible) {
    this.maskVisible = Boolean(visible);
    this.views.forEach((view) => view.outline.setVisible(this.maskVisible));
  }

  async showSaliency(maps) {
    const token = this.showCount;
    this.clearSaliency();
    const views = this.ready().filter((view) => maps?.[view.name]);
    const heats = await Promise.all(
      views.map((view) =>
        loadNifti(absoluteUrl(maps[view.name])).catch((e) => {
          throw new Error(`${view.name}: saliency ${maps[view.name]}: ${e.message}`);
        }),
      ),
    );
    if (token !== this.showCount) throw new Error('the lesion changed while the saliency maps loaded');
    this.clearSaliency();
    await Promise.all(
      views.map(async (view, i) => {
        const heatId = `liverread-${token}-${view.name}-heat-${Date.now()}`;
        createVolume(heatId, heats[i]);
        await view.viewport.addVolumes([{ volumeId: heatId, actorUID: heatId, visibility: true, callback: heatCallback }]);
        view.heatId = heatId;
        view.viewport.setProperties({ voiRange: { lower: 0, upper: 1 } }, heatId);
        view.viewport.setProperties({ colormap: { name: HEAT_COLORMAP, opacity: HEAT_OPACITY } }, heatId);
        const rendered = waitForRender(view.viewport);
        view.viewport.render();
        await rendered;
      }),
    );
  }

  clearSaliency({ render = true } = {}) {
    this.views.forEach((view) => {
      if (!view.heatId) return;
      view.viewport.removeVolumeActors([view.heatId]);
      freeVolume(view.heatId);
      view.heatId = undefined;
    });
    if (render) this.renderAll();
  }

  state() {
    return this.views.map((view) => {
      const ready = view.cell.dataset.state === 'ready';
      const camera = view.viewport.getCamera();
      const voi = ready ? view.viewport.getProperties(view.imageId).voiRange : undefined;
      return {
        name: view.name,
        offsetMm: ready ? this.offsetOf(view) : null,
        focalPoint: ready ? [...camera.focalPoint] : null,
        parallelScale: ready ? camera.parallelScale : null,
        voiRange: voi ? [voi.lower, voi.upper] : null,
      };
    });
  }
}

export async function create(element, { onStatus } = {}) {
  if (!(element instanceof HTMLElement)) throw new Error('LiverReadViewer.create needs a container element');
  initOnce();
  const viewer = new Viewer(element, onStatus);
  onStatus?.('No lesion shown yet', 'loading');
  return {
    show: (lesion) => viewer.show(lesion),
    setMaskVisible: (visible) => viewer.setMaskVisible(visible),
    toggleMask: () => viewer.toggleMask(),
    showSaliency: (maps) => viewer.showSaliency(maps),
    clearSaliency: () => viewer.clearSaliency(),
    state: () => viewer.state(),
  };
}
