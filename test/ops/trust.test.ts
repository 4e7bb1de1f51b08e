import { thinkingNeeded, trustRewards, type TrustOptions, type TrustResult } from '../../lib/ops/trust';
import { Rng, expectClose, groupsOf, testSeed, thinkingNeededOracle, trustOracle, expectError } from './oracle';

// Tolerance: outputs are f32 (inputs f32, means and weights in float64): relative 1e-6 plus 1e-7.
const TOL = (exp: ArrayLike<number>) => (i: number) => 1e-6 * Math.abs(exp[i]) + 1e-7;

const SEED = testSeed('trust.test');
const root = new Rng(SEED);
const where = (what: string) => `seed ${SEED}, ${what}`;
const f32 = (xs: number[]) => Float32Array.from(xs);

/** Compares every output with hand-computed values (NaN must be NaN). */
function expectTrust(r: TrustResult, exp: { rewards: number[]; gamma: number[]; weight: number[]; muC: number[]; muW: number[]; anneal?: number }) {
  const cmp = (what: string, got: ArrayLike<number>, e: number[]) => expectClose(what, 'hand-computed', got, e, TOL(e));
  cmp('rewards', r.rewards, exp.rewards);
  cmp('gamma', r.gamma, exp.gamma);
  cmp('thinkingWeight', r.thinkingWeight, exp.weight);
  cmp('muCorrect', r.muCorrect, exp.muC);
  cmp('muWrong', r.muWrong, exp.muW);
  if (exp.anneal !== undefined) expect(r.anneal).toBeCloseTo(exp.anneal, 7);
}

