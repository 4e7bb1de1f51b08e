/**
 * Finds and loads the native addon. Two variants exist: the CPU binary and the CUDA-enabled binary
 * (CPU + CUDA, static CUDA runtime, loads without a driver). `SOPHIA_DEVICE` picks:
 *   - `auto` (default): the CUDA binary when it is installed and reports a usable GPU, else the CPU one;
 *   - `cuda`: the CUDA binary, or an `E_DEVICE` error saying why it cannot be used;
 *   - `cpu`: the CPU binary.
 * Local builds (build-cmake/ from cmake-js, build/ from node-gyp) come before prebuilds/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SophiaError } from './errors';

export type Backend = 'cpu' | 'cuda';

export interface CudaStatus {
  compiled: boolean;
  usable: boolean;
  deviceCount: number;
  reason: string;
  runtimeVersion?: number;
  driverVersion?: number;
  device?: { name: string; computeCapability: string; totalMemory: number; freeMemory: number; multiprocessors: number };
}

export interface AddonInfo {
  version: string;
  variant: Backend;
  threads: number;
  simd: string;
  cuda: CudaStatus;
}

/** A block of device memory owned by a JS object (see Tensor). */
export interface DeviceBuffer {
  readonly bytes: number;
  readonly disposed: boolean;
  free(): void;
  copyFrom(src: ArrayBufferView): void;
  copyTo(dst: ArrayBufferView): void;
}

type Args = Record<string, unknown>;

/** The raw addon. Prefer the typed wrappers in ops/; these take one options object each. */
export interface NativeAddon {
  DeviceBuffer: new (bytes: number) => DeviceBuffer;
  setErrorClass(ctor: unknown): void;
  info(): AddonInfo;
  cudaStatus(): CudaStatus;
  logprobs(args: Args): unknown;
  grpoLoss(args: Args): unknown;
  trustRewards(args: Args): unknown;
  thinkingNeeded(args: Args): unknown;
  groupAdvantages(args: Args): unknown;
  streamRead(args: Args): { gbps: number; seconds: number; checksum: number };
  cudaCopyBandwidth(args: Args): number;
  /** Switches the CPU row kernels between the portable, AVX2 and AVX-512 builds (tests, benchmarks). */
  setCpuIsa(args: { isa: 'base' | 'avx2' | 'avx512' }): string;
}

export interface LoadedBackend {
  addon: NativeAddon;
  backend: Backend;
  path: string;
  /** One line: which backend, why, and from where. */
  line: string;
  /** What the CUDA-enabled binary said about the GPU (when one was probed). */
  cuda?: CudaStatus;
}


/** The package root: lib/ (sources under jest) and dist/ (the bundle) both sit one level below it. */
export function packageRoot(): string {
  return path.resolve(__dirname, '..');
}

const platformDir = `${process.platform}-${process.arch}`;

/** Where each variant may live, best first. */
export function addonCandidates(root = packageRoot()): Record<Backend, string[]> {
  return {
    cpu: [
      path.join(root, 'build-cmake', 'Release', 'sophia_rl.node'),
      path.join(root, 'build', 'Release', 'sophia_rl.node'),
      path.join(root, 'prebuilds', platformDir, 'sophia-rl.node'),
    ],
    cuda: [
      path.join(root, 'build-cmake', 'Release', 'sophia_rl_cuda.node'),
      path.join(root, 'prebuilds', platformDir, 'sophia-rl.cuda.node'),
    ],
  };
}

function firstExisting(paths: string[]): string | undefined {
  return paths.find((p) => fs.existsSync(p));
}

function loadFile(file: string): NativeAddon {
  try {
    const addon = require(file) as NativeAddon;
    addon.setErrorClass(SophiaError);
    return addon;
  } catch (err) {
    throw new SophiaError('E_IO', `cannot load the native addon ${file}: ${(err as Error).message}`, { cause: err });
  }
}

export type DeviceRequest = 'auto' | 'cpu' | 'cuda';

