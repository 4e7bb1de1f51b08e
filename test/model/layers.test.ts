/**
 * The embedded model's native layers (addon nnOp: gemm, matmul, rmsnorm, rope, attention, swiglu)
 * against the float64 oracles of oracle64.ts:
 *   1. forward on seeded random inputs over odd sizes (GEMM on every CPU kernel build);
 *   2. backward against central finite differences of the float64 oracle of L = Σ out ⊙ R, with
 *      the native backward given dout = R; the += contracts of dW, dbias and dw;
 *   3. edge cases: empty batches, large activations, huge attention scores, a 300-token sequence;
 *   4. argument errors.
 * The seed is printed; SOPHIA_TEST_SEED=<seed> replays a run.
 */
import { spawnSync } from 'node:child_process';
import { addon, native } from '../../lib/native';
import { expectError, Rng, testSeed } from '../ops/oracle';
import {
  attention64,
  fdGrad,
  gemm64,
  matmul64,
  maxAbs,
  randn,
  rmsnorm64,
  rope64,
  sampleIndices,
  seqOffsets,
  swiglu64,
  transpose,
  type Num,
} from './oracle64';

// ------------------------------------------------------------------ tolerances
//
// Forward: |native − oracle| ≤ TOL[op] · scale, with the output scale of each op:
//   gemm, matmul  max over the tensor of Σ_k |a_ik·b_kj| (+ |C0| when accumulating, + |bias|):
//                 the magnitude of what is summed
//   rmsnorm       max |out|   (rstd: max |rstd|)
//   rope          per row: max |x of the row| · (4 + |pos|): float32 rounds the angle pos·θ^(-2i/hd)
//                 itself to ~2⁻²⁴·pos radians, which no float32 implementation avoids
//   attention     max |v| · (1 + max |score|): out mixes rows of v, and a score rounding error
//                 (which grows with the score) becomes a relative error of the probabilities
//   swiglu        max |h| (at least 1e-30: float32 cannot hold the 1e-86 of silu(−200))
// Backward: |native − FD| ≤ GRAD_TOL[op] · scale, scale = max |FD gradient of that tensor|
//   + max |pre-filled value| for the += outputs (dW, dbias, dw), at least 1e-30, and:
//   rmsnorm dx    + max_n rstd_n · |w ⊙ dout_n| (dx is a difference of terms that size, which can
//                 nearly cancel: for C = 1, dx = w·dout·eps / (x² + eps)^(3/2))
//   attention     × (1 + max |score|), as forward
//   rope          the forward's per-row scale with |dout| in place of |x|
// FD: central differences of the float64 oracle, h = 1e-6 (h = 1e-3 for the x ~ 1e3 case).
// Over 20 seeds the worst cases used at most ~30% of these; the table printed at the end of a run
// shows the worst error / scale per check.
const TOL = { gemm: 1e-6, matmul: 1e-6, rmsnorm: 2e-6, rope: 2.5e-7, ropeRoundTrip: 1e-6, attention: 5e-7, swiglu: 1e-6 };
const GRAD_TOL = { matmul: 2e-6, rmsnorm: 2e-6, rope: 2.5e-7, attention: 2e-6, swiglu: 2e-6 };
/** Subset size for gradients of tensors larger than that (every element below it). */
const FD_SAMPLES = 50;

const SEED = testSeed('model/layers');
const ROOT = new Rng(SEED, 'layers');
const SEED_MSG = `seed ${SEED}; replay with SOPHIA_TEST_SEED=${SEED}`;

type NnArgs = Record<string, unknown>;
const nnOp = (args: NnArgs): void => {
  (addon() as unknown as { nnOp(a: NnArgs): void }).nnOp(args);
};

/** The worst |err| / scale seen per check kind, printed at the end (how much margin TOL leaves). */
const worst = new Map<string, { rel: number; tol: number }>();
afterAll(() => {
  const lines = [...worst].map(([k, v]) => `  ${k.padEnd(22)} worst ${v.rel.toExponential(2)}  tol ${v.tol.toExponential(1)}  (${((100 * v.rel) / v.tol).toFixed(1)}% used)`);
  console.log(`model/layers: worst error / scale per check\n${lines.join('\n')}`);
});

// Math's functions taken once: under jest a `Math.x` lookup costs ~100× the call (see oracle64.ts).
const { abs: fabs } = Math;

/** |got − exp| ≤ tol · scale(i) everywhere (infinities must match exactly, NaN never passes). */
function check(kind: string, what: string, got: Num, exp: Num, scale: number | ((i: number) => number), tol: number): void {
  if (got.length !== exp.length) throw new Error(`${what}: length ${got.length}, expected ${exp.length} [${SEED_MSG}]`);
  const w = worst.get(kind) ?? { rel: 0, tol };
  let first = -1;
  let count = 0;
  for (let i = 0; i < exp.length; i++) {
    const sc = typeof scale === 'number' ? scale : scale(i);
    const d = fabs(got[i] - exp[i]);
    if (d <= tol * sc || got[i] === exp[i]) {
      if (d / sc > w.rel) w.rel = d / sc;
      continue;
    }
    if (d / sc > w.rel) w.rel = d / sc;
    if (first < 0) first = i;
    count++;
  }
  worst.set(kind, w);
  if (first >= 0) {
    const i = first;
    const sc = typeof scale === 'number' ? scale : scale(i);
    throw new Error(
      `${what}: [${i}] got ${got[i]}, expected ${exp[i]} (|diff| ${fabs(got[i] - exp[i])}, tol ${tol * sc} = ${tol} × scale ${sc}); ` +
        `${count} of ${exp.length} entries off [${SEED_MSG}]`,
    );
  }
}

