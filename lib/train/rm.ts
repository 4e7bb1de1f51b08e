/**
 * Training the embedded thinking reward model (`sophia rm train`), the way the paper built
 * Thinking-156k: responses sampled from the warm-started policy, plus deliberately flawed and gold
 * ones, each scored by the judge (here the rule-based judge of the synthetic task), re-sampled so
 * the 0.1-wide score bins hold similar counts, then a score head trained against the judge's scores
 * (binary cross-entropy on soft targets). The model reads what the trainer will send it in paper
 * mode: the prompt, the image and `thinkingInput(response, 'paper')`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { SophiaError, describe } from '../errors';
import {
  createRng, degenerateResponses, flawedResponses, generateProblems, goldResponse, hashString, judgeThinking, perturb, promptInput, promptOf, responseText,
  PERTURBATION_KINDS, type PerturbationKind, type Rng, type SyntheticProblem,
} from '../task';
import { shuffled } from '../random';
import { RewardModel, loadPolicy, rewardModelFromPolicy, saveModel, writeFileAtomic, type ModelConfig, type RewardExample, type VisionLanguageModel } from '../model';
import { thinkingInput } from '../rewards/thinking';
import { writeReport, type Report } from '../report';
import { optionsError, lrAt, type LrSchedule } from './sft';
import { agreement, binCounts, mean, pearson, scoreBin, SCORE_BINS, type Agreement } from '../stats';

const int = (d: number, desc: string, min = 0) => z.number().int().min(min).default(d).describe(desc);

/** Added to every problem by default: a miscount that keeps the right answer, another scene's fluent reasoning, the degenerate templates RL finds. */
export const RM_HARD_KINDS: readonly PerturbationKind[] = ['wrong_count_right_answer', 'other_scene', 'degenerate'];

export const RmOptionsSchema = z
  .object({
    policy: z.string().min(1).describe('warm-started policy checkpoint folder (sophia sft) that the responses are sampled from'),
    out: z.string().min(1).describe('folder for the reward model checkpoint, rm.json and report.html'),
    seed: int(0, 'seed of the problems, the sampling, the balancing, the head and the batch order'),
    problems: int(1500, 'training problems (train split)', 1),
    samples: int(4, 'policy responses sampled per problem'),
    temperature: z.number().positive().finite().default(1).describe('sampling temperature of the policy responses'),
    flawed: int(3, 'deliberately flawed responses per problem (distinct perturbation kinds, drawn at random from those not in hard)'),
    hard: z.array(z.enum(PERTURBATION_KINDS as [PerturbationKind, ...PerturbationKind[]])).default([...RM_HARD_KINDS]).describe('perturbation kinds added to every problem: the negatives a policy learns to exploit'),
    rollouts: z.array(z.string().min(1)).default([]).describe('RL run folders or samples.jsonl files whose rollouts join the training set (problems hashed to the held-out fifth are kept out, for the late-RL check)'),
    rankWeight: z.number().min(0).finite().default(1).describe('weight of the within-problem pairwise ranking loss (0 = cross-entropy only)'),
    problemsPerBatch: int(4, 'problems per optimizer step (the ranking loss pairs responses to one problem)', 1),
    gold: z.boolean().default(true).describe('add the gold response of every problem'),
    balance: z.boolean().default(true).describe('cap every score bin of the training set at binCap (the paper balanced its bins)'),
    binCap: z.number().int().min(1).optional().describe('most training items per 0.1 score bin (default: the median size of the non-empty bins)'),
    init: z.enum(['policy', 'random']).default('policy').describe("'policy': start from the policy's weights (its vision and reading of the task) with a fresh score head; 'random': a fresh model of config `model`"),
    model: z.record(z.string(), z.unknown()).optional().describe("model config fields of a fresh reward model (init 'random' only; default RANDOM_INIT_RM_CONFIG)"),
    steps: int(1200, 'optimizer steps', 1),
    batch: int(32, 'items per optimizer step', 1),
    lr: z.number().positive().finite().default(5e-4).describe('peak learning rate'),
    warmup: int(20, 'linear warm-up steps'),
    minLrRatio: z.number().min(0).max(1).default(0.1).describe('the cosine decays to lr × minLrRatio'),
    weightDecay: z.number().min(0).finite().default(0.01).describe('AdamW decoupled weight decay'),
    clip: z.number().min(0).finite().default(1).describe('global gradient-norm clip; 0 = off'),
    difficulty: z.enum(['easy', 'normal']).default('normal').describe('synthetic task difficulty (as the policy was trained on)'),
    eval: int(300, 'held-out problems (test split), their responses made the same way', 1),
    evalEvery: int(300, 'held-out evaluation every K steps (and at the start and the end); 0 = start and end only'),
    maxNew: int(96, 'new tokens per sampled response at most', 1),
  })
  .strict();

