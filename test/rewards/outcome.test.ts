import {
  choiceReward, extractAnswer, formatReward, freeFormReward, ocrReward, outcomeReward, outcomeRewardTypes,
  registerOutcomeReward, unregisterOutcomeReward,
} from '../../lib/rewards/outcome';
import { porterStem } from '../../lib/rewards/porter';
import { rougeL, rougeN, rougeTokens, wordErrorRate } from '../../lib/rewards/text';

const wrap = (answer: string, think = 'some steps'): string => `<think>${think}</think>\n<answer>${answer}</answer>`;

describe('formatReward', () => {
  test.each([
    ['<think>a</think><answer>b</answer>', 1],
    ['<think>multi\nline</think> text between <answer>x\ny</answer> trailing', 1],
    ['<answer>b</answer>', 0],
    ['<think>a</think>', 0],
    ['<answer>b</answer><think>a</think>', 0],
    ['<think>a</think><answer>b', 0],
    ['preamble <think>a</think><answer>b</answer>', 0],
    ['', 0],
  ])('%j → %d', (response, expected) => {
    expect(formatReward(response)).toBe(expected);
  });
});

test('extractAnswer unwraps the first <answer> or keeps the trimmed text', () => {
  expect(extractAnswer('<think>t</think><answer> 42 </answer><answer>7</answer>')).toBe('42');
  expect(extractAnswer('  B ')).toBe('B');
});

describe('choiceReward', () => {
  test.each([
    ['C, A', 'A,C', 1],
    ['AC', 'A, C', 1],
    ['(b)', 'B', 1],
    ['a', 'A', 1],
    ['A', 'A,C', 0],
    ['A, B', 'A', 0],
    ['A, D', 'A, C', 0],
    ['B. 42', 'B', 0],
    ['', 'A', 0],
  ])('%j vs %j → %d', (pred, truth, expected) => {
    expect(choiceReward(pred, truth)).toBe(expected);
  });
  test('reference mode: every comma-separated part must be a ground-truth letter', () => {
    expect(choiceReward('A', 'A,C', { mode: 'reference' })).toBe(1);
    expect(choiceReward('C, A', 'A,C', { mode: 'reference' })).toBe(1);
    expect(choiceReward('A, B', 'A,C', { mode: 'reference' })).toBe(0);
    expect(choiceReward('A,', 'A,C', { mode: 'reference' })).toBe(0);
  });
});

describe('OCR: exp(−WER)', () => {
  test('WER worked out by hand', () => {
    // one substitution (sat→sit) and one deletion (the) over 6 reference words
    expect(wordErrorRate('the cat sat on the mat', 'the cat sit on mat')).toBeCloseTo(2 / 6, 12);
    expect(wordErrorRate('a b', 'a x b')).toBeCloseTo(0.5, 12); // one insertion
    expect(wordErrorRate('a b c', '')).toBe(1);
    expect(wordErrorRate('', '')).toBe(0);
  });
  test('reward', () => {
    expect(ocrReward('the cat sit on mat', 'the cat sat on the mat')).toBeCloseTo(Math.exp(-1 / 3), 12);
    expect(ocrReward('Hello  world', 'Hello world')).toBe(1);
    expect(ocrReward('x', '')).toBe(0);
  });
});

describe('free-form: mean of ROUGE-1, ROUGE-2, ROUGE-L F', () => {
  test('Porter stemmer on the classic examples', () => {
    const pairs: [string, string][] = [
      ['caresses', 'caress'], ['ponies', 'poni'], ['running', 'run'], ['hopping', 'hop'], ['filing', 'file'],
      ['relational', 'relat'], ['conditional', 'condit'], ['generalization', 'gener'], ['happy', 'happi'],
      ['agreed', 'agre'], ['connections', 'connect'], ['adjustable', 'adjust'], ['controll', 'control'],
    ];
    for (const [word, stem] of pairs) expect(porterStem(word)).toBe(stem);
  });
  test('tokens: lower case, alphanumeric runs, stemmed past 3 letters', () => {
    expect(rougeTokens('The cats, RUNNING!')).toEqual(['the', 'cat', 'run']);
  });
  test('ROUGE worked out by hand', () => {
    const ref = rougeTokens('the cat is running'); // the cat is run
    const hyp = rougeTokens('the cats ran'); // the cat ran
    expect(rougeN(ref, hyp, 1)).toBeCloseTo(4 / 7, 12); // P 2/3, R 2/4
    expect(rougeN(ref, hyp, 2)).toBeCloseTo(2 / 5, 12); // "the cat": P 1/2, R 1/3
    expect(rougeL(ref, hyp)).toBeCloseTo(4 / 7, 12); // LCS 2
    expect(freeFormReward('the cats ran', 'the cat is running')).toBeCloseTo(18 / 35, 12);
  });
  test('identical text scores 1, disjoint text 0, clipped counts', () => {
    expect(freeFormReward('Paris is big', 'paris is big')).toBeCloseTo(1, 12);
    expect(freeFormReward('apple', 'orange')).toBe(0);
    // "the the the" vs "the cat": unigram overlap clipped to 1 → P 1/3, R 1/2, F 2/5
    expect(rougeN(['the', 'cat'], ['the', 'the', 'the'], 1)).toBeCloseTo(2 / 5, 12);
  });
});