const pick = (x: Num, idx: readonly number[]): Float64Array => Float64Array.from(idx, (i) => x[i]);
const absOf = (x: Num): Float64Array => Float64Array.from(x as ArrayLike<number>, (v) => fabs(v));
const nanArray = (n: number): Float32Array => new Float32Array(n).fill(NaN);
const addInto = (a: Num, b: Num): Float64Array => Float64Array.from(a as ArrayLike<number>, (v, i) => v + b[i]);

/**
 * The native gradient `got` (all elements) against FD of L = Σ f(x) ⊙ R at up to FD_SAMPLES
 * indices; `prefill`: the values an accumulating output held before (expected: prefill + grad).
 */
function checkGrad(kind: keyof typeof GRAD_TOL, what: string, rng: Rng, got: Num, f: (x: Float64Array) => Num, x: Num, R: Num, opt: { prefill?: Num; h?: number; terms?: number } = {}): void {
  const { prefill, h = 1e-6, terms = 0 } = opt;
  const idx = sampleIndices(rng, x.length, FD_SAMPLES);
  const fd = fdGrad(f, x, R, idx, h);
  const exp = prefill ? Float64Array.from(idx, (i, j) => prefill[i] + fd[j]) : fd;
  const scale = Math.max(maxAbs(fd) + (prefill ? maxAbs(pick(prefill, idx)) : 0) + terms, 1e-30);
  check(`${kind} backward`, `${what} (indices ${idx.length < x.length ? 'sampled' : 'all'})`, pick(got, idx), exp, scale, GRAD_TOL[kind]);
}

// ------------------------------------------------------------------ CPU kernel builds

const ORIGINAL_ISA = addon().info().simd as 'base' | 'avx2' | 'avx512';
const ISAS = (['base', 'avx2', 'avx512'] as const).filter((isa) => {
  try {
    addon().setCpuIsa({ isa });
    return true;
  } catch {
    return false;
  }
});
addon().setCpuIsa({ isa: ORIGINAL_ISA });
afterAll(() => addon().setCpuIsa({ isa: ORIGINAL_ISA }));

function onEachIsa(body: (isa: string) => void): void {
  try {
    for (const isa of ISAS) {
      addon().setCpuIsa({ isa });
      body(isa);
    }
  } finally {
    addon().setCpuIsa({ isa: ORIGINAL_ISA });
  }
}

// ------------------------------------------------------------------ thread pool

// KNOWN BUG (native/cpu/threadpool.cpp), found by the gemm grid below, which it crashes: a worker
// that wakes after a parallel job has finished reads job_ == nullptr (or a pointer to a function
// already gone) under the lock, releases the lock, and then, in work(), claims a chunk of the
// *next* job, which parallel_for posted meanwhile, and calls the stale pointer: SIGSEGV in
// ThreadPool::work (`cmpq $0,0x10(%r12)` with r12 = 0). Back-to-back jobs with tiny chunks make the
// window wide: GEMM with M = 1 (pack_b, then the tile tasks, per K block). Run in a child process so
// the crash is reported here instead of killing the jest worker; in-process tests that hit it
// still die with the worker until the pool is fixed (the fix: take job_ under the same lock as
// the chunk claim, and skip when no job is posted).
describe('thread pool', () => {
  test('back-to-back small parallel jobs (gemm M=1, matmul N=1 with backward) do not crash the process', () => {
    // Each child hammers the pool for 0.5 s with 2 workers; the race is timing-dependent (about half
    // the children crash while it is there), so up to 6 children run, stopping at the first crash.
    const script = `
      const a = require(${JSON.stringify(native().path)});
      const f = (n) => new Float32Array(n).fill(1);
      const g = { op: 'gemm', M: 1, N: 130, K: 1, A: f(1), B: f(130), C: f(130) };
      const m = { op: 'matmul', N: 1, I: 64, O: 130, inp: f(64), W: f(8320), bias: f(130), out: f(130),
                  dout: f(130), dinp: f(64), dW: f(8320), dbias: f(130) };
      const t0 = Date.now();
      while (Date.now() - t0 < 500) {
        for (let r = 0; r < 200; r++) a.nnOp(g);
        for (let r = 0; r < 20; r++) a.nnOp(m);
      }
      process.stdout.write('done');`;
    for (let child = 0; child < 6; child++) {
      const res = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, SOPHIA_NUM_THREADS: '2' }, encoding: 'utf8', timeout: 30000 });
      expect({ child, signal: res.signal, status: res.status, stdout: res.stdout, stderr: res.stderr.slice(-500) }).toEqual({ child, signal: null, status: 0, stdout: 'done', stderr: '' });
    }
  });
});

