/**
 * The embedded thinking reward model: the policy's network with a scalar head. It reads
 * `<image>` + question + "\n" + reasoning and puts sigmoid(w·h_last + b) in [0, 1] on the last
 * token.
 *
 * Why a score head and not a generated "<answer>0.7</answer>": one forward pass per item instead
 * of sampling and parsing; a score that is never unparseable; a smooth target for the judge's
 * 11-level grid (cross-entropy against the soft label); and no decoding at reward time, which is
 * what Trust-GRPO calls G times per prompt. The HTTP server (`sophia rm serve`) turns the score
 * into the text answer OpenAI-compatible clients expect.
 */
import { SophiaError, describe } from '../errors';
import type { RgbImage } from '../data/images';
import { decodeImageAsync } from '../data/images';
import type { ThinkingItem, ThinkingReward, ThinkingRewardStats } from '../rewards/thinking';
import { THINKING_FAILURES } from '../rewards/thinking';
import { VisionLanguageModel, createNative, type CreateModelOptions, type PackedBatch, type StepOptions, type StepResult } from './model';
import type { Tokenizer } from './tokenizer';
import { createRng } from '../random';

export interface RewardExample {
  question: string;
  reasoning: string;
  image?: RgbImage | null;
  /** Target score in [0, 1] (the judge's). */
  target: number;
}

export interface RewardTrainResult {
  /** Mean binary cross-entropy against the soft targets. */
  loss: number;
  /** Mean |score − target| of this batch (before the update). */
  mae: number;
  step: StepResult;
}

function emptyStats(): ThinkingRewardStats {
  const z = () => Object.fromEntries(THINKING_FAILURES.map((f) => [f, 0])) as ThinkingRewardStats['failed'];
  return { requested: 0, scored: 0, cacheHits: 0, calls: 0, retries: z(), failed: z() };
}

export class RewardModel extends VisionLanguageModel implements ThinkingReward {
  readonly stats: ThinkingRewardStats = emptyStats();
  /** Items per forward pass in score(). Default 64. */
  scoreBatch = 64;

  static override create(opts: CreateModelOptions = {}): RewardModel {
    const { native, tokenizer } = createNative(opts, true);
    return new RewardModel(native, tokenizer);
  }

  static override fromNative(native: unknown, tokenizer: Tokenizer): RewardModel {
    return new RewardModel(native as never, tokenizer);
  }

  /** Token ids of one item, cut to the context: the reasoning's tail goes first. */
  encodeItem(question: string, reasoning: string, hasImage: boolean): Int32Array {
    if (typeof question !== 'string') throw new SophiaError('E_TYPE', `reward item: question must be a string, got ${describe(question)}`);
    if (typeof reasoning !== 'string') throw new SophiaError('E_TYPE', `reward item: reasoning must be a string, got ${describe(reasoning)}`);
    const q = this.tokenizer.encode(question.replace(/<image>/g, ''));
    const r = this.tokenizer.encode(reasoning.replace(/<image>/g, ''));
    const sep = this.tokenizer.encode('\n');
    const head = hasImage ? this.visualTokens : 0;
    const room = this.config.context - head;
    const qn = Math.min(q.length, Math.max(0, room - sep.length - 1));
    const rn = Math.max(0, Math.min(r.length, room - qn - sep.length));
    const out = new Int32Array(head + qn + sep.length + rn);
    out.fill(this.tokenizer.special.image, 0, head);
    out.set(q.subarray(0, qn), head);
    out.set(sep, head + qn);
    out.set(r.subarray(0, rn), head + qn + sep.length);
    return out;
  }

  private batchOf(items: readonly { question: string; reasoning: string; image?: RgbImage | null }[]): PackedBatch {
    return this.pack(items.map((it) => ({ tokens: this.encodeItem(it.question, it.reasoning, !!it.image), image: it.image ?? null })), 'reward items');
  }

  /** The scoring calls in order: the native model takes one call at a time. */
  private scoring: Promise<unknown> = Promise.resolve();

