import {
  PERTURBATION_KINDS, createRng, degenerateResponses, flawedResponses, generateProblems, goldResponse, perturb, type PerturbationKind,
} from '../../lib/task';
import { judgeThinking } from '../../lib/task';
import { expectSophiaError } from './helpers';

const problems = generateProblems({ seed: 31, count: 300 });
const bin = (s: number): number => Math.round(s * 10);

const scored = problems.flatMap((p, i) => flawedResponses(p, i).map(({ kind, response }) => ({ kind, response, score: judgeThinking(p, response).score })));
const histogram = (kind?: PerturbationKind): number[] => {
  const h = new Array(11).fill(0);
  for (const r of scored) if (kind === undefined || r.kind === kind) h[bin(r.score)]++;
  return h;
};

test('flawed responses spread over the judge\'s whole range', () => {
  const h = histogram();
  // e.g. [~400, ~330, ~180, ~80, ~720, ~70, ~540, ~300, ~450, ~240, 300] for bins 0, 0.1, …, 1
  expect(h.filter((n) => n > 0).length).toBeGreaterThanOrEqual(9);
  expect(h.filter((n) => n >= scored.length / 100).length).toBeGreaterThanOrEqual(9);
  expect(h[10]).toBeLessThan(scored.length / 4); // mostly flawed
});

test('each kind lands where it should', () => {
  const range = (kind: PerturbationKind): [number, number] => {
    const scores = scored.filter((r) => r.kind === kind).map((r) => r.score);
    return [Math.min(...scores), Math.max(...scores)];
  };
  expect(range('gold')).toEqual([1, 1]);
  expect(range('wrong_count_right_answer')[1]).toBeLessThanOrEqual(0.4);
  expect(range('wrong_count_wrong_answer')[1]).toBeLessThanOrEqual(0.4);
  expect(range('wrong_arithmetic')[1]).toBeLessThanOrEqual(0.4);
  expect(range('garbage')[1]).toBeLessThanOrEqual(0.4);
  expect(range('other_scene')[1]).toBeLessThanOrEqual(0.4);
  expect(range('degenerate')[1]).toBeLessThanOrEqual(0.6);
  for (const kind of ['skipped_step', 'reordered', 'repetition', 'off_task', 'redundant', 'bad_format', 'truncated'] as const) {
    expect(range(kind)[1]).toBeLessThan(1);
  }
  // the milder flaws stay above the factual errors on average
  const mean = (kind: PerturbationKind): number => {
    const s = scored.filter((r) => r.kind === kind).map((r) => r.score);
    return s.reduce((a, b) => a + b, 0) / s.length;
  };
  for (const mild of ['redundant', 'off_task', 'bad_format'] as const) expect(mean(mild)).toBeGreaterThan(mean('wrong_count_wrong_answer'));
});

test('wrong_count_wrong_answer changes the answer; wrong_count_right_answer keeps it', () => {
  const answerOf = (r: string): string | undefined => /<answer>(.*?)<\/answer>/.exec(r)?.[1];
  problems.forEach((p, i) => {
    expect(answerOf(perturb(p, 'wrong_count_right_answer', i))).toBe(p.answer);
    if (p.task.kind !== 'compare') expect(answerOf(perturb(p, 'wrong_count_wrong_answer', i))).not.toBe(p.answer);
  });
  const compares = problems.filter((p) => p.task.kind === 'compare');
  const changed = compares.filter((p, i) => answerOf(perturb(p, 'wrong_count_wrong_answer', i)) !== p.answer).length;
  expect(changed).toBeGreaterThan(compares.length * 0.9);
});

test('degenerate templates keep the gold answer and score far below gold; other_scene is consistent reasoning about another scene', () => {
  const answerOf = (r: string): string | undefined => /<answer>(.*?)<\/answer>/.exec(r)?.[1];
  problems.forEach((p, i) => {
    const d = degenerateResponses(p);
    expect(d).toHaveLength(6);
    expect(d[0]).toBe(`<think></think><answer>${p.answer}</answer>`);
    expect(d[2]).toBe(`<think>all 1. 1=1=1.</think><answer>${p.answer}</answer>`);
    for (const r of d) {
      expect(answerOf(r)).toBe(p.answer);
      expect(judgeThinking(p, r).score).toBeLessThanOrEqual(0.6);
    }
    const other = perturb(p, 'other_scene', i);
    expect(other).not.toBe(goldResponse(p));
    // fluent and self-consistent (the answer follows from its steps), yet some count is false for this image
    const b = judgeThinking(p, other).breakdown;
    expect(b.claimsWrong).toBeGreaterThan(0);
    expect(b.unsupported).toBe(false);
    expect(b.malformed + b.repetition + b.offTask).toBe(0);
  });
  expect(() => degenerateResponses({} as never)).toThrow(/degenerateResponses: problem.task/);
});

test('deterministic by seed; different seeds vary', () => {
  const p = problems.find((q) => q.task.kind === 'sum')!;
  for (const kind of PERTURBATION_KINDS) expect(perturb(p, kind, 5)).toBe(perturb(p, kind, 5));
  expect(perturb(p, 'gold', 1)).toBe(goldResponse(p));
  const variants = new Set(Array.from({ length: 30 }, (_, s) => perturb(p, 'off_task', s)));
  expect(variants.size).toBeGreaterThan(5);
  expect(flawedResponses(p, 9)).toEqual(flawedResponses(p, 9));
  expect(flawedResponses(p, createRng(9)).map((r) => r.kind)).toEqual([...PERTURBATION_KINDS]);
});

test('flawedResponses options', () => {
  const p = problems[0];
  const some = flawedResponses(p, 1, { kinds: ['repetition', 'garbage'], perKind: 3 });
  expect(some.map((r) => r.kind)).toEqual(['repetition', 'repetition', 'repetition', 'garbage', 'garbage', 'garbage']);
  expectSophiaError(() => flawedResponses(p, 1, { perKind: 0 }), 'E_RANGE', /flawedResponses: opts\.perKind must be an integer in \[1, 1000\], got 0/);
  expectSophiaError(() => flawedResponses(p, 1, { kinds: ['nope' as never] }), 'E_CONFIG', /opts\.kinds\[0\] must be one of .*got "nope"/);
  expectSophiaError(() => flawedResponses(p, 'seed' as never), 'E_TYPE', /flawedResponses: rng must be an integer seed or a \(\) => number generator, got "seed"/);
  expectSophiaError(() => perturb(p, 'typo' as never, 1), 'E_CONFIG', /perturb: kind must be one of .*got "typo"/);
  expectSophiaError(() => perturb({ task: { kind: 'sum', targets: ['red', 'red'] }, scene: [] }, 'gold', 1), 'E_CONFIG', /two different colours/);
});