// ------------------------------------------------------------------ gemm

const GEMM_M = [1, 7, 37, 100];
const GEMM_K = [1, 3, 257, 600]; // 257 crosses the 256-deep K block
const GEMM_N = [1, 5, 33, 130];

describe('gemm', () => {
  test.each(ISAS)('every M × K × N of the grid, all four transposes, overwrite and accumulate (%s kernels)', (isa) => {
    const rng = ROOT.fork(`gemm/${isa}`);
    try {
      addon().setCpuIsa({ isa });
      for (const M of GEMM_M)
        for (const K of GEMM_K)
          for (const N of GEMM_N) {
            const A = randn(rng, M * K);
            const B = randn(rng, K * N);
            const C0 = randn(rng, M * N);
            const At = transpose(A, M, K); // stored [K, M]
            const Bt = transpose(B, K, N); // stored [N, K]
            const prod = gemm64(M, N, K, A, B);
            const absProd = gemm64(M, N, K, absOf(A), absOf(B));
            for (const accumulate of [false, true]) {
              const exp = accumulate ? addInto(prod, C0) : prod;
              const scale = maxAbs(accumulate ? addInto(absProd, absOf(C0)) : absProd);
              for (const tA of [false, true])
                for (const tB of [false, true]) {
                  const C = accumulate ? C0.slice() : nanArray(M * N);
                  nnOp({ op: 'gemm', M, N, K, A: tA ? At : A, B: tB ? Bt : B, C, tA, tB, accumulate });
                  check('gemm', `gemm ${isa} M=${M} K=${K} N=${N} tA=${tA} tB=${tB} accumulate=${accumulate}`, C, exp, scale, TOL.gemm);
                }
            }
          }
    } finally {
      addon().setCpuIsa({ isa: ORIGINAL_ISA });
    }
  });

  test('K = 0: C is zeroed, or left as it was when accumulating; M = 0 or N = 0: nothing to do', () => {
    const rng = ROOT.fork('gemm/empty');
    const C0 = randn(rng, 3 * 4);
    const C = C0.slice();
    nnOp({ op: 'gemm', M: 3, N: 4, K: 0, A: new Float32Array(0), B: new Float32Array(0), C, accumulate: true });
    expect(C).toEqual(C0);
    nnOp({ op: 'gemm', M: 3, N: 4, K: 0, A: new Float32Array(0), B: new Float32Array(0), C });
    expect(C).toEqual(new Float32Array(12));
    nnOp({ op: 'gemm', M: 0, N: 4, K: 5, A: new Float32Array(0), B: randn(rng, 20), C: new Float32Array(0) });
    nnOp({ op: 'gemm', M: 3, N: 0, K: 5, A: randn(rng, 15), B: new Float32Array(0), C: new Float32Array(0), tA: true, tB: true });
  });
});

// ------------------------------------------------------------------ matmul

