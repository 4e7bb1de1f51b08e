// npm run test:pack: packs the package, installs the tarball into an empty project with
// --ignore-scripts (so no compiler can be involved), and checks there that it imports (CJS and
// ESM), loads the prebuilt binary, runs a kernel with a correct result, and that the CLI works.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'sophia-rl.node');
if (!fs.existsSync(prebuilt)) {
  console.error(`test:pack: ${path.relative(root, prebuilt)} is missing; run \`npm run prebuild\` first`);
  process.exit(1);
}
if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) {
  console.error('test:pack: dist/ is missing; run `npm run build:ts` first');
  process.exit(1);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-pack-'));
const sh = (cmd, args, cwd, env = {}) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
try {
  // what prepack runs on npm pack / publish (skipped below by --ignore-scripts, so run here)
  console.log(sh('node', [path.join(root, 'scripts', 'check-prebuilds.mjs')], root).trim());
  const packed = JSON.parse(sh('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], root))[0];
  const tarball = path.join(work, packed.filename);
  const files = packed.files.map((f) => f.path);
  for (const need of ['dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/cli.js', 'binding.gyp', 'CMakeLists.txt', 'prebuilds/linux-x64/sophia-rl.node']) {
    if (process.platform === 'linux' && !files.includes(need)) throw new Error(`the tarball lacks ${need}`);
  }
  console.log(`packed ${packed.filename}: ${(packed.size / 1024).toFixed(0)} KiB, ${files.length} files (${files.filter((f) => f.startsWith('prebuilds/')).join(', ')})`);

  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'sophia-smoke', private: true, version: '1.0.0' }));
  sh('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', tarball], app);

  const cjs = `
    const s = require('sophia-rl');
    const V = 4, logits = new Float32Array([0, 1, 2, 3, -1, -1, -1, -1]);
    const r = s.logprobsSync(s.Tensor.from(logits, [2, V]), new Int32Array([3, 0]), { entropy: true });
    const lse = Math.log(1 + Math.E + Math.E ** 2 + Math.E ** 3) ;
    const ok = Math.abs(r.logp[0] - (3 - lse)) < 1e-5 && Math.abs(r.logp[1] + Math.log(4)) < 1e-5 && Math.abs(r.entropy[1] - Math.log(4)) < 1e-5;
    const b = s.native();
    if (!b.path.includes('prebuilds')) throw new Error('did not load a prebuilt binary: ' + b.path);
    if (!ok) throw new Error('wrong kernel result: ' + Array.from(r.logp));
    console.log('cjs ok: ' + b.line);`;
  console.log(sh('node', ['-e', cjs], app).trim());
  const esm = `
    import { grpoLoss, Tensor } from 'sophia-rl';
    const r = await grpoLoss({ logits: Tensor.from(new Float32Array([0, 0]), [1, 2]), labels: new Int32Array([0]),
      oldLogp: new Float32Array([Math.log(0.5)]), advantages: new Float32Array([1]), seqStarts: new Int32Array([0, 1]) });
    // ratio 1, A = 1: loss -1, d loss / d logits = -(1 - p) , +p = [-0.5, 0.5]
    const g = r.gradLogits.data;
    if (Math.abs(r.loss + 1) > 1e-6 || Math.abs(g[0] + 0.5) > 1e-6 || Math.abs(g[1] - 0.5) > 1e-6) throw new Error('wrong grpoLoss ' + r.loss + ' ' + Array.from(g));
    console.log('esm ok');`;
  console.log(sh('node', ['--input-type=module', '-e', esm], app, { SOPHIA_QUIET: '1' }).trim());
  console.log(sh(path.join(app, 'node_modules', '.bin', 'sophia'), ['check'], app, { SOPHIA_QUIET: '1' }).trim().split('\n').slice(-1)[0]);
  const probe = "try { require('sophia-rl').native(); console.log('usable') } catch (e) { console.log(e.code + ': ' + e.message) }";
  const cudaLine = sh('node', ['-e', probe], app, { SOPHIA_DEVICE: 'cuda', SOPHIA_QUIET: '1' }).trim();
  if (cudaLine !== 'usable' && !cudaLine.startsWith('E_DEVICE: SOPHIA_DEVICE=cuda')) throw new Error(`SOPHIA_DEVICE=cuda gave: ${cudaLine}`);
  console.log(`SOPHIA_DEVICE=cuda: ${cudaLine}`);
  console.log('test:pack: 4 passed, 0 failed');
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
