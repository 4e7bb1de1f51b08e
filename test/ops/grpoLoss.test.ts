import { grpoLoss, grpoLossSync, type GrpoLossOptions, type GrpoLossResult } from '../../lib/ops/grpoLoss';
import { Tensor, tensorOf } from '../../lib/tensor';
import {
  DTYPES, KL_TYPES, LOSS_AGGS, Rng, expectClose, expectScalar, finiteDiff, gradValues, grpoOracle, logitsTensor,
  randomGrpoCase, sameBytes, testSeed, type FloatDType, type GrpoCase, type GrpoOracleResult, type GrpoCaseSpec, expectError } from './oracle';

// Tolerances. fp32 error unit of a token's logp / entropy: AT·(1 + max|z| of its row) (fp32 rounding grows
// with the logits' magnitude); RT relative on f32 values. Loss and metrics: those units propagated through
// each token's sensitivity and weight. Gradients are written in the logits' dtype, so on top of the fp32
// error they may be off by half an ulp of that dtype (GRAD_RTOL), and by half the f16 subnormal spacing.
const RT = 1e-5;
const AT = 4e-6;
const GRAD_RTOL: Record<FloatDType, number> = { f32: 1e-5, bf16: 2 ** -8, f16: 2 ** -11 };
const GRAD_ATOL: Record<FloatDType, number> = { f32: 0, bf16: 0, f16: 2 ** -24 };
// Finite differences (float64 central, h = 1e-5) against an f32 kernel gradient.
const FD_RTOL = 2e-5;

const SEED = testSeed('grpoLoss.test');
const root = new Rng(SEED);
const where = (what: string) => `seed ${SEED}, ${what}`;

/** Runs the sync and async variants and checks they agree to the byte. */
async function runBoth(inputs: GrpoCase['inputs'], opts: GrpoLossOptions): Promise<GrpoLossResult> {
  const s = grpoLossSync(inputs, opts);
  const a = await grpoLoss(inputs, opts);
  expect(sameBytes(Float64Array.of(a.loss), Float64Array.of(s.loss))).toBe(true);
  expect(a.metrics).toEqual(s.metrics);
  if (s.gradLogits) expect(sameBytes(a.gradLogits!.data, s.gradLogits.data)).toBe(true);
  if (s.gradLogp) expect(sameBytes(a.gradLogp!, s.gradLogp)).toBe(true);
  return s;
}

/** Loss, metrics and gradients against the oracle, with the tolerances above. */
function checkOracle(name: string, c: GrpoCase, res: GrpoLossResult, dtype: FloatDType, o: GrpoOracleResult = grpoOracle(c.oracle, c.opts)): void {
  const msg = where(`${name}: ${c.describe}`);
  const klCoef = c.opts.klCoef ?? 0;
  const ce = Math.abs(c.opts.entropyCoef ?? 0);
  const logpVariant = c.oracle.logp !== undefined;
  let tLoss = 1e-12, tPg = 1e-12, tKl = 1e-12, tEnt = 1e-12, tPpo = 0, msum = 0;
  o.tok.forEach((tk, t) => {
    if (!tk) return;
    const w = Math.abs(o.w[t]);
    // a token's logp error: fp32 rounding of its inputs (logp variant) or of the row's softmax (logits)
    const e = AT * (1 + (logpVariant ? Math.abs(tk.logp) + Math.abs(c.oracle.oldLogp[t]) : tk.mag));
    const dPg = Math.abs(tk.dPg);
    const dKl = Math.abs(tk.dKl) + (klCoef || c.oracle.refLogp ? 1 : 0);
    tLoss += w * (RT * (Math.abs(tk.pg) + klCoef * Math.abs(tk.kl) + ce * Math.abs(tk.entropy || 0)) + e * (dPg + klCoef * dKl + ce));
    tPg += w * (RT * Math.abs(tk.pg) + e * dPg);
    tKl += w * (RT * Math.abs(tk.kl) + e * dKl);
    tEnt += w * (RT * Math.abs(tk.entropy || 0) + e);
    tPpo += o.m[t] * e;
    msum += o.m[t];
  });
  expectScalar('loss', msg, res.loss, o.loss, tLoss);
  expectScalar('metrics.pgLoss', msg, res.metrics.pgLoss, o.metrics.pgLoss, tPg);
  expectScalar('metrics.klLoss', msg, res.metrics.klLoss, o.metrics.klLoss, tKl);
  expectScalar('metrics.entropy', msg, res.metrics.entropy, o.metrics.entropy, tEnt);
  expectScalar('metrics.clipFrac', msg, res.metrics.clipFrac, o.metrics.clipFrac, 1e-12);
  expectScalar('metrics.ppoKl', msg, res.metrics.ppoKl, o.metrics.ppoKl, msum > 0 ? tPpo / msum + 1e-12 : 1e-12);
  expect(res.metrics.nonFinite).toBe(o.metrics.nonFinite);
  if (o.gradLogits) {
    const V = c.oracle.V!;
    const got = gradValues(res.gradLogits!);
    expect(res.gradLogits!.dtype).toBe(dtype);
    expect(res.gradLogits!.shape).toEqual([o.w.length, V]);
    expectClose('gradLogits', msg, got, o.gradLogits, (i) => {
      const t = Math.floor(i / V);
      const mag = o.tok[t]?.mag ?? 0;
      return GRAD_RTOL[dtype] * Math.abs(o.gradLogits![i]) + GRAD_ATOL[dtype] + AT * (1 + mag) * o.gradScale[t] * (1 + GRAD_RTOL[dtype]);
    });
    for (let t = 0; t < o.w.length; t++) if (o.m[t] === 0) for (let j = 0; j < V; j++) if (got[t * V + j] !== 0) throw new Error(`masked row ${t} has gradient ${got[t * V + j]} at ${j} [${msg}]`);
  }
  if (o.gradLogp) {
    expectClose('gradLogp', msg, res.gradLogp!, o.gradLogp, (t) => {
      const tk = o.tok[t];
      if (!tk) return 0; // masked: exactly 0
      const e = AT * (1 + Math.abs(tk.logp) + Math.abs(c.oracle.oldLogp[t]));
      return RT * Math.abs(o.gradLogp![t]) + e * Math.abs(o.w[t]) * (Math.abs(tk.dPg) + klCoef * (1 + Math.abs(tk.dKl)));
    });
  }
}

