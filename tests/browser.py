"""Headless Debian chromium for the browser tests and the viewer benchmark: launch flags from
docs/machines.md (WebGL2 through ANGLE + SwiftShader) and the in-page probes they share."""

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
]

all_ready = """() => document.querySelectorAll('[data-sequence][data-state="ready"]').length === 7
    && window.liverread && liverread.mode === 'reading'"""

PIXELS = """(selector) => [...document.querySelectorAll('[data-sequence]')].map((cell) => {
    // Per viewport: mean and spread of the grey level, lit and coloured (saturated) pixels, a fingerprint.
    const canvas = cell.querySelector(selector);
    const { width, height } = canvas;
    const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
    let sum = 0, sum2 = 0, coloured = 0, lit = 0, n = width * height;
    const fingerprint = [];
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      const i = 4 * (y * width + x), r = data[i], g = data[i + 1], b = data[i + 2], a = data[i + 3];
      const grey = (r + g + b) / 3;
      sum += grey; sum2 += grey * grey;
      if (a > 0 && (r | g | b)) lit++;
      const saturated = Math.max(r, g, b) - Math.min(r, g, b) > 60;
      if (saturated) coloured++;
      if (x % 37 === 0 && y % 41 === 0) fingerprint.push(r, g, b, a);
    }
    const mean = sum / n;
    return { name: cell.dataset.sequence, width, height, mean, std: Math.sqrt(sum2 / n - mean * mean), lit,
             coloured, fingerprint: fingerprint.join(',') };
})"""

HEAT_IN_LESION = """() => [...document.querySelectorAll('[data-sequence]')].map((cell) => {
    // Saturated (heat-coloured) pixels of the image canvas inside the box of the lesion outline drawn on
    // the mask canvas: the saliency map where the lesion is, whatever the zoom and pan.
    const image = cell.querySelector('.lr-viewport canvas'), mask = cell.querySelector('canvas.lr-mask');
    const m = mask.getContext('2d').getImageData(0, 0, mask.width, mask.height).data;
    let x0 = 1, y0 = 1, x1 = 0, y1 = 0;
    for (let y = 0; y < mask.height; y++) for (let x = 0; x < mask.width; x++) {
      if (m[4 * (y * mask.width + x) + 3] > 0) {
        x0 = Math.min(x0, x / mask.width); x1 = Math.max(x1, x / mask.width);
        y0 = Math.min(y0, y / mask.height); y1 = Math.max(y1, y / mask.height);
      }
    }
    const { width, height } = image;
    const d = image.getContext('2d').getImageData(0, 0, width, height).data;
    let inside = 0;
    const xs = [Math.floor(x0 * width), x1 * width], ys = [Math.floor(y0 * height), y1 * height];
    for (let y = ys[0]; y <= ys[1]; y++) for (let x = xs[0]; x <= xs[1]; x++) {
      const i = 4 * (y * width + x);
      if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) inside++;
    }
    return { name: cell.dataset.sequence, outlined: x1 > x0, inside };
})"""
