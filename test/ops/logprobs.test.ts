import { logprobs, logprobsSync } from '../../lib/ops/logprobs';
import { Tensor, tensorOf } from '../../lib/tensor';
import {
  DTYPES, Rng, expectClose, logitsTensor, logprobsOracle, quantize, sameBytes, testSeed, type FloatDType, expectError } from './oracle';

// Tolerances (logp and entropy are fp32 outputs for every input dtype; the oracle reads the rounded
// inputs): |got − exp| ≤ RTOL·|exp| + ATOL·(1 + max|z| of the row). fp32 rounding of z, lse and the
// V-term sums grows with the logits' magnitude, hence the row scale.
const RTOL = 1e-5;
const ATOL = 4e-6;
const tol = (exp: ArrayLike<number>, mag: ArrayLike<number>) => (i: number) => RTOL * Math.abs(exp[i]) + ATOL * (1 + mag[i]);

const SEED = testSeed('logprobs.test');
const root = new Rng(SEED);
const where = (what: string) => `seed ${SEED}, ${what}`;

/** Random rows: normal with a random scale and offset; for V ≥ 4096 row 1 ascends (the max moves every chunk). */
function randomLogits(rng: Rng, N: number, V: number): Float32Array {
  const out = new Float32Array(N * V);
  for (let t = 0; t < N; t++) {
    const sigma = rng.uniform(0.5, 4);
    const offset = rng.uniform(-30, 30);
    const ramp = V >= 4096 && t === 1;
    for (let j = 0; j < V; j++) out[t * V + j] = ramp ? offset + (12 * j) / V + 0.1 * rng.normal() : offset + sigma * rng.normal();
  }
  return out;
}

function check(name: string, x: Float64Array, N: number, V: number, labels: Int32Array, got: { logp: Float32Array; entropy?: Float32Array }, temperature = 1) {
  const o = logprobsOracle(x, N, V, labels, temperature);
  expectClose(`${name}: logp`, where(name), got.logp, o.logp, tol(o.logp, o.mag));
  expectClose(`${name}: entropy`, where(name), got.entropy!, o.entropy, tol(o.entropy, o.mag));
}

const N_FOR_V: Record<number, number> = { 1: 6, 7: 11, 4096: 6, 32000: 3, 151936: 2 };

describe(`logprobs vs the float64 oracle [seed ${SEED}]`, () => {
  for (const V of [1, 7, 4096, 32000, 151936]) {
    for (const dtype of DTYPES) {
      test(`V=${V} ${dtype}`, async () => {
        const rng = root.fork(`matrix ${V} ${dtype}`);
        const N = N_FOR_V[V];
        const temperature = rng.pick([1, 0.7, 1.3]);
        const { tensor, x } = logitsTensor(randomLogits(rng, N, V), N, V, dtype);
        const labels = Int32Array.from({ length: N }, () => rng.int(0, V - 1));
        const before = Uint8Array.from(new Uint8Array((tensor.data as Float32Array).buffer));
        const sync = logprobsSync(tensor, labels, { temperature, entropy: true });
        check(`V=${V} ${dtype} τ=${temperature}`, x, N, V, labels, sync, temperature);
        const asy = await logprobs(tensor, labels, { temperature, entropy: true });
        expect(sameBytes(asy.logp, sync.logp)).toBe(true);
        expect(sameBytes(asy.entropy!, sync.entropy!)).toBe(true);
        const noEnt = logprobsSync(tensor, labels, { temperature });
        expect(noEnt.entropy).toBeUndefined();
        expect(sameBytes(noEnt.logp, sync.logp)).toBe(true);
        expect(sameBytes(new Uint8Array((tensor.data as Float32Array).buffer), before)).toBe(true); // input untouched
      });
    }
  }

  test('V=1: logp and entropy are exactly 0', () => {
    for (const dtype of DTYPES) {
      const r = logprobsSync(tensorOf([3.5, -2, 1e4], [3, 1], dtype), Int32Array.of(0, 0, 0), { entropy: true });
      expect(Array.from(r.logp)).toEqual([0, 0, 0]);
      expect(Array.from(r.entropy!)).toEqual([0, 0, 0]);
    }
  });

  test('a uniform row: logp = −log V, entropy = log V (hand-computed)', () => {
    const V = 4096;
    for (const dtype of DTYPES) {
      const r = logprobsSync(tensorOf(new Float32Array(2 * V).fill(-7.25), [2, V], dtype), Int32Array.of(0, 4095), { entropy: true });
      for (let t = 0; t < 2; t++) {
        expect(Math.abs(r.logp[t] + Math.log(V))).toBeLessThan(2e-5);
        expect(Math.abs(r.entropy![t] - Math.log(V))).toBeLessThan(2e-5);
      }
    }
  });

  test('labels as an i32 Tensor', () => {
    const rng = root.fork('i32 labels');
    const { tensor, x } = logitsTensor(randomLogits(rng, 4, 7), 4, 7, 'f32');
    const labels = Int32Array.of(0, 6, 3, 2);
    const r = logprobsSync(tensor, Tensor.from(labels, [4]), { entropy: true });
    check('i32 tensor labels', x, 4, 7, labels, r);
  });

  test('empty batch (N = 0)', async () => {
    for (const dtype of DTYPES) {
      const r = await logprobs(tensorOf([], [0, 32], dtype), new Int32Array(0), { entropy: true });
      expect(r.logp.length).toBe(0);
      expect(r.entropy!.length).toBe(0);
    }
  });
});