const N_FOR_V: Record<number, number> = { 1: 8, 7: 12, 4096: 8, 32000: 4, 151936: 3 };


function randomOpts(rng: Rng): GrpoLossOptions {
  const agg = rng.pick(LOSS_AGGS);
  const o: GrpoLossOptions = { lossAgg: agg };
  if (rng.bool(0.6)) o.temperature = rng.pick([0.6, 0.8, 1.25]);
  if (rng.bool(0.5)) o.clipLow = rng.pick([0.1, 0.3]);
  if (rng.bool(0.5)) o.clipHigh = rng.pick([0.28, 0.4]);
  if (rng.bool(0.4)) o.dualClip = rng.pick([3, 2.5]);
  if (rng.bool(0.7)) {
    o.klCoef = rng.pick([0.04, 0.3]);
    o.klType = rng.pick(KL_TYPES);
  }
  if (rng.bool(0.6)) o.entropyCoef = rng.pick([1e-3, 0.05, -0.02]);
  return o;
}

describe(`grpoLoss vs the float64 oracle, every V and dtype [seed ${SEED}]`, () => {
  for (const V of [1, 7, 4096, 32000, 151936]) {
    for (const dtype of DTYPES) {
      test(`V=${V} ${dtype}: forward, backward, backward off, in place, sync = async`, async () => {
        const rng = root.fork(`matrix ${V} ${dtype}`);
        const N = N_FOR_V[V];
        const spec: GrpoCaseSpec = {
          N, V, dtype, B: rng.int(1, Math.max(1, N - 1)), opts: randomOpts(rng),
          mask: rng.pick(['none', 'u8', 'f32'] as const), advPer: rng.pick(['sequence', 'token'] as const), withRef: rng.bool(),
        };
        const c = randomGrpoCase(rng, spec);
        const res = await runBoth(c.inputs, c.opts);
        checkOracle('matrix', c, res, dtype);
        // backward off: same forward to the byte, no gradient
        const fwd = await runBoth(c.inputs, { ...c.opts, backward: false });
        expect(fwd.gradLogits).toBeUndefined();
        expect(fwd.loss).toBe(res.loss);
        expect(fwd.metrics).toEqual(res.metrics);
        // in place: the gradient lands in the logits buffer, identical to the out-of-place one
        const copy = Tensor.from(c.inputs.logits!.data.slice() as Float32Array | Uint16Array, [N, V], dtype);
        const ip = grpoLossSync({ ...c.inputs, logits: copy }, { ...c.opts, inplace: true });
        expect(ip.gradLogits).toBe(copy);
        expect(sameBytes(copy.data, res.gradLogits!.data)).toBe(true);
        expect(ip.loss).toBe(res.loss);
        const copy2 = Tensor.from(c.inputs.logits!.data.slice() as Float32Array | Uint16Array, [N, V], dtype);
        const ipa = await grpoLoss({ ...c.inputs, logits: copy2 }, { ...c.opts, inplace: true });
        expect(ipa.gradLogits).toBe(copy2);
        expect(sameBytes(copy2.data, res.gradLogits!.data)).toBe(true);
      });
    }
  }
});

describe(`grpoLoss options: every lossAgg × klType, with and without entropy, dual clip, temperature [seed ${SEED}]`, () => {
  for (const lossAgg of LOSS_AGGS) {
    for (const klType of KL_TYPES) {
      test(`${lossAgg} ${klType}`, async () => {
        const rng = root.fork(`options ${lossAgg} ${klType}`);
        for (const dtype of DTYPES) {
          for (const entropyCoef of [0, 0.03]) {
            for (const dualClip of [0, 3]) {
              const opts: GrpoLossOptions = {
                lossAgg, klType, klCoef: rng.uniform(0.02, 0.5), entropyCoef, dualClip,
                temperature: rng.pick([1, 0.7, 1.4]), clipLow: rng.pick([0.2, 0.15]), clipHigh: rng.pick([0.2, 0.28]),
              };
              const V = rng.pick([7, 33, 300]);
              const N = rng.int(5, 14);
              const c = randomGrpoCase(rng, { N, V, dtype, B: rng.int(1, 4), opts, mask: rng.pick(['none', 'u8', 'f32'] as const), advPer: rng.pick(['sequence', 'token'] as const) });
              checkOracle('options', c, await runBoth(c.inputs, c.opts), dtype);
              // the log-prob-only variant with the same options (no entropy term there)
              const lp = randomGrpoCase(rng, { N, B: rng.int(1, 4), opts: { ...opts, entropyCoef: 0 }, mask: rng.pick(['none', 'u8', 'f32'] as const) });
              const r = await runBoth(lp.inputs, lp.opts);
              expect(r.metrics.entropy).toBeNaN();
              expect(r.gradLogits).toBeUndefined();
              checkOracle('options logp', lp, r, 'f32');
            }
          }
        }
      });
    }
  }
});

