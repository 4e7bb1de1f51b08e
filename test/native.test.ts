import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addonCandidates, loadBackend, parseDeviceRequest } from '../lib/native';
import { SophiaError } from '../lib/errors';

const cudaBinary = addonCandidates().cuda.find((p) => fs.existsSync(p));
const probe = cudaBinary ? (require(cudaBinary) as { cudaStatus(): { usable: boolean } }).cudaStatus() : undefined;
const gpu = probe?.usable === true;

describe('backend loader', () => {
  test('SOPHIA_DEVICE values are checked', () => {
    expect(parseDeviceRequest(undefined)).toBe('auto');
    expect(parseDeviceRequest(' CUDA ')).toBe('cuda');
    expect(() => parseDeviceRequest('gpu')).toThrow(expect.objectContaining({ code: 'E_CONFIG', message: expect.stringContaining('"gpu"') }));
  });

  test('auto picks the CPU backend when no GPU is usable, and says why in one line', () => {
    if (gpu) return console.log('a GPU is usable here: the no-GPU branch is covered on CPU machines');
    const b = loadBackend('auto');
    expect(b.backend).toBe('cpu');
    expect(b.line).toMatch(/^sophia-rl: using the cpu backend \(auto: .+\) from .+\.node$/);
    expect(b.line).not.toMatch(/\n/);
    expect(b.addon.info().threads).toBeGreaterThanOrEqual(1);
  });

  test('SOPHIA_DEVICE=cuda without a usable GPU fails with E_DEVICE and the reason', () => {
    if (gpu) return console.log('a GPU is usable here: see cuda-parity tests');
    let err: unknown;
    try {
      loadBackend('cuda');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).code).toBe('E_DEVICE');
    expect((err as SophiaError).message).toMatch(cudaBinary ? /no GPU is usable: .+/ : /no CUDA-enabled binary is installed/);
  });

  test('the CUDA-enabled binary loads without a driver and reports, not crashes', () => {
    if (!cudaBinary) return console.log('no CUDA-enabled binary was built here (no nvcc): nothing to load');
    const addon = require(cudaBinary);
    const info = addon.info();
    expect(info.variant).toBe('cuda');
    expect(info.cuda.compiled).toBe(true);
    if (!gpu) {
      expect(info.cuda.usable).toBe(false);
      expect(info.cuda.reason.length).toBeGreaterThan(5);
      addon.setErrorClass(SophiaError);
      expect(() => new addon.DeviceBuffer(1024)).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
      // Its CPU kernels still work.
      const r = addon.logprobs({ logits: new Float32Array([0, Math.log(3)]), V: 2, labels: new Int32Array([1]) });
      expect(r.logp[0]).toBeCloseTo(Math.log(0.75), 6);
    }
  });

  test('SOPHIA_DEVICE=cpu loads the CPU binary', () => {
    const b = loadBackend('cpu');
    expect(b.backend).toBe('cpu');
    expect(b.line).toContain('SOPHIA_DEVICE=cpu');
  });

  test('a missing addon is an E_IO error that says how to build it', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-empty-'));
    try {
      expect(() => loadBackend('auto', empty)).toThrow(expect.objectContaining({ code: 'E_IO', message: expect.stringContaining('npm run build:native') }));
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('the built package (dist/, made by npm run build before the tests)', () => {
  const { execFileSync } = require('node:child_process') as typeof import('node:child_process');
  const path = require('node:path') as typeof import('node:path');
  const root = path.join(__dirname, '..');
  const env = { ...process.env, SOPHIA_QUIET: '', SOPHIA_VERBOSE: '' };
  const run = (args: string[], extra: Record<string, string> = {}) =>
    execFileSync(process.execPath, args, { cwd: root, env: { ...env, ...extra }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const script = "const s = require('./dist/index.js'); s.native(); process.stderr.write('done')";

  test('the library is quiet in a user program; SOPHIA_VERBOSE=1 prints the backend line', () => {
    const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
    const quiet = spawnSync(process.execPath, ['-e', script], { cwd: root, env, encoding: 'utf8' });
    expect(quiet.status).toBe(0);
    expect(quiet.stderr).toBe('done');
    const verbose = spawnSync(process.execPath, ['-e', script], { cwd: root, env: { ...env, SOPHIA_VERBOSE: '1' }, encoding: 'utf8' });
    expect(verbose.stderr).toMatch(/^sophia-rl: using the \w+ backend .*\ndone$/s);
  });

  test('sophia --device picks the backend like SOPHIA_DEVICE; a wrong one is a clear error', () => {
    expect(run(['dist/cli.js', '--device', 'cpu', 'info'])).toMatch(/backend:\s+cpu\s+\(.*SOPHIA_DEVICE=cpu/);
    const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
    const bad = spawnSync(process.execPath, ['dist/cli.js', '--device', 'gpu', 'info'], { cwd: root, env, encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--device must be 'auto', 'cpu' or 'cuda', got "gpu"/);
  });

  test('every command takes --no-progress, which silences the progress and backend lines', () => {
    const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
    const plain = spawnSync(process.execPath, ['dist/cli.js', 'info'], { cwd: root, env, encoding: 'utf8' });
    expect(plain.stderr).toMatch(/using the \w+ backend/);
    const quiet = spawnSync(process.execPath, ['dist/cli.js', 'info', '--no-progress'], { cwd: root, env, encoding: 'utf8' });
    expect(quiet.status).toBe(0);
    expect(quiet.stderr).toBe('');
    for (const cmd of [['sft'], ['eval'], ['train'], ['ablate'], ['start'], ['rm', 'train'], ['rm', 'serve'], ['score']])
      expect(run(['dist/cli.js', ...cmd, '--help'])).toContain('--no-progress');
  });

  test('sophia --version prints the package version', () => {
    const version = (require('../package.json') as { version: string }).version;
    expect(run(['dist/cli.js', '--version']).trim()).toBe(version);
  });
});