export type RmConfig = z.infer<typeof RmOptionsSchema>;

/** The perturbation kinds `flawed` draws from: all but gold and those every problem gets anyway (`hard`). */
const drawableKinds = (c: Pick<RmConfig, 'hard'>): PerturbationKind[] => PERTURBATION_KINDS.filter((k) => k !== 'gold' && !c.hard.includes(k));

export interface RmProgress {
  phase: 'sample' | 'eval-before' | 'train' | 'eval';
  done: number;
  total: number;
  loss?: number;
  lr?: number;
  /** Held-out MAE at the latest evaluation. */
  mae?: number;
}

export type RmOptions = z.input<typeof RmOptionsSchema> & { onProgress?: (p: RmProgress) => void };

/** Where a response came from: 'policy' (SFT samples), 'rollout' (an RL run's), 'gold', or the perturbation kind. */
export type RmSource = 'policy' | 'rollout' | PerturbationKind;

/** One annotated response. */
export interface RmItem {
  problem: SyntheticProblem;
  source: RmSource;
  response: string;
  /** What the reward model reads: thinkingInput(response, 'paper'). */
  reasoning: string;
  /** The judge's score on the 0.1 grid. */
  target: number;
}

export interface BalanceResult<T> {
  items: T[];
  cap: number;
  before: number[];
  after: number[];
}

/**
 * Caps every score bin at `cap` items (default: the median size of the non-empty bins), keeping a
 * seeded random subset of the larger bins; smaller bins keep everything. The order is shuffled.
 */
export function balanceBins<T>(items: readonly T[], scoreOf: (t: T) => number, rng: Rng, cap?: number): BalanceResult<T> {
  if (cap !== undefined && !(Number.isInteger(cap) && cap >= 1)) throw new SophiaError('E_RANGE', `balanceBins: cap must be an integer >= 1, got ${describe(cap)}`);
  const bins: T[][] = Array.from({ length: SCORE_BINS }, () => []);
  for (const it of items) bins[scoreBin(scoreOf(it))].push(it);
  const before = bins.map((b) => b.length);
  const sizes = before.filter((n) => n > 0).sort((a, b) => a - b);
  const c = cap ?? (sizes.length ? sizes[Math.floor((sizes.length - 1) / 2)] : 1);
  const kept = bins.flatMap((b) => (b.length > c ? shuffled(rng, b).slice(0, c) : b));
  return { items: shuffled(rng, kept), cap: c, before, after: bins.map((b) => Math.min(b.length, c)) };
}

export interface RmEvaluation extends Agreement {
  /** Mean predicted score. */
  meanPredicted: number;
}

export interface RmStepRecord {
  step: number;
  loss: number;
  /** MAE of the training batch before its update. */
  mae: number;
  lr: number;
  gradNorm: number;
}

export interface RmResult {
  config: RmConfig;
  model: ModelConfig;
  params: number;
  /** Annotated items before balancing, by source. */
  sources: Record<string, number>;
  train: { items: number; balanced: number; cap: number; before: number[]; after: number[] };
  heldOut: { items: number; bins: number[]; balancedItems: number };
  /** Every held-out item (as produced) and the same set balanced like the training set. */
  untrained: { all: RmEvaluation; balanced: RmEvaluation };
  trained: { all: RmEvaluation; balanced: RmEvaluation };
  /** MAE of always predicting the mean training target (a model that ignores its input). */
  constantBaseline: { value: number; all: number; balanced: number };
  /** Held-out probes of what GRPO needs from the scores (issue: a faithful thinking reward). */
  faithfulness: Faithfulness;
  /** RL rollouts read (--rollouts), skipped (unmatched), and kept out for the late-RL check. */
  rollouts: { read: number; skipped: number; heldOut: number };
  /** Held-out MAE and Pearson during training (all items). */
  curve: { step: number; mae: number; pearson: number }[];
  history: RmStepRecord[];
  seconds: number;
  secondsSampling: number;
  secondsTraining: number;
  out: string;
}

