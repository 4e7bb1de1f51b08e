/**
 * The embedded task as the policy sees it: prompts in the loader's format, responses decoded from
 * tokens, and held-out evaluation (format rate, accuracy, judge score, and the "wrong thinking,
 * correct answer" rate the paper is about).
 */
import type { SyntheticProblem } from './problems';
import { judgeThinking } from './judge';
import { formatReward, outcomeReward } from '../rewards/outcome';
import type { Sample, SequenceInput, VisionLanguageModel } from '../model/model';

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
}

export interface EvalOptions {
  /** 0 = greedy (default). */
  temperature?: number;
  maxNew?: number;
  seed?: number;
  /** Prompts per generate() call. Default 64. */
  chunk?: number;
}

/** Greedy (by default) answers to held-out problems, graded. */
export async function evaluatePolicy(model: VisionLanguageModel, problems: readonly SyntheticProblem[], opts: EvalOptions = {}): Promise<EvalResult> {
  const chunk = opts.chunk ?? 64;
  let fmt = 0, acc = 0, judge = 0, wtra = 0;
  const examples: EvalResult['examples'] = [];
  for (let i = 0; i < problems.length; i += chunk) {
    const part = problems.slice(i, i + chunk);
    const samples: Sample[] = await model.generate(part.map((p) => promptInput(model, p)), {
      samples: 1, maxNew: opts.maxNew ?? 48, temperature: opts.temperature ?? 0, seed: opts.seed ?? 0,
    });
    for (const s of samples) {
      const p = part[s.prompt];
      const g = await grade(p, responseText(model, s.tokens));
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
  };
}
