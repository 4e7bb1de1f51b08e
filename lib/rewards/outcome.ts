/** Rule-based outcome rewards Ro in [0, 1], routed by a row's problem_type (method.md §1.2). */
import { SophiaError, describe } from '../errors';
import { gradeAnswer, type GradeOptions } from './math';
import { rougeL, rougeN, rougeTokens, wordErrorRate } from './text';

/** Which behaviour to follow where the paper and its reference code differ. */
export type Mode = 'paper' | 'reference';

const FORMAT = /^<think>[\s\S]*?<\/think>[\s\S]*<answer>[\s\S]*?<\/answer>[\s\S]*$/;

/** 1 when the whole response is `<think>…</think>` then `<answer>…</answer>` (the reference's gate), else 0. */
export function formatReward(response: string): number {
  requireString('formatReward', 'response', response);
  return FORMAT.test(response) ? 1 : 0;
}

/** The trimmed content of the first `<answer>…</answer>`, or the whole trimmed text when there is none. */
export function extractAnswer(text: string): string {
  requireString('extractAnswer', 'text', text);
  const m = /<answer>([\s\S]*?)<\/answer>/.exec(text);
  return (m ? m[1] : text).trim();
}

/** 1 when `pred` is mathematically equivalent to `groundTruth` (see gradeAnswer), else 0. */
export function numericalReward(pred: string, groundTruth: string, opts?: GradeOptions): number {
  return gradeAnswer(pred, groundTruth, opts) ? 1 : 0;
}

/** Option letters in an answer such as "A, C", "(B)", "bd"; null when it holds anything else. */
function choiceLetters(text: string): string[] | null {
  const letters: string[] = [];
  for (const raw of text.toUpperCase().split(/[\s,;]+/)) {
    const token = raw.replace(/^[([]+/, '').replace(/[)\].:]+$/, '');
    if (token.length === 0) continue;
    if (!/^[A-Z]+$/.test(token)) return null;
    letters.push(...token);
  }
  return letters;
}

/**
 * 1 when the set of option letters equals the ground truth's (order, case and spaces ignored), else 0.
 * `mode: 'reference'` follows the reference code instead: every comma-separated part of the answer must
 * be one of the ground truth's letters.
 */
export function choiceReward(pred: string, groundTruth: string, opts: { mode?: Mode } = {}): number {
  requireString('choiceReward', 'pred', pred);
  requireString('choiceReward', 'groundTruth', groundTruth);
  const truth = choiceLetters(groundTruth);
  if (!truth || truth.length === 0) return 0;
  const truthSet = new Set(truth);
  if (opts.mode === 'reference') {
    const parts = pred.split(',').map((p) => p.trim().toUpperCase());
    return parts.every((p) => p.length > 0 && truthSet.has(p)) ? 1 : 0;
  }
  const given = choiceLetters(pred);
  if (!given || given.length === 0) return 0;
  const givenSet = new Set(given);
  return givenSet.size === truthSet.size && [...givenSet].every((l) => truthSet.has(l)) ? 1 : 0;
}

/** exp(−WER) with the ground truth as reference, words split on white space. */
export function ocrReward(pred: string, groundTruth: string): number {
  requireString('ocrReward', 'pred', pred);
  requireString('ocrReward', 'groundTruth', groundTruth);
  return Math.exp(-wordErrorRate(groundTruth, pred));
}

/** Mean of the ROUGE-1, ROUGE-2 and ROUGE-L F-measures over Porter-stemmed lower-case tokens. */
export function freeFormReward(pred: string, groundTruth: string): number {
  requireString('freeFormReward', 'pred', pred);
  requireString('freeFormReward', 'groundTruth', groundTruth);
  const ref = rougeTokens(groundTruth);
  const hyp = rougeTokens(pred);
  return (rougeN(ref, hyp, 1) + rougeN(ref, hyp, 2) + rougeL(ref, hyp)) / 3;
}

export interface OutcomeInput {
  /** The policy's whole response, `<think>…</think><answer>…</answer>`. */
  response: string;
  /** The ground truth, bare or wrapped in `<answer>…</answer>`. */
  groundTruth: string;
  /** `numerical`, `multiple choice`, `OCR`, `free-form`, `text`, or a type registered with registerOutcomeReward. */
  problemType: string;
}

