/**
 * Supervised warm start of the policy (`sophia sft`): teacher forcing on gold reasoning mixed with
 * deliberately flawed reasoning, so that the policy answers in the `<think>…</think><answer>…</answer>`
 * format, sometimes with flawed thinking, and is right only part of the time: room for RL, and
 * responses that spread over the thinking judge's grid for the reward model to learn from.
 */
import * as path from 'node:path';
import { z } from 'zod';
import { SophiaError, describe } from '../errors';
import { createRng, generateProblems, goldResponse, perturb, PERTURBATION_KINDS, type PerturbationKind, type Rng, type SyntheticProblem } from '../task';
import { shuffled } from '../random';
import { VisionLanguageModel, saveModel, writeFileAtomic, resolveModelConfig, type ModelConfig, type PackedBatch } from '../model';
import { CENSUS_QUESTION, censusResponse, GRID_QUESTION, gridResponse, gridLetters, evaluatePolicy, evaluateSeeing, evalSummary, mergeEval, promptInput, responseTokens, type EvalResult, type SeeingResult } from '../task';
import { writeReport, type Report } from '../report';

/**
 * Flawed kinds that keep the answer format, the default SFT mix: the policy should learn the format,
 * not to break it, and never "wrong count, right answer" (the failure the thinking reward is for).
 */
export const SFT_FLAWED_KINDS: readonly PerturbationKind[] = [
  'wrong_count_wrong_answer', 'wrong_arithmetic', 'skipped_step', 'repetition', 'redundant',
];

const int = (d: number, desc: string, min = 0) => z.number().int().min(min).default(d).describe(desc);

export const SftOptionsSchema = z
  .object({
    out: z.string().min(1).describe('folder for the policy checkpoint, sft.json and report.html'),
    seed: int(0, 'seed of the weights, the problems, the response mix and the batch order'),
    model: z.record(z.string(), z.unknown()).optional().describe('model config fields over DEFAULT_MODEL_CONFIG'),
    problems: int(3000, 'training problems (train split)', 1),
    epochs: int(3, 'passes over the training problems (a fresh gold/flawed draw per pass) when steps is not given', 1),
    steps: z.number().int().min(1).optional().describe('optimizer steps (sophia sft: 1500); overrides epochs'),
    batch: int(32, 'sequences per optimizer step (bounds the activation memory)', 1),
    lr: z.number().positive().finite().default(2e-3).describe('peak learning rate'),
    warmup: int(20, 'linear warm-up steps'),
    minLrRatio: z.number().min(0).max(1).default(0.1).describe('the cosine decays to lr × minLrRatio'),
    weightDecay: z.number().min(0).finite().default(0.01).describe('AdamW decoupled weight decay'),
    clip: z.number().min(0).finite().default(1).describe('global gradient-norm clip; 0 = off'),
    flawedFraction: z.number().min(0).max(1).default(0.35).describe('share of training responses with flawed reasoning'),
    census: z.number().min(0).max(1).default(1).describe('share of training images that also get a census sequence per epoch (every colour and shape counted: a dense visual signal)'),
    visionShare: z.number().min(0).max(0.9).default(1 / 3).describe('share of the steps, at the start, on census and grid sequences only (a vision-first curriculum)'),
    patchLoss: z.boolean().default(true).describe("auxiliary per-patch loss: the row of each visual token also predicts the shape letter of its cell (c, s, t; '.' when empty), on every training sequence. Without it the vision tower learns colours but not shapes"),
    grid: z.number().min(0).max(1).default(0.5).describe('share of training images that also get a grid sequence per epoch (colour and shape letter of every 8×8 cell: a per-patch signal)'),
    flawedKinds: z.array(z.enum(PERTURBATION_KINDS as [PerturbationKind, ...PerturbationKind[]])).min(1).default([...SFT_FLAWED_KINDS]).describe('perturbations drawn (uniformly) for flawed responses'),
    difficulty: z.enum(['easy', 'normal']).default('normal').describe('synthetic task difficulty'),
    eval: int(256, 'held-out problems (test split) for the greedy evaluation; 0 = none'),
    evalBefore: z.boolean().default(true).describe('also evaluate the freshly initialised model'),
    maxNew: int(96, 'new tokens per evaluation response at most', 1),
  })
  .strict();

