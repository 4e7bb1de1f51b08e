/**
 * CUDA kernels vs the CPU kernels (and the float64 oracle). Runs only where loadBackend('cuda')
 * finds a usable GPU; elsewhere every test here is reported as skipped, with the reason printed.
 */
import { probeCuda } from '../helpers/cuda';
import { logprobs, logprobsSync } from '../../lib/ops/logprobs';
import { grpoLoss, grpoLossSync, type GrpoLossOptions, type GrpoLossResult } from '../../lib/ops/grpoLoss';
import { Tensor } from '../../lib/tensor';
import {
  DTYPES, KL_TYPES, LOSS_AGGS, Rng, expectClose, expectScalar, gradValues, grpoOracle, logitsTensor, logprobsOracle,
  randomGrpoCase, sameBytes, testSeed, type FloatDType, type GrpoCase,
} from './oracle';

// Tolerances. Each backend is within AT·(1 + max|z|) (fp32 error unit, scaled by the row's gradient
// scale for gradients) and half an ulp of the output dtype of the exact value, so GPU and CPU may
// differ by twice that.
const RT = 1e-5;
const AT = 4e-6;
const GRAD_RTOL: Record<FloatDType, number> = { f32: 1e-5, bf16: 2 ** -8, f16: 2 ** -11 };
const GRAD_ATOL: Record<FloatDType, number> = { f32: 0, bf16: 0, f16: 2 ** -24 };

// Device tensors need the process backend to be the CUDA binary (probeCuda sets it).
const { cuda, reason } = probeCuda('cuda-parity');

const SEED = testSeed('cuda-parity.test');
const root = new Rng(SEED);
const where = (what: string) => `seed ${SEED}, ${what}`;

const gpuDescribe = cuda ? describe : describe.skip;

if (!cuda) {
  test.skip(`CUDA parity (skipped: ${reason})`, () => undefined);
}

/** GPU vs CPU (and both vs the oracle) for one grpoLoss case. */
async function compareGrpo(name: string, c: GrpoCase, dtype: FloatDType, opts: GrpoLossOptions = c.opts) {
  const msg = where(`${name}: ${c.describe}`);
  const cpu = grpoLossSync(c.inputs, opts);
  const dev = c.inputs.logits!.toDevice();
  try {
    expect(dev.device).toBe('cuda');
    const gpu = await grpoLoss({ ...c.inputs, logits: dev }, opts);
    const gpuSync = grpoLossSync({ ...c.inputs, logits: dev }, opts);
    expect(gpuSync.metrics).toEqual(gpu.metrics);
    checkPair(msg, c, cpu, gpu, dtype, opts);
    if (opts.backward !== false) {
      expect(gpu.gradLogits!.device).toBe('cuda');
      expect(sameBytes(gpuSync.gradLogits!.toHost().data, gpu.gradLogits!.toHost().data)).toBe(true);
      // in place on the device: same gradient as out of place
      const dev2 = c.inputs.logits!.toDevice();
      const ip = await grpoLoss({ ...c.inputs, logits: dev2 }, { ...opts, inplace: true });
      expect(ip.gradLogits).toBe(dev2);
      expect(sameBytes(dev2.toHost().data, gpu.gradLogits!.toHost().data)).toBe(true);
      dev2.dispose();
      gpu.gradLogits!.dispose();
      gpuSync.gradLogits!.dispose();
    }
  } finally {
    dev.dispose();
  }
}