export interface OutcomeOptions {
  /** 'paper' (default) or 'reference': only multiple-choice grading differs. */
  mode?: Mode;
  /** Time bound of one numerical comparison in ms (default 200). */
  gradeTimeoutMs?: number;
}

/** What a user-defined outcome reward receives: the answers are already unwrapped and `$`-free. */
export interface CustomRewardInput {
  response: string;
  answer: string;
  groundTruth: string;
  problemType: string;
}
export type CustomOutcomeReward = (input: CustomRewardInput) => number | Promise<number>;

const BUILTIN: Record<string, (pred: string, gt: string, opts: OutcomeOptions) => number> = {
  numerical: (p, g, o) => numericalReward(p, g, { timeoutMs: o.gradeTimeoutMs }),
  'multiple choice': (p, g, o) => choiceReward(p, g, { mode: o.mode }),
  ocr: (p, g) => ocrReward(p, g),
  'free-form': (p, g) => freeFormReward(p, g),
  text: (p, g) => freeFormReward(p, g),
};
const custom = new Map<string, { fn: CustomOutcomeReward; formatGate: boolean }>();

const typeKey = (problemType: string): string => problemType.trim().toLowerCase();

/**
 * Adds (or replaces) the outcome reward of a problem_type; it wins over a built-in of the same name.
 * With `formatGate: true` (default) a response failing the format gate scores 0 without calling `fn`.
 */
export function registerOutcomeReward(problemType: string, fn: CustomOutcomeReward, opts: { formatGate?: boolean } = {}): void {
  requireString('registerOutcomeReward', 'problemType', problemType);
  if (typeKey(problemType).length === 0) throw new SophiaError('E_RANGE', 'registerOutcomeReward: problemType must not be empty');
  if (typeof fn !== 'function') throw new SophiaError('E_TYPE', `registerOutcomeReward: fn must be a function, got ${describe(fn)}`);
  custom.set(typeKey(problemType), { fn, formatGate: opts.formatGate ?? true });
}

/** Removes a user-defined outcome reward; true when one was registered. */
export function unregisterOutcomeReward(problemType: string): boolean {
  return custom.delete(typeKey(problemType));
}

/** The problem types outcomeReward accepts now (built-in and registered). */
export function outcomeRewardTypes(): string[] {
  return [...new Set([...Object.keys(BUILTIN), ...custom.keys()])];
}

/**
 * The outcome reward of one response: the format gate, `<answer>` unwrapping and `$` removal on both
 * sides, then the reward function of its problem_type. Throws E_CONFIG for an unknown problem_type.
 */
export async function outcomeReward(input: OutcomeInput, opts: OutcomeOptions = {}): Promise<number> {
  if (input === null || typeof input !== 'object') throw new SophiaError('E_TYPE', `outcomeReward: input must be an object, got ${describe(input)}`);
  const { response, groundTruth, problemType } = input;
  requireString('outcomeReward', 'response', response);
  requireString('outcomeReward', 'groundTruth', groundTruth);
  requireString('outcomeReward', 'problemType', problemType);
  if (opts.mode !== undefined && opts.mode !== 'paper' && opts.mode !== 'reference') {
    throw new SophiaError('E_CONFIG', `outcomeReward: mode must be 'paper' or 'reference', got ${describe(opts.mode)}`);
  }
  const key = typeKey(problemType);
  const user = custom.get(key);
  const builtin = BUILTIN[key];
  if (!user && !builtin) {
    throw new SophiaError('E_CONFIG', `outcomeReward: problemType ${describe(problemType)} is unknown; expected one of ${outcomeRewardTypes().map((t) => JSON.stringify(t)).join(', ')}`);
  }
  const gated = !user || user.formatGate;
  if (gated && !FORMAT.test(response)) return 0;
  const answer = extractAnswer(response).replace(/\$/g, '');
  const truth = extractAnswer(groundTruth).replace(/\$/g, '');
  if (!user) return builtin(answer, truth, opts);
  const value = await user.fn({ response, answer, groundTruth: truth, problemType });
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new SophiaError('E_RANGE', `outcomeReward: the reward registered for ${describe(problemType)} must return a number in [0, 1], got ${describe(value)}`);
  }
  return value;
}

function requireString(fn: string, name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new SophiaError('E_TYPE', `${fn}: ${name} must be a string, got ${describe(value)}`);
}