describe('matmul', () => {
  test('forward over a grid of N × I × O, with and without bias', () => {
    const rng = ROOT.fork('matmul/forward');
    for (const N of GEMM_N)
      for (const I of GEMM_K)
        for (const O of GEMM_M) {
          const inp = randn(rng, N * I);
          const W = randn(rng, O * I);
          const bias = randn(rng, O);
          for (const withBias of [false, true]) {
            const out = nanArray(N * O);
            nnOp({ op: 'matmul', N, I, O, inp, W, bias: withBias ? bias : undefined, out });
            const b = withBias ? bias : undefined;
            const scale = maxAbs(matmul64(N, I, O, absOf(inp), absOf(W), b && absOf(b)));
            check('matmul', `matmul N=${N} I=${I} O=${O} bias=${withBias}`, out, matmul64(N, I, O, inp, W, b), scale, TOL.matmul);
          }
        }
  });

  // [N, I, O, bias]: N = 130 spans three 64-row chunks of the dbias / dW reductions.
  const CASES: [number, number, number, boolean][] = [
    [1, 1, 1, true],
    [5, 3, 7, true],
    [4, 6, 5, false],
    [33, 257, 37, true],
    [130, 40, 9, true],
  ];
  test.each(CASES)('backward vs FD, N=%i I=%i O=%i bias=%s: dinp overwritten, dW and dbias added to (every kernel build)', (N, I, O, withBias) => {
    const rng = ROOT.fork(`matmul/backward/${N}/${I}/${O}`);
    const inp = randn(rng, N * I);
    const W = randn(rng, O * I);
    const bias = withBias ? randn(rng, O) : undefined;
    const R = randn(rng, N * O);
    const preW = randn(rng, O * I);
    const preB = randn(rng, O);
    const tag = `matmul N=${N} I=${I} O=${O}`;
    onEachIsa((isa) => {
      const out = nanArray(N * O);
      const dinp = nanArray(N * I);
      const dW = preW.slice();
      const dbias = withBias ? preB.slice() : undefined;
      nnOp({ op: 'matmul', N, I, O, inp, W, bias, out, dout: R, dinp, dW, dbias });
      const scale = maxAbs(matmul64(N, I, O, absOf(inp), absOf(W), bias && absOf(bias)));
      check('matmul', `${tag} forward (${isa})`, out, matmul64(N, I, O, inp, W, bias), scale, TOL.matmul);
      const g = rng.fork(isa);
      checkGrad('matmul', `${tag} dinp (${isa})`, g, dinp, (x) => matmul64(N, I, O, x, W, bias), inp, R);
      checkGrad('matmul', `${tag} dW (${isa})`, g, dW, (w) => matmul64(N, I, O, inp, w, bias), W, R, { prefill: preW });
      if (bias && dbias) checkGrad('matmul', `${tag} dbias (${isa})`, g, dbias, (b) => matmul64(N, I, O, inp, W, b), bias, R, { prefill: preB });
    });
  });

  test('two backward calls add the gradient twice into dW and dbias', () => {
    const rng = ROOT.fork('matmul/twice');
    const [N, I, O] = [6, 5, 4];
    const inp = randn(rng, N * I);
    const W = randn(rng, O * I);
    const bias = randn(rng, O);
    const R = randn(rng, N * O);
    const dW = new Float32Array(O * I).fill(0.5);
    const dbias = new Float32Array(O).fill(-2);
    for (let k = 0; k < 2; k++) nnOp({ op: 'matmul', N, I, O, inp, W, bias, out: new Float32Array(N * O), dout: R, dinp: new Float32Array(N * I), dW, dbias });
    const all = (n: number) => Array.from({ length: n }, (_, i) => i);
    const gW = fdGrad((w) => matmul64(N, I, O, inp, w, bias), W, R, all(O * I));
    const gB = fdGrad((b) => matmul64(N, I, O, inp, W, b), bias, R, all(O));
    check('matmul backward', 'dW after two calls', dW, gW.map((v) => 0.5 + 2 * v), maxAbs(gW) * 2 + 0.5, GRAD_TOL.matmul);
    check('matmul backward', 'dbias after two calls', dbias, gB.map((v) => -2 + 2 * v), maxAbs(gB) * 2 + 2, GRAD_TOL.matmul);
  });
});

// ------------------------------------------------------------------ rmsnorm

/** max_n rstd_n · max_i |w_i · dout_ni|: the size of the two terms whose difference dx is. */
function rmsTerms(N: number, C: number, rstd: Num, w: Num, R: Num): number {
  let m = 0;
  for (let n = 0; n < N; n++)
    for (let i = 0; i < C; i++) {
      const t = rstd[n] * fabs(w[i] * R[n * C + i]);
      if (t > m) m = t;
    }
  return m;
}

describe('rmsnorm', () => {
  // [N, C]; N = 130 spans three 64-row chunks of the dw reduction.
  const CASES: [number, number][] = [
    [1, 1],
    [5, 3],
    [7, 64],
    [33, 257],
    [130, 100],
  ];
  test.each(CASES)('forward and backward vs the oracle and FD, N=%i C=%i: dx overwritten, dw added to', (N, C) => {
    const rng = ROOT.fork(`rmsnorm/${N}/${C}`);
    const eps = 1e-5;
    const x = randn(rng, N * C);
    const w = Float32Array.from(randn(rng, C), (v) => 1 + 0.5 * v);
    const R = randn(rng, N * C);
    const preW = randn(rng, C);
    const out = nanArray(N * C);
    const rstd = nanArray(N);
    const dx = nanArray(N * C);
    const dw = preW.slice();
    nnOp({ op: 'rmsnorm', N, C, eps, x, w, out, rstd, dout: R, dx, dw });
    const ref = rmsnorm64(N, C, eps, x, w);
    check('rmsnorm', `rmsnorm N=${N} C=${C} out`, out, ref.out, maxAbs(ref.out), TOL.rmsnorm);
    check('rmsnorm', `rmsnorm N=${N} C=${C} rstd`, rstd, ref.rstd, maxAbs(ref.rstd), TOL.rmsnorm);
    checkGrad('rmsnorm', `rmsnorm N=${N} C=${C} dx`, rng, dx, (v) => rmsnorm64(N, C, eps, v, w).out, x, R, { terms: rmsTerms(N, C, ref.rstd, w, R) });
    checkGrad('rmsnorm', `rmsnorm N=${N} C=${C} dw`, rng, dw, (v) => rmsnorm64(N, C, eps, x, v).out, w, R, { prefill: preW });
  });

  test('forward only (no dout) leaves dx and dw untouched', () => {
    const rng = ROOT.fork('rmsnorm/forward-only');
    const [N, C] = [3, 8];
    const x = randn(rng, N * C);
    const w = randn(rng, C);
    const dx = randn(rng, N * C);
    const dw = randn(rng, C);
    const [dx0, dw0] = [dx.slice(), dw.slice()];
    const out = new Float32Array(N * C);
    nnOp({ op: 'rmsnorm', N, C, eps: 1e-6, x, w, out, rstd: new Float32Array(N), dx, dw });
    expect(dx).toEqual(dx0);
    expect(dw).toEqual(dw0);
    const ref = rmsnorm64(N, C, 1e-6, x, w);
    check('rmsnorm', 'rmsnorm eps=1e-6', out, ref.out, maxAbs(ref.out), TOL.rmsnorm);
  });
});

