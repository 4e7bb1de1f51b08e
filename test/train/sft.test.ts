/**
 * The SFT warm start: the learning-rate schedule, the teacher-forcing rows and loss, the metrics
 * helpers, option errors, and a tiny end-to-end run that learns the answer format and saves a
 * checkpoint that loads.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TINY_MODEL_CONFIG, VisionLanguageModel, loadPolicy } from '../../lib/model';
import { generateProblems, goldResponse, gridLetters } from '../../lib/task';
import { evaluatePolicy, promptInput, responseTokens } from '../../lib/task';
import { crossEntropy, forcedBatch, lrAt, resolveSftOptions, runSft, type SftProgress } from '../../lib/train/sft';
import { agreement, binConfusion, binCounts, mean, meanAbsError, nanMean, pearson, ranks, scoreBin, spearman, stdDev } from '../../lib/stats';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-sft-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('lrAt', () => {
  const s = { lr: 1, warmup: 4, total: 13, minLrRatio: 0.1 };
  test('linear warm-up, then a cosine from lr to lr × minLrRatio at the last step', () => {
    expect([0, 1, 2, 3].map((k) => lrAt(k, s))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(lrAt(4, s)).toBeCloseTo(1, 12);
    expect(lrAt(8, s)).toBeCloseTo(0.55, 12); // half-way: 0.1 + 0.9 · 0.5
    expect(lrAt(12, s)).toBeCloseTo(0.1, 12);
    expect(lrAt(40, s)).toBeCloseTo(0.1, 12);
    for (let k = 4; k < 12; k++) expect(lrAt(k + 1, s)).toBeLessThan(lrAt(k, s));
  });
  test('no warm-up starts at the peak; minLrRatio defaults to 0.1; one-step runs stay at the peak', () => {
    expect(lrAt(0, { lr: 2e-3, warmup: 0, total: 10 })).toBeCloseTo(2e-3, 15);
    expect(lrAt(9, { lr: 2e-3, warmup: 0, total: 10 })).toBeCloseTo(2e-4, 15);
    expect(lrAt(0, { lr: 3, warmup: 0, total: 1 })).toBe(3);
    expect(() => lrAt(-1, s)).toThrow(expect.objectContaining({ code: 'E_RANGE' }));
    expect(() => lrAt(1.5, s)).toThrow(/step must be an integer/);
  });
});

describe('teacher forcing', () => {
  test('cross-entropy and its gradient against hand values; the -inf <image> column gets 0', () => {
    const V = 3;
    const logits = Float32Array.from([0, Math.log(3), -Infinity, 1, 1, 1]);
    const labels = Int32Array.from([1, 0]);
    const want = (Math.log(4) - Math.log(3) + Math.log(3)) / 2; // −log(3/4) and −log(1/3), averaged
    expect(crossEntropy(Float32Array.from(logits), labels, V, false)).toBeCloseTo(want, 6);
    const g = Float32Array.from(logits);
    expect(crossEntropy(g, labels, V, true)).toBeCloseTo(want, 6);
    const expected = [0.25 / 2, (0.75 - 1) / 2, 0, (1 / 3 - 1) / 2, 1 / 6, 1 / 6];
    expected.forEach((e, i) => expect(g[i]).toBeCloseTo(e, 6));
  });

  test('the loss rows are exactly those predicting the response tokens and EOS', () => {
    const model = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 1 });
    try {
      const problems = generateProblems({ seed: 2, count: 3, difficulty: 'easy' });
      const seqs = problems.map((p) => ({ prompt: promptInput(model, p).tokens as Int32Array, response: responseTokens(model, goldResponse(p)), image: p.image }));
      const { batch, rows, labels } = forcedBatch(model, seqs);
      expect(Array.from(labels)).toEqual(seqs.flatMap((s) => Array.from(s.response)));
      expect(labels.filter((t) => t === model.tokenizer.special.eos).length).toBe(3);
      expect(labels.includes(model.tokenizer.special.image)).toBe(false);
      rows.forEach((r, i) => expect(batch.tokens[r + 1]).toBe(labels[i]));
      // the first loss row of each sequence is its last prompt token
      let k = 0;
      seqs.forEach((s, b) => {
        expect(rows[k]).toBe(batch.seqStarts[b + 1] - s.response.length - 1);
        k += s.response.length;
      });
    } finally {
      model.dispose();
    }
  });

  test('patch labels add one row per visual token, in order and before the response rows; a count mismatch is refused', () => {
    const model = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 1 });
    try {
      const problems = generateProblems({ seed: 5, count: 3, difficulty: 'easy' });
      const nv = model.visualTokens;
      const cell = model.config.patch * (problems[0].width / model.config.imageSize);
      const seqs = problems.map((p, i) => ({
        prompt: promptInput(model, p).tokens as Int32Array,
        response: responseTokens(model, goldResponse(p)),
        image: p.image,
        // the middle sequence has none: it keeps its response rows only
        patchLabels: i === 1 ? undefined : model.tokenizer.encode(gridLetters(p.scene, p.width, p.height, cell).shape.join('')),
      }));
      expect(seqs[0].patchLabels!.length).toBe(nv);
      const { batch, rows, labels } = forcedBatch(model, seqs);
      expect(rows.length).toBe(seqs.reduce((a, s) => a + s.response.length + (s.patchLabels ? nv : 0), 0));
      for (let i = 1; i < rows.length; i++) expect(rows[i]).toBeGreaterThan(rows[i - 1]);
      let k = 0;
      seqs.forEach((s, b) => {
        if (s.patchLabels) {
          const visual = [];
          for (let r = batch.seqStarts[b]; r < batch.seqStarts[b + 1]; r++) if (batch.tokens[r] === model.config.imageToken) visual.push(r);
          expect(Array.from(rows.subarray(k, k + nv))).toEqual(visual);
          expect(Array.from(labels.subarray(k, k + nv))).toEqual(Array.from(s.patchLabels));
          k += nv;
        }
        for (let j = 0; j < s.response.length; j++, k++) expect(labels[k]).toBe(batch.tokens[rows[k] + 1]);
      });
      expect(k).toBe(rows.length);
      const bad = [{ ...seqs[0], patchLabels: seqs[0].patchLabels!.subarray(1) }];
      expect(() => forcedBatch(model, [{ ...seqs[0], patchLabels: Int32Array.from([...seqs[0].patchLabels!, 5]) }])).toThrow(/patch labels but/);
      expect(() => forcedBatch(model, bad)).toThrow(/patch labels but/);
    } finally {
      model.dispose();
    }
  });
});

describe('stats', () => {
  test('mean, nanMean and stdDev (sample n − 1, population n) against hand values', () => {
    expect(mean([1, 2, 6])).toBe(3);
    expect(mean([])).toBeNaN();
    expect(nanMean([1, NaN, 3])).toBe(2);
    expect(nanMean([NaN])).toBeNaN();
    // deviations −2, −1, 3: Σd² = 14
    expect(stdDev([1, 2, 6], 'sample')).toBeCloseTo(Math.sqrt(7), 12);
    expect(stdDev([1, 2, 6], 'population')).toBeCloseTo(Math.sqrt(14 / 3), 12);
    expect(stdDev([5], 'sample')).toBe(0);
    expect(stdDev([], 'population')).toBeNaN();
  });

  test('Pearson, MAE and ranks against hand-computed values', () => {
    expect(pearson([1, 2, 3], [2, 4, 6])).toBeCloseTo(1, 12);
    expect(pearson([1, 2, 3], [3, 2, 1])).toBeCloseTo(-1, 12);
    // x = 1..4, y = 1,3,2,4: Σdxdy = 4, Σdx² = Σdy² = 5
    expect(pearson([1, 2, 3, 4], [1, 3, 2, 4])).toBeCloseTo(0.8, 12);
    expect(pearson([1, 1, 1], [1, 2, 3])).toBeNaN();
    expect(pearson([1], [2])).toBeNaN();
    expect(meanAbsError([0, 0.5, 1], [0.1, 0.5, 0.7])).toBeCloseTo(0.4 / 3, 12);
    expect(Array.from(ranks([10, 20, 20, 30, 20]))).toEqual([1, 3, 3, 5, 3]);
  });

  test('Spearman with ties is Pearson of the mid-ranks', () => {
    // x ranks 1, 2.5, 2.5, 4; y ranks 1, 2, 3, 4: Σdxdy = 4.5, Σdx² = 4.5, Σdy² = 5
    expect(spearman([1, 2, 2, 3], [10, 20, 30, 40])).toBeCloseTo(4.5 / Math.sqrt(4.5 * 5), 12);
    expect(spearman([1, 2, 3, 4], [1, 4, 9, 16])).toBeCloseTo(1, 12);
    expect(spearman([0.1, 0.1, 0.9], [0.3, 0.3, 0.2])).toBeCloseTo(-1, 12);
  });

  test('bins, confusion and agreement', () => {
    expect([0, 0.04, 0.05, 0.349, 0.95, 1, 1.2, -0.1].map(scoreBin)).toEqual([0, 0, 1, 3, 10, 10, 10, 0]);
    expect(binCounts([0, 0.1, 0.1, 1])).toEqual([1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    const m = binConfusion([0, 0.5, 1], [0.02, 0.61, 0.5]);
    expect(m[0][0]).toBe(1);
    expect(m[5][6]).toBe(1);
    expect(m[10][5]).toBe(1);
    expect(m.flat().reduce((a, b) => a + b, 0)).toBe(3);
    const a = agreement([0, 0.5, 1], [0.02, 0.61, 0.5]);
    expect(a.binAccuracy).toBeCloseTo(1 / 3, 12);
    expect(a.withinOneBin).toBeCloseTo(2 / 3, 12);
    expect(a.mae).toBeCloseTo((0.02 + 0.11 + 0.5) / 3, 6);
  });

  test('bad input names the argument', () => {
    expect(() => pearson([1, 2], [1])).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => spearman([1, NaN], [1, 2])).toThrow(/x\[1\] must be a finite number/);
    expect(() => scoreBin(NaN)).toThrow(expect.objectContaining({ code: 'E_NUMERIC' }));
  });
});

describe('SFT options', () => {
  test.each([
    [{ problems: 0 }, /problems/],
    [{ lr: -1 }, /lr/],
    [{ batch: 2.5 }, /batch/],
    [{ flawedFraction: 1.5 }, /flawedFraction/],
    [{ flawedKinds: ['nope'] }, /flawedKinds\.0/],
    [{ difficulty: 'hard' }, /difficulty/],
    [{ epoch: 3 }, /epoch/],
    [{ out: '' }, /out/],
  ])('%j is rejected, naming the option', (bad, msg) => {
    expect(() => resolveSftOptions({ out: tmp, ...bad })).toThrow(expect.objectContaining({ code: 'E_CONFIG', message: expect.stringMatching(msg) }));
  });

  test('defaults are filled; a bad model config and a missing out fail before any work', async () => {
    const c = resolveSftOptions({ out: 'x' });
    expect(c).toMatchObject({ seed: 0, batch: 32, flawedFraction: 0.35, difficulty: 'normal', evalBefore: true });
    expect(() => resolveSftOptions({})).toThrow(/out/);
    expect(() => resolveSftOptions(null)).toThrow(expect.objectContaining({ code: 'E_TYPE' }));
    await expect(runSft({ out: tmp, model: { dim: 'wide' } })).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(/dim/) });
    await expect(runSft({ out: tmp, onProgress: 3 as never })).rejects.toMatchObject({ code: 'E_TYPE' });
  });
});

describe('runSft (tiny)', () => {
  test('learns the answer format, lowers the held-out loss and saves a checkpoint that loads', async () => {
    const out = path.join(tmp, 'policy');
    const phases = new Set<string>();
    let lastTrain: SftProgress | undefined;
    const r = await runSft({
      out, seed: 5, model: { ...TINY_MODEL_CONFIG }, difficulty: 'easy', problems: 400, steps: 120, lr: 3e-3, eval: 32,
      onProgress: (p) => {
        phases.add(p.phase);
        if (p.phase === 'train') lastTrain = p;
      },
    });
    expect([...phases].sort()).toEqual(['eval', 'eval-before', 'train']);
    expect(lastTrain).toMatchObject({ done: 120, total: 120 });
    expect(r.steps).toBe(120);
    expect(r.history).toHaveLength(120);
    expect(r.evalBefore!.formatRate).toBeLessThan(0.1);
    expect(r.eval!.formatRate).toBeGreaterThan(0.5);
    expect(r.heldOutLoss.after).toBeLessThan(0.5 * r.heldOutLoss.before);
    expect(r.finalTrainLoss).toBeLessThan(r.history[0].loss);

    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'sft.json', 'report.html']) expect(fs.existsSync(path.join(out, f))).toBe(true);
    const saved = JSON.parse(fs.readFileSync(path.join(out, 'sft.json'), 'utf8'));
    expect(saved.eval.formatRate).toBe(r.eval!.formatRate);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ kind: 'policy', made: 'sophia sft' });

    const policy = await loadPolicy(out);
    try {
      const problems = generateProblems({ seed: 5, count: 32, split: 'test', difficulty: 'easy' });
      const again = await evaluatePolicy(policy, problems, { maxNew: 96 });
      expect(again.formatRate).toBeCloseTo(r.eval!.formatRate, 10);
      expect(again.accuracy).toBeCloseTo(r.eval!.accuracy, 10);
    } finally {
      policy.dispose();
    }
  });
});