describe(`logprobs edge cases [seed ${SEED}]`, () => {
  test.each(DTYPES)('−inf entries (in-vocabulary masking), %s', (dtype: FloatDType) => {
    const rng = root.fork(`-inf ${dtype}`);
    for (const V of [7, 4096]) {
      const N = 6;
      const src = randomLogits(rng, N, V);
      const labels = new Int32Array(N);
      for (let t = 0; t < N; t++) {
        const keep = rng.int(0, V - 1);
        const pMask = rng.pick([0.3, 0.9, 0.999]);
        for (let j = 0; j < V; j++) if (j !== keep && rng.bool(pMask)) src[t * V + j] = -Infinity;
        labels[t] = keep;
      }
      // Row 0: the label itself is masked out, so logp = −inf while the entropy stays finite.
      src[0 * V + 0] = -Infinity;
      src[0 * V + 1] = 0.5;
      labels[0] = 0;
      const { tensor, x } = logitsTensor(src, N, V, dtype);
      const r = logprobsSync(tensor, labels, { entropy: true });
      check(`-inf V=${V} ${dtype}`, x, N, V, labels, r);
      expect(r.logp[0]).toBe(-Infinity);
      for (let t = 0; t < N; t++) expect(Number.isFinite(r.entropy![t])).toBe(true);
    }
  });

  test.each(DTYPES)('all-negative and huge (±1e4) rows, %s', (dtype: FloatDType) => {
    const rng = root.fork(`negative ${dtype}`);
    const V = 4096;
    const N = 5;
    const src = new Float32Array(N * V);
    for (let j = 0; j < V; j++) {
      src[0 * V + j] = -1000 - 5 * rng.next(); // all far below 0
      src[1 * V + j] = -30000; // flat and negative: logp = −log V
      src[2 * V + j] = rng.pick([1e4, -1e4, rng.normal()]);
      src[3 * V + j] = -1e4 + rng.normal();
      src[4 * V + j] = rng.normal();
    }
    src[4 * V + 17] = 1e4; // one dominant entry: p ≈ 1 there, logp ≈ −1e4 elsewhere
    const labels = Int32Array.of(rng.int(0, V - 1), 9, rng.int(0, V - 1), rng.int(0, V - 1), 17);
    const { tensor, x } = logitsTensor(src, N, V, dtype);
    const r = logprobsSync(tensor, labels, { entropy: true });
    check(`negative/huge ${dtype}`, x, N, V, labels, r);
    // z − lse at |z| = 3e4: fp32 spacing there is ~2e-3
    expect(Math.abs(r.logp[1] + Math.log(V))).toBeLessThan(4e-3);
    expect(Math.abs(r.entropy![1] - Math.log(V))).toBeLessThan(1e-4);
    expect(r.logp[4]).toBe(0);
    expect(r.entropy![4]).toBe(0);
    const other = logprobsSync(tensor, Int32Array.of(0, 0, 0, 0, 18), {});
    expect(Math.abs(other.logp[4] - (x[4 * V + 18] - x[4 * V + 17]))).toBeLessThan(1e-2); // fp32 spacing at 1e4 is ~1e-3
  });

  test.each(DTYPES)('NaN, +inf and all −inf rows give NaN without touching other rows, %s', async (dtype: FloatDType) => {
    const rng = root.fork(`nan ${dtype}`);
    const V = 7;
    const N = 5;
    const src = randomLogits(rng, N, V);
    for (let j = 0; j < V; j++) src[1 * V + j] = -Infinity;
    src[2 * V + 3] = NaN;
    src[3 * V + 6] = Infinity;
    const labels = Int32Array.of(1, 2, 0, 6, 4);
    const { tensor, x } = logitsTensor(src, N, V, dtype);
    for (const r of [logprobsSync(tensor, labels, { entropy: true }), await logprobs(tensor, labels, { entropy: true })]) {
      for (const t of [1, 2, 3]) {
        expect(r.logp[t]).toBeNaN();
        expect(r.entropy![t]).toBeNaN();
      }
      const o = logprobsOracle(x, N, V, labels, 1, [0, 4]);
      for (const t of [0, 4]) {
        expectClose(`finite row ${t} beside NaN rows`, where(`nan ${dtype}`), [r.logp[t], r.entropy![t]], [o.logp[t], o.entropy[t]], (i) =>
          tol([o.logp[t], o.entropy[t]], [o.mag[t], o.mag[t]])(i));
      }
    }
  });
});