describe(`gradients against finite differences of the oracle (f32, N ≤ 6, V ≤ 7) [seed ${SEED}]`, () => {
  function fdCheck(name: string, c: GrpoCase, res: GrpoLossResult) {
    const msg = where(`${name}: ${c.describe}`);
    const o = grpoOracle(c.oracle, c.opts);
    const fd = finiteDiff(c.oracle, c.opts);
    const analytic = o.gradLogits ?? o.gradLogp!;
    const V = c.oracle.V ?? 1;
    // the oracle's own formula first (float64: tight), then the kernel
    expectClose('oracle gradient vs finite differences', msg, analytic, fd, (i) => 1e-6 * Math.abs(fd[i]) + 1e-8);
    const got = res.gradLogits ? gradValues(res.gradLogits) : Float64Array.from(res.gradLogp!);
    expectClose('kernel gradient vs finite differences', msg, got, fd, (i) => {
      const t = Math.floor(i / V);
      const tk = o.tok[t];
      const scale = c.oracle.V ? AT * (1 + (tk?.mag ?? 0)) * o.gradScale[t] : AT * (1 + Math.abs(tk?.logp ?? 0)) * Math.abs(o.gradScale[t] || o.w[t]);
      return FD_RTOL * Math.abs(fd[i]) + scale + 1e-9;
    });
  }

  for (const lossAgg of LOSS_AGGS) {
    for (const klType of KL_TYPES) {
      test(`${lossAgg} ${klType}: gradLogits and gradLogp`, async () => {
        const rng = root.fork(`fd ${lossAgg} ${klType}`);
        const opts: GrpoLossOptions = {
          lossAgg, klType, klCoef: rng.uniform(0.05, 0.5), temperature: rng.pick([1, 0.8, 1.3]),
          dualClip: rng.pick([0, 3]), clipHigh: rng.pick([0.2, 0.28]),
        };
        const N = rng.int(3, 6);
        const c = randomGrpoCase(rng, { N, V: rng.int(2, 7), B: rng.int(1, 3), opts, mask: rng.pick(['u8', 'f32'] as const), advPer: rng.pick(['sequence', 'token'] as const) });
        fdCheck('fd logits', c, await runBoth(c.inputs, c.opts));
        const lp = randomGrpoCase(rng, { N, B: rng.int(1, 3), opts, mask: rng.pick(['u8', 'f32'] as const) });
        fdCheck('fd logp', lp, await runBoth(lp.inputs, lp.opts));
      });
    }
    test(`${lossAgg}: entropyCoef ≠ 0 (entropy gradient), with −inf entries`, async () => {
      const rng = root.fork(`fd entropy ${lossAgg}`);
      for (const entropyCoef of [0.05, -0.3]) {
        const opts: GrpoLossOptions = { lossAgg, entropyCoef, klCoef: 0.1, klType: rng.pick(KL_TYPES), temperature: rng.pick([1, 0.7]) };
        const c = randomGrpoCase(rng, { N: rng.int(2, 6), V: 7, B: 2, opts, mask: 'f32', negInf: 0.2 });
        fdCheck('fd entropy', c, await runBoth(c.inputs, c.opts));
      }
    });
  }
});

