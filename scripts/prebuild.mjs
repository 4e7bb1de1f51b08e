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

// npm also runs a "prebuild" script as the pre-hook of `npm run build`. Making the release binaries
// on every build is not wanted, so when the npm command that started us was `build`, stop here.
function npmCommandArgs() {
  let pid = process.ppid;
  for (let depth = 0; depth < 6 && pid > 1; depth++) {
    try {
      // npm sets its process title, so its arguments may come as one string ("npm run build").
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().split(/\s+/);
      if (argv.some((a) => /(^|\/)npm(-cli\.js)?$/.test(a))) return argv;
      pid = Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
    } catch {
      return undefined;
    }
  }
  return undefined;
}
const npmArgs = npmCommandArgs();
if (npmArgs && npmArgs.includes('build') && !npmArgs.includes('prebuild')) {
  console.log('prebuild: skipped (npm runs it before `npm run build`); use `npm run prebuild` to make the release binaries');
  process.exit(0);
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
