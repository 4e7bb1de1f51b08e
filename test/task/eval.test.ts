import { VisionLanguageModel, TINY_MODEL_CONFIG } from '../../lib/model';
import { pairedBootstrap, pairedRunsBootstrap } from '../../lib/stats';
import {
  evaluatePolicy, evaluateSeeing, generateProblems, goldResponse, mergeEval, textOnlyBaseline, type SyntheticProblem,
} from '../../lib/task';
import type { RgbImage } from '../../lib/data';
import { expectSophiaErrorAsync } from './helpers';

const problems = generateProblems({ seed: 12, count: 120, split: 'test' });
const train = generateProblems({ seed: 12, count: 600, split: 'train' });
const real = VisionLanguageModel.create({ config: { ...TINY_MODEL_CONFIG }, seed: 1 });
afterAll(() => real.dispose());

/** A stand-in policy that reads its image perfectly: the gold answer of the problem the image belongs to, '0' for an unknown image. */
function oracle(): VisionLanguageModel {
  const owner = new Map<RgbImage, SyntheticProblem>();
  for (const p of problems) owner.set(p.image, p);
  const tok = real.tokenizer;
  const generate = async (inputs: { tokens: ArrayLike<number>; image?: RgbImage | null }[]) =>
    inputs.map((inp, i) => {
      const p = inp.image ? owner.get(inp.image) : undefined;
      const text = p ? goldResponse(p) : '<think></think><answer>0</answer>';
      return { prompt: i, tokens: Int32Array.from([...tok.encode(text), tok.special.eos]), logp: new Float32Array(0) };
    });
  return { tokenizer: tok, generate } as unknown as VisionLanguageModel;
}

test('evaluateSeeing: a policy that reads its image is right with its own image only', async () => {
  const r = await evaluateSeeing(oracle(), problems, { trainProblems: train });
  expect(r.own.accuracy).toBe(1);
  expect(r.own.judgeScore).toBe(1);
  expect(r.own.outcomes).toHaveLength(problems.length);
  // another problem's image: right only where the two answers happen to agree
  const agree = problems.filter((p, i) => problems[(i + 1) % problems.length].answer === p.answer).length / problems.length;
  expect(r.swapped.accuracy).toBeCloseTo(agree, 10);
  expect(r.blank!.accuracy).toBeCloseTo(problems.filter((p) => p.answer === '0').length / problems.length, 10);
  expect(r.seeingGap).toBeCloseTo(1 - agree, 10);
  const kinds = Object.values(r.byKind);
  expect(kinds.reduce((a, k) => a + k.n, 0)).toBe(problems.length);
  for (const k of kinds) expect(k.own).toBe(1);
  expect(r.textOnly).toBeGreaterThan(0.1);
  expect(r.textOnly).toBeLessThan(0.8);
});

test('evaluateSeeing on a real (untrained) model: every pass runs, shapes agree', async () => {
  const few = problems.slice(0, 6);
  const seen: number[] = [];
  const r = await evaluateSeeing(real, few, { trainProblems: train, maxNew: 8, blank: false, onProgress: (d) => seen.push(d) });
  expect(seen).toEqual([1, 2]);
  expect(r.blank).toBeUndefined();
  expect(r.own.n).toBe(6);
  expect(r.swapped.outcomes).toHaveLength(6);
  await expectSophiaErrorAsync(() => evaluateSeeing(real, few.slice(0, 1), { trainProblems: train }), 'E_RANGE', /at least 2 problems/);
});

test('textOnlyBaseline answers the most common training answer per question text', () => {
  const q = (question: string, answer: string) => ({ ...problems[0], question, answer, problemType: 'numerical', options: [] }) as SyntheticProblem;
  const t = [q('how many red shapes are there?', '1'), q('how many red shapes are there?', '1'), q('how many red shapes are there?', '2'), q('how many circles are there?', '0'), q('how many squares are there?', '0')];
  const b = textOnlyBaseline(t, [q('how many red shapes are there?', '1'), q('how many red shapes are there?', '2'), q('how many triangles are there?', '0')]);
  expect(b.answerFor(q('how many red shapes are there?', 'x'))).toBe('1');
  // an unseen question falls back to the problem type's most common answer
  expect(b.answerFor(q('how many triangles are there?', 'x'))).toBe('0');
  expect(b.accuracy).toBeCloseTo(2 / 3, 12);
});

test('mergeEval keeps the per-problem order', async () => {
  const a = await evaluatePolicy(oracle(), problems.slice(0, 5));
  const b = await evaluatePolicy(oracle(), problems.slice(5, 9));
  const m = mergeEval(a, b);
  expect(m.n).toBe(9);
  expect(m.outcomes).toEqual([...a.outcomes, ...b.outcomes]);
  expect(m.accuracy).toBe(1);
});

