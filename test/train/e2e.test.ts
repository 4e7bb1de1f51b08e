/**
 * A CI-sized Trust-GRPO run from the shipped warm-started policy on the easy subset (count one
 * colour, 1–3 shapes): the mean outcome reward of the last steps is above that of the first ones.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TrustGrpoTrainer, readMetrics, defaultPolicyDir } from '../../lib/train/trainer';

const shipped = fs.existsSync(path.join(defaultPolicyDir(), 'config.json'));

(shipped ? test : test.skip)('Trust-GRPO raises the mean outcome reward over the SFT start on the easy subset', async () => {
  const runsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-e2e-'));
  try {
    const t = await TrustGrpoTrainer.create({
      name: 'e2e', runsDir, steps: 24, promptsPerStep: 8, groupSize: 8, maxNew: 24, difficulty: 'easy', lr: 5e-4,
      trainProblems: 500, evalProblems: 16, evalEvery: 0, checkpointEvery: 0, klCoef: 0,
    });
    await t.run();
    t.dispose();
    const m = (await readMetrics(path.join(runsDir, 'e2e'))).filter((x) => x.step > 0);
    const avg = (xs: typeof m) => xs.reduce((a, x) => a + x.outcomeMean, 0) / xs.length;
    const first = avg(m.slice(0, 6));
    const last = avg(m.slice(-6));
    console.log(`e2e: mean outcome reward, steps 1-6 ${first.toFixed(3)} -> steps 19-24 ${last.toFixed(3)}`);
    expect(last).toBeGreaterThan(first + 0.05);
  } finally {
    fs.rmSync(runsDir, { recursive: true, force: true });
  }
}, 180_000);