export type SftConfig = z.infer<typeof SftOptionsSchema>;

export interface SftProgress {
  phase: 'data' | 'eval-before' | 'train' | 'eval';
  done: number;
  total: number;
  /** Training loss of the latest step (nats per response token). */
  loss?: number;
  lr?: number;
}

export type SftOptions = z.input<typeof SftOptionsSchema> & {
  /** Called after each step and each evaluation chunk. */
  onProgress?: (p: SftProgress) => void;
};

export interface SftStepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
}

export interface SftResult {
  config: SftConfig;
  model: ModelConfig;
  params: number;
  steps: number;
  /** Sequences trained on (with repeats over epochs). */
  sequences: number;
  /** Training responses left out because prompt + response did not fit the context. */
  skipped: number;
  /** Mean training loss over the last 10% of the steps. */
  finalTrainLoss: number;
  /** Teacher-forced loss on the held-out problems' gold responses (nats per token), before and after. */
  heldOutLoss: { before: number; after: number };
  evalBefore?: EvalResult;
  eval?: EvalResult;
  /** Whether the policy reads its image (held-out, greedy): accuracy with swapped and blank images, text-only baseline. */
  seeing?: SeeingSummary;
  history: SftStepRecord[];
  seconds: number;
  out: string;
}

export interface SeeingSummary {
  accuracy: number;
  swappedAccuracy: number;
  blankAccuracy: number;
  textOnlyAccuracy: number;
  seeingGap: number;
  byKind: SeeingResult['byKind'];
}

export const seeingSummary = (r: SeeingResult): SeeingSummary => ({
  accuracy: r.own.accuracy,
  swappedAccuracy: r.swapped.accuracy,
  blankAccuracy: r.blank ? r.blank.accuracy : NaN,
  textOnlyAccuracy: r.textOnly,
  seeingGap: r.seeingGap,
  byKind: r.byKind,
});

/** Zod issues → one SophiaError naming each offending option. */
export function optionsError(fn: string, input: unknown, issues: z.ZodError['issues']): SophiaError {
  const lines = issues.map((i) => {
    const at = i.path.length ? i.path.join('.') : '(options)';
    let got = input;
    for (const k of i.path) got = got && typeof got === 'object' ? (got as Record<string | number, unknown>)[k as string] : undefined;
    return `${at}: ${i.message} (got ${describe(got)})`;
  });
  return new SophiaError('E_CONFIG', `${fn}: ${lines.join('; ')}`);
}

export function resolveSftOptions(input: unknown): SftConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new SophiaError('E_TYPE', `sft: options must be an object, got ${describe(input)}`);
  const { onProgress: _p, ...rest } = input as Record<string, unknown>;
  const r = SftOptionsSchema.safeParse(rest);
  if (!r.success) throw optionsError('sft', rest, r.error.issues);
  return r.data;
}

export interface LrSchedule {
  /** Peak learning rate. */
  lr: number;
  /** Linear warm-up steps (the first step runs at lr / warmup). */
  warmup: number;
  /** Total optimizer steps. */
  total: number;
  /** The cosine ends at lr × minLrRatio. Default 0.1. */
  minLrRatio?: number;
}

/** Learning rate of optimizer step `step` (0-based): linear warm-up, then a cosine from lr down to lr × minLrRatio at the last step. */
export function lrAt(step: number, s: LrSchedule): number {
  if (!Number.isInteger(step) || step < 0) throw new SophiaError('E_RANGE', `lrAt: step must be an integer >= 0, got ${describe(step)}`);
  const min = s.lr * (s.minLrRatio ?? 0.1);
  if (step < s.warmup) return (s.lr * (step + 1)) / s.warmup;
  const span = s.total - s.warmup - 1;
  if (span <= 0) return s.lr;
  const t = Math.min(1, (step - s.warmup) / span);
  return min + (s.lr - min) * 0.5 * (1 + Math.cos(Math.PI * t));
}

/** One teacher-forced sequence: prompt tokens then response tokens (text + EOS). */
export interface ForcedSequence {
  prompt: Int32Array;
  response: Int32Array;
  image: SyntheticProblem['image'];
  /**
   * Optional per-patch labels, one token per visual token of the image: the row of visual token k
   * is trained to predict patchLabels[k] (an auxiliary loss; those rows predict nothing otherwise).
   */
  patchLabels?: Int32Array;
}

