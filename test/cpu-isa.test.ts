/**
 * The CPU row kernels exist in several builds (portable, AVX2, AVX-512) picked at run time.
 * Each build this CPU can run must give the same results on the same inputs, including the edge
 * cases (-inf entries, masked rows, in-place gradients), and match a float64 computation.
 */
import { addon } from '../lib/native';
import { grpoLossSync, logprobsSync } from '../lib';
import { Tensor, tensorOf } from '../lib/tensor';

const seed = Number(process.env.SOPHIA_TEST_SEED ?? Date.now() % 1e9);
console.log(`cpu-isa seed ${seed}`);
let s = seed >>> 0;
const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);

const isas = (['base', 'avx2', 'avx512'] as const).filter((isa) => {
  try {
    addon().setCpuIsa({ isa });
    return true;
  } catch {
    return false;
  }
});
const original = addon().info().simd as 'base' | 'avx2' | 'avx512';
afterAll(() => addon().setCpuIsa({ isa: original }));

function f64Logprobs(x: ArrayLike<number>, V: number, labels: Int32Array) {
  const N = labels.length;
  const logp = new Float64Array(N), ent = new Float64Array(N);
  for (let t = 0; t < N; t++) {
    let m = -Infinity;
    for (let j = 0; j < V; j++) m = Math.max(m, x[t * V + j]);
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(x[t * V + j] - m);
    const lse = m + Math.log(sum);
    let h = 0;
    for (let j = 0; j < V; j++) {
      const lp = x[t * V + j] - lse;
      if (lp > -Infinity) h -= Math.exp(lp) * lp;
    }
    logp[t] = x[t * V + labels[t]] - lse;
    ent[t] = h;
  }
  return { logp, ent };
}

describe.each(['f32', 'bf16', 'f16'] as const)('CPU builds agree (%s)', (dtype) => {
  const N = 9, V = 1031; // V not a multiple of any vector width: the tails run too
  const values = new Float32Array(N * V).map(() => (rand() - 0.5) * 20);
  for (let j = 0; j < V; j += 3) values[2 * V + j] = -Infinity; // a row with masked vocabulary
  for (let j = 0; j < V; j++) values[4 * V + j] = -50 - rand(); // an all-negative row
  const labels = new Int32Array(N).map(() => 1 + 3 * Math.floor(rand() * 300));
  const mask = new Uint8Array(N).fill(1);
  mask[6] = 0;
  const common = {
    labels,
    oldLogp: new Float32Array(N).map(() => -8 + rand()),
    refLogp: new Float32Array(N).map(() => -8 + rand()),
    advantages: new Float32Array(N).map(() => rand() * 2 - 1),
    advantagesPer: 'token' as const,
    seqStarts: new Int32Array([0, 4, N]),
    mask,
  };
  const opts = { klCoef: 0.04, entropyCoef: 0.01, temperature: 0.9 };

  test('logprobs, entropy, loss and gradient', () => {
    const ref = f64Logprobs(tensorOf(values, [N, V], dtype).toFloat32().map((v) => v / 0.9), V, labels);
    const results = isas.map((isa) => {
      addon().setCpuIsa({ isa });
      const logits = tensorOf(values, [N, V], dtype);
      const lp = logprobsSync(logits, labels, { temperature: 0.9, entropy: true });
      const g = grpoLossSync({ ...common, logits }, opts);
      const inplace = tensorOf(values, [N, V], dtype);
      const gi = grpoLossSync({ ...common, logits: inplace }, { ...opts, inplace: true });
      expect(gi.gradLogits).toBe(inplace);
      expect(Array.from(inplace.toFloat32())).toEqual(Array.from(g.gradLogits!.toFloat32()));
      return { isa, lp, g, grad: g.gradLogits!.toFloat32() };
    });
    for (const r of results) {
      for (let t = 0; t < N; t++) {
        expect(Math.abs(r.lp.logp[t] - ref.logp[t])).toBeLessThan(2e-5 * Math.max(1, Math.abs(ref.logp[t])));
        expect(Math.abs(r.lp.entropy![t] - ref.ent[t])).toBeLessThan(2e-5 * Math.max(1, ref.ent[t]));
      }
      for (let j = 0; j < V; j++) expect(r.grad[6 * V + j]).toBe(0); // masked row
      const base = results[0];
      // FMA contraction differs between the builds: relative tolerance.
      expect(Math.abs(r.g.loss - base.g.loss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(base.g.loss)));
      let maxDiff = 0, maxAbs = 0;
      for (let i = 0; i < r.grad.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(r.grad[i] - base.grad[i]));
        maxAbs = Math.max(maxAbs, Math.abs(base.grad[i]));
      }
      // Builds differ only in FMA contraction and summation order: a few fp32 ulps of lse, which
      // scale every p_j, so the difference is relative to the gradient's size. bf16/f16 gradients
      // may also round to a neighbouring value of the output dtype.
      const tol = dtype === 'f32' ? 1e-5 * maxAbs : 2 ** -7 * maxAbs;
      expect(maxDiff).toBeLessThanOrEqual(tol);
    }
    console.log(`${dtype}: compared ${isas.join(', ')}`);
  });
});

test('more than one CPU build is exercised on x86-64', () => {
  if (process.arch === 'x64') expect(isas.length).toBeGreaterThanOrEqual(2);
  expect(isas).toContain('base');
  expect(Tensor).toBeDefined();
});
