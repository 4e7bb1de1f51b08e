/**
 * npm pack / publish cannot make a tarball without the prebuilt binaries (prepack runs
 * scripts/check-prebuilds.mjs): missing or stale binaries stop it with the command that fixes it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const script = path.join(__dirname, '..', 'scripts', 'check-prebuilds.mjs');
const check = (root: string, env: Record<string, string> = {}) => spawnSync(process.execPath, [script, root], { encoding: 'utf8', env: { ...process.env, ...env } });

test('prepack refuses missing or stale binaries and passes when they are there and newer than the sources', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-prepack-'));
  try {
    fs.mkdirSync(path.join(root, 'native', 'cpu'), { recursive: true });
    fs.mkdirSync(path.join(root, 'dist'));
    for (const f of ['native/cpu/a.cpp', 'CMakeLists.txt', 'binding.gyp', 'dist/index.js']) fs.writeFileSync(path.join(root, f), 'x');
    const old = new Date(Date.now() - 60_000);
    for (const f of ['native/cpu/a.cpp', 'CMakeLists.txt', 'binding.gyp']) fs.utimesSync(path.join(root, f), old, old);
    const bad = check(root);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/missing prebuilds\/.*\/sophia-rl\.node/);
    expect(bad.stderr).toMatch(/npm run prebuild/);
    const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'sophia-rl.node'), 'bin');
    expect(check(root).stderr).toMatch(/missing .*sophia-rl\.cuda\.node/);
    expect(check(root, { SOPHIA_PACK_WITHOUT_CUDA: '1' }).status).toBe(0);
    fs.writeFileSync(path.join(dir, 'sophia-rl.cuda.node'), 'bin');
    expect(check(root).status).toBe(0);
    // a native source changed after the binaries were built
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(root, 'native', 'cpu', 'a.cpp'), later, later);
    const stale = check(root);
    expect(stale.status).toBe(1);
    expect(stale.stderr).toMatch(/is older than the native sources/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