  /**
   * Scores in [0, 1], one per item. Calls made while one runs wait their turn (in order) instead of
   * failing with E_BUSY, so a server or a script may call concurrently.
   */
  scoreTexts(items: readonly { question: string; reasoning: string; image?: RgbImage | null }[]): Promise<Float32Array> {
    const run = this.scoring.then(() => this.scoreNow(items));
    this.scoring = run.catch(() => undefined);
    return run;
  }

  private async scoreNow(items: readonly { question: string; reasoning: string; image?: RgbImage | null }[]): Promise<Float32Array> {
    const out = new Float32Array(items.length);
    for (let i = 0; i < items.length; i += this.scoreBatch) {
      const chunk = items.slice(i, i + this.scoreBatch);
      const batch = this.batchOf(chunk);
      const s = new Float32Array(chunk.length);
      await this.m.forward({ ...batch, out: s, async: true });
      out.set(s, i);
    }
    return out;
  }

  /** ThinkingReward: the items' images arrive as PNG/JPEG bytes; an undecodable one gives NaN for that item. */
  async score(items: ThinkingItem[]): Promise<number[]> {
    if (!Array.isArray(items)) throw new SophiaError('E_TYPE', `score: items must be an array, got ${describe(items)}`);
    this.stats.requested += items.length;
    // Large images decode in a worker thread, so a server over this model stays responsive.
    const decoded: ({ question: string; reasoning: string; image: RgbImage | null } | null)[] = await Promise.all(items.map(async (it) => {
      try {
        return { question: it.question, reasoning: it.response, image: it.image ? await decodeImageAsync(it.image) : null };
      } catch {
        return null;
      }
    }));
    const ok = decoded.filter((d): d is NonNullable<typeof d> => d !== null);
    const scores = ok.length ? await this.scoreTexts(ok) : new Float32Array(0);
    let k = 0;
    const out = decoded.map((d) => (d === null ? NaN : scores[k++]));
    this.stats.scored += ok.length;
    this.stats.failed.bad_response += items.length - ok.length;
    return out;
  }

  /**
   * One optimizer step of binary cross-entropy against soft targets (the gradient w.r.t. the score
   * logit is p − y), plus, with `rank`, a pairwise logistic ranking loss between items of the same
   * group (e.g. responses to one problem) whose targets differ by at least `rank.margin` (default
   * 0.05): rank.weight · mean softplus(−(z_better − z_worse)). GRPO only uses score differences
   * inside a group, which is what the ranking term teaches.
   */
  async trainStep(examples: readonly RewardExample[], opts: StepOptions & { rank?: RankOptions }): Promise<RewardTrainResult> {
    if (!Array.isArray(examples) || examples.length === 0) throw new SophiaError('E_SHAPE', `trainStep: examples must be a non-empty array, got ${describe(examples)}`);
    examples.forEach((e, i) => {
      if (typeof e?.target !== 'number' || !(e.target >= 0 && e.target <= 1))
        throw new SophiaError('E_RANGE', `trainStep: examples[${i}].target must be a number in [0, 1], got ${describe(e?.target)}`);
    });
    const batch = this.batchOf(examples.map((e) => ({ question: e.question, reasoning: e.reasoning, image: e.image })));
    const B = examples.length;
    const p = new Float32Array(B);
    const z = new Float32Array(B);
    await this.m.forward({ ...batch, out: p, scoreLogits: z, async: true });
    const { loss, grad: d } = scoreLoss(z, examples.map((e) => e.target), opts.rank);
    let mae = 0;
    for (let i = 0; i < B; i++) mae += Math.abs(p[i] - examples[i].target);
    this.zeroGrad();
    await this.m.backward({ dout: d, async: true });
    const { rank: _rank, ...stepOpts } = opts;
    const step = await this.step(stepOpts);
    return { loss, mae: mae / B, step };
  }
}