export function resolveRmOptions(input: unknown): RmConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new SophiaError('E_TYPE', `rm train: options must be an object, got ${describe(input)}`);
  const { onProgress: _p, ...rest } = input as Record<string, unknown>;
  const r = RmOptionsSchema.safeParse(rest);
  if (!r.success) throw optionsError('rm train', rest, r.error.issues);
  const c = r.data;
  if (c.init === 'policy' && c.model !== undefined) throw new SophiaError('E_CONFIG', "rm train: model is for init 'random'; with init 'policy' the reward model takes the policy's architecture");
  if (c.samples + c.flawed + (c.gold ? 1 : 0) === 0) throw new SophiaError('E_CONFIG', 'rm train: samples, flawed and gold are all off: there is nothing to train on');
  const drawable = drawableKinds(c).length;
  if (c.flawed > drawable) throw new SophiaError('E_CONFIG', `rm train: flawed must be at most ${drawable} (the distinct perturbation kinds not in hard), got ${c.flawed}`);
  return c;
}

/** The architecture of a reward model trained from scratch (init 'random') unless `model` says otherwise: a smaller, faster network than the policy. */
export const RANDOM_INIT_RM_CONFIG: Readonly<Partial<ModelConfig>> = Object.freeze({ dim: 128, layers: 3, heads: 4, kvHeads: 2, ffn: 384, visionHeads: 4, visionFfn: 384 });



/**
 * Responses to `problems`: `samples` from the policy, `flawed` perturbations and the gold one,
 * deduplicated per problem and judged.
 */
async function collect(
  policy: VisionLanguageModel, problems: readonly SyntheticProblem[], c: RmConfig, stream: string,
  progress: (done: number) => void,
): Promise<RmItem[]> {
  const rng = createRng(c.seed, `rm/${stream}`);
  const out: RmItem[] = [];
  const chunk = 64;
  for (let i = 0; i < problems.length; i += chunk) {
    const part = problems.slice(i, i + chunk);
    const sampled: string[][] = part.map(() => []);
    if (c.samples > 0) {
      const s = await policy.generate(part.map((p) => promptInput(policy, p)), {
        samples: c.samples, maxNew: c.maxNew, temperature: c.temperature, seed: Math.floor(rng() * 2 ** 31),
      });
      for (const x of s) sampled[x.prompt].push(responseText(policy, x.tokens));
    }
    part.forEach((p, j) => {
      const seen = new Set<string>();
      const add = (source: RmSource, response: string): void => {
        if (seen.has(response)) return;
        seen.add(response);
        out.push({ problem: p, source, response, reasoning: thinkingInput(response, 'paper'), target: judgeThinking(p, response).score });
      };
      for (const r of sampled[j]) add('policy', r);
      const kinds = shuffled(rng, drawableKinds(c)).slice(0, c.flawed);
      for (const k of c.hard) kinds.push(k);
      if (kinds.length) for (const f of flawedResponses(p, rng, { kinds })) add(f.kind, f.response);
      if (c.gold) add('gold', goldResponse(p));
    });
    progress(Math.min(problems.length, i + chunk));
  }
  return out;
}

function examplesOf(items: readonly RmItem[]): RewardExample[] {
  return items.map((it) => ({ question: promptOf(it.problem), reasoning: it.reasoning, image: it.problem.image, target: it.target }));
}

/** A rollout read from an RL run's samples.jsonl. */
interface Rollout {
  step: number;
  problem: SyntheticProblem;
  response: string;
}

const HELD_OUT_ROLLOUTS = 5; // one problem in five

/** Whether a rollout's problem is kept out of training (for the late-RL check). */
const heldOutRollout = (id: string): boolean => hashString(`rm-rollouts/${id}`) % HELD_OUT_ROLLOUTS === 0;

/**
 * Reads RL rollouts (run folders or samples.jsonl files) and finds each one's problem again from its
 * id (`<prefix>-train-<seed>-<index>`, regenerated with `difficulty`); records whose problem does
 * not match (another difficulty, an edited file) are counted and skipped.
 */
