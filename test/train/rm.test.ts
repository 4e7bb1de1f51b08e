/**
 * Training the thinking reward model: bin balancing, option errors, and a small end-to-end run
 * (a tiny warm-started policy, judged responses, training) that must beat the untrained model on
 * held-out problems and save a checkpoint that loads and scores as it did.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TINY_MODEL_CONFIG, loadRewardModel } from '../../lib/model';
import { createRng, generateProblems, goldResponse } from '../../lib/task';
import { balanceBins, resolveRmOptions, runRmTrain, type RmProgress } from '../../lib/train/rm';
import { runSft } from '../../lib/train/sft';
import { binCounts } from '../../lib/stats';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-rm-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('balanceBins', () => {
  /** `counts[b]` items with score b/10, each tagged with its index. */
  const itemsOf = (counts: number[]) => counts.flatMap((n, b) => Array.from({ length: n }, (_, i) => ({ score: b / 10, id: `${b}-${i}` })));

  test('every bin at or above the cap ends with exactly the cap, drawn without repeats', () => {
    const items = itemsOf([40, 12, 30, 25, 12, 18, 50, 13, 12, 20, 90]);
    const r = balanceBins(items, (it) => it.score, createRng(1), 12);
    expect(r.cap).toBe(12);
    expect(r.after).toEqual(new Array(11).fill(12));
    expect(binCounts(r.items.map((it) => it.score))).toEqual(r.after);
    expect(new Set(r.items.map((it) => it.id)).size).toBe(r.items.length);
    expect(r.before).toEqual([40, 12, 30, 25, 12, 18, 50, 13, 12, 20, 90]);
  });

  test('the default cap is the median non-empty bin; smaller bins keep everything; seeded', () => {
    const counts = [30, 2, 0, 9, 11, 7, 0, 40, 5, 8, 100];
    const items = itemsOf(counts);
    const a = balanceBins(items, (it) => it.score, createRng(7));
    // non-empty sizes 2 5 7 8 9 11 30 40 100: the median is 9
    expect(a.cap).toBe(9);
    expect(a.after).toEqual([9, 2, 0, 9, 9, 7, 0, 9, 5, 8, 9]);
    const b = balanceBins(items, (it) => it.score, createRng(7));
    expect(b.items.map((it) => it.id)).toEqual(a.items.map((it) => it.id));
    const c = balanceBins(items, (it) => it.score, createRng(8));
    expect(c.items.map((it) => it.id)).not.toEqual(a.items.map((it) => it.id));
    expect(() => balanceBins(items, (it) => it.score, createRng(1), 0)).toThrow(expect.objectContaining({ code: 'E_RANGE' }));
  });
});

describe('rm train options', () => {
  const base = { policy: 'p', out: 'o' };
  test.each([
    [{ steps: 0 }, /steps/],
    [{ lr: 0 }, /lr/],
    [{ samples: -1 }, /samples/],
    [{ init: 'zero' }, /init/],
    [{ binCap: 0 }, /binCap/],
    [{ temperature: 'hot' }, /temperature/],
    [{ policy: '' }, /policy/],
    [{ flawed: 20 }, /flawed must be at most 10 \(the distinct perturbation kinds not in hard\)/],
    [{ hard: ['nope'] }, /hard/],
    [{ rankWeight: -1 }, /rankWeight/],
    [{ model: { dim: 64 } }, /model is for init 'random'/],
    [{ samples: 0, flawed: 0, gold: false }, /nothing to train on/],
    [{ stepz: 3 }, /stepz/],
  ])('%j is rejected, naming the option', (bad, msg) => {
    expect(() => resolveRmOptions({ ...base, ...bad })).toThrow(expect.objectContaining({ code: 'E_CONFIG', message: expect.stringMatching(msg) }));
  });

  test('defaults; a missing policy checkpoint is an E_IO before any training', async () => {
    expect(resolveRmOptions(base)).toMatchObject({ seed: 0, samples: 4, flawed: 3, gold: true, balance: true, init: 'policy', temperature: 1 });
    expect(() => resolveRmOptions({ out: 'o' })).toThrow(/policy/);
    await expect(runRmTrain({ policy: path.join(tmp, 'nowhere'), out: path.join(tmp, 'x'), problems: 2, eval: 2 })).rejects.toMatchObject({ code: 'E_IO' });
  });
});