describe('kinks and clamps, exact expectations (logp variant, one token, token-mean)', () => {
  // One token, w = 1: loss = ℓ and gradLogp = ∂ℓ/∂logp, by hand from kernels.md.
  function one(logp: number, old: number, A: number, opts: GrpoLossOptions = {}, ref?: number) {
    return grpoLossSync(
      { logp: Float32Array.of(logp), oldLogp: Float32Array.of(old), advantages: Float32Array.of(A), seqStarts: Int32Array.of(0, 1), refLogp: ref === undefined ? undefined : Float32Array.of(ref) },
      opts,
    );
  }
  const ln = Math.log;
  test('A > 0, ratio above 1 + clipHigh: clipped, zero gradient', () => {
    const r = one(ln(1.5), 0, 2);
    expect(r.loss).toBeCloseTo(-2 * 1.2, 6);
    expect(r.gradLogp![0]).toBe(0);
    expect(r.metrics.clipFrac).toBe(1);
    const r2 = one(ln(1.25), 0, 2, { clipHigh: 0.28 }); // inside the wider clip
    expect(r2.loss).toBeCloseTo(-2 * 1.25, 6);
    expect(r2.gradLogp![0]).toBeCloseTo(-2 * 1.25, 6);
    expect(r2.metrics.clipFrac).toBe(0);
  });
  test('A > 0, ratio below 1 − clipLow: the unclipped branch wins, gradient −A·ratio', () => {
    const r = one(ln(0.5), 0, 2);
    expect(r.loss).toBeCloseTo(-1, 6);
    expect(r.gradLogp![0]).toBeCloseTo(-1, 6);
    expect(r.metrics.clipFrac).toBe(0);
    expect(r.metrics.ppoKl).toBeCloseTo(ln(2), 6);
  });
  test('A < 0, ratio below 1 − clipLow: clipped, zero gradient', () => {
    const r = one(ln(0.5), 0, -2, { clipLow: 0.3 });
    expect(r.loss).toBeCloseTo(2 * 0.7, 6);
    expect(r.gradLogp![0]).toBe(0);
    expect(r.metrics.clipFrac).toBe(1);
  });
  test('dual clip caps −A·ratio at −A·c for A < 0 (gradient 0); off, the gradient is −A·ratio', () => {
    const on = one(ln(5), 0, -2, { dualClip: 3 });
    expect(on.loss).toBeCloseTo(6, 5);
    expect(on.gradLogp![0]).toBe(0);
    expect(on.metrics.clipFrac).toBe(0); // pg2 > pg1 is false here
    const below = one(ln(2), 0, -2, { dualClip: 3 });
    expect(below.loss).toBeCloseTo(4, 5);
    expect(below.gradLogp![0]).toBeCloseTo(4, 5);
    const off = one(ln(5), 0, -2);
    expect(off.loss).toBeCloseTo(10, 5);
    expect(off.gradLogp![0]).toBeCloseTo(10, 5);
    const pos = one(ln(5), 0, 2, { dualClip: 3 }); // A > 0: dual clip not applied
    expect(pos.loss).toBeCloseTo(-2 * 1.2, 5);
  });
  test('log-ratio clamped at ±20: ratio e^±20, zero gradient, ppoKl = ∓20', () => {
    const hi = one(-1, -26, -1);
    expect(hi.loss / Math.exp(20)).toBeCloseTo(1, 5);
    expect(hi.gradLogp![0]).toBe(0);
    expect(hi.metrics.ppoKl).toBe(-20);
    const lo = one(-26, -1, 1);
    expect(lo.loss).toBeCloseTo(-Math.exp(-20), 12);
    expect(lo.gradLogp![0]).toBe(0);
    expect(lo.metrics.ppoKl).toBe(20);
  });
  test('k1 / k2 / k3 values and derivatives; k3 clamped at 10 has zero gradient', () => {
    // A = 0 isolates the KL term: loss = klCoef·KL, grad = klCoef·∂KL/∂logp; d = logp − ref
    const kl = (klType: 'k1' | 'k2' | 'k3', d: number) => one(-1, -1, 0, { klCoef: 0.5, klType }, -1 - d);
    expect(kl('k1', -3).loss).toBeCloseTo(0.5 * -3, 6);
    expect(kl('k1', -3).gradLogp![0]).toBeCloseTo(0.5, 6);
    expect(kl('k2', -3).loss).toBeCloseTo(0.5 * 4.5, 5);
    expect(kl('k2', -3).gradLogp![0]).toBeCloseTo(0.5 * -3, 5);
    expect(kl('k3', 0.5).loss).toBeCloseTo(0.5 * (Math.exp(-0.5) + 0.5 - 1), 6);
    expect(kl('k3', 0.5).gradLogp![0]).toBeCloseTo(0.5 * (1 - Math.exp(-0.5)), 6);
    expect(kl('k3', -3).loss).toBeCloseTo(0.5 * 10, 6); // e^3 − 3 − 1 = 16.1 → 10
    expect(kl('k3', -3).gradLogp![0]).toBe(0);
    expect(kl('k3', 25).loss).toBeCloseTo(0.5 * 10, 6); // u = −25 → −20: e^−20 + 19 → 10
    expect(kl('k3', 25).gradLogp![0]).toBe(0);
    expect(kl('k3', 0.5).metrics.klLoss).toBeCloseTo(Math.exp(-0.5) - 0.5, 6); // klLoss is the KL itself
  });
  test('label on a −inf entry: logp −inf, log-ratio clamped at −20, k3 clamped at 10, zero gradient', () => {
    for (const dtype of DTYPES) {
      const r = grpoLossSync(
        { logits: tensorOf([0, -Infinity, 1], [1, 3], dtype), labels: Int32Array.of(1), oldLogp: Float32Array.of(-1), refLogp: Float32Array.of(-1), advantages: Float32Array.of(1), seqStarts: Int32Array.of(0, 1) },
        { klCoef: 0.1, klType: 'k3' },
      );
      // pg = max(−e^−20, −0.8) = −e^−20; KL = 10; ℓ = −e^−20 + 0.1·10
      expect(r.loss).toBeCloseTo(1 - Math.exp(-20), 6);
      expect(r.metrics.klLoss).toBe(10);
      expect(r.metrics.ppoKl).toBe(20);
      expect(r.metrics.nonFinite).toBe(0);
      expect(Array.from(gradValues(r.gradLogits!), Math.abs)).toEqual([0, 0, 0]);
    }
  });
  test('logits variant: a clipped row has an exactly zero gradient (no KL, no entropy)', () => {
    const logits = tensorOf([1, 2, 0.5, -1], [1, 4]);
    const lse = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(0.5) + Math.exp(-1));
    const r = grpoLossSync(
      { logits, labels: Int32Array.of(1), oldLogp: Float32Array.of(2 - lse - Math.log(1.6)), advantages: Float32Array.of(1), seqStarts: Int32Array.of(0, 1) },
      {},
    );
    expect(r.loss).toBeCloseTo(-1.2, 5);
    expect(Array.from(r.gradLogits!.data, Math.abs)).toEqual([0, 0, 0, 0]); // ±0
  });
});

