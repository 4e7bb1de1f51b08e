import { generateProblems, goldResponse, perturb, type SyntheticProblem, type TaskAndScene } from '../../lib/task';
import { judgeThinking, JUDGE_PENALTIES } from '../../lib/task';
import { expectSophiaError } from './helpers';

const problems = generateProblems({ seed: 21, count: 400 });
const ofKind = (kind: string): SyntheticProblem[] => problems.filter((p) => p.task.kind === kind);
const onGrid = (s: number): boolean => Number.isInteger(s * 10) && s >= 0 && s <= 1 && Math.round(s * 10) / 10 === s;
const respond = (think: string, answer: string): string => `<think>${think}</think><answer>${answer}</answer>`;

// red 2, blue 1, circle 2, square 1: [red circle, red square, blue circle]
const scene = [
  { shape: 'circle', color: 'red', x: 0, y: 0, size: 6 },
  { shape: 'square', color: 'red', x: 10, y: 0, size: 6 },
  { shape: 'circle', color: 'blue', x: 20, y: 0, size: 6 },
] as SyntheticProblem['scene'];
const sum: TaskAndScene = { task: { kind: 'sum', targets: ['red', 'blue'] }, scene };
const remove: TaskAndScene = { task: { kind: 'remove', targets: ['circle'] }, scene };
const compare: TaskAndScene = { task: { kind: 'compare', targets: ['circle', 'square'] }, scene };
const count: TaskAndScene = { task: { kind: 'count_color', targets: ['red'] }, scene };
const score = (p: TaskAndScene, r: string): number => judgeThinking(p, r).score;

test('the gold response scores 1 on every problem', () => {
  const below = problems.filter((p) => judgeThinking(p, goldResponse(p)).score !== 1);
  expect(below.map((p) => `${p.id} ${p.think}`)).toEqual([]);
});

test('hand-made cases: gold, its lenient variants, and each penalty', () => {
  expect(score(sum, respond('red 2. blue 1. 2+1=3.', '3'))).toBe(1);
  expect(score(sum, '<think>\nRed 2;  blue 1\n2 + 1 = 3\n</think>\n<answer> 3 </answer>')).toBe(1); // case, spaces, separators
  expect(score(sum, respond('red shapes 2. blue shapes 1. 2+1=3.', '3'))).toBe(1);
  expect(score(remove, respond('all 3. circle 2. 3-2=1.', '1'))).toBe(1);
  expect(score(compare, respond('circle 2. square 1. 2>1.', 'A'))).toBe(1);
  expect(score(compare, respond('circles 2. squares 1. 1<2.', '(A)'))).toBe(1); // operands swapped, same conclusion
  expect(score(count, respond('red 2.', '2'))).toBe(1);

  expect(score(sum, respond('red 2. blue 1. 2+1=3.', '4'))).toBe(0.7); // unsupported answer
  expect(score(sum, respond('red 2. blue 1. 2+1=4.', '4'))).toBe(0.4); // false arithmetic
  expect(score(sum, respond('red 2. blue 1.', '3'))).toBe(0.5); // missing sum, answer not derived
  expect(score(sum, respond('red 2. 2+1=3.', '3'))).toBe(0.6); // missing count, ungrounded operand
  expect(score(sum, respond('2+1=3. red 2. blue 1.', '3'))).toBe(0.6); // operation before its counts
  expect(score(sum, respond('red 2. red 2. blue 1. 2+1=3.', '3'))).toBe(0.8); // repeated step
  expect(score(sum, respond('red 2. blue 1. circle 2. 2+1=3.', '3'))).toBe(0.9); // redundant count
  expect(score(sum, respond('hmm let me see. red 2. blue 1. 2+1=3.', '3'))).toBe(0.6); // three off-task words
  expect(score(sum, respond('red 2. blue 1. more red. 2+1=3.', '3'))).toBe(0.8); // task words out of grammar
  expect(score(sum, '<think>red 2. blue 1. 2+1=3.</think>')).toBe(0.7); // no answer
  expect(score(sum, `ok ${respond('red 2. blue 1. 2+1=3.', '3')}`)).toBe(0.9); // text outside the tags
  expect(score(compare, respond('circle 2. square 1.', 'A'))).toBe(0.8); // comparison left implicit
  expect(score(count, respond('2.', '2'))).toBe(0.6); // bare conclusion

  for (const r of ['', 'red 2. answer 2', '<think></think><answer>2</answer>', '<think>  </think><answer>2</answer>', '<think>red 2.', '<answer>2</answer>']) {
    const { score: s, breakdown } = judgeThinking(count, r);
    expect(s).toBe(0);
    expect(breakdown.format.think).toBe(false);
  }
});

