// Draws the lesion mask as an outline on a 2-D canvas laid over a viewport, redrawn after every
// render of it. On software GL this is far cheaper than a second (translucent) volume or a
// labelmap, which made each viewport draw about three times slower.

const COLOUR = 'rgb(60, 255, 110)';
const LINE_WIDTH = 1.5; // CSS pixels

export class MaskOutline {
  constructor(cell, viewport) {
    this.viewport = viewport;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'lr-mask';
    cell.append(this.canvas);
    this.mask = null;
  }

  // mask: { dimensions, spacing, origin, direction, scalarData } from loadNifti, or null.
  setMask(mask) {
    this.mask = mask;
    this.edges = new Map(); // slice index -> flat list of voxel-corner segments [i0, j0, i1, j1, ...]
    this.draw();
  }

  setVisible(visible) {
    this.canvas.hidden = !visible;
  }

  draw() {
    const { canvas, viewport, mask } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio);
    const height = Math.round(canvas.clientHeight * ratio);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, width, height);
    if (!mask) return;
    const { dimensions, spacing, origin, direction } = mask;
    const kAxis = direction.slice(6, 9);
    const { focalPoint } = viewport.getCamera();
    const k = Math.round(
      kAxis.reduce((sum, v, a) => sum + v * (focalPoint[a] - origin[a]), 0) / spacing[2],
    );
    if (k < 0 || k >= dimensions[2]) return;
    const segments = this.sliceEdges(k);
    if (!segments.length) return;
    // Voxel (i, j) of slice k maps linearly onto the canvas (parallel projection).
    const world = (i, j) =>
      [0, 1, 2].map((a) => origin[a] + direction[a] * i * spacing[0] + direction[3 + a] * j * spacing[1] + kAxis[a] * k * spacing[2]);
    const p0 = viewport.worldToCanvas(world(0, 0));
    const pi = viewport.worldToCanvas(world(1, 0));
    const pj = viewport.worldToCanvas(world(0, 1));
    const ix = (pi[0] - p0[0]) * ratio, iy = (pi[1] - p0[1]) * ratio;
    const jx = (pj[0] - p0[0]) * ratio, jy = (pj[1] - p0[1]) * ratio;
    const x0 = p0[0] * ratio, y0 = p0[1] * ratio;
    ctx.beginPath();
    for (let s = 0; s < segments.length; s += 4) {
      const [a, b, c, d] = [segments[s], segments[s + 1], segments[s + 2], segments[s + 3]];
      ctx.moveTo(x0 + a * ix + b * jx, y0 + a * iy + b * jy);
      ctx.lineTo(x0 + c * ix + d * jx, y0 + c * iy + d * jy);
    }
    ctx.strokeStyle = COLOUR;
    ctx.lineWidth = LINE_WIDTH * ratio;
    ctx.stroke();
  }

  // Borders between mask and background voxels in slice k, in voxel-corner coordinates.
  sliceEdges(k) {
    if (this.edges.has(k)) return this.edges.get(k);
    const { dimensions: [ni, nj], scalarData } = this.mask;
    const offset = k * ni * nj;
    const on = (i, j) => i >= 0 && j >= 0 && i < ni && j < nj && scalarData[offset + j * ni + i] > 0;
    const segments = [];
    for (let j = 0; j < nj; j++) {
      for (let i = 0; i < ni; i++) {
        if (!on(i, j)) continue;
        const [l, r, t, b] = [i - 0.5, i + 0.5, j - 0.5, j + 0.5];
        if (!on(i - 1, j)) segments.push(l, t, l, b);
        if (!on(i + 1, j)) segments.push(r, t, r, b);
        if (!on(i, j - 1)) segments.push(l, t, r, t);
        if (!on(i, j + 1)) segments.push(l, b, r, b);
      }
    }
    this.edges.set(k, segments);
    return segments;
  }
}