export function readRollouts(sources: readonly string[], difficulty: 'easy' | 'normal'): { rollouts: Rollout[]; skipped: number } {
  const bySeed = new Map<string, SyntheticProblem[]>();
  const rollouts: Rollout[] = [];
  let skipped = 0;
  for (const src of sources) {
    const file = fs.existsSync(src) && fs.statSync(src).isDirectory() ? path.join(src, 'samples.jsonl') : src;
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new SophiaError('E_IO', `rm train: cannot read rollouts ${file}: ${(err as Error).message}`, { cause: err });
    }
    const lines = text.split('\n').filter((l) => l.trim());
    // Each record with its stream key (id prefix and seed) and index in that stream.
    const recs: { step: number; id: string; question: string; response: string; key: string; index: number }[] = [];
    for (const l of lines) {
      try {
        const r = JSON.parse(l) as Record<string, unknown>;
        const m = typeof r.id === 'string' ? /^(.+)-train-(\d+)-(\d+)$/.exec(r.id) : null;
        if (m && typeof r.response === 'string' && typeof r.question === 'string' && typeof r.step === 'number') recs.push({ step: r.step, id: r.id as string, question: r.question, response: r.response, key: `${m[1]}|${m[2]}`, index: Number(m[3]) });
        else skipped++;
      } catch {
        skipped++;
      }
    }
    const need = new Map<string, number>();
    for (const r of recs) need.set(r.key, Math.max(need.get(r.key) ?? 0, r.index + 1));
    for (const [key, count] of need) {
      if ((bySeed.get(key)?.length ?? 0) >= count) continue;
      const [idPrefix, seed] = key.split('|');
      bySeed.set(key, generateProblems({ seed: Number(seed), count, split: 'train', difficulty, idPrefix }));
    }
    for (const r of recs) {
      const p = bySeed.get(r.key)?.[r.index];
      if (!p || p.id !== r.id || p.question !== r.question) {
        skipped++;
        continue;
      }
      rollouts.push({ step: r.step, problem: p, response: r.response });
    }
  }
  return { rollouts, skipped };
}

export interface Faithfulness {
  /** Held-out problems probed. */
  problems: number;
  /** Mean over problems of Pearson(reward model, judge) across that problem's responses. */
  withinProblemPearson: number;
  /** Share of problems where gold reasoning outscores a miscount that keeps the right answer. */
  goldOverMiscountRightAnswer: number;
  /** Share where gold outscores another scene's fluent gold-style reasoning. */
  goldOverOtherScene: number;
  /** Share where gold outscores every degenerate template. */
  goldOverDegenerate: number;
  /** Mean scores of the probes. */
  meanScore: { gold: number; miscountRightAnswer: number; otherScene: number; degenerate: number };
  /** Mean within-group Pearson with the judge on held-out late RL rollouts (NaN without rollouts). */
  lateRlWithinGroup: number;
  lateRlGroups: number;
}

async function evaluateRm(rm: RewardModel, examples: readonly RewardExample[]): Promise<{ scores: Float32Array; metrics: RmEvaluation }> {
  const scores = await rm.scoreTexts(examples);
  const targets = examples.map((e) => e.target);
  return { scores, metrics: { ...agreement(targets, scores), meanPredicted: mean(scores) } };
}

/**
 * The faithfulness probes on held-out problems: within-problem Pearson with the judge over the
 * problem's responses as produced; gold against a miscount that keeps the right answer, against
 * another scene's fluent reasoning and against every degenerate template; and, with held-out RL
 * rollouts, the within-group correlation on the last quarter of each run's steps.
 */