/**
 * Packs sequences and lists the rows that predict response tokens (the last prompt row through the
 * row before EOS), with their labels; a sequence with patchLabels also lists its visual tokens' rows.
 */
export function forcedBatch(model: VisionLanguageModel, seqs: readonly ForcedSequence[]): { batch: PackedBatch; rows: Int32Array; labels: Int32Array } {
  const batch = model.pack(seqs.map((s) => {
    const t = new Int32Array(s.prompt.length + s.response.length);
    t.set(s.prompt);
    t.set(s.response, s.prompt.length);
    return { tokens: t, image: s.image };
  }));
  const image = model.config.imageToken;
  const n = seqs.reduce((a, s) => a + s.response.length + (s.patchLabels && s.image ? s.patchLabels.length : 0), 0);
  const rows = new Int32Array(n);
  const labels = new Int32Array(n);
  let k = 0;
  seqs.forEach((s, b) => {
    const start = batch.seqStarts[b];
    const end = batch.seqStarts[b + 1];
    const first = end - s.response.length - 1;
    if (s.patchLabels && s.image) {
      // Visual tokens sit in the prompt, before every response row: rows stay increasing.
      let visual = 0;
      for (let r = start; r < first; r++) if (batch.tokens[r] === image) visual++;
      if (visual !== s.patchLabels.length) throw new SophiaError('E_SHAPE', `forcedBatch: sequence ${b} has ${s.patchLabels.length} patch labels but ${visual} visual tokens before its response`);
      let j = 0;
      for (let r = start; r < first; r++) {
        if (batch.tokens[r] !== image) continue;
        rows[k] = r;
        labels[k++] = s.patchLabels[j++];
      }
    }
    for (let r = first; r < end - 1; r++) {
      rows[k] = r;
      labels[k++] = batch.tokens[r + 1];
    }
  });
  return { batch, rows, labels };
}

/**
 * Mean cross-entropy of `labels` under `logits` [rows, V]; when `grad` is set, d loss / d logits is
 * written over the logits (the `<image>` column is −∞ and gets 0).
 */
export function crossEntropy(logits: Float32Array, labels: Int32Array, V: number, grad: boolean): number {
  const n = labels.length;
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const o = i * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (logits[o + v] > max) max = logits[o + v];
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[o + v] - max);
    const lse = max + Math.log(sum);
    loss += lse - logits[o + labels[i]];
    if (grad) {
      for (let v = 0; v < V; v++) logits[o + v] = Math.exp(logits[o + v] - lse) / n;
      logits[o + labels[i]] -= 1 / n;
    }
  }
  return loss / n;
}

/** Fits when the packed length (the `<image>` token expanded) is within the context. */
function fits(model: VisionLanguageModel, s: ForcedSequence): boolean {
  const extra = s.image ? model.visualTokens - 1 : 0;
  return s.prompt.length + extra + s.response.length <= model.config.context;
}

/** The training response of one problem in one epoch: gold, or a flawed one with probability `flawedFraction`. */
function sftResponse(p: SyntheticProblem, rng: Rng, c: SftConfig): string {
  if (rng() >= c.flawedFraction) return goldResponse(p);
  return perturb(p, c.flawedKinds[Math.floor(rng() * c.flawedKinds.length)], rng);
}

/** Teacher-forced mean loss (no update) in chunks of `batch`. */
export async function forcedLoss(model: VisionLanguageModel, seqs: readonly ForcedSequence[], batch: number): Promise<number> {
  let total = 0;
  let count = 0;
  for (let i = 0; i < seqs.length; i += batch) {
    const { batch: b, rows, labels } = forcedBatch(model, seqs.slice(i, i + batch));
    const logits = await model.forward(b, rows);
    total += crossEntropy(logits, labels, model.config.vocab, false) * labels.length;
    count += labels.length;
  }
  return count ? total / count : NaN;
}

const f3 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(3));

