// npm run prebuild: the two binaries that ship in the npm tarball, under prebuilds/<platform>-<arch>/
//   sophia-rl.node       CPU backend (prebuildify + node-gyp, binding.gyp)
//   sophia-rl.cuda.node  CPU + CUDA backends (cmake-js, static CUDA runtime)
// Node headers come from this Node installation; nothing is downloaded.
// SOPHIA_CUDA=OFF skips the CUDA binary (it is otherwise required: nvcc must be on PATH).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const nodeDir = path.resolve(path.dirname(process.execPath), '..');
const env = { ...process.env };
if (fs.existsSync(path.join(nodeDir, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = nodeDir;

function run(cmd, args, extraEnv = {}) {
  console.log(`> ${path.basename(cmd)} ${args.join(' ')}`);
  execFileSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...env, ...extraEnv } });
}

const t0 = Date.now();
run(bin('prebuildify'), ['--napi', '--strip', `--target=${process.versions.node}`]);
const cpu = path.join(outDir, 'sophia-rl.node');
if (!fs.existsSync(cpu)) throw new Error(`prebuildify did not produce ${cpu}`);

if ((process.env.SOPHIA_CUDA ?? 'ON').toUpperCase() !== 'OFF') {
  run(bin('cmake-js'), ['compile', '--out', 'build-prebuild-cuda'], { SOPHIA_CUDA: 'ON' });
  const cuda = path.join(outDir, 'sophia-rl.cuda.node');
  fs.copyFileSync(path.join(root, 'build-prebuild-cuda', 'Release', 'sophia_rl_cuda.node'), cuda);
  run('strip', ['--strip-unneeded', cuda]);
}
for (const f of fs.readdirSync(outDir)) {
  console.log(`${path.join('prebuilds', path.basename(outDir), f)}: ${(fs.statSync(path.join(outDir, f)).size / 1024).toFixed(0)} KiB`);
}
console.log(`prebuild done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