function checkPair(msg: string, c: GrpoCase, cpu: GrpoLossResult, gpu: GrpoLossResult, dtype: FloatDType, opts: GrpoLossOptions) {
  const o = grpoOracle(c.oracle, { ...c.opts, ...opts });
  let tol = 1e-12;
  o.tok.forEach((tk, t) => {
    if (tk) tol += Math.abs(o.w[t]) * (RT * (Math.abs(tk.loss) + Math.abs(tk.kl) + Math.abs(tk.entropy)) + AT * (1 + tk.mag) * (Math.abs(tk.dPg) + Math.abs(tk.dKl) + 2));
  });
  for (const [what, a, b, e] of [
    ['loss', gpu.loss, cpu.loss, o.loss],
    ['pgLoss', gpu.metrics.pgLoss, cpu.metrics.pgLoss, o.metrics.pgLoss],
    ['klLoss', gpu.metrics.klLoss, cpu.metrics.klLoss, o.metrics.klLoss],
    ['entropy', gpu.metrics.entropy, cpu.metrics.entropy, o.metrics.entropy],
    ['ppoKl', gpu.metrics.ppoKl, cpu.metrics.ppoKl, o.metrics.ppoKl],
  ] as const) {
    expectScalar(`${what} gpu vs cpu`, msg, a, b, 2 * tol);
    expectScalar(`${what} gpu vs oracle`, msg, a, e, tol);
  }
  expect(gpu.metrics.clipFrac).toBe(cpu.metrics.clipFrac);
  expect(gpu.metrics.nonFinite).toBe(cpu.metrics.nonFinite);
  if (!cpu.gradLogits) {
    expect(gpu.gradLogits).toBeUndefined();
    return;
  }
  const V = c.oracle.V!;
  const g = gradValues(gpu.gradLogits!.toHost());
  const h = gradValues(cpu.gradLogits);
  const unit = (i: number, exp: number) => {
    const t = Math.floor(i / V);
    return GRAD_RTOL[dtype] * Math.abs(exp) + GRAD_ATOL[dtype] + AT * (1 + (o.tok[t]?.mag ?? 0)) * o.gradScale[t] * (1 + GRAD_RTOL[dtype]);
  };
  expectClose('gradLogits gpu vs cpu', msg, g, h, (i) => 2 * unit(i, h[i]));
  expectClose('gradLogits gpu vs oracle', msg, g, o.gradLogits!, (i) => unit(i, o.gradLogits![i]));
}

gpuDescribe(`CUDA vs CPU: logprobs [seed ${SEED}]`, () => {
  const N_FOR_V: Record<number, number> = { 1: 64, 7: 300, 4096: 64, 32000: 16, 151936: 6 };
  for (const V of [1, 7, 4096, 32000, 151936]) {
    test.each(DTYPES)(`V=${V} %s`, async (dtype) => {
      const rng = root.fork(`logprobs ${V} ${dtype}`);
      const N = N_FOR_V[V];
      const src = new Float32Array(N * V);
      for (let t = 0; t < N; t++) {
        const s = rng.uniform(0.5, 4), off = rng.uniform(-20, 20);
        for (let j = 0; j < V; j++) src[t * V + j] = t === 1 ? off + (12 * j) / V : off + s * rng.normal();
      }
      if (V > 1) src[2 * V] = -Infinity;
      const { tensor, x } = logitsTensor(src, N, V, dtype);
      const labels = Int32Array.from({ length: N }, () => rng.int(0, V - 1));
      if (V > 1) labels[2] = 1;
      const temperature = rng.pick([1, 0.7]);
      const cpu = logprobsSync(tensor, labels, { temperature, entropy: true });
      const dev = tensor.toDevice();
      const gpu = await logprobs(dev, labels, { temperature, entropy: true });
      const gpuSync = logprobsSync(dev, labels, { temperature, entropy: true });
      dev.dispose();
      expect(sameBytes(gpu.logp, gpuSync.logp)).toBe(true);
      const o = logprobsOracle(x, N, V, labels, temperature);
      const tol = (exp: ArrayLike<number>) => (i: number) => RT * Math.abs(exp[i]) + AT * (1 + o.mag[i]);
      const msg = where(`logprobs V=${V} ${dtype}`);
      expectClose('logp gpu vs cpu', msg, gpu.logp, cpu.logp, (i) => 2 * tol(cpu.logp)(i));
      expectClose('entropy gpu vs cpu', msg, gpu.entropy!, cpu.entropy!, (i) => 2 * tol(cpu.entropy!)(i));
      expectClose('logp gpu vs oracle', msg, gpu.logp, o.logp, tol(o.logp));
      expectClose('entropy gpu vs oracle', msg, gpu.entropy!, o.entropy, tol(o.entropy));
    });
  }

  test('NaN / +inf / all −inf rows and N > 65,535 rows (grid limit)', async () => {
    const rng = root.fork('logprobs many rows');
    const N = 70000, V = 8;
    const src = Float32Array.from({ length: N * V }, () => rng.normal() * 2);
    src[5 * V + 3] = NaN;
    src[N * V - 1] = Infinity;
    for (let j = 0; j < V; j++) src[100 * V + j] = -Infinity;
    const { tensor } = logitsTensor(src, N, V, 'f32');
    const labels = Int32Array.from({ length: N }, () => rng.int(0, V - 1));
    const cpu = logprobsSync(tensor, labels, { entropy: true });
    const dev = tensor.toDevice();
    const gpu = await logprobs(dev, labels, { entropy: true });
    dev.dispose();
    for (const t of [5, 100, N - 1]) expect([t, gpu.logp[t], gpu.entropy![t]]).toEqual([t, NaN, NaN]);
    expectClose('logp', where('many rows'), gpu.logp, cpu.logp, (i) => 2 * (RT * Math.abs(cpu.logp[i]) + AT * 10));
    expectClose('entropy', where('many rows'), gpu.entropy!, cpu.entropy!, (i) => 2 * (RT * Math.abs(cpu.entropy![i]) + AT * 10));
  });
});

