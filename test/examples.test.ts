/**
 * The typed experiment script in examples/ runs at tiny size against the shipped checkpoints: two
 * variants trained, evaluated on the same problems, and compared with a paired interval.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compare } from '../examples/compare';

test('examples/compare.ts: two variants, per-step callbacks, a paired interval on the same problems', async () => {
  const runsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-example-'));
  try {
    const steps: string[] = [];
    const r = await compare({ steps: 2, evalProblems: 12, promptsPerStep: 2, groupSize: 4, seed: 3, runsDir, onStep: (v, m) => steps.push(`${v}:${m.step}`) });
    expect(steps).toEqual(['paper:1', 'paper:2', 'centred:1', 'centred:2']);
    expect(r.variants.map((v) => v.variant)).toEqual(['paper', 'centred']);
    for (const v of r.variants) {
      expect(v.outcomes).toHaveLength(12);
      expect(v.accuracyAfter).toBeCloseTo(v.outcomes.reduce((a, b) => a + b, 0) / 12, 10);
      expect(v.accuracyBefore).toBeGreaterThanOrEqual(0);
    }
    const want = r.variants[1].accuracyAfter - r.variants[0].accuracyAfter;
    expect(r.accuracyDiff.estimate).toBeCloseTo(want, 10);
    expect(r.accuracyDiff.lo).toBeLessThanOrEqual(r.accuracyDiff.estimate);
    expect(r.accuracyDiff.hi).toBeGreaterThanOrEqual(r.accuracyDiff.estimate);
  } finally {
    fs.rmSync(runsDir, { recursive: true, force: true });
  }
}, 300_000);
