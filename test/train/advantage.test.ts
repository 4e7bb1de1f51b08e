import { groupAdvantages } from '../../lib/ops/advantages';
import { trustRewards } from '../../lib/ops/trust';
import { composeAdvantages, uniformShares, withinGroupCorrelation } from '../../lib/train/advantage';
import { pearson } from '../../lib/stats';
import { Rng, testSeed } from '../ops/oracle';

const SEED = testSeed('advantage.test');
const rng = new Rng(SEED);
const f32 = (xs: number[]) => Float32Array.from(xs);

/** G responses per group: outcomes 0/1 (some groups all equal), thinking in [0, 1] with some NaN. */
function randomParts(groups: number, G: number) {
  const outcome = new Float32Array(groups * G);
  const thinking = new Float32Array(groups * G);
  for (let g = 0; g < groups; g++) {
    const kind = g % 3; // all wrong, all right, mixed
    for (let j = 0; j < G; j++) {
      const i = g * G + j;
      outcome[i] = kind === 0 ? 0 : kind === 1 ? 1 : rng.next() < 0.5 ? 1 : 0;
      thinking[i] = rng.next() < 0.1 ? NaN : Math.round(rng.next() * 10) / 10;
    }
  }
  return { outcome, thinking };
}

describe(`composeAdvantages (seed ${SEED})`, () => {
  test.each(['paper', 'reference'] as const)("'paper' gives trustRewards' rewards and their group advantages (%s trust mode)", (mode) => {
    const G = 6;
    const { outcome, thinking } = randomParts(9, G);
    if (mode === 'reference') for (let i = 0; i < outcome.length; i++) if (outcome[i] < 0.2) thinking[i] = 0;
    const tr = trustRewards({ outcome, thinking, groupSize: G }, { mode, step: 7, T: 40 });
    const c = composeAdvantages({ outcome, thinking, weight: tr.thinkingWeight, groupSize: G }, 'paper');
    for (let i = 0; i < outcome.length; i++) expect(c.rewards[i]).toBeCloseTo(tr.rewards[i], 6);
    const ref = groupAdvantages({ rewards: tr.rewards, groupSize: G });
    for (let i = 0; i < outcome.length; i++) expect(c.advantages[i]).toBeCloseTo(ref[i], 4);
  });

  test("'centred': Ro normalised per group plus w·(Rt − group mean), never rescaled", () => {
    const G = 5;
    const { outcome, thinking } = randomParts(12, G);
    const weight = Float32Array.from({ length: 12 }, () => 0.3 * rng.next());
    const c = composeAdvantages({ outcome, thinking, weight, groupSize: G }, 'centred');
    const base = groupAdvantages({ rewards: outcome, groupSize: G });
    for (let g = 0; g < 12; g++) {
      const idx = Array.from({ length: G }, (_, j) => g * G + j).filter((i) => !Number.isNaN(thinking[i]));
      const m = idx.reduce((a, i) => a + thinking[i], 0) / idx.length;
      for (let j = 0; j < G; j++) {
        const i = g * G + j;
        const want = base[i] + (Number.isNaN(thinking[i]) ? 0 : weight[g] * (thinking[i] - m));
        expect(c.advantages[i]).toBeCloseTo(want, 5);
        if (c.uniform[g]) expect(Math.abs(c.advantages[i])).toBeLessThanOrEqual(weight[g] + 1e-6);
      }
    }
  });

  test('an all-same-outcome group: the paper blows tiny Rt differences up to unit advantages; centred and skip-uniform do not', () => {
    const outcome = f32([1, 1, 1, 1]);
    const thinking = f32([0.5, 0.5, 0.6, 0.6]);
    const weight = f32([0.3]);
    const paper = composeAdvantages({ outcome, thinking, weight, groupSize: 4 }, 'paper');
    expect(Math.abs(paper.advantages[0])).toBeGreaterThan(0.8);
    const centred = composeAdvantages({ outcome, thinking, weight, groupSize: 4 }, 'centred');
    expect([...centred.advantages].map((a) => +a.toFixed(6))).toEqual([-0.015, -0.015, 0.015, 0.015]);
    const skip = composeAdvantages({ outcome, thinking, weight, groupSize: 4 }, 'skip-uniform');
    expect([...skip.advantages]).toEqual([0, 0, 0, 0]);
    expect([...skip.rewards]).toEqual([1, 1, 1, 1]);
    expect(uniformShares(paper, 4)).toEqual({ groups: 1, absAdvantage: 1 });
  });

  test("'skip-uniform' matches 'paper' in mixed groups", () => {
    const G = 4;
    const { outcome, thinking } = randomParts(9, G);
    const weight = new Float32Array(9).fill(0.2);
    const p = composeAdvantages({ outcome, thinking, weight, groupSize: G }, 'paper');
    const s = composeAdvantages({ outcome, thinking, weight, groupSize: G }, 'skip-uniform');
    for (let i = 0; i < outcome.length; i++) expect(s.advantages[i]).toBeCloseTo(p.uniform[Math.floor(i / G)] ? 0 : p.advantages[i], 5);
  });

  test('uniformShares counts groups and their part of |advantage|', () => {
    const c = composeAdvantages({ outcome: f32([1, 1, 0, 1]), thinking: f32([0.2, 0.4, NaN, NaN]), weight: f32([0.5, 0.5]), groupSize: 2 }, 'centred');
    // group 0 (uniform): ±0.05; group 1 (mixed): ±0.7071
    const a = [...c.advantages].map(Math.abs);
    expect(uniformShares(c, 2).groups).toBe(0.5);
    expect(uniformShares(c, 2).absAdvantage).toBeCloseTo((a[0] + a[1]) / a.reduce((x, y) => x + y, 0), 6);
  });

  test('bad inputs name the argument', () => {
    expect(() => composeAdvantages({ outcome: f32([1, 0, 1]), thinking: f32([0, 0, 0]), weight: f32([1]), groupSize: 2 }, 'paper')).toThrow(/groupSize must divide the 3 outcomes/);
    expect(() => composeAdvantages({ outcome: f32([1, 0]), thinking: f32([0]), weight: f32([1]), groupSize: 2 }, 'paper')).toThrow(/thinking must have 2 entries/);
    expect(() => composeAdvantages({ outcome: f32([1, 0]), thinking: f32([0, 1]), weight: f32([1, 1]), groupSize: 2 }, 'paper')).toThrow(/weight must have 1 entries/);
    expect(() => composeAdvantages({ outcome: f32([1, 0]), thinking: f32([0, 1]), weight: f32([1]), groupSize: 2 }, 'bogus' as never)).toThrow(/mode must be one of paper, centred, skip-uniform, got "bogus"/);
  });
});

describe('withinGroupCorrelation', () => {
  test('the mean of per-group Pearson correlations; constant or missing groups left out', () => {
    const G = 4;
    const t = [0.1, 0.5, 0.3, 0.9, /* constant */ 0.5, 0.5, 0.5, 0.5, /* one NaN */ 0.2, NaN, 0.8, 0.4];
    const j = [0.0, 0.6, 0.2, 1.0, 0.1, 0.2, 0.3, 0.4, 0.9, 0.5, 0.1, 0.3];
    const want = (pearson(t.slice(0, 4), j.slice(0, 4)) + pearson([0.2, 0.8, 0.4], [0.9, 0.1, 0.3])) / 2;
    expect(withinGroupCorrelation(t, j, G)).toBeCloseTo(want, 10);
    expect(withinGroupCorrelation([0.5, 0.5], [0, 1], 2)).toBeNaN();
  });
});