test('a wrong count with the right answer scores at most 0.4', () => {
  // hand-made: every way to reach the right answer from a miscount
  expect(score(count, respond('red 3.', '2'))).toBeLessThanOrEqual(0.4);
  expect(score(sum, respond('red 3. blue 1. 3+1=4.', '3'))).toBeLessThanOrEqual(0.4);
  expect(score(sum, respond('red 3. blue 1. 3+1=3.', '3'))).toBeLessThanOrEqual(0.4);
  expect(score(sum, respond('red 3. blue 1. 2+1=3.', '3'))).toBeLessThanOrEqual(0.4);
  expect(score(sum, respond('red 3. blue 0. 3+0=3.', '3'))).toBeLessThanOrEqual(0.4);
  expect(score(compare, respond('circle 3. square 1. 3>1.', 'A'))).toBeLessThanOrEqual(0.4);
  // and on many generated problems
  const scores = problems.map((p, i) => judgeThinking(p, perturb(p, 'wrong_count_right_answer', i)));
  expect(scores.filter((r) => r.score > 0.4)).toEqual([]);
  expect(scores.every((r) => r.breakdown.claimsWrong >= 1)).toBe(true);
});

test('repetition scores below gold, more repetition lower', () => {
  for (const p of problems.slice(0, 100)) {
    const [first] = p.think.split('. ');
    const once = judgeThinking(p, respond(`${first}. ${p.think}`, p.answer));
    const twice = judgeThinking(p, respond(`${first}. ${first}. ${p.think}`, p.answer));
    expect(once.score).toBeLessThan(1);
    expect(twice.score).toBeLessThan(once.score);
    expect(twice.breakdown.repetition).toBe(2);
    expect(judgeThinking(p, respond(`${p.think} ${p.think}`, p.answer)).score).toBeLessThan(1);
  }
});

test('off-task text scores below gold, more of it lower', () => {
  for (const p of problems.slice(0, 100)) {
    const a = judgeThinking(p, respond(`${p.think} i like cats.`, p.answer));
    const b = judgeThinking(p, respond(`the weather is nice today. ${p.think} i like cats.`, p.answer));
    expect(a.score).toBeLessThan(1);
    expect(a.breakdown.offTask).toBe(3);
    expect(b.score).toBeLessThan(a.score);
  }
});

test('scores are always on the grid, for any text', () => {
  const rng = ((s) => () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32))(5);
  const pieces = ['<think>', '</think>', '<answer>', '</answer>', 'red ', 'blue ', 'circle ', 'all ', '1', '2', '3', '+', '-', '=', '<', '>', '. ', 'hmm ', ' ', '\n', 'A', '(', 'x'];
  for (const [i, p] of problems.entries()) {
    const text = Array.from({ length: 1 + Math.floor(rng() * 30) }, () => pieces[Math.floor(rng() * pieces.length)]).join('');
    for (const r of [text, `<think>${text}</think><answer>${p.answer}</answer>`, perturb(p, 'garbage', i)]) {
      const { score: s, breakdown } = judgeThinking(p, r);
      expect(onGrid(s)).toBe(true);
      for (const v of Object.values(breakdown.penalties)) expect(v >= 0 && Math.round(v * 10) / 10 === v).toBe(true);
    }
  }
});

test('the breakdown explains the score', () => {
  const { score: s, breakdown } = judgeThinking(sum, respond('red 3. blue 1. 3+1=4. 4. hmm.', '3'));
  expect(breakdown).toMatchObject({ claims: 3, claimsWrong: 1, unsupported: true, derivedAnswer: '4', answer: '3', offTask: 1, redundant: 1, steps: 5 });
  const total = Object.values(breakdown.penalties).reduce((a, b) => a + b, 0);
  expect(s).toBeCloseTo(Math.max(0, 1 - total), 10);
  expect(JUDGE_PENALTIES.firstWrongClaim).toBe(6);
});

test('questions of every kind are judged', () => {
  for (const kind of ['count_color', 'count_shape', 'count_both', 'remove', 'sum', 'compare']) {
    const ps = ofKind(kind);
    expect(ps.length).toBeGreaterThan(10);
    for (const p of ps.slice(0, 10)) expect(judgeThinking(p, respond(p.think, p.answer)).breakdown.claims).toBe(p.think.split('. ').length);
  }
});

test('bad input throws SophiaError naming the argument', () => {
  const p = problems[0];
  expectSophiaError(() => judgeThinking(p, 42 as never), 'E_TYPE', /judgeThinking: response must be a string, got 42/);
  expectSophiaError(() => judgeThinking(p, null as never), 'E_TYPE', /response .* got null/);
  expectSophiaError(() => judgeThinking(null as never, ''), 'E_TYPE', /problem must be a synthetic problem object, got null/);
  expectSophiaError(() => judgeThinking({ scene } as never, ''), 'E_TYPE', /problem\.task must be an object/);
  expectSophiaError(() => judgeThinking({ task: { kind: 'divide' as never, targets: ['red'] }, scene }, ''), 'E_CONFIG', /problem\.task\.kind must be one of .* got "divide"/);
  expectSophiaError(() => judgeThinking({ task: { kind: 'sum', targets: ['red'] }, scene }, ''), 'E_CONFIG', /problem\.task\.targets of a sum task must be 2 kind/);
  expectSophiaError(() => judgeThinking({ task: count.task, scene: [{ ...scene[0], size: -3 }] }, ''), 'E_RANGE', /problem\.scene\[0\]\.size must be an integer >= 1, got -3/);
});
