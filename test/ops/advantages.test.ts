import { groupAdvantages } from '../../lib/ops/advantages';
import { Rng, advantagesOracle, expectClose, groupsOf, testSeed, expectError } from './oracle';

// Tolerance: f32 outputs of a float64 computation on f32 rewards: relative 1e-6 plus 1e-7.
const TOL = (exp: ArrayLike<number>) => (i: number) => 1e-6 * Math.abs(exp[i]) + 1e-7;

const SEED = testSeed('advantages.test');
const root = new Rng(SEED);
const where = (what: string) => `seed ${SEED}, ${what}`;
const f32 = (xs: number[]) => Float32Array.from(xs);
const near = (got: Float32Array, exp: number[]) => expectClose('advantages', 'hand-computed', got, exp, TOL(exp));

describe('groupAdvantages (hand-computed)', () => {
  const s3 = Math.sqrt(1 / 3); // unbiased std of [1, 0, 1, 0]
  test("scale 'group' (default): (R − mean) / (unbiased std + 1e-6)", () => {
    const a = 0.5 / (s3 + 1e-6);
    near(groupAdvantages({ rewards: f32([1, 0, 1, 0]), groupSize: 4 }), [a, -a, a, -a]);
    near(groupAdvantages({ rewards: f32([1, 0, 1, 0]), groupSize: 4 }, { scale: 'group' }), [a, -a, a, -a]);
    // two groups, each with its own mean and std
    const g2 = 1 / (Math.SQRT2 + 1e-6);
    near(groupAdvantages({ rewards: f32([1, 3, 10, 20]), groupSize: 2 }), [-g2, g2, -5 / (Math.sqrt(50) + 1e-6), 5 / (Math.sqrt(50) + 1e-6)]);
  });
  test('eps is added to the std', () => {
    const a = 0.5 / (s3 + 0.5);
    near(groupAdvantages({ rewards: f32([1, 0, 1, 0]), groupSize: 4 }, { eps: 0.5 }), [a, -a, a, -a]);
    near(groupAdvantages({ rewards: f32([1, 0, 1, 0]), groupSize: 4 }, { eps: 0 }), [0.5 / s3, -0.5 / s3, 0.5 / s3, -0.5 / s3]);
  });
  test('a group with equal rewards gives 0 (std 0, divided by eps)', () => {
    near(groupAdvantages({ rewards: f32([2, 2, 2]), groupSize: 3 }), [0, 0, 0]);
  });
  test("scale 'batch': per-group mean, std over all rewards (unbiased)", () => {
    // [1, 0, 3, 5]: mean 2.25, Σ(r − 2.25)² = 14.75, std = sqrt(14.75 / 3)
    const sd = Math.sqrt(14.75 / 3) + 1e-6;
    near(groupAdvantages({ rewards: f32([1, 0, 3, 5]), groupSize: 2 }, { scale: 'batch' }), [0.5 / sd, -0.5 / sd, -1 / sd, 1 / sd]);
    near(groupAdvantages({ rewards: f32([1, 0, 3, 5]), groupSize: 2 }, { scale: 'batch', eps: 1 }), [0.5 / (sd + 1 - 1e-6), -0.5 / (sd + 1 - 1e-6), -1 / (sd + 1 - 1e-6), 1 / (sd + 1 - 1e-6)]);
  });
  test("scale 'none': R − mean, no division (Dr. GRPO)", () => {
    near(groupAdvantages({ rewards: f32([1, 0, 3, 5]), groupSize: 2 }, { scale: 'none' }), [0.5, -0.5, -1, 1]);
    near(groupAdvantages({ rewards: f32([1, 0, 3, 5]), groupSize: 2 }, { scale: 'none', eps: 3 }), [0.5, -0.5, -1, 1]);
  });
  test('a group of one: mean 0, std 1', () => {
    near(groupAdvantages({ rewards: f32([0.7, -2]), groupSize: 1 }), [0.7 / (1 + 1e-6), -2 / (1 + 1e-6)]);
    near(groupAdvantages({ rewards: f32([0.7, -2]), groupSize: 1 }, { scale: 'none' }), [0.7, -2]);
    // a singleton beside a larger group (groupIds); under 'batch' its mean is 0 too
    const ids = Int32Array.of(1, 2, 1);
    near(groupAdvantages({ rewards: f32([1, 5, 3]), groupIds: ids }), [-1 / (Math.SQRT2 + 1e-6), 5 / (1 + 1e-6), 1 / (Math.SQRT2 + 1e-6)]);
    const sd = Math.sqrt(8 / 2) + 1e-6; // [1, 5, 3]: mean 3, Σ = 4 + 4 + 0
    near(groupAdvantages({ rewards: f32([1, 5, 3]), groupIds: ids }, { scale: 'batch' }), [-1 / sd, 5 / sd, 1 / sd]);
  });
  test('non-contiguous groupIds', () => {
    const ids = Int32Array.of(5, 1, 5, 1);
    const g5 = 1 / (Math.SQRT2 + 1e-6);
    const g1 = 5 / (Math.sqrt(50) + 1e-6);
    near(groupAdvantages({ rewards: f32([1, 10, 3, 20]), groupIds: ids }), [-g5, -g1, g5, g1]);
  });
  test('empty input', () => {
    expect(groupAdvantages({ rewards: new Float32Array(0), groupSize: 4 }).length).toBe(0);
    expect(groupAdvantages({ rewards: new Float32Array(0), groupIds: new Int32Array(0) }).length).toBe(0);
  });
});