export interface RankOptions {
  /** A group id per item: pairs are formed inside a group only. */
  groups: ArrayLike<number>;
  /** Weight of the ranking term (>= 0). */
  weight: number;
  /** Targets must differ by at least this much to form a pair. Default 0.05. */
  margin?: number;
}

/**
 * The reward model's training loss on score logits z [B] and targets y [B] in [0, 1], and its
 * gradient d loss / d z: mean binary cross-entropy against the soft targets, plus with `rank`
 * weight · mean over ordered pairs (i better than j, same group) of softplus(−(z_i − z_j)).
 */
export function scoreLoss(z: ArrayLike<number>, y: ArrayLike<number>, rank?: RankOptions): { loss: number; grad: Float32Array } {
  const B = z.length;
  const grad = new Float32Array(B);
  let loss = 0;
  for (let i = 0; i < B; i++) {
    const p = 1 / (1 + Math.exp(-z[i]));
    loss += Math.max(z[i], 0) + Math.log1p(Math.exp(-Math.abs(z[i]))) - y[i] * z[i];
    grad[i] = (p - y[i]) / B;
  }
  loss /= B;
  if (rank === undefined) return { loss, grad };
  if (rank === null || typeof rank !== 'object' || rank.groups?.length !== B || !(Number.isFinite(rank.weight) && rank.weight >= 0))
    throw new SophiaError('E_CONFIG', `trainStep: rank must be { groups: one group id per example (${B}), weight >= 0, margin? }, got ${describe(rank)}`);
  const margin = rank.margin ?? 0.05;
  const pairs: [number, number][] = [];
  for (let i = 0; i < B; i++)
    for (let j = 0; j < B; j++)
      if (rank.groups[i] === rank.groups[j] && y[i] >= y[j] + margin) pairs.push([i, j]);
  if (pairs.length === 0 || rank.weight === 0) return { loss, grad };
  const w = rank.weight / pairs.length;
  let rl = 0;
  for (const [i, j] of pairs) {
    const m = z[i] - z[j];
    rl += Math.max(-m, 0) + Math.log1p(Math.exp(-Math.abs(m)));
    const g = w / (1 + Math.exp(m)); // weight · σ(−m) / pairs
    grad[i] -= g;
    grad[j] += g;
  }
  return { loss: loss + w * rl, grad };
}

/**
 * A reward model with the policy's weights (every tensor the two share) and a fresh score head.
 * `headStd` 0 (the default, what `sophia rm train` starts from) leaves the head at zero, so every
 * score is 0.5 until training moves it. `headStd` > 0 draws the head's weights from N(0, headStd²)
 * (seeded by `seed`): an untrained scorer whose scores vary with the input but carry no training.
 */
export function rewardModelFromPolicy(policy: VisionLanguageModel, opts: { seed: number; headStd?: number }): RewardModel {
  const headStd = opts.headStd ?? 0;
  if (!(Number.isFinite(headStd) && headStd >= 0)) throw new SophiaError('E_RANGE', `rewardModelFromPolicy: headStd must be a finite number >= 0, got ${describe(headStd)}`);
  const { rewardHead: _r, ...arch } = policy.config;
  const rm = RewardModel.create({ config: arch, seed: opts.seed, tokenizer: policy.tokenizer, device: policy.device });
  const src = policy.getState('params');
  const dst = rm.getState('params');
  const byName = new Map(policy.tensors.map((t) => [t.name, t]));
  for (const t of rm.tensors) {
    const s = byName.get(t.name);
    if (s && s.size === t.size) dst.set(src.subarray(s.offset, s.offset + s.size), t.offset);
  }
  if (headStd > 0) {
    const head = rm.tensors.find((t) => t.name === 'score.w');
    if (!head) throw new SophiaError('E_INTERNAL', 'rewardModelFromPolicy: the reward model has no score.w tensor');
    const rng = createRng(opts.seed, 'rm/random-head');
    for (let j = 0; j < head.size; j++) {
      // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
      const u = 1 - rng();
      const v = rng();
      dst[head.offset + j] = headStd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    }
  }
  rm.setState('params', dst);
  return rm;
}