describe('trustRewards, paper mode (hand-computed)', () => {
  const paper = (step = 0, T = 100): TrustOptions => ({ step, T });

  test("Figure 4: wrong answers think 0.8, right ones 0.2 → γ = exp(−0.6) ≈ 0.549", () => {
    const r = trustRewards({ outcome: f32([0, 0, 1, 1]), thinking: f32([0.8, 0.8, 0.2, 0.2]), groupSize: 4 }, paper());
    const g = Math.exp(-0.6);
    expect(g).toBeCloseTo(0.5488, 4);
    const w = 0.3 * g;
    expectTrust(r, { rewards: [0.8 * w, 0.8 * w, 1 + 0.2 * w, 1 + 0.2 * w], gamma: [g], weight: [w], muC: [0.2], muW: [0.8], anneal: 1 });
  });

  test('right answers out-think wrong ones: γ = 1', () => {
    const r = trustRewards({ outcome: f32([1, 0, 1]), thinking: f32([0.9, 0.4, 0.7]), groupSize: 3 }, paper());
    expectTrust(r, { rewards: [1 + 0.27, 0.12, 1 + 0.21], gamma: [1], weight: [0.3], muC: [0.8], muW: [0.4] });
  });

  test('all correct, all wrong: γ = 1, the empty set has μ = NaN', () => {
    const a = 0.3 * Math.exp(-0.5);
    const r = trustRewards({ outcome: f32([1, 1, 0.6, 0, 0.3, 0.1]), thinking: f32([0.5, 0.9, 0.1, 0.4, 0.6, 0.2]), groupSize: 3 }, paper(50, 100));
    expectTrust(r, {
      rewards: [1 + a * 0.5, 1 + a * 0.9, 0.6 + a * 0.1, a * 0.4, 0.3 + a * 0.6, 0.1 + a * 0.2],
      gamma: [1, 1], weight: [a, a], muC: [0.5, NaN], muW: [NaN, 0.4], anneal: Math.exp(-0.5),
    });
  });

  test('missing thinking scores (NaN) are left out of μ and add 0 to R', () => {
    const g = Math.exp(-0.6);
    const w = 0.3 * g;
    const r = trustRewards({ outcome: f32([1, 0, 1, 0]), thinking: f32([NaN, 0.9, 0.3, NaN]), groupSize: 4 }, paper());
    expectTrust(r, { rewards: [1, 0.9 * w, 1 + 0.3 * w, 0], gamma: [g], weight: [w], muC: [0.3], muW: [0.9] });
    // every correct score missing: C is empty after dropping NaN → γ = 1
    const r2 = trustRewards({ outcome: f32([1, 0]), thinking: f32([NaN, 0.5]), groupSize: 2 }, paper());
    expectTrust(r2, { rewards: [1, 0.15], gamma: [1], weight: [0.3], muC: [NaN], muW: [0.5] });
    // every score missing
    const r3 = trustRewards({ outcome: f32([1, 0]), thinking: f32([NaN, NaN]), groupSize: 2 }, paper());
    expectTrust(r3, { rewards: [1, 0], gamma: [1], weight: [0.3], muC: [NaN], muW: [NaN] });
  });

  test('non-contiguous groupIds: groups in order of first appearance, same answer as contiguous groups', () => {
    const ids = Int32Array.of(7, 3, 7, 3, 9, 7);
    const outcome = f32([1, 0, 0, 1, 1, 0]);
    const thinking = f32([0.2, 0.1, 0.7, 0.5, 0.6, 0.9]);
    const r = trustRewards({ outcome, thinking, groupIds: ids }, paper());
    const g = Math.exp(-0.6);
    const w = 0.3 * g;
    expectTrust(r, {
      rewards: [1 + 0.2 * w, 0.03, 0.7 * w, 1 + 0.15, 1 + 0.18, 0.9 * w],
      gamma: [g, 1, 1], weight: [w, 0.3, 0.3], muC: [0.2, 0.5, 0.6], muW: [0.8, 0.1, NaN],
    });
    // the same groups laid out contiguously
    const perm = [0, 2, 5, 1, 3];
    const c = trustRewards({ outcome: f32(perm.map((i) => outcome[i])), thinking: f32(perm.map((i) => thinking[i])), groupIds: Int32Array.of(0, 0, 0, 1, 1) }, paper());
    perm.forEach((i, k) => expect(c.rewards[k]).toBe(r.rewards[i]));
  });

  test('annealing exp(−step/T): T defaults to totalSteps, T overrides it; alpha and threshold options', () => {
    const inputs = { outcome: f32([0, 1]), thinking: f32([0.8, 0.2]), groupSize: 2 };
    const g = Math.exp(-0.6);
    const a = trustRewards(inputs, { step: 250, totalSteps: 1000 });
    expect(a.anneal).toBeCloseTo(Math.exp(-0.25), 7);
    expect(a.thinkingWeight[0]).toBeCloseTo(0.3 * g * Math.exp(-0.25), 7);
    const b = trustRewards(inputs, { step: 250, totalSteps: 1000, T: 500 });
    expect(b.anneal).toBeCloseTo(Math.exp(-0.5), 7);
    const c = trustRewards(inputs, { step: 0, T: 10, alpha: 0.5 });
    expect(c.thinkingWeight[0]).toBeCloseTo(0.5 * g, 7);
    expect(c.rewards[0]).toBeCloseTo(0.5 * g * 0.8, 6);
    // threshold 0.7: Ro = 0.6 now counts as wrong
    const d = trustRewards({ outcome: f32([0.6, 1]), thinking: f32([0.9, 0.3]), groupSize: 2 }, { step: 0, T: 1, threshold: 0.7 });
    expect(d.gamma[0]).toBeCloseTo(Math.exp(-0.6), 6);
    const e = trustRewards({ outcome: f32([0.6, 1]), thinking: f32([0.9, 0.3]), groupSize: 2 }, { step: 0, T: 1 });
    expect(e.gamma[0]).toBe(1); // both correct at the default 0.5
    expectError(() => trustRewards(inputs, { step: 1 }), 'E_CONFIG', /totalSteps/);
  });
});