/** Warm-starts a policy and saves it to `out` (checkpoint, sft.json, report.html). */
export async function runSft(options: SftOptions): Promise<SftResult> {
  const started = performance.now();
  const c = resolveSftOptions(options);
  const onProgress = options.onProgress;
  if (onProgress !== undefined && typeof onProgress !== 'function') throw new SophiaError('E_TYPE', `sft: onProgress must be a function, got ${describe(onProgress)}`);
  const modelConfig = resolveModelConfig(c.model ?? {});
  const model = VisionLanguageModel.create({ config: modelConfig, seed: c.seed });
  try {
    const problems = generateProblems({ seed: c.seed, count: c.problems, split: 'train', difficulty: c.difficulty });
    const evalProblems = c.eval > 0 ? generateProblems({ seed: c.seed, count: c.eval, split: 'test', difficulty: c.difficulty }) : [];
    const prompts = problems.map((p) => promptInput(model, p).tokens as Int32Array);
    const censusPrompt = model.tokenizer.encode(`<image>${CENSUS_QUESTION}`);
    const gridPrompt = model.tokenizer.encode(`<image>${GRID_QUESTION}`);
    // One letter per patch of the model: a patch covers patch × (width / imageSize) image pixels
    // (for a model whose patches are coarser than the scene's grid, the last shape in a patch names it).
    const censusTokens = (p: SyntheticProblem): Int32Array => responseTokens(model, censusResponse(p.scene));
    const cellOf = (p: SyntheticProblem): number => model.config.patch * (p.width / model.config.imageSize);
    const gridTokens = (p: SyntheticProblem): Int32Array => responseTokens(model, gridResponse(p.scene, p.width, p.height, cellOf(p)));
    const patchLabels = (p: SyntheticProblem): Int32Array | undefined =>
      c.patchLoss ? model.tokenizer.encode(gridLetters(p.scene, p.width, p.height, cellOf(p)).shape.join('')) : undefined;
    const heldOut: ForcedSequence[] = evalProblems
      .map((p) => ({ prompt: promptInput(model, p).tokens as Int32Array, response: responseTokens(model, goldResponse(p)), image: p.image }))
      .filter((s) => fits(model, s));

    // A fresh draw of responses per epoch, dropping those that do not fit the context.
    let skipped = 0;
    const epochData = (e: number): ForcedSequence[] => {
      const rng = createRng(c.seed, `sft/epoch/${e}`);
      const out: ForcedSequence[] = [];
      problems.forEach((p, i) => {
        const labels = patchLabels(p);
        const s = { prompt: prompts[i], response: responseTokens(model, sftResponse(p, rng, c)), image: p.image, patchLabels: labels };
        if (fits(model, s)) out.push(s);
        else if (e === 0) skipped++;
        if (c.census > 0 && rng() < c.census) {
          const census = { prompt: censusPrompt, response: censusTokens(p), image: p.image, patchLabels: labels };
          if (fits(model, census)) out.push(census);
        }
        if (c.grid > 0 && rng() < c.grid) {
          const grid = { prompt: gridPrompt, response: gridTokens(p), image: p.image, patchLabels: labels };
          if (fits(model, grid)) out.push(grid);
        }
      });
      return shuffled(rng, out);
    };
    let epoch = 0;
    let data = epochData(epoch);
    if (data.length === 0) throw new SophiaError('E_CONFIG', `sft: no training sequence fits the context (${model.config.context} tokens); raise model.context or use difficulty "easy"`);
    const total = c.steps ?? Math.ceil((data.length * c.epochs) / c.batch);
    const schedule: LrSchedule = { lr: c.lr, warmup: Math.min(c.warmup, total), total, minLrRatio: c.minLrRatio };

    const evaluate = async (phase: 'eval-before' | 'eval'): Promise<EvalResult | undefined> => {
      if (evalProblems.length === 0) return undefined;
      const chunk = 64;
      let merged: EvalResult | undefined;
      for (let i = 0; i < evalProblems.length; i += chunk) {
        const part = evalProblems.slice(i, i + chunk);
        const r = await evaluatePolicy(model, part, { maxNew: c.maxNew, chunk });
        merged = merged ? mergeEval(merged, r) : r;
        onProgress?.({ phase, done: Math.min(evalProblems.length, i + chunk), total: evalProblems.length });
      }
      return merged;
    };

    const lossBefore = await forcedLoss(model, heldOut, c.batch);
    const evalBefore = c.evalBefore ? await evaluate('eval-before') : undefined;

    const history: SftStepRecord[] = [];
    let cursor = 0;
    let sequences = 0;
    // The vision-first phase: census and grid sequences of the training images, nothing else.
    const visionData = (e: number): ForcedSequence[] => {
      const rng = createRng(c.seed, `sft/vision/${e}`);
      return shuffled(rng, problems.flatMap((p) => {
        const labels = patchLabels(p);
        return [
          { prompt: censusPrompt, response: censusTokens(p), image: p.image, patchLabels: labels },
          { prompt: gridPrompt, response: gridTokens(p), image: p.image, patchLabels: labels },
        ];
      }).filter((q) => fits(model, q)));
    };
    let visionEpoch = 0;
    const visionSteps = Math.floor(c.visionShare * total);
    let vdata: ForcedSequence[] = visionSteps > 0 ? visionData(0) : [];
    let vcursor = 0;
    for (let step = 0; step < total; step++) {
      let seqs: ForcedSequence[];
      if (step < visionSteps) {
        if (vcursor >= vdata.length) {
          vdata = visionData(++visionEpoch);
          vcursor = 0;
        }
        seqs = vdata.slice(vcursor, vcursor + c.batch);
        vcursor += c.batch;
      } else {
        if (cursor >= data.length) {
          data = epochData(++epoch);
          cursor = 0;
          if (data.length === 0) throw new SophiaError('E_CONFIG', `sft: no training sequence of epoch ${epoch + 1} fits the context (${model.config.context} tokens)`);
        }
        seqs = data.slice(cursor, cursor + c.batch);
        cursor += c.batch;
      }
      const { batch, rows, labels } = forcedBatch(model, seqs);
      const logits = await model.forward(batch, rows);
      const loss = crossEntropy(logits, labels, model.config.vocab, true);
      if (!Number.isFinite(loss)) throw new SophiaError('E_NUMERIC', `sft: the loss became ${loss} at step ${step + 1}; lower lr (now ${c.lr})`);
      model.zeroGrad();
      await model.backward(logits);
      const lr = lrAt(step, schedule);
      const r = await model.step({ lr, weightDecay: c.weightDecay, clipNorm: c.clip });
      sequences += seqs.length;
      history.push({ step: step + 1, loss, lr, gradNorm: r.gradNorm, tokens: labels.length });
      onProgress?.({ phase: 'train', done: step + 1, total, loss, lr });
    }

    const lossAfter = await forcedLoss(model, heldOut, c.batch);
    let evalAfter: EvalResult | undefined;
    let seeing: SeeingSummary | undefined;
    if (evalProblems.length >= 2) {
      const r = await evaluateSeeing(model, evalProblems, { trainProblems: problems, maxNew: c.maxNew, chunk: 64, onProgress: (done, of) => onProgress?.({ phase: 'eval', done, total: of }) });
      evalAfter = r.own;
      seeing = seeingSummary(r);
    } else {
      evalAfter = await evaluate('eval');
    }
    const tail = history.slice(-Math.max(1, Math.ceil(history.length / 10)));
    const result: SftResult = {
      config: c,
      model: model.config,
      params: model.numParams,
      steps: total,
      sequences,
      skipped,
      finalTrainLoss: tail.reduce((a, h) => a + h.loss, 0) / tail.length,
      heldOutLoss: { before: lossBefore, after: lossAfter },
      evalBefore,
      eval: evalAfter,
      seeing,
      history,
      seconds: (performance.now() - started) / 1000,
      out: c.out,
    };
    await saveModel(model, c.out, {
      extra: {
        made: 'sophia sft',
        sft: { seed: c.seed, problems: c.problems, steps: total, flawedFraction: c.flawedFraction, difficulty: c.difficulty, eval: evalAfter ? evalSummary(evalAfter) : null, seeing: seeing ?? null, heldOutLoss: result.heldOutLoss },
      },
    });
    await writeFileAtomic(path.join(c.out, 'sft.json'), JSON.stringify(result, null, 2) + '\n');
    await writeReport(path.join(c.out, 'report.html'), sftReport(result));
    return result;
  } finally {
    model.dispose();
  }
}