describe(`groupAdvantages vs the float64 oracle (random) [seed ${SEED}]`, () => {
  for (const scale of ['group', 'batch', 'none'] as const) {
    test(scale, () => {
      const rng = root.fork(`random ${scale}`);
      for (let rep = 0; rep < 40; rep++) {
        const useIds = rng.bool();
        const size = rng.int(1, 9);
        const n = useIds ? rng.int(1, 40) : size * rng.int(1, 6);
        const grouping = useIds ? { groupIds: Int32Array.from({ length: n }, () => rng.int(0, 6)) } : { groupSize: size };
        const rewards = f32(Array.from({ length: n }, () => (rng.bool(0.5) ? rng.pick([0, 1, 1.3]) : rng.uniform(-2, 3))));
        const eps = rng.bool(0.5) ? undefined : rng.pick([0, 1e-4, 0.1]);
        const got = groupAdvantages({ rewards, ...grouping }, { scale, eps });
        const exp = advantagesOracle(rewards, groupsOf(n, grouping), scale, eps ?? 1e-6);
        // with eps = 0 a group of equal rewards divides 0 by 0; compare only where the oracle is finite
        expectClose('advantages', where(`${scale} rep ${rep} n=${n} eps=${eps}`), got, exp, (i) =>
          Number.isFinite(exp[i]) ? 1e-6 * Math.abs(exp[i]) + 1e-6 : Infinity);
      }
    });
  }
});

describe('groupAdvantages argument errors', () => {
  test.each([
    ['groupSize not dividing n', { rewards: f32([1, 2, 3, 4]), groupSize: 3 }, {}, 'E_SHAPE', /groupSize/],
    ['groupSize 0', { rewards: f32([1, 2]), groupSize: 0 }, {}, 'E_RANGE', /groupSize/],
    ['both groupings', { rewards: f32([1, 2]), groupSize: 2, groupIds: Int32Array.of(0, 0) }, {}, 'E_CONFIG', /groupSize/],
    ['no grouping', { rewards: f32([1, 2]) }, {}, 'E_CONFIG', /groupIds/],
    ['groupIds length', { rewards: f32([1, 2]), groupIds: Int32Array.of(0) }, {}, 'E_SHAPE', /groupIds/],
    ['NaN reward', { rewards: f32([1, NaN]), groupSize: 2 }, {}, 'E_RANGE', /rewards\[1\]/],
    ['infinite reward', { rewards: f32([-Infinity, 1]), groupSize: 2 }, {}, 'E_RANGE', /rewards\[0\]/],
    ['rewards of the wrong type', { rewards: [1, 2], groupSize: 2 }, {}, 'E_TYPE', /rewards/],
    ['unknown scale', { rewards: f32([1, 2]), groupSize: 2 }, { scale: 'batchy' }, 'E_CONFIG', /scale/],
    ['negative eps', { rewards: f32([1, 2]), groupSize: 2 }, { eps: -1 }, 'E_RANGE', /eps/],
  ] as const)('%s', (_n, inputs, opts, code, names) => {
    expectError(() => groupAdvantages(inputs as never, opts as never), code, names);
  });
});