describe('pairedBootstrap', () => {
  test('the estimate is the mean difference; the interval holds it and narrows with n; seeded', () => {
    const a = Array.from({ length: 400 }, (_, i) => (i % 10 < 6 ? 1 : 0));
    const b = Array.from({ length: 400 }, (_, i) => (i % 10 < 4 ? 1 : 0));
    const r = pairedBootstrap(a, b);
    expect(r.estimate).toBeCloseTo(0.2, 12);
    expect(r.lo).toBeLessThan(0.2);
    expect(r.hi).toBeGreaterThan(0.2);
    expect(r.lo).toBeGreaterThan(0.1);
    expect(pairedBootstrap(a, b)).toEqual(r);
    const small = pairedBootstrap(a.slice(0, 40), b.slice(0, 40));
    expect(small.hi - small.lo).toBeGreaterThan(r.hi - r.lo);
    // the same condition twice: exactly 0
    expect(pairedBootstrap(a, a)).toMatchObject({ estimate: 0, lo: 0, hi: 0 });
  });

  test('a coverage check: about 95% of intervals hold the true difference', () => {
    let seed = 7;
    const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    let hits = 0;
    const trials = 200;
    for (let t = 0; t < trials; t++) {
      const a = Array.from({ length: 100 }, () => (rnd() < 0.6 ? 1 : 0));
      const b = Array.from({ length: 100 }, () => (rnd() < 0.5 ? 1 : 0));
      const r = pairedBootstrap(a, b, { resamples: 200, seed: t });
      if (r.lo <= 0.1 && 0.1 <= r.hi) hits++;
    }
    expect(hits / trials).toBeGreaterThan(0.88);
    expect(hits / trials).toBeLessThan(0.99);
  });

  test('pairedRunsBootstrap: one run a side is pairedBootstrap; seed-to-seed spread widens the interval', () => {
    const a = Array.from({ length: 200 }, (_, i) => (i % 5 < 3 ? 1 : 0));
    const b = Array.from({ length: 200 }, (_, i) => (i % 5 < 2 ? 1 : 0));
    expect(pairedRunsBootstrap([a], [b])).toEqual(pairedBootstrap(a, b));
    const steady = pairedRunsBootstrap([a, a, a], [b, b, b]);
    expect(steady.estimate).toBeCloseTo(0.2, 12);
    // the same means, but the runs of a disagree with each other
    const spread = pairedRunsBootstrap([a.map(() => 1), a, a.map(() => 0.2)], [b, b, b]);
    expect(spread.estimate).toBeCloseTo(0.2, 12);
    expect(spread.hi - spread.lo).toBeGreaterThan(2 * (steady.hi - steady.lo));
    expect(() => pairedRunsBootstrap([a], [b.slice(1)])).toThrow(/every run must score the same 200 problems, b\[0\] has 199/);
    expect(() => pairedRunsBootstrap([], [b])).toThrow(/at least one run/);
  });

  test('bad input names the argument', () => {
    expect(() => pairedBootstrap([1, 0], [1])).toThrow(/same length/);
    expect(() => pairedBootstrap([], [])).toThrow(/at least one pair/);
    expect(() => pairedBootstrap([1], [0], { level: 1.5 })).toThrow(/level must be in \(0, 1\), got 1.5/);
    expect(() => pairedBootstrap([1], [0], { resamples: 3 })).toThrow(/resamples must be an integer >= 10/);
    expect(() => pairedBootstrap([NaN], [0])).toThrow(/x\[0\] must be a finite number/);
  });
});

test('sophia eval (runEval): a saved policy, paired intervals, a table per kind', async () => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const { saveModel } = await import('../../lib/model');
  const { runEval, formatEval } = await import('../../lib/cli/eval');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-eval-'));
  try {
    await saveModel(real, dir);
    const r = await runEval({ policy: dir, problems: 8, seed: 3, trainProblems: 50, trainSeed: 0, difficulty: 'normal', maxNew: 6, blank: true });
    expect(r.seeing.own.n).toBe(8);
    expect(r.seeingGapCi.estimate).toBeCloseTo(r.seeing.seeingGap, 12);
    expect(r.seeingGapCi.lo).toBeLessThanOrEqual(r.seeingGapCi.hi);
    const text = formatEval(r);
    for (const s of ['accuracy, own image', 'accuracy, swapped image', 'accuracy, blank image', 'text-only baseline', 'seeing gap (own − swapped)', 'judge score', 'kind']) expect(text).toContain(s);
    await expect(runEval({ policy: path.join(dir, 'nope'), problems: 8, seed: 3, trainProblems: 50, trainSeed: 0, difficulty: 'normal', maxNew: 6, blank: false })).rejects.toMatchObject({ code: 'E_IO' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