describe('outcomeReward', () => {
  test('routes by problem_type, unwraps <answer> on both sides and drops $', async () => {
    expect(await outcomeReward({ response: wrap('$\\frac{1}{2}$'), groundTruth: '<answer>0.5</answer>', problemType: 'numerical' })).toBe(1);
    expect(await outcomeReward({ response: wrap('0.25'), groundTruth: '0.5', problemType: 'numerical' })).toBe(0);
    expect(await outcomeReward({ response: wrap('C, A'), groundTruth: '<answer>A, C</answer>', problemType: 'multiple choice' })).toBe(1);
    expect(await outcomeReward({ response: wrap('A'), groundTruth: 'A, C', problemType: 'multiple choice', }, { mode: 'reference' })).toBe(1);
    expect(await outcomeReward({ response: wrap('the cat sit on mat'), groundTruth: 'the cat sat on the mat', problemType: 'OCR' })).toBeCloseTo(Math.exp(-1 / 3), 12);
    expect(await outcomeReward({ response: wrap('the cats ran'), groundTruth: 'the cat is running', problemType: 'free-form' })).toBeCloseTo(18 / 35, 12);
    expect(await outcomeReward({ response: wrap('the cats ran'), groundTruth: 'the cat is running', problemType: 'text' })).toBeCloseTo(18 / 35, 12);
  });
  test('the format gate gives 0 whatever the answer', async () => {
    expect(await outcomeReward({ response: '<answer>0.5</answer>', groundTruth: '0.5', problemType: 'numerical' })).toBe(0);
    expect(await outcomeReward({ response: 'A', groundTruth: 'A', problemType: 'multiple choice' })).toBe(0);
  });
  test('an unknown problem_type is an E_CONFIG error naming the known ones', async () => {
    await expect(outcomeReward({ response: wrap('1'), groundTruth: '1', problemType: 'chess' })).rejects.toThrow(/problemType "chess" is unknown; expected one of "numerical"/);
    await expect(outcomeReward({ response: 3 as unknown as string, groundTruth: '1', problemType: 'numerical' })).rejects.toMatchObject({ code: 'E_TYPE' });
  });
  test('user-defined rewards, sync and async, with and without the gate', async () => {
    const seen: string[] = [];
    registerOutcomeReward('length', ({ answer }) => Math.min(1, answer.length / 10));
    registerOutcomeReward('async-exact', async ({ answer, groundTruth }) => {
      seen.push(groundTruth);
      await new Promise((r) => setTimeout(r, 1));
      return answer === groundTruth ? 1 : 0;
    }, { formatGate: false });
    try {
      expect(outcomeRewardTypes()).toEqual(expect.arrayContaining(['length', 'async-exact', 'numerical']));
      expect(await outcomeReward({ response: wrap('$abcde$'), groundTruth: 'x', problemType: 'Length' })).toBe(0.5);
      expect(await outcomeReward({ response: 'abcde', groundTruth: 'x', problemType: 'length' })).toBe(0);
      expect(await outcomeReward({ response: 'yes', groundTruth: '<answer>yes</answer>', problemType: 'async-exact' })).toBe(1);
      expect(seen).toEqual(['yes']);
      registerOutcomeReward('numerical', () => 0.25); // overrides the built-in
      expect(await outcomeReward({ response: wrap('1'), groundTruth: '1', problemType: 'numerical' })).toBe(0.25);
      registerOutcomeReward('broken', () => 2);
      await expect(outcomeReward({ response: wrap('1'), groundTruth: '1', problemType: 'broken' })).rejects.toMatchObject({ code: 'E_RANGE' });
    } finally {
      for (const t of ['length', 'async-exact', 'numerical', 'broken']) unregisterOutcomeReward(t);
    }
    expect(await outcomeReward({ response: wrap('1'), groundTruth: '1', problemType: 'numerical' })).toBe(1);
    expect(() => registerOutcomeReward('x', 'nope' as never)).toThrow(/fn must be a function/);
  });
});