export async function probeFaithfulness(
  rm: RewardModel, problems: readonly SyntheticProblem[], items: readonly RmItem[], scores: ArrayLike<number>, heldRollouts: readonly Rollout[], seed: number,
): Promise<Faithfulness> {
  const per = new Map<SyntheticProblem, { x: number[]; y: number[] }>();
  items.forEach((it, i) => {
    const e = per.get(it.problem) ?? { x: [], y: [] };
    e.x.push(scores[i]);
    e.y.push(it.target);
    per.set(it.problem, e);
  });
  const rs = [...per.values()].map((e) => pearson(e.x, e.y)).filter((r) => !Number.isNaN(r));
  const rng = createRng(seed, 'rm/probes');
  const degenerate = problems.map((p) => degenerateResponses(p));
  const probes = problems.flatMap((p, i) => [goldResponse(p), perturb(p, 'wrong_count_right_answer', rng), perturb(p, 'other_scene', rng), ...degenerate[i]]
    .map((response) => ({ question: promptOf(p), reasoning: thinkingInput(response, 'paper'), image: p.image })));
  const s = await rm.scoreTexts(probes);
  let k = 0, overMiscount = 0, overOther = 0, overDegenerate = 0;
  const sum = { gold: 0, miscountRightAnswer: 0, otherScene: 0, degenerate: 0 };
  let degCount = 0;
  problems.forEach((_p, i) => {
    const gold = s[k], mis = s[k + 1], other = s[k + 2];
    const deg = Array.from(s.subarray(k + 3, k + 3 + degenerate[i].length));
    k += 3 + degenerate[i].length;
    if (gold > mis) overMiscount++;
    if (gold > other) overOther++;
    if (deg.every((d) => gold > d)) overDegenerate++;
    sum.gold += gold;
    sum.miscountRightAnswer += mis;
    sum.otherScene += other;
    for (const d of deg) sum.degenerate += d;
    degCount += deg.length;
  });
  const n = problems.length;
  let lateRlWithinGroup = NaN;
  let lateRlGroups = 0;
  if (heldRollouts.length > 0) {
    const last = Math.max(...heldRollouts.map((r) => r.step));
    const late = heldRollouts.filter((r) => r.step > 0.75 * last);
    const groups = new Map<string, Rollout[]>();
    for (const r of late) {
      const key = `${r.step}|${r.problem.id}`;
      const g = groups.get(key);
      if (g) g.push(r);
      else groups.set(key, [r]);
    }
    const flat = [...groups.values()].filter((g) => g.length >= 2);
    const lateScores = await rm.scoreTexts(flat.flat().map((r) => ({ question: promptOf(r.problem), reasoning: thinkingInput(r.response, 'paper'), image: r.problem.image })));
    let at = 0, total = 0;
    for (const g of flat) {
      const x = Array.from(lateScores.subarray(at, at + g.length));
      at += g.length;
      const r = pearson(x, g.map((q) => judgeThinking(q.problem, q.response).score));
      if (!Number.isNaN(r)) (total += r), lateRlGroups++;
    }
    lateRlWithinGroup = lateRlGroups ? total / lateRlGroups : NaN;
  }
  return {
    problems: n,
    withinProblemPearson: rs.length ? rs.reduce((a, b) => a + b, 0) / rs.length : NaN,
    goldOverMiscountRightAnswer: overMiscount / n,
    goldOverOtherScene: overOther / n,
    goldOverDegenerate: overDegenerate / n,
    meanScore: { gold: sum.gold / n, miscountRightAnswer: sum.miscountRightAnswer / n, otherScene: sum.otherScene / n, degenerate: sum.degenerate / Math.max(1, degCount) },
    lateRlWithinGroup,
    lateRlGroups,
  };
}