describe('aggregation: hand-computed cases (logp variant, ratio 1, no KL: ℓ = −A)', () => {
  // seqStarts [0,0,3,3,5,5]: B = 5, sequences 1 (A = 1, three tokens) and 3 (A = −2, two tokens), the rest empty.
  const base = {
    logp: Float32Array.of(-1, -2, -0.5, -3, -1.5),
    oldLogp: Float32Array.of(-1, -2, -0.5, -3, -1.5),
    advantages: Float32Array.of(7, 1, 9, -2, 5),
    seqStarts: Int32Array.of(0, 0, 3, 3, 5, 5),
  };
  const cases: [GrpoLossOptions, number, number[]][] = [
    [{ lossAgg: 'token-mean' }, (3 * -1 + 2 * 2) / 5, [-1 / 5, -1 / 5, -1 / 5, 2 / 5, 2 / 5]],
    [{ lossAgg: 'seq-mean-token-mean' }, (-1 + 2) / 2, [-1 / 6, -1 / 6, -1 / 6, 2 / 4, 2 / 4]],
    [{ lossAgg: 'seq-mean-token-sum' }, (-3 + 4) / 2, [-1 / 2, -1 / 2, -1 / 2, 1, 1]],
    [{ lossAgg: 'seq-mean-token-sum-norm', maxLen: 4 }, 1 / 20, [-1 / 20, -1 / 20, -1 / 20, 2 / 20, 2 / 20]],
  ];
  test.each(cases)('%j', async (opts, loss, grad) => {
    opts = { ...opts, advantagesPer: 'sequence' }; // B = N = 5 here
    for (const r of [grpoLossSync(base, opts), await grpoLoss(base, opts)]) {
      expect(r.loss).toBeCloseTo(loss, 6);
      expect(r.metrics.pgLoss).toBeCloseTo(loss, 6);
      r.gradLogp!.forEach((g, i) => expect(g).toBeCloseTo(grad[i], 6));
    }
  });
  test('masking a whole sequence drops it from seq-mean averages but not from B in sum-norm', () => {
    const mask = Uint8Array.of(1, 1, 1, 0, 0);
    const got = (opts: GrpoLossOptions) => grpoLossSync({ ...base, mask }, { ...opts, advantagesPer: 'sequence' });
    expect(got({ lossAgg: 'token-mean' }).loss).toBeCloseTo(-1, 6);
    expect(got({ lossAgg: 'seq-mean-token-mean' }).loss).toBeCloseTo(-1, 6);
    expect(got({ lossAgg: 'seq-mean-token-sum' }).loss).toBeCloseTo(-3, 6);
    expect(got({ lossAgg: 'seq-mean-token-sum-norm', maxLen: 4 }).loss).toBeCloseTo(-3 / 20, 6);
    expect(Array.from(got({ lossAgg: 'seq-mean-token-sum' }).gradLogp!)).toEqual([-1, -1, -1, 0, 0]);
  });
  test('float mask weights: token-mean is Σ m·ℓ / Σ m, clipFrac and ppoKl are mask-weighted', () => {
    const mask = Float32Array.of(0.5, 0, 2, 1, 0.5);
    const r = grpoLossSync({ ...base, mask }, { advantagesPer: 'sequence' });
    expect(r.loss).toBeCloseTo((0.5 * -1 + 2 * -1 + 1 * 2 + 0.5 * 2) / 4, 6);
    expect(r.gradLogp![2]).toBeCloseTo((2 / 4) * -1, 6);
    // token 0 clipped (A > 0, ratio e^1 > 1.2), token 3 not: clipFrac = 0.5 / (0.5 + 1)
    const r2 = grpoLossSync({ ...base, logp: Float32Array.of(0, -2, -0.5, -2, -1.5), mask: Float32Array.of(0.5, 0, 0, 1, 0) }, { advantagesPer: 'sequence' });
    expect(r2.metrics.clipFrac).toBeCloseTo(0.5 / 1.5, 6);
    expect(r2.metrics.ppoKl).toBeCloseTo(-(0.5 * 1 + 1 * 1) / 1.5, 6);
  });
});