describe(`peaked rows never round to the impossible [seed ${SEED}]`, () => {
  test.each(DTYPES)('%s: logp ≤ 0 and entropy ≥ 0 for rows that are almost one-hot, at several temperatures, on both entry points and in grpoLoss', async (dtype) => {
    const rng = new Rng(SEED + DTYPES.indexOf(dtype) + 101);
    const { grpoLossSync } = await import('../../lib/ops/grpoLoss');
    for (const temperature of [1, 0.3, 1.3]) {
      for (const V of [2, 33, 1000]) {
        const N = 400;
        const x = new Float32Array(N * V);
        const labels = new Int32Array(N);
        for (let t = 0; t < N; t++) {
          const top = rng.int(0, V - 1);
          // a top logit anywhere in ±100 and the rest 2.5–195 nats below it: the sum's other terms are
          // near or below the top's rounding, where lse − z can come out a few ulps negative
          const base = rng.uniform(-100, 100);
          const margin = rng.bool() ? rng.uniform(5, 35) : rng.uniform(30, 130);
          for (let j = 0; j < V; j++) x[t * V + j] = j === top ? base : base - margin * rng.uniform(0.5, 1.5);
          labels[t] = rng.bool(0.8) ? top : rng.int(0, V - 1);
        }
        const lt = () => logitsTensor(x, N, V, dtype as FloatDType).tensor;
        const at = where(`${dtype}, V=${V}, temperature ${temperature}`);
        for (const r of [logprobsSync(lt(), labels, { entropy: true, temperature }), await logprobs(lt(), labels, { entropy: true, temperature })]) {
          const badP = r.logp.findIndex((v) => !(v <= 0));
          const badH = r.entropy!.findIndex((v) => !(v >= 0));
          if (badP >= 0) throw new Error(`${at}: logp[${badP}] = ${r.logp[badP]} > 0`);
          if (badH >= 0) throw new Error(`${at}: entropy[${badH}] = ${r.entropy![badH]} < 0`);
        }
        const g = grpoLossSync({ logits: lt(), labels, oldLogp: new Float32Array(N), advantages: new Float32Array(N).fill(-1), seqStarts: Int32Array.of(0, N) }, { entropyCoef: 0.01, temperature });
        expect(g.metrics.entropy).toBeGreaterThanOrEqual(0);
        // A = −1 and ratio = exp(logp − 0) ≤ 1 for every token: pg = max(ratio, clip(ratio)) ≤ 1
        expect(g.metrics.pgLoss).toBeLessThanOrEqual(1);
      }
    }
  });
});

describe('logprobs argument errors', () => {
  const logits = tensorOf(new Float32Array(3 * 5), [3, 5]);
  test('label out of range (E_RANGE, names labels)', async () => {
    expectError(() => logprobsSync(logits, Int32Array.of(0, 5, 1)), 'E_RANGE', /labels\[1\]/);
    expectError(() => logprobsSync(logits, Int32Array.of(0, 1, -1)), 'E_RANGE', /labels\[2\]/);
    await expect(logprobs(logits, Int32Array.of(7, 0, 0))).rejects.toMatchObject({ code: 'E_RANGE', message: expect.stringMatching(/labels/) });
  });
  test('mismatched lengths and shapes (E_SHAPE)', async () => {
    expectError(() => logprobsSync(logits, Int32Array.of(0, 1)), 'E_SHAPE', /labels/);
    expectError(() => logprobsSync(tensorOf(new Float32Array(15), [15]), Int32Array.of(0)), 'E_SHAPE', /logits/);
    await expect(logprobs(logits, Int32Array.of(0, 1, 2, 3))).rejects.toMatchObject({ code: 'E_SHAPE' });
  });
  test('wrong types and dtypes', () => {
    expectError(() => logprobsSync(new Float32Array(15) as unknown as Tensor, Int32Array.of(0, 0, 0)), 'E_TYPE', /logits/);
    expectError(() => logprobsSync(Tensor.from(new Int32Array(15), [3, 5]), Int32Array.of(0, 0, 0)), 'E_DTYPE', /logits/);
    expectError(() => logprobsSync(logits, Float32Array.of(0, 0, 0) as unknown as Int32Array), 'E_TYPE', /labels/);
    expectError(() => logprobsSync(logits, Tensor.from(Float32Array.of(0, 0, 0), [3]) as unknown as Int32Array), 'E_DTYPE', /labels/);
  });
  test('temperature must be > 0 and finite (E_RANGE)', () => {
    for (const temperature of [0, -1, NaN, Infinity])
      expectError(() => logprobsSync(logits, Int32Array.of(0, 0, 0), { temperature }), 'E_RANGE', /temperature/);
  });
});