/** The closing table of `sophia sft`. */
export function formatSftSummary(r: SftResult): string {
  const b = r.evalBefore;
  const a = r.eval;
  const rows: [string, string, string][] = [
    ['', 'before', 'after'],
    ['held-out loss (gold, nats/token)', f3(r.heldOutLoss.before), f3(r.heldOutLoss.after)],
    ['format rate', f3(b?.formatRate), f3(a?.formatRate)],
    ['accuracy', f3(b?.accuracy), f3(a?.accuracy)],
    ['judge score', f3(b?.judgeScore), f3(a?.judgeScore)],
    ['wrong thinking, right answer', f3(b?.wrongThinkingRightAnswer), f3(a?.wrongThinkingRightAnswer)],
  ];
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const lines = rows.map(([k, x, y]) => `  ${k.padEnd(w0)}  ${x.padStart(7)}  ${y.padStart(7)}`);
  const sg = r.seeing;
  if (sg) {
    lines.push(`  seeing (held-out accuracy): own image ${f3(sg.accuracy)}, swapped ${f3(sg.swappedAccuracy)}, blank ${f3(sg.blankAccuracy)}, text-only baseline ${f3(sg.textOnlyAccuracy)}; gap ${f3(sg.seeingGap)}`);
    lines.push(`  per kind (own / swapped): ${Object.entries(sg.byKind).map(([k, v]) => `${k} ${f3(v.own)}/${f3(v.swapped)}`).join(', ')}`);
  }
  lines.push(`  ${r.steps} steps, ${r.sequences} sequences (${r.skipped} skipped: too long), final train loss ${f3(r.finalTrainLoss)}, ${r.params.toLocaleString('en-US')} parameters, ${r.seconds.toFixed(1)} s`);
  if (a && a.examples.length) lines.push(`  e.g. ${JSON.stringify(a.examples[0].question)} → ${JSON.stringify(a.examples[0].response)}`);
  return lines.join('\n');
}

