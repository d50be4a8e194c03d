// Bundles src/viewer.js into dist/viewer.js: one minified IIFE exposing the global LiverReadViewer.
// Cornerstone pulls in two large libraries that this viewer never runs, only imports: dcmjs (DICOM
// parsing, 0.7 MB; its logger is the only part reached without DICOM data) and xmlbuilder2 (VTK XML
// mesh files, 0.6 MB). They are replaced by small stand-ins, which halves the bundle and its parse time.
import * as esbuild from 'esbuild';

const STAND_INS = {
  // Same shape as what @cornerstonejs/utils and @cornerstonejs/metadata read from dcmjs at load time.
  dcmjs: `
    import log from 'loglevel';
    class Unavailable { constructor() { throw new Error('DICOM support is not bundled in the LiverRead viewer'); } }
    const dcmjs = {
      log,
      // Every keyword resolves (to a dummy tag) so that the metadata tag table builds without warnings.
      data: { DicomMetaDictionary: { dictionary: {}, nameMap: new Proxy({}, { get: () => ({ tag: '(0000,0000)' }) }) } },
      async: { AsyncDicomReader: Unavailable },
      utilities: { DicomMetadataListener: Unavailable },
    };
    export { log };
    export default dcmjs;`,
  xmlbuilder2: `
    export function create() { throw new Error('VTK XML reading is not bundled in the LiverRead viewer'); }`,
};

const standIns = {
  name: 'stand-ins',
  setup(build) {
    const filter = new RegExp(`^(${Object.keys(STAND_INS).join('|')})$`);
    build.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'stand-in' }));
    build.onLoad({ filter: /.*/, namespace: 'stand-in' }, (args) => ({
      contents: STAND_INS[args.path],
      resolveDir: import.meta.dirname,
    }));
  },
};

const result = await esbuild.build({
  entryPoints: ['src/viewer.js'],
  outfile: 'dist/viewer.js',
  bundle: true,
  minify: true,
  format: 'iife',
  globalName: 'LiverReadViewer',
  target: 'es2020',
  legalComments: 'none',
  plugins: [standIns],
  metafile: true,
  logLevel: 'warning',
});
const bytes = Object.values(result.metafile.outputs)[0].bytes;
console.log(`dist/viewer.js: ${(bytes / 1e6).toFixed(2)} MB`);