describe(`grpoLoss edge cases [seed ${SEED}]`, () => {
  test.each(DTYPES)('masked tokens are never read: NaN logits and out-of-range labels there are ignored, gradient row exactly 0 (%s)', async (dtype) => {
    const rng = root.fork(`masked ${dtype}`);
    for (const maskKind of ['u8', 'f32'] as const) {
      const N = 6, V = 40;
      const c = randomGrpoCase(rng, { N, V, dtype, B: 2, opts: { klCoef: 0.1, entropyCoef: 0.01, lossAgg: rng.pick(LOSS_AGGS) }, mask: maskKind });
      const m = c.inputs.mask!;
      m[1] = 0;
      m[4] = 0;
      m[0] = m[0] || 1;
      const data = c.inputs.logits!.data as Float32Array | Uint16Array;
      for (let j = 0; j < V; j++) data[1 * V + j] = dtype === 'f32' ? NaN : 0x7fc0;
      c.inputs.labels![1] = -5;
      c.inputs.labels![4] = V + 3;
      const res = await runBoth(c.inputs, c.opts);
      expect(Number.isFinite(res.loss)).toBe(true);
      expect(res.metrics.nonFinite).toBe(0);
      checkOracle(`masked ${maskKind}`, c, res, dtype);
      const ip = grpoLossSync(c.inputs, { ...c.opts, inplace: true }); // masked rows are zeroed in place too
      const g = gradValues(ip.gradLogits!);
      for (const t of [1, 4]) for (let j = 0; j < V; j++) expect(g[t * V + j]).toBe(0);
    }
  });

  // Known failure (reported): the aggregation weight m/Σm is stored in fp32 and underflows to 0 for a
  // tiny non-zero weight, so the kernel treats an active token as masked.
  test('a tiny non-zero float mask weight still makes the token active (label checked, NaN counted)', () => {
    const inputs = (labels: Int32Array) => ({
      logits: tensorOf([0, 0, NaN, NaN], [2, 2]), labels, oldLogp: new Float32Array(2), advantages: Float32Array.of(1),
      seqStarts: Int32Array.of(0, 2), mask: Float32Array.of(10, 1e-45),
    });
    expectError(() => grpoLossSync(inputs(Int32Array.of(0, 7)), {}), 'E_RANGE', /labels\[1\]/);
    const r = grpoLossSync(inputs(Int32Array.of(0, 1)), {});
    expect(r.metrics.nonFinite).toBe(1);
    expect(r.loss).toBeNaN();
  });

  test.each(LOSS_AGGS)('a fully masked batch: loss 0, metrics 0, zero gradient, no NaN (%s)', async (lossAgg) => {
    for (const dtype of DTYPES) {
      for (const mask of [new Uint8Array(4), new Float32Array(4)]) {
        const logits = tensorOf([NaN, 1, 2, 3, 4, 5, Infinity, 7], [4, 2], dtype);
        const inputs = { logits, labels: Int32Array.of(0, 9, -1, 1), oldLogp: new Float32Array(4), refLogp: new Float32Array(4), advantages: Float32Array.of(1, -1), seqStarts: Int32Array.of(0, 2, 4), mask };
        const res = await runBoth(inputs, { lossAgg, maxLen: 3, klCoef: 0.1, entropyCoef: 0.1 });
        expect(res.loss).toBe(0);
        expect(res.metrics).toEqual({ pgLoss: 0, klLoss: 0, entropy: 0, clipFrac: 0, ppoKl: 0, nonFinite: 0 });
        expect(Array.from(gradValues(res.gradLogits!))).toEqual(new Array(8).fill(0));
        const lp = await runBoth({ logp: new Float32Array(4), oldLogp: new Float32Array(4), advantages: Float32Array.of(1, -1), seqStarts: Int32Array.of(0, 2, 4), mask }, { lossAgg, maxLen: 3 });
        expect(lp.loss).toBe(0);
        expect(Array.from(lp.gradLogp!)).toEqual([0, 0, 0, 0]);
      }
    }
  });

  test.each(LOSS_AGGS)('empty batch N = 0, with B = 0 and with B = 2 empty sequences (%s)', async (lossAgg) => {
    for (const dtype of DTYPES) {
      for (const seqStarts of [Int32Array.of(0), Int32Array.of(0, 0, 0)]) {
        const B = seqStarts.length - 1;
        const res = await runBoth(
          { logits: tensorOf([], [0, 7], dtype), labels: new Int32Array(0), oldLogp: new Float32Array(0), advantages: new Float32Array(B), seqStarts },
          { lossAgg, maxLen: 5 },
        );
        expect(res.loss).toBe(0);
        expect(res.metrics).toEqual({ pgLoss: 0, klLoss: 0, entropy: 0, clipFrac: 0, ppoKl: 0, nonFinite: 0 });
        expect(res.gradLogits!.shape).toEqual([0, 7]);
        const lp = grpoLossSync({ logp: new Float32Array(0), oldLogp: new Float32Array(0), advantages: new Float32Array(B), seqStarts }, { lossAgg, maxLen: 5 });
        expect(lp.loss).toBe(0);
        expect(lp.gradLogp!.length).toBe(0);
        expect(lp.metrics.entropy).toBeNaN();
      }
    }
  });

  test.each(DTYPES)('NaN / +inf / all −inf rows: counted in nonFinite, loss NaN, gradient row NaN, other rows exact (%s)', async (dtype) => {
    const rng = root.fork(`nonfinite ${dtype}`);
    const N = 6, V = 9;
    const c = randomGrpoCase(rng, { N, V, dtype, B: 3, opts: { entropyCoef: 0.01 } });
    const data = c.inputs.logits!.data as Float32Array | Uint16Array;
    const put = (t: number, j: number, v: number) => {
      data[t * V + j] = dtype === 'f32' ? v : Number.isNaN(v) ? 0x7fc0 : v > 0 ? (dtype === 'bf16' ? 0x7f80 : 0x7c00) : dtype === 'bf16' ? 0xff80 : 0xfc00;
      c.oracle.x = Float64Array.from(c.inputs.logits!.toFloat32());
    };
    put(1, 4, NaN);
    put(3, 0, Infinity);
    for (let j = 0; j < V; j++) put(5, j, -Infinity);
    const res = await runBoth(c.inputs, c.opts);
    expect(res.metrics.nonFinite).toBe(3);
    expect(res.loss).toBeNaN();
    const g = gradValues(res.gradLogits!);
    for (const t of [1, 3, 5]) for (let j = 0; j < V; j++) expect(g[t * V + j]).toBeNaN();
    const o = grpoOracle(c.oracle, c.opts);
    expect(o.metrics.nonFinite).toBe(3);
    const msg = where(`nonfinite ${dtype}: ${c.describe}`);
    for (const t of [0, 2, 4])
      expectClose(`finite row ${t}`, msg, g.subarray(t * V, t * V + V), o.gradLogits!.subarray(t * V, t * V + V), (i) =>
        GRAD_RTOL[dtype] * Math.abs(o.gradLogits![t * V + i]) + GRAD_ATOL[dtype] + AT * (1 + o.tok[t]!.mag) * o.gradScale[t] * 2);
  });

  test('NaN oldLogp, refLogp or advantages: counted in nonFinite, no crash', async () => {
    const base = { logp: Float32Array.of(-1, -2, -3), oldLogp: Float32Array.of(-1, -2, -3), refLogp: Float32Array.of(-1, -2, -3), advantages: Float32Array.of(1, 1, 1), seqStarts: Int32Array.of(0, 1, 2, 3) };
    const cases: [string, Partial<typeof base>][] = [
      ['oldLogp', { oldLogp: Float32Array.of(-1, NaN, -3) }],
      ['refLogp', { refLogp: Float32Array.of(NaN, -2, -3) }],
      ['advantages', { advantages: Float32Array.of(1, 1, NaN) }],
    ];
    for (const [name, patch] of cases) {
      const inputs = { ...base, ...patch };
      const r = await runBoth(inputs, { klCoef: 0.1, advantagesPer: 'sequence' });
      const o = grpoOracle(inputs, { klCoef: 0.1, advantagesPer: 'sequence' });
      expect([name, r.metrics.nonFinite]).toEqual([name, 1]);
      expect(o.metrics.nonFinite).toBe(1);
      expect(r.loss).toBeNaN();
    }
  });

  test.each(DTYPES)('−inf entries, all-negative rows and ±1e4 logits with the full loss and entropy term (%s)', async (dtype) => {
    const rng = root.fork(`extreme ${dtype}`);
    const N = 5, V = 300;
    const src = new Float32Array(N * V);
    for (let j = 0; j < V; j++) {
      src[0 * V + j] = j % 3 === 0 ? rng.normal() : -Infinity; // in-vocabulary masking
      src[1 * V + j] = -1200 - 3 * rng.next(); // all far below 0
      src[2 * V + j] = rng.pick([1e4, -1e4, rng.normal()]);
      src[3 * V + j] = -1e4 + rng.normal();
      src[4 * V + j] = j === 7 ? 1e4 : rng.normal();
    }
    const labels = Int32Array.from({ length: N }, (_, t) => (t === 0 ? 3 * rng.int(0, 99) : rng.int(0, V - 1))); // row 0: a finite entry
    const cc = randomGrpoCase(rng, { N, V, dtype, B: 2, src, labels, opts: { entropyCoef: 0.02, klCoef: 0.05, klType: 'k3' } });
    const res = await runBoth(cc.inputs, cc.opts);
    expect(res.metrics.nonFinite).toBe(0);
    checkOracle('extreme', cc, res, dtype);
    const g = gradValues(res.gradLogits!);
    for (let i = 0; i < N * V; i++) if (cc.oracle.x![i] === -Infinity) expect(Math.abs(g[i])).toBe(0);
  });
});

