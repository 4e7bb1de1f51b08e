// prepack / prepublishOnly: refuses to pack a tarball without the prebuilt binaries it promises.
// Installed with --ignore-scripts (pnpm 10 and bun do that by default) the package has no other way
// to get a native addon, and "build it with npm run build:native" cannot be followed in node_modules.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const need = ['sophia-rl.node', ...(process.env.SOPHIA_PACK_WITHOUT_CUDA === '1' ? [] : ['sophia-rl.cuda.node'])];
const missing = need.filter((f) => !fs.existsSync(path.join(dir, f)));
// Binaries older than the native sources were built from other code.
const newest = (d) => fs.readdirSync(d, { recursive: true }).map((f) => path.join(d, String(f))).filter((f) => fs.statSync(f).isFile()).reduce((m, f) => Math.max(m, fs.statSync(f).mtimeMs), 0);
const sources = Math.max(newest(path.join(root, 'native')), fs.statSync(path.join(root, 'CMakeLists.txt')).mtimeMs, fs.statSync(path.join(root, 'binding.gyp')).mtimeMs);
const stale = need.filter((f) => !missing.includes(f) && fs.statSync(path.join(dir, f)).mtimeMs < sources);
if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) missing.push('dist/index.js (npm run build:ts)');
if (missing.length || stale.length) {
  console.error(`prepack: refusing to pack sophia-rl without its binaries:`);
  for (const f of missing) console.error(`  missing ${path.relative(root, path.join(dir, f))}`);
  for (const f of stale) console.error(`  ${path.relative(root, path.join(dir, f))} is older than the native sources`);
  console.error('run `npm run prebuild` (and `npm run build:ts`) first; SOPHIA_PACK_WITHOUT_CUDA=1 packs the CPU binary alone');
  process.exit(1);
}
console.log(`prepack: ${need.map((f) => path.join('prebuilds', path.basename(dir), f)).join(', ')} present and up to date`);
