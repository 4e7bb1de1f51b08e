/**
 * The embedded task as the policy sees it: prompts in the loader's format, responses decoded from
 * tokens, and held-out evaluation (format rate, accuracy, judge score, and the "wrong thinking,
 * correct answer" rate the paper is about).
 */
import type { SyntheticProblem } from './problems';
import { judgeThinking } from './judge';
import { formatReward, outcomeReward } from '../rewards/outcome';
import type { Sample, SequenceInput, VisionLanguageModel } from '../model/model';
import type { RgbImage } from '../data/images';
import { SophiaError } from '../errors';

/** The prompt exactly as loadDataset builds it from the problem's row: `<image>`, question, options. */
export function promptOf(p: SyntheticProblem): string {
  let prompt = p.question;
  if (p.problemType === 'multiple choice' && p.options.length > 0) prompt = `${prompt}\nOptions:\n${p.options.join('\n')}`;
  return `<image>${prompt}`;
}

export function promptInput(model: VisionLanguageModel, p: SyntheticProblem): SequenceInput {
  return { tokens: model.tokenizer.encode(promptOf(p)), image: p.image };
}

/** The response text of sampled tokens (EOS and anything after it dropped). */
export function responseText(model: VisionLanguageModel, tokens: ArrayLike<number>): string {
  const eos = model.tokenizer.special.eos;
  const ids: number[] = [];
  for (let i = 0; i < tokens.length && tokens[i] !== eos; i++) ids.push(tokens[i]);
  return model.tokenizer.decode(ids);
}

/** Response tokens for teacher forcing: the text, then EOS. */
export function responseTokens(model: VisionLanguageModel, text: string): Int32Array {
  const t = model.tokenizer.encode(text);
  const out = new Int32Array(t.length + 1);
  out.set(t);
  out[t.length] = model.tokenizer.special.eos;
  return out;
}


export interface Graded {
  response: string;
  format: number;
  outcome: number;
  judge: number;
}

/** Outcome (rule-based, 0/1), format and judge score of one response. */
export async function grade(p: SyntheticProblem, response: string): Promise<Graded> {
  const outcome = await outcomeReward({ response, groundTruth: p.answer, problemType: p.problemType });
  return { response, format: formatReward(response), outcome, judge: judgeThinking(p, response).score };
}

export interface EvalResult {
  n: number;
  /** Share of responses in the `<think>…</think><answer>…</answer>` format. */
  formatRate: number;
  /** Share with the right answer. */
  accuracy: number;
  /** Mean judge score of the reasoning. */
  judgeScore: number;
  /** Share with the right answer and a judge score below 0.5 ("wrong thinking, correct answer"). */
  wrongThinkingRightAnswer: number;
  /** Among right answers, the share with a judge score below 0.5. */
  wrongThinkingGivenRight: number;
  examples: { question: string; response: string; outcome: number; judge: number }[];
  /** Per problem, in the order given: outcome reward and judge score (for paired comparisons). */
  outcomes: number[];
  judges: number[];
}

export interface EvalOptions {
  /** 0 = greedy (default). */
  temperature?: number;
  maxNew?: number;
  seed?: number;
  /** Prompts per generate() call. Default 64. */
  chunk?: number;
  /** The image shown with problem i (default: its own); for the swapped- and blank-image probes. */
  imageFor?: (p: SyntheticProblem, i: number) => RgbImage;
}