/** Trains a thinking reward model and saves it to `out` (checkpoint, rm.json, report.html). */
export async function runRmTrain(options: RmOptions): Promise<RmResult> {
  const started = performance.now();
  const c = resolveRmOptions(options);
  const onProgress = options.onProgress;
  if (onProgress !== undefined && typeof onProgress !== 'function') throw new SophiaError('E_TYPE', `rm train: onProgress must be a function, got ${describe(onProgress)}`);

  const problems = generateProblems({ seed: c.seed, count: c.problems, split: 'train', difficulty: c.difficulty });
  const evalProblems = generateProblems({ seed: c.seed, count: c.eval, split: 'test', difficulty: c.difficulty });
  if (!fs.existsSync(path.join(c.policy, 'config.json'))) {
    throw new SophiaError('E_IO', `rm train: no policy checkpoint at ${c.policy} (no config.json there); make one with \`sophia sft\` or pass the folder of one`);
  }
  const { rollouts, skipped: rolloutsSkipped } = readRollouts(c.rollouts, c.difficulty);
  const policy = await loadPolicy(c.policy);
  let rm: RewardModel;
  let trainItems: RmItem[];
  let evalItems: RmItem[];
  try {
    const all = problems.length + evalProblems.length;
    trainItems = await collect(policy, problems, c, 'train', (d) => onProgress?.({ phase: 'sample', done: d, total: all }));
    for (const r of rollouts.filter((x) => !heldOutRollout(x.problem.id))) {
      trainItems.push({ problem: r.problem, source: 'rollout', response: r.response, reasoning: thinkingInput(r.response, 'paper'), target: judgeThinking(r.problem, r.response).score });
    }
    evalItems = await collect(policy, evalProblems, c, 'eval', (d) => onProgress?.({ phase: 'sample', done: problems.length + d, total: all }));
    rm = c.init === 'policy' ? rewardModelFromPolicy(policy, { seed: c.seed }) : RewardModel.create({ config: c.model ?? RANDOM_INIT_RM_CONFIG, seed: c.seed });
  } finally {
    policy.dispose();
  }
  const secondsSampling = (performance.now() - started) / 1000;

  try {
    const rng = createRng(c.seed, 'rm/balance');
    const sources: Record<string, number> = {};
    for (const it of trainItems) sources[it.source] = (sources[it.source] ?? 0) + 1;
    const balanced = c.balance
      ? balanceBins(trainItems, (it) => it.target, rng, c.binCap)
      : { items: shuffled(rng, trainItems), cap: trainItems.length, before: binCounts(trainItems.map((it) => it.target)), after: binCounts(trainItems.map((it) => it.target)) };
    if (balanced.items.length === 0) throw new SophiaError('E_CONFIG', 'rm train: no training items were produced');
    const evalBalanced = balanceBins(evalItems, (it) => it.target, createRng(c.seed, 'rm/balance-eval')).items;
    const train = examplesOf(balanced.items);
    const heldAll = examplesOf(evalItems);
    const heldBal = examplesOf(evalBalanced);

    const evaluateBoth = async (phase: 'eval-before' | 'eval'): Promise<{ all: RmEvaluation; balanced: RmEvaluation; scores: Float32Array }> => {
      const a = await evaluateRm(rm, heldAll);
      onProgress?.({ phase, done: 1, total: 2, mae: a.metrics.mae });
      const b = await evaluateRm(rm, heldBal);
      onProgress?.({ phase, done: 2, total: 2, mae: a.metrics.mae });
      return { all: a.metrics, balanced: b.metrics, scores: a.scores };
    };
    const before = await evaluateBoth('eval-before');
    const curve: RmResult['curve'] = [{ step: 0, mae: before.all.mae, pearson: before.all.pearson }];

    const trainStarted = performance.now();
    const schedule: LrSchedule = { lr: c.lr, warmup: Math.min(c.warmup, c.steps), total: c.steps, minLrRatio: c.minLrRatio };
    const history: RmStepRecord[] = [];
    // Batches of c.batch items drawn from c.problemsPerBatch problems at a time, so that the
    // ranking loss has pairs to compare; a new shuffled pass over the problems when one runs out.
    const orderRng = createRng(c.seed, 'rm/order');
    const byProblem = new Map<SyntheticProblem, RewardExample[]>();
    balanced.items.forEach((it, i) => {
      const list = byProblem.get(it.problem) ?? [];
      list.push(train[i]);
      byProblem.set(it.problem, list);
    });
    const groupsAll = [...byProblem.values()];
    let order = shuffled(orderRng, groupsAll.map((g) => shuffled(orderRng, g)));
    let cursor = 0;
    const nextBatch = (): { examples: RewardExample[]; groups: number[] } => {
      const examples: RewardExample[] = [];
      const groups: number[] = [];
      const perProblem = Math.max(1, Math.ceil(c.batch / c.problemsPerBatch));
      for (let g = 0; examples.length < c.batch; g++) {
        if (cursor >= order.length) {
          order = shuffled(orderRng, groupsAll.map((x) => shuffled(orderRng, x)));
          cursor = 0;
        }
        for (const e of order[cursor++].slice(0, Math.min(perProblem, c.batch - examples.length))) {
          examples.push(e);
          groups.push(g);
        }
      }
      return { examples, groups };
    };
    let lastMae = before.all.mae;
    for (let step = 0; step < c.steps; step++) {
      const { examples, groups } = nextBatch();
      const lr = lrAt(step, schedule);
      const r = await rm.trainStep(examples, { lr, weightDecay: c.weightDecay, clipNorm: c.clip, rank: c.rankWeight > 0 ? { groups, weight: c.rankWeight } : undefined });
      if (!Number.isFinite(r.loss)) throw new SophiaError('E_NUMERIC', `rm train: the loss became ${r.loss} at step ${step + 1}; lower lr (now ${c.lr})`);
      history.push({ step: step + 1, loss: r.loss, mae: r.mae, lr, gradNorm: r.step.gradNorm });
      if (c.evalEvery > 0 && (step + 1) % c.evalEvery === 0 && step + 1 < c.steps) {
        const e = await evaluateRm(rm, heldAll);
        lastMae = e.metrics.mae;
        curve.push({ step: step + 1, mae: e.metrics.mae, pearson: e.metrics.pearson });
      }
      onProgress?.({ phase: 'train', done: step + 1, total: c.steps, loss: r.loss, lr, mae: lastMae });
    }
    const secondsTraining = (performance.now() - trainStarted) / 1000;
    const after = await evaluateBoth('eval');
    const faithfulness = await probeFaithfulness(rm, evalProblems, evalItems, after.scores, rollouts.filter((x) => heldOutRollout(x.problem.id)), c.seed);
    curve.push({ step: c.steps, mae: after.all.mae, pearson: after.all.pearson });

    const constant = mean(train.map((e) => e.target));
    const constMae = (xs: readonly RewardExample[]): number => mean(xs.map((e) => Math.abs(e.target - constant)));
    const result: RmResult = {
      config: c,
      model: rm.config,
      params: rm.numParams,
      sources,
      train: { items: trainItems.length, balanced: balanced.items.length, cap: balanced.cap, before: balanced.before, after: balanced.after },
      heldOut: { items: evalItems.length, bins: binCounts(evalItems.map((it) => it.target)), balancedItems: evalBalanced.length },
      untrained: { all: before.all, balanced: before.balanced },
      trained: { all: after.all, balanced: after.balanced },
      constantBaseline: { value: constant, all: constMae(heldAll), balanced: constMae(heldBal) },
      faithfulness,
      rollouts: { read: rollouts.length, skipped: rolloutsSkipped, heldOut: rollouts.filter((x) => heldOutRollout(x.problem.id)).length },
      curve,
      history,
      seconds: (performance.now() - started) / 1000,
      secondsSampling,
      secondsTraining,
      out: c.out,
    };
    await saveModel(rm, c.out, {
      extra: {
        made: 'sophia rm train',
        input: "prompt + image + thinkingInput(response, 'paper')",
        rm: {
          policy: c.policy, seed: c.seed, steps: c.steps, init: c.init, trainItems: balanced.items.length,
          heldOut: { mae: after.all.mae, pearson: after.all.pearson, spearman: after.all.spearman },
          faithfulness,
        },
      },
    });
    await writeFileAtomic(path.join(c.out, 'rm.json'), JSON.stringify(result, null, 2) + '\n');
    const points = evalItems.map((it, i) => ({ x: it.target, y: after.scores[i], group: it.source === 'policy' || it.source === 'gold' ? it.source : 'flawed' }));
    await writeReport(path.join(c.out, 'report.html'), rmReport(result, points));
    return result;
  } finally {
    rm.dispose();
  }
}

