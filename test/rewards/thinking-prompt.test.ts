import * as fs from 'node:fs';
import * as path from 'node:path';
import { THINKING_RM_PROMPT, fillThinkingPrompt } from '../../lib/rewards/prompt';
import { extractThinkingScore, parseThinkingScore } from '../../lib/rewards/extract';
import { thinkingInput } from '../../lib/rewards/thinking';

const REFERENCE = path.resolve(__dirname, '../../../shared/reference/thinking-rm-prompt.txt');
const haveReference = fs.existsSync(REFERENCE);
if (!haveReference) console.warn(`SKIPPED: the byte comparison of the thinking-RM prompt: ${REFERENCE} is absent`);

(haveReference ? test : test.skip)('the prompt is byte-identical to shared/reference/thinking-rm-prompt.txt', () => {
  expect(Buffer.from(THINKING_RM_PROMPT, 'utf8').equals(fs.readFileSync(REFERENCE))).toBe(true);
});

test('the prompt keeps its slots, literal braces and trailing spaces', () => {
  expect(THINKING_RM_PROMPT.match(/\{question\}/g)).toHaveLength(1);
  expect(THINKING_RM_PROMPT.match(/\{reasoning\}/g)).toHaveLength(1);
  expect(THINKING_RM_PROMPT).toContain('**{0, 0.1, 0.2, ..., 1.0}**');
  expect(THINKING_RM_PROMPT.endsWith('</answer>\n    ')).toBe(true);
});

test('fillThinkingPrompt fills both slots once, even when the question holds a slot name', () => {
  const filled = fillThinkingPrompt('What is {reasoning}?', 'step 1');
  expect(filled).toContain('    Question: What is {reasoning}?\n');
  expect(filled).toContain('    Reasoning process: step 1\n');
  expect(filled).toContain('{0, 0.1, 0.2, ..., 1.0}');
});

describe('extractThinkingScore: first extractor that hits wins, clamped to [0, 1]', () => {
  test.each([
    ['<answer>0.7</answer>', 0.7],
    ['\\boxed{0.4} and <answer>0.9</answer>', 0.4],
    ['\\box{0.3}', 0.3],
    ['\\boxes{1.0}', 1],
    ['<answer>0.8 </answer> 0.1', 0.8],
    ['The score is 0.6.', 0.6],
    ['Score: 1', 1],
    ['Score 1.5', 1],
    ['<think>hmm</think> 7', 1],
    ['**Total Wrong Steps**: 0', 0],
    ['there are **3 wrong steps** here', 1],
    ['**Number of Wrong Steps**: 0', 0],
    ['<answer>high</answer> 0.2', 0.2],
    ['version 10 and 20', NaN],
    ['no score at all', NaN],
    ['', NaN],
  ])('%j → %d', (reply, expected) => {
    expect(extractThinkingScore(reply)).toBe(expected);
  });
});

describe('parseThinkingScore: only the asked-for form, in [0, 1]', () => {
  test.each([
    ['<answer>0.7</answer>', 0.7],
    [' <answer> 1.0 </answer>\n', 1],
    ['<answer>0</answer>.', 0],
    ['\\boxed{0.4}', 0.4],
    ['\\box{.3}', 0.3],
    ['0.25', 0.25],
    ['1.', 1],
    ['<think>the steps hold</think><answer>0.9</answer>', 0.9],
  ])('%j → %d', (reply, expected) => {
    expect(parseThinkingScore(reply)).toEqual({ score: expected });
  });
  test.each([
    ['<answer>-5</answer>', 'out_of_range'],
    ['7', 'out_of_range'],
    ['\\boxed{1.5}', 'out_of_range'],
    ['Error: upstream overloaded, 1 request dropped', 'unparseable'],
    ['The score is 0.6.', 'unparseable'],
    ['<answer>0.6</answer> but maybe 0.2', 'unparseable'],
    ['**Total Wrong Steps**: 0', 'unparseable'],
    ['<answer>high</answer>', 'unparseable'],
    ['<answer></answer>', 'unparseable'],
    ['', 'unparseable'],
    ['NaN', 'unparseable'],
    ['Infinity', 'unparseable'],
  ])('%j → no score (%s)', (reply, problem) => {
    const r = parseThinkingScore(reply);
    expect(Number.isNaN(r.score)).toBe(true);
    expect(r.problem).toBe(problem);
  });
});

test('thinkingInput: the <think> content (paper) or the whole $-free response (reference)', () => {
  const response = '<think> add $1+1$ </think><answer>$2$</answer>';
  expect(thinkingInput(response)).toBe('add $1+1$');
  expect(thinkingInput(response, 'reference')).toBe('<think> add 1+1 </think><answer>2</answer>');
  expect(thinkingInput('no tags')).toBe('no tags');
});