// ------------------------------------------------------------------ rope

describe('rope', () => {
  // [N, heads, hd, theta]
  const CASES: [number, number, number, number][] = [
    [1, 1, 2, 10000],
    [7, 3, 8, 10000],
    [40, 2, 64, 10000],
    [9, 4, 6, 500000],
  ];
  const positions = (rng: Rng, N: number): Int32Array => {
    const pos = Int32Array.from({ length: N }, () => rng.int(0, 4095));
    pos[0] = 0;
    if (N > 2) pos[N - 1] = 65535;
    if (N > 3) pos[1] = 1;
    return pos;
  };
  /** Per-row scale of rope errors: max |t of the row| · (4 + |pos|). */
  const ropeScale = (t: Float32Array, pos: Int32Array, rowLen: number) => {
    const row = Float64Array.from(pos, (p, n) => Math.max(maxAbs(t.subarray(n * rowLen, (n + 1) * rowLen)), 1e-30) * (4 + Math.abs(p)));
    return (i: number) => row[(i / rowLen) | 0];
  };

  test.each(CASES)('forward and inverse vs the oracle, inverse(rope(x)) = x, N=%i heads=%i hd=%i theta=%d', (N, heads, hd, theta) => {
    const rng = ROOT.fork(`rope/${N}/${heads}/${hd}`);
    const x = randn(rng, N * heads * hd);
    const pos = positions(rng, N);
    const y = x.slice();
    nnOp({ op: 'rope', N, heads, hd, x: y, pos, theta });
    const tag = `rope N=${N} heads=${heads} hd=${hd} theta=${theta}`;
    check('rope', `${tag} forward`, y, rope64(N, heads, hd, x, pos, theta, false), ropeScale(x, pos, heads * hd), TOL.rope);
    const z = x.slice();
    nnOp({ op: 'rope', N, heads, hd, x: z, pos, theta, inverse: true });
    check('rope', `${tag} inverse`, z, rope64(N, heads, hd, x, pos, theta, true), ropeScale(x, pos, heads * hd), TOL.rope);
    // the same float angles both ways: only the rotations' own rounding is left
    nnOp({ op: 'rope', N, heads, hd, x: y, pos, theta, inverse: true });
    check('rope round trip', `${tag} inverse(rope(x))`, y, x, maxAbs(x), TOL.ropeRoundTrip);
  });

  test.each(CASES)('backward (inverse rotation of dout) vs FD, N=%i heads=%i hd=%i theta=%d', (N, heads, hd, theta) => {
    const rng = ROOT.fork(`rope/backward/${N}/${heads}/${hd}`);
    const x = randn(rng, N * heads * hd);
    const pos = positions(rng, N);
    const R = randn(rng, x.length);
    const dx = R.slice();
    nnOp({ op: 'rope', N, heads, hd, x: dx, pos, theta, inverse: true });
    const idx = sampleIndices(rng, x.length, FD_SAMPLES);
    const fd = fdGrad((v) => rope64(N, heads, hd, v, pos, theta, false), x, R, idx);
    const sc = ropeScale(R, pos, heads * hd);
    check('rope backward', `rope N=${N} heads=${heads} hd=${hd} dx`, pick(dx, idx), fd, (j) => sc(idx[j]), GRAD_TOL.rope);
  });
});

// ------------------------------------------------------------------ attention

interface AttnCase {
  H: number;
  Hkv: number;
  hd: number;
  lens: number[];
  causal: boolean;
  /**
   * Scale of q and k (large: large scores). Keys then come in twins (each odd position of a
   * sequence repeats the key before it plus noise of size 1/qk), so that rows split their weight
   * between two keys whose scores differ by O(1) and the gradients of q and k stay well above
   * float32 noise instead of vanishing in a saturated softmax.
   */
  qk?: number;
}