const f3 = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const BIN_LABELS = Array.from({ length: SCORE_BINS }, (_, i) => (i / 10).toFixed(1));

function metricRows(r: RmResult, which: 'all' | 'balanced'): [string, number, number, number][] {
  const u = r.untrained[which];
  const t = r.trained[which];
  return [
    ['MAE vs judge', u.mae, t.mae, r.constantBaseline[which]],
    ['Pearson', u.pearson, t.pearson, NaN],
    ['Spearman', u.spearman, t.spearman, NaN],
    ['same bin', u.binAccuracy, t.binAccuracy, NaN],
    ['within one bin', u.withinOneBin, t.withinOneBin, NaN],
  ];
}

/** The closing table of `sophia rm train`. */
export function formatRmSummary(r: RmResult): string {
  const lines: string[] = [];
  const head = ['', 'untrained', 'trained', 'constant'];
  for (const which of ['all', 'balanced'] as const) {
    const n = which === 'all' ? r.heldOut.items : r.heldOut.balancedItems;
    lines.push(`  held-out ${which === 'all' ? 'responses as produced' : 'responses, bins balanced'} (${n})`);
    const rows = metricRows(r, which).map(([k, ...v]) => [k, ...v.map(f3)]);
    const w0 = Math.max(...rows.map((x) => x[0].length));
    for (const row of [head, ...rows]) lines.push(`    ${row[0].padEnd(w0)}  ${row.slice(1).map((x) => x.padStart(9)).join('  ')}`);
  }
  const f = r.faithfulness;
  lines.push(`  faithfulness on ${f.problems} held-out problems: within-problem Pearson ${f3(f.withinProblemPearson)}; gold outscores a right-answer miscount ${f3(f.goldOverMiscountRightAnswer)}, another scene's reasoning ${f3(f.goldOverOtherScene)}, every degenerate template ${f3(f.goldOverDegenerate)}`);
  lines.push(`  mean scores: gold ${f3(f.meanScore.gold)}, miscount ${f3(f.meanScore.miscountRightAnswer)}, other scene ${f3(f.meanScore.otherScene)}, degenerate ${f3(f.meanScore.degenerate)}; late-RL within-group Pearson ${f3(f.lateRlWithinGroup)} (${f.lateRlGroups} groups)`);
  lines.push(`  training set: ${r.train.items} judged responses (${Object.entries(r.sources).map(([k, v]) => `${k} ${v}`).join(', ')})`);
  lines.push(r.config.balance
    ? `  balanced to ${r.train.balanced} (at most ${r.train.cap} per bin); bins 0.0…1.0 before ${r.train.before.join('/')}, after ${r.train.after.join('/')}`
    : `  not balanced; bins 0.0…1.0: ${r.train.before.join('/')}`);
  lines.push(`  ${r.config.steps} steps, ${r.params.toLocaleString('en-US')} parameters (init ${r.config.init}); sampling ${r.secondsSampling.toFixed(1)} s, training ${r.secondsTraining.toFixed(1)} s, total ${r.seconds.toFixed(1)} s`);
  return lines.join('\n');
}

