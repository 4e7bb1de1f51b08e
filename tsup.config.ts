import { defineConfig } from 'tsup';

// The library ships as ESM + CJS with types; the CLI as one CJS file (it is only ever executed).
// Sources use CommonJS globals (require, __dirname) to find the addon; the ESM build gets them
// from createRequire / shims.
export default defineConfig([
  {
    entry: { index: 'lib/index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    shims: true,
    sourcemap: true,
    target: 'node20',
    banner: ({ format }) =>
      format === 'esm'
        ? { js: "import { createRequire as __sophiaCreateRequire } from 'node:module';\nconst require = __sophiaCreateRequire(import.meta.url);" }
        : {},
  },
  {
    entry: { cli: 'lib/cli/main.ts' },
    format: ['cjs'],
    sourcemap: true,
    target: 'node20',
    banner: { js: '#!/usr/bin/env node' },
  },
]);
