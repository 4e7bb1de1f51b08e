import { scoreLoss } from '../../lib/model/reward';
import { Rng, testSeed } from '../ops/oracle';

const SEED = testSeed('reward-loss.test');
const rng = new Rng(SEED);

describe(`scoreLoss (seed ${SEED})`, () => {
  test('cross-entropy alone: loss and gradient against a float64 oracle', () => {
    const z = [0.3, -2, 5, 0];
    const y = [0.7, 0, 1, 0.5];
    const { loss, grad } = scoreLoss(z, y);
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    const want = z.reduce((a, v, i) => a - (y[i] * Math.log(sig(v)) + (1 - y[i]) * Math.log(1 - sig(v))), 0) / 4;
    expect(loss).toBeCloseTo(want, 10);
    z.forEach((v, i) => expect(grad[i]).toBeCloseTo((sig(v) - y[i]) / 4, 7));
  });

  test('with the ranking term, the gradient matches central differences on fresh random inputs', () => {
    for (let trial = 0; trial < 20; trial++) {
      const B = rng.int(2, 12);
      const z = Array.from({ length: B }, () => rng.uniform(-4, 4));
      const y = Array.from({ length: B }, () => Math.round(rng.next() * 10) / 10);
      const groups = Array.from({ length: B }, () => rng.int(0, 2));
      const rank = { groups, weight: rng.uniform(0.1, 3), margin: 0.05 };
      const { grad } = scoreLoss(z, y, rank);
      const h = 1e-5;
      for (let i = 0; i < B; i++) {
        const zp = [...z], zm = [...z];
        zp[i] += h;
        zm[i] -= h;
        const fd = (scoreLoss(zp, y, rank).loss - scoreLoss(zm, y, rank).loss) / (2 * h);
        expect(Math.abs(grad[i] - fd)).toBeLessThan(1e-5 + 1e-4 * Math.abs(fd));
      }
    }
  });

  test('pairs form only inside a group and beyond the margin; a wrong order costs more than a right one', () => {
    const y = [1, 0.2, 1, 0.2];
    const right = scoreLoss([3, -3, 3, -3], y, { groups: [0, 0, 1, 1], weight: 1 }).loss;
    const wrong = scoreLoss([-3, 3, -3, 3], y, { groups: [0, 0, 1, 1], weight: 1 }).loss;
    expect(wrong).toBeGreaterThan(right + 5);
    // across groups only: no pair, the ranking term is absent
    const apart = scoreLoss([0, 0], [1, 0], { groups: [0, 1], weight: 5 });
    expect(apart.loss).toBeCloseTo(scoreLoss([0, 0], [1, 0]).loss, 12);
    const near = scoreLoss([0, 0], [0.52, 0.5], { groups: [0, 0], weight: 5, margin: 0.05 });
    expect(near.loss).toBeCloseTo(scoreLoss([0, 0], [0.52, 0.5]).loss, 12);
  });

  test('a malformed rank option names it', () => {
    expect(() => scoreLoss([0, 1], [0, 1], { groups: [0], weight: 1 })).toThrow(/rank must be \{ groups: one group id per example \(2\)/);
    expect(() => scoreLoss([0, 1], [0, 1], { groups: [0, 0], weight: -1 })).toThrow(/weight >= 0/);
  });
});
