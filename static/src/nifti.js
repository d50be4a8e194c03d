// Fetches one NIfTI-1 file (.nii or .nii.gz) and returns its voxels with LPS geometry, ready for
// cornerstone's createLocalVolume. One request per file, and HTTP or format problems become clear
// errors (the stock NIfTI loader probes every file twice and never settles when a fetch fails).

const GZIP_MAGIC = [0x1f, 0x8b];

// NIfTI datatype code -> [typed array read from the file, typed array cornerstone renders]
const DATATYPES = {
  2: [Uint8Array, Uint8Array],
  4: [Int16Array, Int16Array],
  8: [Int32Array, Float32Array],
  16: [Float32Array, Float32Array],
  64: [Float64Array, Float32Array],
  256: [Int8Array, Int16Array],
  512: [Uint16Array, Uint16Array],
  768: [Uint32Array, Float32Array],
};

export async function loadNifti(url) {
  const response = await fetch(url, { credentials: 'same-origin' });
  if (!response.ok) {
    throw new Error(`HTTP ${response.status} ${response.statusText}`.trim());
  }
  let buffer = await response.arrayBuffer();
  const head = new Uint8Array(buffer, 0, Math.min(2, buffer.byteLength));
  // A body that a server sent with Content-Encoding: gzip arrives already inflated.
  if (head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1]) {
    const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream('gzip'));
    buffer = await new Response(stream).arrayBuffer();
  }
  return parseNifti(buffer);
}

function parseNifti(buffer) {
  if (buffer.byteLength < 348) {
    throw new Error('not a NIfTI file (shorter than a header)');
  }
  const view = new DataView(buffer);
  if (view.getInt32(0, true) !== 348) {
    throw new Error(
      view.getInt32(0, true) === 540 ? 'NIfTI-2 is not supported' : 'not a little-endian NIfTI-1 file',
    );
  }
  const f32 = (offset) => view.getFloat32(offset, true);
  const i16 = (offset) => view.getInt16(offset, true);
  const dimensions = [i16(42), i16(44), i16(46)];
  const ndim = i16(40);
  if (ndim < 3 || dimensions.some((n) => n < 1) || (ndim > 3 && i16(48) > 1)) {
    throw new Error(`expected a 3-D volume, got dim = [${[40, 42, 44, 46, 48].map(i16)}]`);
  }
  const datatype = i16(70);
  if (!DATATYPES[datatype]) {
    throw new Error(`unsupported NIfTI datatype ${datatype}`);
  }
  const [FileArray, RenderArray] = DATATYPES[datatype];
  const count = dimensions[0] * dimensions[1] * dimensions[2];
  const start = f32(108);
  if (start + count * FileArray.BYTES_PER_ELEMENT > buffer.byteLength) {
    throw new Error('truncated NIfTI file');
  }
  const raw = new FileArray(buffer.slice(start, start + count * FileArray.BYTES_PER_ELEMENT));
  let slope = f32(112);
  let inter = f32(116);
  slope = slope && Number.isFinite(slope) ? slope : 1;
  inter = Number.isFinite(inter) ? inter : 0;
  let scalarData;
  if (slope !== 1 || inter !== 0) {
    scalarData = Float32Array.from(raw, (v) => v * slope + inter);
  } else {
    scalarData = RenderArray === FileArray ? raw : RenderArray.from(raw);
  }
  if (scalarData instanceof Float32Array && scalarData.some(Number.isNaN)) {
    throw new Error('the volume contains NaN values');
  }
  return { dimensions, scalarData, ...lpsGeometry(view, f32, i16) };
}

// Voxel-to-world affine (sform, else qform, else pixdim) turned from NIfTI's RAS into LPS.
function lpsGeometry(view, f32, i16) {
  let columns; // the world direction (scaled by spacing) of the i, j, k voxel axes, and the origin
  if (i16(254) > 0) {
    const rows = [280, 296, 312].map((o) => [0, 1, 2, 3].map((c) => f32(o + 4 * c)));
    columns = [0, 1, 2, 3].map((c) => rows.map((r) => r[c]));
  } else {
    const pix = [f32(80), f32(84), f32(88)];
    let rot = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
    let offset = [0, 0, 0];
    if (i16(252) > 0) {
      const [b, c, d] = [f32(256), f32(260), f32(264)];
      const a = Math.sqrt(Math.max(0, 1 - b * b - c * c - d * d));
      rot = [
        [a * a + b * b - c * c - d * d, 2 * (b * c + a * d), 2 * (b * d - a * c)],
        [2 * (b * c - a * d), a * a + c * c - b * b - d * d, 2 * (c * d + a * b)],
        [2 * (b * d + a * c), 2 * (c * d - a * b), a * a + d * d - c * c - b * b],
      ];
      pix[2] *= f32(76) < 0 ? -1 : 1;
      offset = [f32(268), f32(272), f32(276)];
    }
    columns = [...rot.map((axis, i) => axis.map((v) => v * pix[i])), offset];
  }
  const lps = columns.map(([x, y, z]) => [-x, -y, z]);
  const spacing = lps.slice(0, 3).map((v) => Math.hypot(...v));
  if (spacing.some((s) => !(s > 0))) {
    throw new Error('the NIfTI affine is degenerate');
  }
  const direction = lps.slice(0, 3).flatMap((v, i) => v.map((x) => x / spacing[i]));
  return { spacing, origin: lps[3], direction };
}