function rmReport(r: RmResult, points: { x: number; y: number; group: string }[]): Report {
  const hist = r.history;
  return {
    title: 'sophia rm train',
    subtitle: `thinking reward model, ${r.params.toLocaleString('en-US')} parameters, ${r.config.steps} steps on ${r.train.balanced} balanced items`,
    sections: [
      {
        title: 'Held-out agreement with the judge',
        text: `${r.heldOut.items} held-out responses to ${r.config.eval} test-split problems, produced like the training set (policy samples, flawed and gold responses). "constant" always predicts the mean training target (${f3(r.constantBaseline.value)}).`,
        tables: (['all', 'balanced'] as const).map((which) => ({
          caption: which === 'all' ? 'responses as produced' : 'responses with the score bins balanced',
          header: ['metric', 'untrained', 'trained', 'constant'],
          rows: metricRows(r, which),
        })),
      },
      {
        title: 'Faithfulness (held-out problems)',
        text: 'What GRPO needs from the scores: the right order inside a group. Gold reasoning against a miscount that keeps the right answer, another scene\'s fluent reasoning and the degenerate templates RL finds; within-problem and late-RL within-group correlation with the judge.',
        tables: [{
          header: ['probe', 'value'],
          rows: [
            ['within-problem Pearson with the judge', r.faithfulness.withinProblemPearson],
            ['gold > miscount with the right answer', r.faithfulness.goldOverMiscountRightAnswer],
            ['gold > another scene\'s reasoning', r.faithfulness.goldOverOtherScene],
            ['gold > every degenerate template', r.faithfulness.goldOverDegenerate],
            ['late-RL within-group Pearson', r.faithfulness.lateRlWithinGroup],
          ],
        }],
      },
      {
        title: 'Training',
        charts: [
          {
            kind: 'line', id: 'loss', title: 'Training loss (BCE against the judge score, plus the ranking term)', xLabel: 'step', yLabel: 'loss', smooth: 20,
            series: [{ name: 'loss', x: hist.map((h) => h.step), y: hist.map((h) => h.loss) }],
          },
          {
            kind: 'line', id: 'mae', title: 'Mean absolute error', xLabel: 'step', yLabel: 'MAE', smooth: 20,
            series: [
              { name: 'training batch', x: hist.map((h) => h.step), y: hist.map((h) => h.mae) },
              { name: 'held-out', x: r.curve.map((p) => p.step), y: r.curve.map((p) => p.mae) },
            ],
          },
        ],
      },
      {
        title: 'Predicted against judged',
        charts: [
          { kind: 'scatter', id: 'scatter', title: 'Held-out: reward model score vs judge score', xLabel: 'judge', yLabel: 'reward model', diagonal: true, points },
          {
            kind: 'heatmap', id: 'confusion', title: 'Held-out bins: judge (rows) × reward model (columns)', xLabel: 'reward model bin', yLabel: 'judge bin',
            xCats: BIN_LABELS, yCats: [...BIN_LABELS].reverse(), values: [...r.trained.all.confusion].reverse(),
          },
        ],
      },
      {
        title: 'Training data',
        charts: [
          {
            kind: 'bar', id: 'bins', title: 'Judge score bins of the training set', xLabel: 'judge score', yLabel: 'items', categories: BIN_LABELS,
            series: [{ name: 'before balancing', values: r.train.before }, { name: 'after balancing', values: r.train.after }],
          },
          {
            kind: 'bar', id: 'sources', title: 'Where the training responses came from (before balancing)', xLabel: 'source', yLabel: 'items',
            categories: Object.keys(r.sources), series: [{ name: 'items', values: Object.values(r.sources) }],
          },
        ],
      },
    ],
    config: r.config,
  };
}