describe('trustRewards, reference preset (hand-computed)', () => {
  const ref = (step = 0, extra: Partial<TrustOptions> = {}): TrustOptions => ({ mode: 'reference', step, ...extra });

  test('T defaults to 500', () => {
    const r = trustRewards({ outcome: f32([0.3, 1]), thinking: f32([0.8, 0.2]), groupSize: 2 }, ref(100));
    expect(r.anneal).toBeCloseTo(Math.exp(-0.2), 7);
    expect(r.thinkingWeight[0]).toBeCloseTo(0.3 * Math.exp(-0.6) * Math.exp(-0.2), 7);
  });

  test('all Ro ≥ 0.9 or all ≤ 0.1: thinking weight 0, gamma 1, R = Ro', () => {
    const r = trustRewards({ outcome: f32([1, 0.95, 0.9, 0, 0.1, 0.05]), thinking: f32([0.1, 0.2, 0.3, 0.9, 0.9, 0.9]), groupSize: 3 }, ref());
    expectTrust(r, { rewards: [1, 0.95, 0.9, 0, 0.1, 0.05], gamma: [1, 1], weight: [0, 0], muC: [0, 0], muW: [0, 0] });
    // custom bounds: 0.9 no longer counts as all-high
    const r2 = trustRewards({ outcome: f32([1, 0.95, 0.9]), thinking: f32([0.1, 0.2, 0.3]), groupSize: 3 }, ref(0, { allSameHigh: 0.92 }));
    expect(r2.thinkingWeight[0]).toBeCloseTo(0.3, 7);
    const r3 = trustRewards({ outcome: f32([0, 0.1, 0.15]), thinking: f32([0.9, 0.9, 0.9]), groupSize: 3 }, ref(0, { allSameLow: 0.2, gate: 0.1 }));
    expect(r3.thinkingWeight[0]).toBe(0);
  });

  test('Ro below the gate: Rt treated as 0 and counted in μw', () => {
    // Ro = 0 < 0.2: its 0.9 is never asked for; μw = (0 + 0.8) / 2
    const g = Math.exp(0.3 - 0.4);
    const w = 0.3 * g;
    const r = trustRewards({ outcome: f32([1, 1, 0, 0.3]), thinking: f32([0.2, 0.4, 0.9, 0.8]), groupSize: 4 }, ref());
    expectTrust(r, { rewards: [1 + 0.2 * w, 1 + 0.4 * w, 0, 0.3 + 0.8 * w], gamma: [g], weight: [w], muC: [0.3], muW: [0.4] });
    // paper mode on the same group reads the 0.9
    const p = trustRewards({ outcome: f32([1, 1, 0, 0.3]), thinking: f32([0.2, 0.4, 0.9, 0.8]), groupSize: 4 }, { step: 0, T: 1 });
    expect(p.gamma[0]).toBeCloseTo(Math.exp(0.3 - 0.85), 6);
    // a lower gate lets it through
    const r2 = trustRewards({ outcome: f32([1, 1, 0, 0.3]), thinking: f32([0.2, 0.4, 0.9, 0.8]), groupSize: 4 }, ref(0, { gate: 0 }));
    expect(r2.muWrong[0]).toBeCloseTo(0.85, 6);
  });

  test('all wrong (not all low): C empty → μc = 0, γ = 1', () => {
    const r = trustRewards({ outcome: f32([0, 0.3, 0.1]), thinking: f32([0.4, 0.6, 0.2]), groupSize: 3 }, ref());
    expectTrust(r, { rewards: [0, 0.3 + 0.3 * 0.6, 0.1], gamma: [1], weight: [0.3], muC: [0], muW: [0.2] });
  });

  test('γ only when C has a non-missing score; missing scores excluded', () => {
    const r = trustRewards({ outcome: f32([1, 0.3]), thinking: f32([NaN, 0.5]), groupSize: 2 }, ref());
    expectTrust(r, { rewards: [1, 0.3 + 0.15], gamma: [1], weight: [0.3], muC: [0], muW: [0.5] });
    const g = Math.exp(0.1 - 0.7);
    const r2 = trustRewards({ outcome: f32([1, 1, 0.3, 0.4]), thinking: f32([NaN, 0.1, 0.7, NaN]), groupSize: 4 }, ref());
    expectTrust(r2, { rewards: [1, 1 + 0.1 * 0.3 * g, 0.3 + 0.7 * 0.3 * g, 0.4], gamma: [g], weight: [0.3 * g], muC: [0.1], muW: [0.7] });
  });

  test('Figure 4 under the preset (Ro 0.3 above the gate)', () => {
    const r = trustRewards({ outcome: f32([0.3, 0.3, 1, 1]), thinking: f32([0.8, 0.8, 0.2, 0.2]), groupSize: 4 }, ref(0, { T: 1 }));
    expect(r.gamma[0]).toBeCloseTo(Math.exp(-0.6), 6);
  });
});