/** Runs one case forward (and backward) against the oracle; returns the oracle's max |score|. */
function runAttention(rng: Rng, c: AttnCase, backward: 'all' | 'sampled' | 'none'): number {
  const { H, Hkv, hd, causal } = c;
  const seq = seqOffsets(c.lens);
  const N = seq[seq.length - 1];
  const q = randn(rng, N * H * hd, c.qk ?? 1);
  const k = randn(rng, N * Hkv * hd, c.qk ?? 1);
  if (c.qk) {
    const noise = randn(rng, k.length, 1 / c.qk);
    for (let s = 0; s < c.lens.length; s++)
      for (let t = seq[s] + 1; t < seq[s + 1]; t += 2)
        for (let j = 0; j < Hkv * hd; j++) k[t * Hkv * hd + j] = k[(t - 1) * Hkv * hd + j] + noise[t * Hkv * hd + j];
  }
  const v = randn(rng, N * Hkv * hd);
  const R = randn(rng, N * H * hd);
  const out = nanArray(N * H * hd);
  const [dq, dk, dv] = [nanArray(q.length), nanArray(k.length), nanArray(v.length)];
  nnOp({ op: 'attention', H, Hkv, hd, seq, q, k, v, out, causal, ...(backward !== 'none' ? { dout: R, dq, dk, dv } : {}) });
  const ref = attention64(H, Hkv, hd, seq, q, k, v, causal);
  const tag = `attention H=${H} Hkv=${Hkv} hd=${hd} lens=[${c.lens.join(',')}] causal=${causal}${c.qk ? ` qk-scale=${c.qk}` : ''} (max score ${ref.maxScore.toFixed(1)})`;
  check('attention', `${tag} out`, out, ref.out, maxAbs(v) * (1 + ref.maxScore), TOL.attention);
  if (backward === 'none') return ref.maxScore;
  const g = rng.fork('fd');
  const att = (qq: Num, kk: Num, vv: Num) => attention64(H, Hkv, hd, seq, qq, kk, vv, causal).out;
  const sampled = backward === 'sampled';
  const grad = (what: string, got: Float32Array, f: (x: Float64Array) => Num, x: Float32Array) => {
    const idx = sampled ? sampleIndices(g, x.length, FD_SAMPLES) : Array.from({ length: x.length }, (_, i) => i);
    const fd = fdGrad(f, x, R, idx);
    check('attention backward', `${tag} ${what}`, pick(got, idx), fd, maxAbs(fd) * (1 + ref.maxScore), GRAD_TOL.attention);
  };
  grad('dq', dq, (x) => att(x, k, v), q);
  grad('dk', dk, (x) => att(q, x, v), k);
  grad('dv', dv, (x) => att(q, k, x), v);
  return ref.maxScore;
}

describe('attention', () => {
  const forwardCases: AttnCase[] = [];
  for (const Hkv of [2, 3, 6])
    for (const causal of [true, false])
      for (const hd of [8, 5]) forwardCases.push({ H: 6, Hkv, hd, lens: [1, 4, 7, 2, 1, 9], causal });
  test.each(forwardCases.map((c) => [c.Hkv, c.hd, c.causal, c] as const))('forward vs the oracle, H=6 Hkv=%i hd=%i causal=%s, packed lengths 1,4,7,2,1,9', (_a, _b, _c, c) => {
    runAttention(ROOT.fork(`attention/fwd/${c.Hkv}/${c.hd}/${c.causal}`), c, 'none');
  });

  const backwardCases: AttnCase[] = [];
  for (const Hkv of [2, 3, 6]) for (const causal of [true, false]) backwardCases.push({ H: 6, Hkv, hd: 4, lens: [1, 3, 5, 2], causal });
  test.each(backwardCases.map((c) => [c.Hkv, c.causal, c] as const))('backward vs FD on every element, H=6 Hkv=%i hd=4 causal=%s, packed lengths 1,3,5,2', (_a, _b, c) => {
    runAttention(ROOT.fork(`attention/bwd/${c.Hkv}/${c.causal}`), c, 'all');
  });

  test('one sequence of one token: out = v of its kv head, dq = dk = 0', () => {
    const rng = ROOT.fork('attention/one');
    const [H, Hkv, hd] = [4, 2, 3];
    const q = randn(rng, H * hd);
    const k = randn(rng, Hkv * hd);
    const v = randn(rng, Hkv * hd);
    const R = randn(rng, H * hd);
    const out = nanArray(H * hd);
    const [dq, dk, dv] = [nanArray(q.length), nanArray(k.length), nanArray(v.length)];
    nnOp({ op: 'attention', H, Hkv, hd, seq: new Int32Array([0, 1]), q, k, v, out, dout: R, dq, dk, dv });
    for (let h = 0; h < H; h++) for (let i = 0; i < hd; i++) expect(out[h * hd + i]).toBe(v[Math.floor(h / 2) * hd + i]);
    expect(Array.from(dq).every((x) => x === 0)).toBe(true);
    expect(Array.from(dk).every((x) => x === 0)).toBe(true);
    for (let g = 0; g < Hkv; g++)
      for (let i = 0; i < hd; i++) expect(dv[g * hd + i]).toBeCloseTo(R[2 * g * hd + i] + R[(2 * g + 1) * hd + i], 6);
  });
});

// ------------------------------------------------------------------ swiglu

describe('swiglu', () => {
  test.each([1, 7, 1000, 40000])('forward and backward vs the oracle and FD, n=%i (g up to ±200)', (n) => {
    const rng = ROOT.fork(`swiglu/${n}`);
    const g = randn(rng, n, 3);
    const extremes = [-200, -90, -20, -1.2784645, 20, 90, 200];
    for (let i = 0; i < Math.min(n, extremes.length); i++) g[(i * 7919) % n] = extremes[i];
    const u = randn(rng, n);
    const R = randn(rng, n);
    const h = nanArray(n);
    const [dg, du] = [nanArray(n), nanArray(n)];
    nnOp({ op: 'swiglu', n, g, u, h, dh: R, dg, du });
    const ref = swiglu64(g, u);
    check('swiglu', `swiglu n=${n} h`, h, ref, Math.max(maxAbs(ref), 1e-30), TOL.swiglu);
    checkGrad('swiglu', `swiglu n=${n} dg`, rng, dg, (x) => swiglu64(x, u), g, R);
    checkGrad('swiglu', `swiglu n=${n} du`, rng, du, (x) => swiglu64(g, x), u, R);
  });
});