/** Greedy (by default) answers to held-out problems, graded. */
export async function evaluatePolicy(model: VisionLanguageModel, problems: readonly SyntheticProblem[], opts: EvalOptions = {}): Promise<EvalResult> {
  const chunk = opts.chunk ?? 64;
  let fmt = 0, acc = 0, judge = 0, wtra = 0;
  const examples: EvalResult['examples'] = [];
  const outcomes = new Array<number>(problems.length).fill(0);
  const judges = new Array<number>(problems.length).fill(0);
  for (let i = 0; i < problems.length; i += chunk) {
    const part = problems.slice(i, i + chunk);
    const imageFor = opts.imageFor;
    const inputs = part.map((p, j) => (imageFor ? { ...promptInput(model, p), image: imageFor(p, i + j) } : promptInput(model, p)));
    const samples: Sample[] = await model.generate(inputs, {
      samples: 1, maxNew: opts.maxNew ?? 48, temperature: opts.temperature ?? 0, seed: opts.seed ?? 0,
    });
    for (const s of samples) {
      const p = part[s.prompt];
      const g = await grade(p, responseText(model, s.tokens));
      outcomes[i + s.prompt] = g.outcome;
      judges[i + s.prompt] = g.judge;
      fmt += g.format;
      acc += g.outcome;
      judge += g.judge;
      if (g.outcome > 0.5 && g.judge < 0.5) wtra++;
      if (examples.length < 8) examples.push({ question: p.question, response: g.response, outcome: g.outcome, judge: g.judge });
    }
  }
  const n = problems.length;
  return {
    n,
    formatRate: fmt / n,
    accuracy: acc / n,
    judgeScore: judge / n,
    wrongThinkingRightAnswer: wtra / n,
    wrongThinkingGivenRight: acc > 0 ? wtra / acc : 0,
    examples,
    outcomes,
    judges,
  };
}

/** Combines evaluations of disjoint problem sets (in order). */
export function mergeEval(a: EvalResult, b: EvalResult): EvalResult {
  const n = a.n + b.n;
  const w = (x: number, y: number): number => (n === 0 ? 0 : (x * a.n + y * b.n) / n);
  const right = a.accuracy * a.n + b.accuracy * b.n;
  const wtra = a.wrongThinkingRightAnswer * a.n + b.wrongThinkingRightAnswer * b.n;
  return {
    n,
    formatRate: w(a.formatRate, b.formatRate),
    accuracy: w(a.accuracy, b.accuracy),
    judgeScore: w(a.judgeScore, b.judgeScore),
    wrongThinkingRightAnswer: n === 0 ? 0 : wtra / n,
    wrongThinkingGivenRight: right > 0 ? wtra / right : 0,
    examples: [...a.examples, ...b.examples].slice(0, 8),
    outcomes: [...a.outcomes, ...b.outcomes],
    judges: [...a.judges, ...b.judges],
  };
}

/** The headline numbers of an evaluation, without the per-problem arrays and examples (for JSON summaries). */
export function evalSummary(e: EvalResult): { n: number; formatRate: number; accuracy: number; judgeScore: number; wrongThinkingRightAnswer: number } {
  return { n: e.n, formatRate: e.formatRate, accuracy: e.accuracy, judgeScore: e.judgeScore, wrongThinkingRightAnswer: e.wrongThinkingRightAnswer };
}

/**
 * The answer a model that never looks at the image does best with: for each question text, the most
 * common answer among the training problems with that text (ties: the smaller answer), or the most
 * common answer of the problem type when no training problem asks it. Returns that rule's accuracy
 * on `problems` and the rule itself.
 */
export function textOnlyBaseline(train: readonly SyntheticProblem[], problems: readonly SyntheticProblem[]): { accuracy: number; answerFor: (p: SyntheticProblem) => string } {
  const byText = new Map<string, Map<string, number>>();
  const byType = new Map<string, Map<string, number>>();
  const bump = (m: Map<string, Map<string, number>>, k: string, a: string): void => {
    const c = m.get(k) ?? new Map<string, number>();
    c.set(a, (c.get(a) ?? 0) + 1);
    m.set(k, c);
  };
  for (const p of train) {
    bump(byText, promptOf(p), p.answer);
    bump(byType, p.problemType, p.answer);
  }
  const mode = (c: Map<string, number> | undefined): string | undefined =>
    c ? [...c.entries()].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1))[0][0] : undefined;
  const answerFor = (p: SyntheticProblem): string => mode(byText.get(promptOf(p))) ?? mode(byType.get(p.problemType)) ?? '0';
  const right = problems.filter((p) => answerFor(p) === p.answer).length;
  return { accuracy: problems.length ? right / problems.length : 0, answerFor };
}