describe(`thinkingNeeded [seed ${SEED}]`, () => {
  const outcome = f32([1, 0.95, 0.9, 0, 0.3, 1, 0.05, 0, 0.1, 0.15, 0.5, 0.2]);
  test('paper mode: every response', () => {
    expect(Array.from(thinkingNeeded(outcome, { groupSize: 3 }))).toEqual(new Array(12).fill(1));
    expect(Array.from(thinkingNeeded(outcome, { groupSize: 3 }, { mode: 'paper' }))).toEqual(new Array(12).fill(1));
  });
  test('reference mode: skips all-high / all-low groups and Ro below the gate', () => {
    const got = Array.from(thinkingNeeded(outcome, { groupSize: 3 }, { mode: 'reference' }));
    expect(got).toEqual([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1]);
    expect(Array.from(thinkingNeeded(outcome, { groupSize: 3 }, { mode: 'reference', gate: 0.1, allSameHigh: 0.96 }))).toEqual([1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1]);
    const ids = Int32Array.of(4, 2, 4, 2, 4, 2);
    expect(Array.from(thinkingNeeded(f32([1, 0, 0.95, 0.5, 0.9, 0.1]), { groupIds: ids }, { mode: 'reference' }))).toEqual([0, 0, 0, 1, 0, 0]);
  });
  test('agrees with trustRewards: a response that is not needed does not change R', () => {
    const rng = root.fork('needed consistency');
    const n = 24;
    const out = f32(Array.from({ length: n }, () => rng.pick([0, 0.05, 0.15, 0.3, 0.6, 0.95, 1])));
    const need = thinkingNeeded(out, { groupSize: 4 }, { mode: 'reference' });
    const th = f32(Array.from({ length: n }, () => rng.uniform(0, 1)));
    const a = trustRewards({ outcome: out, thinking: th, groupSize: 4 }, { mode: 'reference', step: 3 });
    const th2 = th.map((v, i) => (need[i] ? v : rng.uniform(0, 1)));
    const b = trustRewards({ outcome: out, thinking: th2, groupSize: 4 }, { mode: 'reference', step: 3 });
    expect(Array.from(b.rewards)).toEqual(Array.from(a.rewards));
    expect(Array.from(need)).toEqual(Array.from(thinkingNeededOracle(out, groupsOf(n, { groupSize: 4 }), { mode: 'reference' })));
  });
});