describe('runRmTrain (tiny)', () => {
  test('beats the untrained model on held-out problems and saves a reward model that loads', async () => {
    const policy = path.join(tmp, 'policy');
    await runSft({ out: policy, seed: 3, model: { ...TINY_MODEL_CONFIG }, difficulty: 'easy', problems: 300, steps: 80, lr: 3e-3, eval: 0, evalBefore: false });
    const out = path.join(tmp, 'rm');
    // RL rollouts as a run leaves them in samples.jsonl: 30 steps × 2 problems × G = 4, plus a torn
    // line and a record whose question does not match its id (both skipped).
    const train = generateProblems({ seed: 9, count: 60, split: 'train', difficulty: 'easy' });
    const lines: string[] = [];
    for (let step = 1; step <= 30; step++)
      for (const p of [train[(2 * step) % 60], train[(2 * step + 1) % 60]])
        for (let j = 0; j < 4; j++) lines.push(JSON.stringify({ step, id: p.id, question: p.question, response: j % 2 ? goldResponse(p) : `<think>${j}.</think><answer>${p.answer}</answer>` }));
    lines.push(JSON.stringify({ step: 3, id: train[0].id, question: 'how many cats?', response: 'x' }));
    fs.mkdirSync(path.join(tmp, 'run'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'run', 'samples.jsonl'), lines.join('\n') + '\n{"step": 4, "id');
    const phases = new Set<string>();
    let last: RmProgress | undefined;
    const r = await runRmTrain({
      policy, out, seed: 4, difficulty: 'easy', problems: 150, samples: 2, flawed: 3, steps: 150, lr: 2e-3, eval: 40, evalEvery: 50, rollouts: [path.join(tmp, 'run')],
      onProgress: (p) => {
        phases.add(p.phase);
        last = p;
      },
    });
    console.log(`rm.test: held-out MAE ${r.untrained.all.mae.toFixed(3)} → ${r.trained.all.mae.toFixed(3)} (constant ${r.constantBaseline.all.toFixed(3)}), Pearson ${r.trained.all.pearson.toFixed(3)}, Spearman ${r.trained.all.spearman.toFixed(3)}`);
    expect([...phases].sort()).toEqual(['eval', 'eval-before', 'sample', 'train']);
    expect(last?.phase).toBe('eval');

    // the training data: every source present, bins capped
    expect(Object.keys(r.sources)).toEqual(expect.arrayContaining(['policy', 'gold', 'rollout', 'degenerate', 'other_scene', 'wrong_count_right_answer']));
    expect(r.rollouts.read).toBe(240);
    expect(r.rollouts.skipped).toBe(2);
    expect(r.rollouts.heldOut).toBeGreaterThan(0);
    expect(r.rollouts.heldOut).toBeLessThan(240);
    expect(r.sources.rollout).toBeLessThanOrEqual(240 - r.rollouts.heldOut);
    // the faithfulness probes ran on every held-out problem and on late held-out rollouts
    const f = r.faithfulness;
    expect(f.problems).toBe(40);
    for (const v of [f.goldOverMiscountRightAnswer, f.goldOverOtherScene, f.goldOverDegenerate]) expect(v).toBeGreaterThanOrEqual(0);
    expect(f.withinProblemPearson).toBeGreaterThan(0);
    expect(f.lateRlGroups).toBeGreaterThan(0);
    expect(Number.isFinite(f.lateRlWithinGroup)).toBe(true);
    // trained with hard negatives, the model puts gold above the degenerate templates on average
    expect(f.meanScore.gold).toBeGreaterThan(f.meanScore.degenerate);
    expect(r.train.after.every((n, b) => n === Math.min(r.train.before[b], r.train.cap))).toBe(true);
    expect(r.train.balanced).toBe(r.train.after.reduce((a, b) => a + b, 0));

    // learning: held-out MAE well below the untrained model's and the constant predictor's, scores that rank
    expect(r.trained.all.mae).toBeLessThan(r.untrained.all.mae - 0.04);
    expect(r.trained.all.mae).toBeLessThan(r.constantBaseline.all);
    expect(r.trained.all.pearson).toBeGreaterThan(0.3);
    expect(r.trained.all.spearman).toBeGreaterThan(0.3);
    expect(r.curve[0].step).toBe(0);
    expect(r.curve[r.curve.length - 1]).toMatchObject({ step: 150, mae: r.trained.all.mae });
    expect(r.trained.all.confusion.flat().reduce((a, b) => a + b, 0)).toBe(r.heldOut.items);

    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'rm.json', 'report.html']) expect(fs.existsSync(path.join(out, f))).toBe(true);
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    for (const id of ['loss', 'scatter', 'confusion', 'bins']) expect(html).toContain(id);
    const saved = JSON.parse(fs.readFileSync(path.join(out, 'rm.json'), 'utf8'));
    expect(saved.trained.all.mae).toBeCloseTo(r.trained.all.mae, 12);

    const rm = await loadRewardModel(out);
    try {
      expect(rm.config.dim).toBe(TINY_MODEL_CONFIG.dim);
      const scores = await rm.scoreTexts([{ question: 'how many red shapes are there?', reasoning: 'red 1.', image: { width: 16, height: 16, data: new Uint8Array(768) } }]);
      expect(scores[0]).toBeGreaterThanOrEqual(0);
      expect(scores[0]).toBeLessThanOrEqual(1);
    } finally {
      rm.dispose();
    }
  });
});