// ------------------------------------------------------------------ edge cases

describe('edge cases', () => {
  test('empty batches (N = 0) are no-ops: outputs and accumulated gradients unchanged', () => {
    const rng = ROOT.fork('edge/empty');
    const e = () => new Float32Array(0);
    const dW = randn(rng, 12);
    const dbias = randn(rng, 3);
    const [dW0, db0] = [dW.slice(), dbias.slice()];
    nnOp({ op: 'matmul', N: 0, I: 4, O: 3, inp: e(), W: randn(rng, 12), bias: randn(rng, 3), out: e(), dout: e(), dinp: e(), dW, dbias });
    expect(dW).toEqual(dW0);
    expect(dbias).toEqual(db0);
    const dw = randn(rng, 5);
    const dw0 = dw.slice();
    nnOp({ op: 'rmsnorm', N: 0, C: 5, x: e(), w: randn(rng, 5), out: e(), rstd: e(), dout: e(), dx: e(), dw });
    expect(dw).toEqual(dw0);
    nnOp({ op: 'rope', N: 0, heads: 2, hd: 4, x: e(), pos: new Int32Array(0) });
    nnOp({ op: 'swiglu', n: 0, g: e(), u: e(), h: e(), dh: e(), dg: e(), du: e() });
    nnOp({ op: 'gemm', M: 0, N: 0, K: 0, A: e(), B: e(), C: e() });
  });

  test('attention refuses an empty batch with an error (it needs one sequence of at least one token), without crashing', () => {
    const e = () => new Float32Array(0);
    expectError(() => nnOp({ op: 'attention', H: 2, Hkv: 1, hd: 4, seq: new Int32Array([0]), q: e(), k: e(), v: e(), out: e() }), 'E_SHAPE', /seq/);
    expectError(() => nnOp({ op: 'attention', H: 2, Hkv: 1, hd: 4, seq: new Int32Array([0, 0]), q: e(), k: e(), v: e(), out: e() }), 'E_RANGE', /seq.*0 tokens/);
  });

  test('rmsnorm with activations around 1e3 (forward, and backward vs FD with h relative to x)', () => {
    const rng = ROOT.fork('edge/rms-large');
    const [N, C, eps] = [5, 64, 1e-5];
    const x = randn(rng, N * C, 1000);
    const w = Float32Array.from(randn(rng, C), (v) => 1 + 0.5 * v);
    const R = randn(rng, N * C);
    const preW = randn(rng, C);
    const [out, rstd, dx, dw] = [nanArray(N * C), nanArray(N), nanArray(N * C), preW.slice()];
    nnOp({ op: 'rmsnorm', N, C, eps, x, w, out, rstd, dout: R, dx, dw });
    const ref = rmsnorm64(N, C, eps, x, w);
    check('rmsnorm', 'rmsnorm x~1e3 out', out, ref.out, maxAbs(ref.out), TOL.rmsnorm);
    check('rmsnorm', 'rmsnorm x~1e3 rstd', rstd, ref.rstd, maxAbs(ref.rstd), TOL.rmsnorm);
    checkGrad('rmsnorm', 'rmsnorm x~1e3 dx', rng, dx, (v) => rmsnorm64(N, C, eps, v, w).out, x, R, { h: 1e-3, terms: rmsTerms(N, C, ref.rstd, w, R) });
    checkGrad('rmsnorm', 'rmsnorm x~1e3 dw', rng, dw, (v) => rmsnorm64(N, C, eps, x, v).out, w, R, { prefill: preW });
  });

  test('attention with very large scores (q·k/sqrt(hd) beyond 50, and in the hundreds; twin keys): no overflow, matches the oracle and FD', () => {
    for (const [qk, least] of [
      [5, 50],
      [12, 250],
    ])
      for (const causal of [true, false]) {
        const maxScore = runAttention(ROOT.fork(`edge/attn-large/${qk}/${causal}`), { H: 4, Hkv: 2, hd: 16, lens: [6, 1, 9], causal, qk }, 'all');
        expect(maxScore).toBeGreaterThan(least);
      }
  });

  test('attention over a 300-token sequence packed with shorter ones (forward GQA both masks; backward sampled)', () => {
    runAttention(ROOT.fork('edge/long/causal'), { H: 6, Hkv: 2, hd: 16, lens: [300, 17, 1], causal: true }, 'none');
    runAttention(ROOT.fork('edge/long/bi'), { H: 6, Hkv: 2, hd: 16, lens: [1, 300], causal: false }, 'none');
    runAttention(ROOT.fork('edge/long/bwd'), { H: 2, Hkv: 1, hd: 4, lens: [300, 3], causal: true }, 'sampled');
  });
});

// ------------------------------------------------------------------ argument errors