describe(`trustRewards vs the float64 oracle (random groups) [seed ${SEED}]`, () => {
  for (const mode of ['paper', 'reference'] as const) {
    test(mode, () => {
      const rng = root.fork(`random ${mode}`);
      for (let rep = 0; rep < 40; rep++) {
        const useIds = rng.bool();
        const size = rng.int(1, 8);
        const n = useIds ? rng.int(0, 30) : size * rng.int(0, 5);
        const groupIds = useIds ? Int32Array.from({ length: n }, () => rng.int(-3, 5)) : undefined;
        const outcome = f32(Array.from({ length: n }, () => (rng.bool(0.6) ? rng.pick([0, 1, 0.05, 0.95]) : rng.next())));
        const thinking = f32(Array.from({ length: n }, () => (rng.bool(0.15) ? NaN : rng.int(0, 10) / 10)));
        const opts: TrustOptions = { mode, step: rng.int(0, 1000), T: rng.int(1, 2000) };
        if (rng.bool(0.3)) opts.alpha = rng.uniform(0, 1);
        if (rng.bool(0.3)) opts.threshold = rng.uniform(0.3, 0.7);
        if (rng.bool(0.3)) opts.gate = rng.uniform(0, 0.4);
        const grouping = useIds ? { groupIds } : { groupSize: size };
        const r = trustRewards({ outcome, thinking, ...grouping }, opts);
        const o = trustOracle(outcome, thinking, groupsOf(n, grouping), { ...opts, T: opts.T! });
        const msg = where(`${mode} rep ${rep} ${JSON.stringify(opts)} n=${n}`);
        expectClose('rewards', msg, r.rewards, o.rewards, TOL(o.rewards));
        expectClose('gamma', msg, r.gamma, o.gamma, TOL(o.gamma));
        expectClose('thinkingWeight', msg, r.thinkingWeight, o.thinkingWeight, TOL(o.thinkingWeight));
        expectClose('muCorrect', msg, r.muCorrect, o.muCorrect, TOL(o.muCorrect));
        expectClose('muWrong', msg, r.muWrong, o.muWrong, TOL(o.muWrong));
        expect(Math.abs(r.anneal - o.anneal)).toBeLessThanOrEqual(1e-7 * o.anneal + 1e-12);
        expect(Array.from(thinkingNeeded(outcome, grouping, { mode, gate: opts.gate }))).toEqual(Array.from(thinkingNeededOracle(outcome, groupsOf(n, grouping), { mode, gate: opts.gate })));
      }
    });
  }
});

describe('trustRewards argument errors', () => {
  const ok = { outcome: f32([1, 0, 1, 0]), thinking: f32([0.1, 0.2, 0.3, 0.4]) };
  test.each([
    ['groupSize not dividing n', { ...ok, groupSize: 3 }, { step: 0, T: 1 }, 'E_SHAPE', /groupSize/],
    ['both groupSize and groupIds', { ...ok, groupSize: 2, groupIds: Int32Array.of(0, 0, 1, 1) }, { step: 0, T: 1 }, 'E_CONFIG', /groupSize/],
    ['neither', ok, { step: 0, T: 1 }, 'E_CONFIG', /groupIds/],
    ['groupIds length', { ...ok, groupIds: Int32Array.of(0, 1) }, { step: 0, T: 1 }, 'E_SHAPE', /groupIds/],
    ['thinking length', { ...ok, thinking: f32([0.1]), groupSize: 2 }, { step: 0, T: 1 }, 'E_SHAPE', /thinking/],
    ['NaN outcome', { ...ok, outcome: f32([1, NaN, 1, 0]), groupSize: 2 }, { step: 0, T: 1 }, 'E_RANGE', /outcome\[1\]/],
    ['infinite thinking', { ...ok, thinking: f32([0, 0, Infinity, 0]), groupSize: 2 }, { step: 0, T: 1 }, 'E_RANGE', /thinking\[2\]/],
    ['T = 0', { ...ok, groupSize: 2 }, { step: 0, T: 0 }, 'E_RANGE', /: T must/],
    ['negative step', { ...ok, groupSize: 2 }, { step: -1, T: 1 }, 'E_RANGE', /step/],
    ['missing step', { ...ok, groupSize: 2 }, { T: 1 } as TrustOptions, 'E_CONFIG', /step/],
    ['unknown mode', { ...ok, groupSize: 2 }, { step: 0, T: 1, mode: 'x' as 'paper' }, 'E_CONFIG', /mode/],
  ] as const)('%s', (_n, inputs, opts, code, names) => {
    expectError(() => trustRewards(inputs as never, opts as TrustOptions), code, names);
  });
});