describe(`concurrency [seed ${SEED}]`, () => {
  test('many async calls in flight, with sync calls meanwhile, match the sync results', async () => {
    const rng = root.fork('concurrency');
    const cases = Array.from({ length: 8 }, (_, k) =>
      randomGrpoCase(rng, { N: 6, V: k % 2 ? 4096 : 300, dtype: rng.pick(DTYPES), B: 2, opts: randomOpts(rng), withRef: true, mask: 'u8' }));
    const pending = [...cases, ...cases].map((c) => grpoLoss(c.inputs, c.opts));
    const sync = cases.map((c) => grpoLossSync(c.inputs, c.opts)); // on the main thread while the pool is busy
    const all = await Promise.all(pending);
    all.forEach((r, i) => {
      const s = sync[i % cases.length];
      expect(r.loss).toBe(s.loss);
      expect(sameBytes(r.gradLogits!.data, s.gradLogits!.data)).toBe(true);
    });
  });
});

describe(`advantages per sequence or per token [seed ${SEED}]`, () => {
  test('B == N with longer sequences needs advantagesPer; both readings match the oracle', async () => {
    const rng = root.fork('advantagesPer');
    for (const advPer of ['sequence', 'token'] as const) {
      const N = 6;
      const c = randomGrpoCase(rng, { N, V: 5, B: N, opts: {}, advPer });
      c.inputs.seqStarts = c.oracle.seqStarts = Int32Array.of(0, 0, 2, 2, 3, 6, 6); // B = 6 = N, lengths ≠ 1
      expectError(() => grpoLossSync(c.inputs, { ...c.opts, advantagesPer: undefined }), 'E_SHAPE', /advantagesPer/);
      expect(c.opts.advantagesPer).toBe(advPer);
      checkOracle(`advantagesPer ${advPer}`, c, await runBoth(c.inputs, c.opts), 'f32');
    }
  });
  test('B == N with one token per sequence: auto works, and both readings agree', () => {
    const inputs = { logp: Float32Array.of(-1, -2, -3), oldLogp: Float32Array.of(-1.1, -2, -2.9), advantages: Float32Array.of(1, -1, 0.5), seqStarts: Int32Array.of(0, 1, 2, 3) };
    const a = grpoLossSync(inputs, {});
    expect(grpoLossSync(inputs, { advantagesPer: 'token' }).loss).toBe(a.loss);
    expect(grpoLossSync(inputs, { advantagesPer: 'sequence' }).loss).toBe(a.loss);
    expectScalar('loss', where('one token per sequence'), a.loss, grpoOracle(inputs, {}).loss, 1e-6);
  });
});