export function parseDeviceRequest(value: string | undefined): DeviceRequest {
  const v = (value ?? 'auto').trim().toLowerCase() || 'auto';
  if (v === 'auto' || v === 'cpu' || v === 'cuda') return v;
  throw new SophiaError('E_CONFIG', `SOPHIA_DEVICE must be 'auto', 'cpu' or 'cuda', got ${JSON.stringify(value)}`);
}

/** Picks and loads a backend without caching (tests use this directly). */
export function loadBackend(request: DeviceRequest = parseDeviceRequest(process.env.SOPHIA_DEVICE), root = packageRoot()): LoadedBackend {
  const where = addonCandidates(root);
  const cpuPath = firstExisting(where.cpu);
  const cudaPath = firstExisting(where.cuda);
  let probed: CudaStatus | undefined;
  const pick = (backend: Backend, file: string, addon: NativeAddon, why: string): LoadedBackend => ({
    addon,
    backend,
    path: file,
    cuda: probed,
    line: `sophia-rl: using the ${backend} backend (${why}) from ${path.relative(process.cwd(), file) || file}`,
  });
  const loadCpu = (why: string): LoadedBackend => {
    if (cpuPath) return pick('cpu', cpuPath, loadFile(cpuPath), why);
    // The CUDA-enabled binary carries the CPU backend too.
    if (cudaPath) return pick('cpu', cudaPath, loadFile(cudaPath), `${why}; CPU kernels of the CUDA-enabled binary`);
    throw new SophiaError(
      'E_IO',
      `no native addon found for ${platformDir} (looked for ${[...where.cpu, ...where.cuda].join(', ')}); ` +
        'build it with `npm run build:native` (cmake-js) or `npx node-gyp rebuild`',
    );
  };

  if (request === 'cpu') return loadCpu('SOPHIA_DEVICE=cpu');
  if (!cudaPath) {
    if (request === 'cuda')
      throw new SophiaError(
        'E_DEVICE',
        `SOPHIA_DEVICE=cuda, but no CUDA-enabled binary is installed (looked for ${where.cuda.join(', ')}); ` +
          'build one with `npm run build:native` on a machine with nvcc',
      );
    return loadCpu('auto: no CUDA-enabled binary is installed');
  }
  const cudaAddon = loadFile(cudaPath);
  const status = cudaAddon.cudaStatus();
  probed = status;
  if (status.usable) {
    const d = status.device;
    return pick('cuda', cudaPath, cudaAddon, `${request === 'cuda' ? 'SOPHIA_DEVICE=cuda' : 'auto'}: ${d?.name ?? 'GPU'}, compute ${d?.computeCapability ?? '?'}`);
  }
  if (request === 'cuda')
    throw new SophiaError('E_DEVICE', `SOPHIA_DEVICE=cuda, but no GPU is usable: ${status.reason}`);
  return loadCpu(`auto: no usable GPU: ${status.reason}`);
}

let loaded: LoadedBackend | undefined;
// A library is quiet in its user's program; the CLI (and SOPHIA_VERBOSE=1) says which backend it uses.
let announce = process.env.SOPHIA_VERBOSE === '1';

/** Whether the backend's one-line choice is printed on stderr when it loads (default: only with SOPHIA_VERBOSE=1). */
export function announceBackend(on: boolean): void {
  announce = on;
}

/** The process-wide backend, loaded on first use. */
export function native(): LoadedBackend {
  if (!loaded) {
    loaded = loadBackend();
    if (announce && process.env.SOPHIA_QUIET !== '1') process.stderr.write(`${loaded.line}\n`);
  }
  return loaded;
}

export function addon(): NativeAddon {
  return native().addon;
}

export interface SystemInfo extends AddonInfo {
  backend: Backend;
  path: string;
  line: string;
  node: string;
  platform: string;
}

/** What `sophia info` prints. */
export function systemInfo(): SystemInfo {
  const b = native();
  const info = b.addon.info();
  return { ...info, cuda: b.cuda ?? info.cuda, backend: b.backend, path: b.path, line: b.line, node: process.version, platform: platformDir };
}