describe('argument errors', () => {
  const f = (n: number) => new Float32Array(n);
  test('wrong lengths: E_SHAPE naming the argument', () => {
    expectError(() => nnOp({ op: 'gemm', M: 2, N: 3, K: 4, A: f(7), B: f(12), C: f(6) }), 'E_SHAPE', /nnOp: A must have 8 elements, got 7/);
    expectError(() => nnOp({ op: 'gemm', M: 2, N: 3, K: 4, A: f(8), B: f(12), C: f(5) }), 'E_SHAPE', /C must have 6/);
    expectError(() => nnOp({ op: 'matmul', N: 2, I: 3, O: 4, inp: f(6), W: f(11), out: f(8) }), 'E_SHAPE', /W must have 12/);
    expectError(() => nnOp({ op: 'matmul', N: 2, I: 3, O: 4, inp: f(6), W: f(12), out: f(8), dout: f(8), dinp: f(6), dW: f(12), bias: f(4), dbias: f(3) }), 'E_SHAPE', /dbias must have 4/);
    expectError(() => nnOp({ op: 'rmsnorm', N: 2, C: 3, x: f(6), w: f(3), out: f(6), rstd: f(3) }), 'E_SHAPE', /rstd must have 2/);
    expectError(() => nnOp({ op: 'rope', N: 2, heads: 1, hd: 4, x: f(8), pos: new Int32Array(3) }), 'E_SHAPE', /pos must have 2/);
    const seq = new Int32Array([0, 2, 5]);
    expectError(() => nnOp({ op: 'attention', H: 2, Hkv: 1, hd: 4, seq, q: f(40), k: f(20), v: f(20), out: f(39) }), 'E_SHAPE', /out must have 40/);
    expectError(() => nnOp({ op: 'attention', H: 2, Hkv: 1, hd: 4, seq, q: f(40), k: f(20), v: f(20), out: f(40), dout: f(40), dq: f(40), dk: f(16), dv: f(20) }), 'E_SHAPE', /dk must have 20/);
    expectError(() => nnOp({ op: 'swiglu', n: 4, g: f(4), u: f(3), h: f(4) }), 'E_SHAPE', /u must have 4/);
  });

  test('out-of-range sizes: E_RANGE', () => {
    const seq = new Int32Array([0, 3]);
    expectError(() => nnOp({ op: 'attention', H: 6, Hkv: 4, hd: 2, seq, q: f(36), k: f(24), v: f(24), out: f(36) }), 'E_RANGE', /Hkv must divide H \(6\), got 4/);
    expectError(() => nnOp({ op: 'attention', H: 6, Hkv: 0, hd: 2, seq, q: f(36), k: f(0), v: f(0), out: f(36) }), 'E_RANGE', /Hkv/);
    expectError(() => nnOp({ op: 'attention', H: 2, hd: 2, seq: new Int32Array([1, 3]), q: f(12), k: f(12), v: f(12), out: f(12) }), 'E_RANGE', /seq\[0\] must be 0/);
    expectError(() => nnOp({ op: 'rope', N: 1, heads: 1, hd: 3, x: f(3), pos: new Int32Array(1) }), 'E_RANGE', /hd must be even/);
    expectError(() => nnOp({ op: 'matmul', N: 1, I: 0, O: 1, inp: f(0), W: f(0), out: f(1) }), 'E_RANGE', /I must be an integer/);
    expectError(() => nnOp({ op: 'gemm', M: -1, N: 1, K: 1, A: f(0), B: f(1), C: f(0) }), 'E_RANGE', /M must be an integer/);
  });

  test('unknown op and missing arrays: E_CONFIG; wrong types: E_TYPE / E_DTYPE', () => {
    expectError(() => nnOp({ op: 'conv2d' }), 'E_CONFIG', /op must be one of 'gemm', 'matmul', 'rmsnorm', 'rope', 'attention', 'swiglu', got "conv2d"/);
    expectError(() => nnOp({ op: 7 }), 'E_TYPE', /op must be one of/);
    expectError(() => nnOp({ op: 'matmul', N: 1, I: 2, O: 2, inp: f(2), W: f(4), out: f(2), dout: f(2), dinp: f(2) }), 'E_CONFIG', /dW is required/);
    expectError(() => nnOp({ op: 'gemm', M: 1, N: 1, K: 1, A: new Float64Array(1), B: f(1), C: f(1) }), 'E_DTYPE', /A must be a Float32Array/);
    expectError(() => nnOp({ op: 'rope', N: 1, heads: 1, hd: 2, x: f(2), pos: f(1) }), 'E_DTYPE', /pos/);
    expectError(() => nnOp({ op: 'gemm', M: 1, N: 1, K: 1, A: [1], B: f(1), C: f(1) }), 'E_TYPE', /A must be a Float32Array/);
  });

  test('a missing op is refused with E_CONFIG', () => {
    const h = new Float32Array(2);
    expectError(() => nnOp({ n: 2, g: new Float32Array([1, 2]), u: new Float32Array([1, 1]), h }), 'E_CONFIG', /op/);
  });
});