describe('grpoLoss argument errors (code and argument name)', () => {
  const V = 4;
  const good = () => ({
    logits: tensorOf(new Float32Array(3 * V), [3, V]),
    labels: Int32Array.of(0, 1, 2),
    oldLogp: new Float32Array(3),
    refLogp: new Float32Array(3),
    advantages: Float32Array.of(1, -1),
    seqStarts: Int32Array.of(0, 2, 3),
    mask: Uint8Array.of(1, 1, 1),
  });
  const cases: [string, () => [Record<string, unknown>, GrpoLossOptions], string, RegExp][] = [
    ['label out of range', () => [{ ...good(), labels: Int32Array.of(0, V, 1) }, {}], 'E_RANGE', /labels\[1\]/],
    ['negative label', () => [{ ...good(), labels: Int32Array.of(0, 1, -1) }, {}], 'E_RANGE', /labels\[2\]/],
    ['labels length', () => [{ ...good(), labels: Int32Array.of(0, 1) }, {}], 'E_SHAPE', /labels/],
    ['oldLogp length', () => [{ ...good(), oldLogp: new Float32Array(2) }, {}], 'E_SHAPE', /oldLogp/],
    ['refLogp length', () => [{ ...good(), refLogp: new Float32Array(4) }, {}], 'E_SHAPE', /refLogp/],
    ['mask length', () => [{ ...good(), mask: new Uint8Array(2) }, {}], 'E_SHAPE', /mask/],
    ['advantages length', () => [{ ...good(), advantages: new Float32Array(5) }, {}], 'E_SHAPE', /advantages/],
    ['seqStarts end ≠ N', () => [{ ...good(), seqStarts: Int32Array.of(0, 2, 4) }, {}], 'E_SHAPE', /seqStarts/],
    ['seqStarts start ≠ 0', () => [{ ...good(), seqStarts: Int32Array.of(1, 2, 3) }, {}], 'E_RANGE', /seqStarts/],
    ['seqStarts decreasing', () => [{ ...good(), seqStarts: Int32Array.of(0, 3, 2, 3), advantages: new Float32Array(3) }, {}], 'E_RANGE', /seqStarts/],
    ['empty seqStarts', () => [{ ...good(), seqStarts: new Int32Array(0) }, {}], 'E_SHAPE', /seqStarts/],
    ['u8 mask not 0/1', () => [{ ...good(), mask: Uint8Array.of(1, 2, 1) }, {}], 'E_RANGE', /mask\[1\]/],
    ['negative float mask', () => [{ ...good(), mask: Float32Array.of(1, -0.5, 1) }, {}], 'E_RANGE', /mask\[1\]/],
    ['NaN float mask', () => [{ ...good(), mask: Float32Array.of(1, 1, NaN) }, {}], 'E_RANGE', /mask\[2\]/],
    ['inf float mask', () => [{ ...good(), mask: Float32Array.of(Infinity, 1, 1) }, {}], 'E_RANGE', /mask\[0\]/],
    ['klCoef without refLogp', () => [{ ...good(), refLogp: undefined }, { klCoef: 0.1 }], 'E_CONFIG', /refLogp/],
    ['entropyCoef with logp', () => [{ logp: new Float32Array(3), oldLogp: new Float32Array(3), advantages: new Float32Array(2), seqStarts: Int32Array.of(0, 2, 3) }, { entropyCoef: 0.1 }], 'E_CONFIG', /entropyCoef/],
    ['sum-norm without maxLen', () => [good(), { lossAgg: 'seq-mean-token-sum-norm' }], 'E_CONFIG', /maxLen/],
    ['both logits and logp', () => [{ ...good(), logp: new Float32Array(3) }, {}], 'E_CONFIG', /logp/],
    ['neither logits nor logp', () => [{ ...good(), logits: undefined, labels: undefined }, {}], 'E_CONFIG', /logits/],
    ['logits without labels', () => [{ ...good(), labels: undefined }, {}], 'E_CONFIG', /labels/],
    ['inplace without backward', () => [good(), { inplace: true, backward: false }], 'E_CONFIG', /inplace/],
    ['dualClip in (0, 1]', () => [good(), { dualClip: 0.5 }], 'E_RANGE', /dualClip/],
    ['clipLow ≥ 1', () => [good(), { clipLow: 1 }], 'E_RANGE', /clipLow/],
    ['negative clipHigh', () => [good(), { clipHigh: -0.1 }], 'E_RANGE', /clipHigh/],
    ['temperature 0', () => [good(), { temperature: 0 }], 'E_RANGE', /temperature/],
    ['maxLen 0', () => [good(), { lossAgg: 'seq-mean-token-sum-norm', maxLen: 0 }], 'E_RANGE', /maxLen/],
    ['unknown klType', () => [good(), { klType: 'k4' as 'k1' }], 'E_CONFIG', /klType/],
    ['unknown lossAgg', () => [good(), { lossAgg: 'sum' as 'token-mean' }], 'E_CONFIG', /lossAgg/],
    ['oldLogp of the wrong type', () => [{ ...good(), oldLogp: new Float64Array(3) }, {}], 'E_DTYPE', /oldLogp/],
    ['labels of the wrong type', () => [{ ...good(), labels: new Float32Array(3) }, {}], 'E_TYPE', /labels/],
    ['logits not a Tensor', () => [{ ...good(), logits: new Float32Array(12) }, {}], 'E_TYPE', /logits/],
    ['logits not 2-D', () => [{ ...good(), logits: tensorOf(new Float32Array(12), [12]) }, {}], 'E_SHAPE', /logits/],
    ['integer logits', () => [{ ...good(), logits: Tensor.from(new Int32Array(12), [3, V]) }, {}], 'E_DTYPE', /logits/],
    ['negative klCoef', () => [good(), { klCoef: -0.1 }], 'E_RANGE', /klCoef/],
    ['unknown advantagesPer', () => [good(), { advantagesPer: 'row' as 'token' }], 'E_CONFIG', /advantagesPer/],
    ['per-token advantages of the wrong length with advantagesPer token', () => [{ ...good(), advantages: new Float32Array(2) }, { advantagesPer: 'token' }], 'E_SHAPE', /advantages/],
  ];
  test.each(cases)('%s', async (_name, make, code, names) => {
    const [inputs, opts] = make();
    expectError(() => grpoLossSync(inputs as never, opts), code, names);
    const [inputs2, opts2] = make();
    await expect(grpoLoss(inputs2 as never, opts2)).rejects.toMatchObject({ code, message: expect.stringMatching(names) });
  });
  test('a masked token may carry any label', () => {
    const inputs = { ...good(), labels: Int32Array.of(0, 99, -7), mask: Uint8Array.of(1, 0, 0) };
    expect(() => grpoLossSync(inputs, {})).not.toThrow();
  });
});