function sftReport(r: SftResult): Report {
  const b = r.evalBefore;
  const a = r.eval;
  const row = (name: string, pick: (e: EvalResult) => number): (string | number)[] => [name, b ? pick(b) : NaN, a ? pick(a) : NaN];
  return {
    title: 'sophia sft',
    subtitle: `warm start of ${r.params.toLocaleString('en-US')} parameters on ${r.config.problems} problems, ${r.steps} steps`,
    sections: [
      {
        title: 'Training',
        charts: [
          {
            kind: 'line', id: 'loss', title: 'Training loss (response tokens)', xLabel: 'step', yLabel: 'nats / token', smooth: 20,
            series: [{ name: 'train loss', x: r.history.map((h) => h.step), y: r.history.map((h) => h.loss) }],
          },
          {
            kind: 'line', id: 'lr', title: 'Learning rate', xLabel: 'step', yLabel: 'lr',
            series: [{ name: 'lr', x: r.history.map((h) => h.step), y: r.history.map((h) => h.lr) }],
          },
        ],
      },
      {
        title: 'Held-out evaluation (greedy)',
        tables: [{
          header: ['metric', 'before', 'after'],
          rows: [
            ['held-out loss (gold)', r.heldOutLoss.before, r.heldOutLoss.after],
            row('format rate', (e) => e.formatRate),
            row('accuracy', (e) => e.accuracy),
            row('judge score', (e) => e.judgeScore),
            row('wrong thinking, right answer', (e) => e.wrongThinkingRightAnswer),
          ],
        }, ...(r.seeing ? [{
          caption: `Does it read the image? Accuracy with each problem's own image, another problem's, a blank one, and the text-only baseline (the most common training answer per question); seeing gap ${r.seeing.seeingGap.toFixed(3)}`,
          header: ['question kind', 'own image', 'swapped image', 'text-only'],
          rows: [
            ['all', r.seeing.accuracy, r.seeing.swappedAccuracy, r.seeing.textOnlyAccuracy] as (string | number)[],
            ['all, blank image', r.seeing.blankAccuracy, NaN, NaN] as (string | number)[],
            ...Object.entries(r.seeing.byKind).map(([k, v]) => [k, v.own, v.swapped, v.textOnly] as (string | number)[]),
          ],
        }] : [])],
        text: a ? a.examples.map((e) => `${e.question} → ${e.response} (outcome ${e.outcome}, judge ${e.judge})`).join('\n\n') : undefined,
      },
    ],
    config: r.config,
  };
}