/** The held-out problems (test split) every run, evaluation and seed shares, so that results compare. */
export const EVAL_SEED = 1000;

/** The swapped-image probe: problem i is shown problem i + 1's image (another random scene). */
export const swappedImages = (problems: readonly SyntheticProblem[]) => (_p: SyntheticProblem, i: number): RgbImage => problems[(i + 1) % problems.length].image;

/** A black image of the same size: the "no picture" probe. */
export const blankImage = (im: RgbImage): RgbImage => ({ width: im.width, height: im.height, data: new Uint8Array(im.data.length) });

export interface SeeingOptions extends Omit<EvalOptions, 'imageFor'> {
  /** Training problems for the text-only baseline (same generator options as the held-out ones). */
  trainProblems: readonly SyntheticProblem[];
  /** Also answer with a black image. Default true. */
  blank?: boolean;
  /** Called after each of the evaluations (own, swapped, blank). */
  onProgress?: (done: number, total: number) => void;
}

export interface KindBreakdown {
  n: number;
  own: number;
  swapped: number;
  textOnly: number;
}

export interface SeeingResult {
  /** Each problem with its own image. */
  own: EvalResult;
  /** Each problem with the next problem's image (a different random scene). */
  swapped: EvalResult;
  blank?: EvalResult;
  /** Accuracy of the best answer per question text, from the training problems (no image). */
  textOnly: number;
  /** own.accuracy − swapped.accuracy: what reading the image is worth. */
  seeingGap: number;
  /** Accuracy per question kind. */
  byKind: Record<string, KindBreakdown>;
  /** The text-only baseline's answer to a problem. */
  textOnlyAnswerFor: (p: SyntheticProblem) => string;
}

/**
 * Whether a policy reads its image: greedy accuracy with each problem's own image, with another
 * problem's image and with a blank one, against the text-only baseline, overall and per question kind.
 */
export async function evaluateSeeing(model: VisionLanguageModel, problems: readonly SyntheticProblem[], opts: SeeingOptions): Promise<SeeingResult> {
  const n = problems.length;
  if (n < 2) throw new SophiaError('E_RANGE', `evaluateSeeing: problems must hold at least 2 problems (to swap images), got ${n}`);
  const { trainProblems, blank: withBlank = true, onProgress, ...evalOpts } = opts;
  const total = withBlank ? 3 : 2;
  const own = await evaluatePolicy(model, problems, evalOpts);
  onProgress?.(1, total);
  const swapped = await evaluatePolicy(model, problems, { ...evalOpts, imageFor: swappedImages(problems) });
  onProgress?.(2, total);
  const blank = withBlank ? await evaluatePolicy(model, problems, { ...evalOpts, imageFor: (p) => blankImage(p.image) }) : undefined;
  if (withBlank) onProgress?.(3, total);
  const base = textOnlyBaseline(trainProblems, problems);
  const byKind: Record<string, KindBreakdown> = {};
  problems.forEach((p, i) => {
    const k = (byKind[p.task.kind] ??= { n: 0, own: 0, swapped: 0, textOnly: 0 });
    k.n++;
    k.own += own.outcomes[i];
    k.swapped += swapped.outcomes[i];
    k.textOnly += base.answerFor(p) === p.answer ? 1 : 0;
  });
  for (const k of Object.values(byKind)) {
    k.own /= k.n;
    k.swapped /= k.n;
    k.textOnly /= k.n;
  }
  return { own, swapped, blank, textOnly: base.accuracy, seeingGap: own.accuracy - swapped.accuracy, byKind, textOnlyAnswerFor: base.answerFor };
}