gpuDescribe(`CUDA vs CPU: grpoLoss forward and gradient [seed ${SEED}]`, () => {
  const N_FOR_V: Record<number, number> = { 1: 32, 7: 64, 4096: 16, 32000: 6, 151936: 3 };
  for (const V of [1, 7, 4096, 32000, 151936]) {
    test.each(DTYPES)(`V=${V} %s, random options`, async (dtype) => {
      const rng = root.fork(`grpo ${V} ${dtype}`);
      const N = N_FOR_V[V];
      const opts: GrpoLossOptions = {
        lossAgg: rng.pick(LOSS_AGGS), klType: rng.pick(KL_TYPES), klCoef: rng.pick([0, 0.04, 0.3]),
        entropyCoef: rng.pick([0, 1e-3, 0.05]), temperature: rng.pick([1, 0.7]), dualClip: rng.pick([0, 3]), clipHigh: rng.pick([0.2, 0.28]),
      };
      const c = randomGrpoCase(rng, { N, V, dtype, B: rng.int(1, Math.max(1, N - 1)), opts, mask: rng.pick(['none', 'u8', 'f32'] as const), advPer: rng.pick(['sequence', 'token'] as const), withRef: true, negInf: V > 1 ? 0.05 : 0 });
      await compareGrpo('grpo', c, dtype);
      await compareGrpo('grpo forward only', c, dtype, { ...c.opts, backward: false });
    });
  }

  test.each(DTYPES)('masked rows, NaN rows, a fully masked batch and N = 0 on the device (%s)', async (dtype) => {
    const rng = root.fork(`grpo edge ${dtype}`);
    const N = 8, V = 64;
    const c = randomGrpoCase(rng, { N, V, dtype, B: 3, opts: { entropyCoef: 0.01, klCoef: 0.1 }, mask: 'u8' });
    const data = c.inputs.logits!.data as Float32Array | Uint16Array;
    c.inputs.mask![0] = 1;
    c.inputs.mask![1] = 0;
    c.inputs.labels![1] = V + 5; // masked: never read
    for (let j = 0; j < V; j++) data[1 * V + j] = dtype === 'f32' ? NaN : 0x7fc0;
    c.inputs.mask![2] = 1;
    data[2 * V + 4] = dtype === 'f32' ? NaN : 0x7fc0;
    c.oracle.x = Float64Array.from(c.inputs.logits!.toFloat32());
    const dev = c.inputs.logits!.toDevice();
    const gpu = await grpoLoss({ ...c.inputs, logits: dev }, c.opts);
    const cpu = grpoLossSync(c.inputs, c.opts);
    expect(gpu.metrics.nonFinite).toBe(1);
    expect(cpu.metrics.nonFinite).toBe(1);
    const g = gradValues(gpu.gradLogits!.toHost());
    for (let j = 0; j < V; j++) {
      expect(g[1 * V + j]).toBe(0);
      expect(g[2 * V + j]).toBeNaN();
    }
    const allMasked = await grpoLoss({ ...c.inputs, logits: dev, mask: new Uint8Array(N) }, c.opts);
    expect(allMasked.loss).toBe(0);
    expect(Array.from(gradValues(allMasked.gradLogits!.toHost()), Math.abs)).toEqual(new Array(N * V).fill(0));
    dev.dispose();
    const empty = Tensor.from(dtype === 'f32' ? new Float32Array(0) : new Uint16Array(0), [0, V], dtype).toDevice();
    const r0 = await grpoLoss({ logits: empty, labels: new Int32Array(0), oldLogp: new Float32Array(0), advantages: new Float32Array(1), seqStarts: Int32Array.of(0, 0) }, {});
    expect(r0.loss).toBe(0);
    expect(r0.gradLogits!.shape).toEqual([0, V]);
  });

  test('N > 65,535 rows (grid limit), f32 and bf16', async () => {
    for (const dtype of ['f32', 'bf16'] as const) {
      const rng = root.fork(`grpo many rows ${dtype}`);
      const c = randomGrpoCase(rng, { N: 70000, V: 8, dtype, B: 500, opts: { klCoef: 0.04, entropyCoef: 1e-3 }, mask: 'u8' });
      await compareGrpo('many rows', c, dtype);
    }
  });

  test('row offsets past 2^31 elements (bf16, V = 151936): rows beyond the boundary match the oracle', async () => {
    const free = cuda!.cuda?.device?.freeMemory ?? 0;
    if (free < 16e9) {
      console.log(`cuda-parity: the 2^31-element case needs 16 GB of free GPU memory, ${free} bytes free; not run`);
      return;
    }
    const rng = root.fork('int64 offsets');
    const V = 151936;
    const N = Math.ceil(2 ** 31 / V) + 4; // last rows start past 2^31 elements
    const templates = Array.from({ length: 3 }, () => {
      const off = rng.uniform(-5, 5);
      return quantRow(Float32Array.from({ length: V }, () => off + 2 * rng.normal()));
    });
    const data = new Uint16Array(N * V);
    for (let t = 0; t < N; t++) data.set(templates[t % 3].bits, t * V);
    const labels = Int32Array.from({ length: N }, () => rng.int(0, V - 1));
    const dev = Tensor.from(data, [N, V], 'bf16').toDevice();
    const gpu = await logprobs(dev, labels, { entropy: true });
    const rows = [0, 1, N - 4, N - 3, N - 2, N - 1];
    for (const t of rows) {
      const tp = templates[t % 3];
      const o = logprobsOracle(tp.values, 1, V, [labels[t]]);
      const tol = (e: number) => RT * Math.abs(e) + AT * (1 + o.mag[0]);
      expectClose(`row ${t} logp`, where('int64 offsets'), [gpu.logp[t]], [o.logp[0]], () => tol(o.logp[0]));
      expectClose(`row ${t} entropy`, where('int64 offsets'), [gpu.entropy![t]], [o.entropy[0]], () => tol(o.entropy[0]));
    }
    dev.dispose();
  }, 300000);
});

function quantRow(src: Float32Array): { bits: Uint16Array; values: Float64Array } {
  const q = logitsTensor(src, 1, src.length, 'bf16');
  return { bits: q.tensor.data as Uint16Array, values: q.x };
}
