/**
 * The Trust-GRPO loop (design.md, "the main job"): rollouts → outcome and thinking rewards →
 * trust weights and annealing → group advantages → old/reference log-probs → PPO mini-batches of
 * forward → fused GRPO loss (gradient written in place over the logits) → backward → AdamW.
 * Runs are folders (runs/<name>/: config.json, metrics.jsonl, samples.jsonl, checkpoints/,
 * report.html) and resume from their last checkpoint with the same metrics as an uninterrupted run.
 */
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SophiaError, describe } from '../errors';
import { encodePng } from '../data/images';
import { EVAL_SEED, generateProblems, swappedImages, type SyntheticProblem } from '../task';
import { judgeThinking } from '../task';
import { VisionLanguageModel, type Sample, type SequenceInput } from '../model/model';
import { RewardModel, rewardModelFromPolicy } from '../model/reward';
import { loadPolicy, loadRewardModel, saveModel, writeFileAtomic } from '../model/checkpoint';
import { packageRoot } from '../native';
import { grpoLoss } from '../ops/grpoLoss';
import { logprobs as logprobsOp } from '../ops/logprobs';
import { thinkingNeeded, trustRewards } from '../ops/trust';
import { outcomeReward } from '../rewards/outcome';
import { OpenAIThinkingReward, thinkingInput, type ThinkingReward } from '../rewards/thinking';
import { Tensor } from '../tensor';
import { evaluatePolicy, promptInput, responseText, type EvalResult } from '../task';
import { composeAdvantages, uniformShares, withinGroupCorrelation } from './advantage';
import { writeRunReport } from './report';
import { nanMean, stdDev } from '../stats';
import { REDACTED, learningRate, redactSecrets, resolveTrainConfig, type TrainConfig, type TrainConfigInput } from './config';

export { EVAL_SEED };

/** The headline held-out metrics (the numeric fields of EvalMetrics). */
export type EvalMetricKey = 'accuracy' | 'judgeScore' | 'wrongThinkingRightAnswer' | 'formatRate';

export interface EvalMetrics {
  accuracy: number;
  judgeScore: number;
  wrongThinkingRightAnswer: number;
  formatRate: number;
  /** Accuracy when each problem is shown another problem's image (start and end of a run only). */
  swappedAccuracy?: number;
  /** Per held-out problem (the same problems in every run): outcome and judge score, for paired comparisons. */
  outcomes?: number[];
  judges?: number[];
}

export interface StepMetrics {
  step: number;
  outcomeMean: number;
  /** Mean thinking reward over the scored responses (NaN when none). */
  thinkingMean: number;
  gammaMean: number;
  gammaMin: number;
  /** Share of groups with γ < 1. */
  gammaBelow1: number;
  /** γ of every group (for the distribution over time). */
  gammas: number[];
  /** Mean weight applied to Rt: γ·α·exp(−step/T). */
  thinkingWeight: number;
  /** exp(−step/T) (1 when annealing is off). */
  anneal: number;
  rewardMean: number;
  advMean: number;
  advStd: number;
  /** Share of groups whose G outcomes are all equal. */
  uniformGroups: number;
  /** Those groups' share of the total |advantage|. */
  uniformAdvShare: number;
  /** Mean within-group Pearson correlation of Rt with the judge's score (NaN when no group has both varying). */
  thinkingJudgeCorr: number;
  /** Mean judge score of the step's rollouts. */
  judgeMean: number;
  pgLoss: number;
  kl: number;
  entropy: number;
  clipFrac: number;
  gradNorm: number;
  lr: number;
  responseTokens: number;
  meanResponseLength: number;
  /** Share of the step's responses cut off at maxNew (no EOS sampled). */
  truncated?: number;
  tokensPerSec: number;
  time: { sampling: number; rewards: number; loss: number; update: number; total: number };
  rmCalls: number;
  rmFailures: number;
  eval?: EvalMetrics;
}

export interface SampleRecord {
  step: number;
  id: string;
  question: string;
  response: string;
  /** Response tokens trained on (EOS included when sampled). */
  tokens: number;
  outcome: number;
  thinking: number | null;
  judge: number;
  gamma: number;
  weight: number;
  reward: number;
  advantage: number;
}

/** Phase 1 of a step: the prompts and their G samples each. */
export interface Rollouts {
  step: number;
  problems: SyntheticProblem[];
  prompts: SequenceInput[];
  samples: Sample[];
  responses: string[];
}

/** Phase 2: per sample, the outcome reward and the thinking reward (NaN = missing). */
export interface RolloutRewards {
  outcome: Float32Array;
  thinking: Float32Array;
  /** Thinking scores asked for, and how many came back missing. */
  calls: number;
  failures: number;
}

/** Phase 3: per group γ and the applied thinking weight; per sample the reward and the advantage. */
export interface StepAdvantages {
  gamma: Float32Array;
  weight: Float32Array;
  anneal: number;
  rewards: Float32Array;
  advantages: Float32Array;
  /** The share of all-same-outcome groups, and their share of |advantage|. */
  uniform: { groups: number; absAdvantage: number };
}

/** Phase 4: means over the optimizer steps of the update (the last one's lr), tokens trained on, and the time spent. */
export type UpdateStats = Pick<StepMetrics, 'pgLoss' | 'kl' | 'entropy' | 'clipFrac' | 'gradNorm' | 'lr'> & {
  trainedTokens: number;
  seconds: { loss: number; update: number };
};

export interface TrainerHooks {
  onStep?(m: StepMetrics): void;
  onEval?(step: number, e: EvalResult): void;
  onPhase?(step: number, phase: 'sampling' | 'rewards' | 'loss' | 'update' | 'eval' | 'checkpoint'): void;
  /**
   * A thinking reward of your own (anything with `score(items)` and `stats`: an HTTP client, a
   * rule, another model), used instead of the one `config.thinking` names. The trainer does not
   * dispose it. Pass it again to resume().
   */
  thinkingReward?: ThinkingReward;
  /**
   * An outcome reward of your own, per problem (e.g. per problem type), instead of the rule-based
   * one; a number in [0, 1]. Pass it again to resume().
   */
  outcomeReward?(x: { response: string; problem: SyntheticProblem }): number | Promise<number>;
}

export interface RunSummary {
  runDir: string;
  steps: number;
  before?: EvalMetrics;
  after?: EvalMetrics;
  seconds: number;
}

export function defaultPolicyDir(): string {
  return path.join(packageRoot(), 'models', 'sft-policy');
}
export function defaultRewardDir(): string {
  return path.join(packageRoot(), 'models', 'thinking-rm');
}

function hash32(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 12)) >>> 0;
}

function permutation(n: number, seed: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

// Step means skip missing (NaN) thinking scores; the advantages' spread is over the whole step.
const mean = nanMean;
const std = (xs: ArrayLike<number>): number => stdDev(xs, 'population');

function evalMetrics(e: EvalResult): EvalMetrics {
  return { accuracy: e.accuracy, judgeScore: e.judgeScore, wrongThinkingRightAnswer: e.wrongThinkingRightAnswer, formatRate: e.formatRate, outcomes: e.outcomes, judges: e.judges };
}

/** Keeps the JSONL lines whose step is ≤ maxStep (and drops a torn last line). */
async function truncateJsonl(file: string, maxStep: number): Promise<void> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch {
    return;
  }
  const keep = text.split('\n').filter((line) => {
    if (!line.trim()) return false;
    try {
      return (JSON.parse(line) as { step: number }).step <= maxStep;
    } catch {
      return false;
    }
  });
  await writeFileAtomic(file, keep.length ? keep.join('\n') + '\n' : '');
}

interface TrainerState {
  step: number;
  optStep: number;
  before?: EvalMetrics;
}

interface Checkpoint {
  policy: VisionLanguageModel;
  state: TrainerState;
}

/**
 * The newest checkpoint of a run that loads whole (weights, optimizer state and trainer.json), found
 * by scanning the step-NNNNNN folders rather than trusting latest.json, which a kill can leave
 * missing, torn or pointing at a folder that is not there. A corrupt one is reported on stderr and
 * the next older one is tried. Leftover .tmp folders of an interrupted save are removed.
 */
async function findCheckpoint(ckDir: string, steps: number): Promise<Checkpoint | null> {
  let names: string[];
  try {
    names = await fsp.readdir(ckDir);
  } catch {
    return null;
  }
  for (const d of names.filter((n) => n.startsWith('.') && n.endsWith('.tmp'))) await fsp.rm(path.join(ckDir, d), { recursive: true, force: true });
  const dirs = names.filter((d) => /^step-\d{6}$/.test(d)).sort().reverse();
  for (const name of dirs) {
    const dir = path.join(ckDir, name);
    let policy: VisionLanguageModel | null = null;
    try {
      let text: string;
      try {
        text = await fsp.readFile(path.join(dir, 'trainer.json'), 'utf8');
      } catch (err) {
        throw new SophiaError('E_IO', `${dir}/trainer.json is missing or unreadable (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
      }
      let state: TrainerState;
      try {
        state = JSON.parse(text) as TrainerState;
      } catch (err) {
        throw new SophiaError('E_IO', `${dir}/trainer.json is not valid JSON (${(err as Error).message})`, { cause: err });
      }
      if (!Number.isInteger(state.step) || state.step < 1 || state.step > steps || state.step !== Number(name.slice(5)) || !Number.isInteger(state.optStep) || state.optStep < 0)
        throw new SophiaError('E_IO', `${dir}/trainer.json does not describe step ${Number(name.slice(5))} of a ${steps}-step run: ${text.slice(0, 120)}`);
      policy = await loadPolicy(dir, { optimizer: true });
      return { policy, state };
    } catch (err) {
      policy?.dispose();
      process.stderr.write(`sophia train: warning: skipping checkpoint ${name}: ${(err as Error).message}\n`);
    }
  }
  return null;
}

export class TrustGrpoTrainer {
  readonly config: TrainConfig;
  readonly runDir: string;
  private policy!: VisionLanguageModel;
  private reference: VisionLanguageModel | null = null;
  private reward: ThinkingReward | null = null;
  private train!: SyntheticProblem[];
  private held!: SyntheticProblem[];
  private order!: number[];
  private startStep = 1;
  private optStep = 0;
  private hooks: TrainerHooks;
  private before?: EvalMetrics;

  private constructor(config: TrainConfig, runDir: string, hooks: TrainerHooks) {
    if (hooks === null || typeof hooks !== 'object') throw new SophiaError('E_TYPE', `TrustGrpoTrainer: hooks must be an object, got ${describe(hooks)}`);
    if (hooks.outcomeReward !== undefined && typeof hooks.outcomeReward !== 'function')
      throw new SophiaError('E_CONFIG', `outcomeReward must be a function, got ${describe(hooks.outcomeReward)}`);
    this.config = config;
    this.runDir = runDir;
    this.hooks = hooks;
  }

  /** A new run in runsDir/name (refused if that folder already holds a run). */
  static async create(input: TrainConfigInput, hooks: TrainerHooks = {}): Promise<TrustGrpoTrainer> {
    const config = resolveTrainConfig(input);
    const runDir = path.join(config.runsDir, config.name);
    if (fs.existsSync(path.join(runDir, 'config.json')))
      throw new SophiaError('E_STATE', `${runDir} already holds a run: resume it (sophia train --resume ${runDir}) or pick another name`);
    // Everything that can fail (the policy, the reward model, the problems) is loaded before the run
    // folder is made, so a bad config leaves nothing behind that blocks the name.
    const t = new TrustGrpoTrainer(config, runDir, hooks);
    try {
      await t.init(null);
      await fsp.mkdir(path.join(runDir, 'checkpoints'), { recursive: true });
      // The key is never written: a resumed run takes it from $SOPHIA_RM_API_KEY. (The URL is kept: resume needs it.)
      await writeFileAtomic(path.join(runDir, 'config.json'), JSON.stringify(redactSecrets(config, { urls: false }), null, 2) + '\n');
      for (const f of ['metrics.jsonl', 'samples.jsonl']) await writeFileAtomic(path.join(runDir, f), '');
    } catch (err) {
      t.dispose();
      throw err;
    }
    return t;
  }

  /** Continues the run in runDir from its last checkpoint (or from the start when it has none). */
  static async resume(runDir: string, hooks: TrainerHooks = {}): Promise<TrustGrpoTrainer> {
    const file = path.join(runDir, 'config.json');
    let raw: unknown;
    try {
      raw = JSON.parse(await fsp.readFile(file, 'utf8'));
    } catch (err) {
      throw new SophiaError('E_IO', `cannot resume ${runDir}: ${file} is missing or unreadable (${(err as Error).message})`, { cause: err });
    }
    const config = resolveTrainConfig(raw);
    const t = new TrustGrpoTrainer(config, runDir, hooks);
    try {
      await t.init(await findCheckpoint(path.join(runDir, 'checkpoints'), config.steps));
    } catch (err) {
      t.dispose();
      throw err;
    }
    return t;
  }

  private async init(latest: Checkpoint | null): Promise<void> {
    const c = this.config;
    this.train = generateProblems({ seed: c.seed, count: c.trainProblems, split: 'train', difficulty: c.difficulty });
    this.held = generateProblems({ seed: EVAL_SEED, count: c.evalProblems, split: 'test', difficulty: c.difficulty });
    this.order = permutation(this.train.length, hash32(c.seed, 1));
    const policyDir = c.policy ?? defaultPolicyDir();
    if (!fs.existsSync(path.join(policyDir, 'config.json')))
      throw new SophiaError('E_CONFIG', `no policy checkpoint at ${policyDir}: pass policy (a folder made by \`sophia sft\`)`);
    if (latest) {
      this.policy = latest.policy;
      this.startStep = latest.state.step + 1;
      this.optStep = latest.state.optStep;
      this.before = latest.state.before;
    } else {
      this.policy = await loadPolicy(policyDir);
    }
    // Back to the checkpoint's step; with none, back to nothing (run() evaluates step 0 again).
    for (const f of ['metrics.jsonl', 'samples.jsonl']) await truncateJsonl(path.join(this.runDir, f), latest ? this.startStep - 1 : -1);
    if (c.klCoef > 0) this.reference = await loadPolicy(policyDir);
    this.reward = await this.makeReward();
  }

  private async makeReward(): Promise<ThinkingReward | null> {
    const custom = this.hooks.thinkingReward;
    if (custom !== undefined) {
      if (custom === null || typeof custom !== 'object' || typeof custom.score !== 'function')
        throw new SophiaError('E_CONFIG', `thinkingReward must be a ThinkingReward (an object with score(items) and stats), got ${describe(custom)}`);
      return custom;
    }
    const t = this.config.thinking;
    if (t.source === 'none') return null;
    if (t.source === 'http') {
      return new OpenAIThinkingReward({ baseUrl: t.url!, model: t.model ?? 'sophia-thinking-rm', apiKey: (t.apiKey !== REDACTED ? t.apiKey : undefined) ?? process.env.SOPHIA_RM_API_KEY ?? '', scoreFormat: t.scoreFormat });
    }
    const dir = t.checkpoint ?? defaultRewardDir();
    if (t.source === 'untrained') {
      // What reward-model training starts from (the policy's weights, see `sophia rm train`), with
      // its score head drawn at LeCun scale (std 1/sqrt(dim)) instead of zero: a zero head scores
      // every response 0.5, a constant that group normalisation removes (plain GRPO again). This
      // one scores with unit-scale logits that vary with the response, like the paper's untrained
      // model, but nothing taught it what good thinking is.
      const policy = await loadPolicy(this.config.policy ?? defaultPolicyDir());
      try {
        return rewardModelFromPolicy(policy, { seed: this.config.seed + 17, headStd: 1 / Math.sqrt(policy.config.dim) });
      } finally {
        policy.dispose();
      }
    }
    return loadRewardModel(dir);
  }

  private promptsFor(step: number): SyntheticProblem[] {
    const P = this.config.promptsPerStep;
    const out: SyntheticProblem[] = [];
    for (let i = 0; i < P; i++) out.push(this.train[this.order[((step - 1) * P + i) % this.train.length]]);
    return out;
  }

  /** Held-out evaluation; at the start and the end also with swapped images (the seeing gap). */
  private async evaluate(step: number, seeing = false): Promise<EvalMetrics> {
    this.hooks.onPhase?.(step, 'eval');
    const e = await evaluatePolicy(this.policy, this.held, { maxNew: this.config.maxNew });
    this.hooks.onEval?.(step, e);
    const m = evalMetrics(e);
    if (seeing && this.held.length >= 2) {
      m.swappedAccuracy = (await evaluatePolicy(this.policy, this.held, { maxNew: this.config.maxNew, imageFor: swappedImages(this.held) })).accuracy;
    }
    return m;
  }

  private async scoreThinking(probs: SyntheticProblem[], responses: string[], outcome: Float32Array): Promise<{ thinking: Float32Array; calls: number; failures: number }> {
    const c = this.config;
    const G = c.groupSize;
    const n = responses.length;
    const thinking = new Float32Array(n).fill(NaN);
    if (!this.reward) return { thinking, calls: 0, failures: 0 };
    const needed = c.mode === 'reference' ? thinkingNeeded(outcome, { groupSize: G }, { mode: 'reference' }) : new Uint8Array(n).fill(1);
    const idx: number[] = [];
    for (let i = 0; i < n; i++) {
      if (needed[i]) idx.push(i);
      else thinking[i] = 0;
    }
    let scores: ArrayLike<number>;
    if (this.reward instanceof RewardModel) {
      scores = await this.reward.scoreTexts(idx.map((i) => {
        const p = probs[Math.floor(i / G)];
        return { question: p.question, reasoning: thinkingInput(responses[i], c.mode), image: p.image };
      }));
    } else {
      scores = await this.reward.score(idx.map((i) => {
        const p = probs[Math.floor(i / G)];
        return { question: p.question, response: thinkingInput(responses[i], c.mode), image: encodePng(p.image) };
      }));
    }
    let failures = 0;
    idx.forEach((i, k) => {
      thinking[i] = scores[k];
      if (Number.isNaN(scores[k])) failures++;
    });
    return { thinking, calls: idx.length, failures };
  }

  /** Runs the remaining steps; returns the before/after evaluation. */
  async run(): Promise<RunSummary> {
    const c = this.config;
    const t0 = Date.now();
    if (this.startStep === 1) {
      this.before = await this.evaluate(0, true);
      await this.appendMetrics({ step: 0, eval: this.before } as unknown as StepMetrics);
    }
    let after: EvalMetrics | undefined;
    for (let s = this.startStep; s <= c.steps; s++) {
      const m = await this.step(s);
      const last = s === c.steps;
      if (last || (c.evalEvery > 0 && s % c.evalEvery === 0)) {
        m.eval = await this.evaluate(s, last);
        if (last) after = m.eval;
      }
      await this.appendMetrics(m);
      this.hooks.onStep?.(m);
      if (last || (c.checkpointEvery > 0 && s % c.checkpointEvery === 0)) {
        await this.checkpoint(s);
        // The report follows the run at every checkpoint, so a killed or running run has one.
        await writeRunReport(this.runDir).catch((err: Error) => process.stderr.write(`sophia train: warning: report.html not written at step ${s}: ${err.message}\n`));
      }
    }
    if (!after && this.startStep > c.steps) after = await this.evaluate(c.steps, true);
    return { runDir: this.runDir, steps: c.steps, before: this.before, after, seconds: (Date.now() - t0) / 1000 };
  }

  private async appendMetrics(m: StepMetrics): Promise<void> {
    await fsp.appendFile(path.join(this.runDir, 'metrics.jsonl'), JSON.stringify(m) + '\n');
  }

  private async checkpoint(step: number): Promise<void> {
    this.hooks.onPhase?.(step, 'checkpoint');
    const ckDir = path.join(this.runDir, 'checkpoints');
    const name = `step-${String(step).padStart(6, '0')}`;
    const tmp = path.join(ckDir, `.${name}.${randomBytes(4).toString('hex')}.tmp`);
    await saveModel(this.policy, tmp, { optimizer: true, extra: { step } });
    await writeFileAtomic(path.join(tmp, 'trainer.json'), JSON.stringify({ step, optStep: this.optStep, before: this.before }) + '\n');
    await fsp.rm(path.join(ckDir, name), { recursive: true, force: true });
    await fsp.rename(tmp, path.join(ckDir, name));
    await writeFileAtomic(path.join(ckDir, 'latest.json'), JSON.stringify({ step, dir: name }) + '\n');
    // Keep the newest two.
    const all = (await fsp.readdir(ckDir)).filter((d) => /^step-\d{6}$/.test(d)).sort();
    for (const d of all.slice(0, -2)) await fsp.rm(path.join(ckDir, d), { recursive: true, force: true });
  }

  /** One Trust-GRPO step. */
  async step(s: number): Promise<StepMetrics> {
    const tStart = performance.now();
    const time = { sampling: 0, rewards: 0, loss: 0, update: 0, total: 0 };
    const r = await this.rollout(s);
    const t1 = performance.now();
    time.sampling = (t1 - tStart) / 1000;
    const w = await this.rewards(r);
    const a = this.advantages(r, w);
    time.rewards = (performance.now() - t1) / 1000;
    const u = await this.update(r, a);
    time.loss = u.seconds.loss;
    time.update = u.seconds.update;
    const m = await this.record(r, w, a, u);
    time.total = (performance.now() - tStart) / 1000;
    return { ...m, tokensPerSec: (u.trainedTokens + m.responseTokens) / time.total, time };
  }

  /** Phase 1, rollouts: the step's prompts, G samples each (one shared prompt pass per prompt). */
  async rollout(s: number): Promise<Rollouts> {
    const c = this.config;
    this.hooks.onPhase?.(s, 'sampling');
    const problems = this.promptsFor(s);
    const prompts = problems.map((p) => promptInput(this.policy, p));
    const samples = await this.policy.generate(prompts, { samples: c.groupSize, maxNew: c.maxNew, temperature: c.temperature, topP: c.topP, seed: hash32(c.seed, s) });
    return { step: s, problems, prompts, samples, responses: samples.map((x) => responseText(this.policy, x.tokens)) };
  }

  /** Phase 2, rewards: the outcome reward of every sample and its thinking reward (NaN = missing). */
  async rewards(r: Rollouts): Promise<RolloutRewards> {
    const c = this.config;
    const s = r.step;
    this.hooks.onPhase?.(s, 'rewards');
    const n = r.samples.length;
    const outcome = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const p = r.problems[r.samples[i].prompt];
      if (this.hooks.outcomeReward) {
        const o = await this.hooks.outcomeReward({ response: r.responses[i], problem: p });
        if (typeof o !== 'number' || !(o >= 0 && o <= 1))
          throw new SophiaError('E_RANGE', `outcomeReward must return a number in [0, 1], got ${describe(o)} (step ${s}, problem ${p.id})`);
        outcome[i] = o;
      } else {
        outcome[i] = await outcomeReward({ response: r.responses[i], groundTruth: p.answer, problemType: p.problemType }, { mode: c.mode });
      }
    }
    const { thinking, calls, failures } = await this.scoreThinking(r.problems, r.responses, outcome);
    if (calls > 0 && failures === calls) {
      // Never silent, whatever SOPHIA_QUIET says: the step trains on outcomes alone.
      process.stderr.write(`sophia train: warning: step ${s}: all ${calls} thinking-reward scores are missing (see rmFailures in metrics.jsonl and the reward model's log); this step uses the outcome reward only\n`);
    }
    return { outcome, thinking, calls, failures };
  }

  /** Phase 3, trust and advantages: γ per group, the annealed thinking weight, rewards and advantages. */
  advantages(r: Rollouts, w: RolloutRewards): StepAdvantages {
    const c = this.config;
    const G = c.groupSize;
    const groups = r.problems.length;
    const T = c.T ?? (c.mode === 'paper' ? c.steps : 500);
    const anneal = c.anneal ? Math.exp(-r.step / T) : 1;
    let gamma: Float32Array;
    let weight: Float32Array;
    if (!this.reward) {
      gamma = new Float32Array(groups).fill(1);
      weight = new Float32Array(groups);
    } else if (c.trust) {
      const tr = trustRewards({ outcome: w.outcome, thinking: w.thinking, groupSize: G }, { mode: c.mode, alpha: c.alpha, step: r.step, T: c.anneal ? T : 1e30 });
      gamma = tr.gamma;
      weight = tr.thinkingWeight;
    } else {
      // No trust: γ = 1 for every group.
      gamma = new Float32Array(groups).fill(1);
      weight = new Float32Array(groups).fill(c.alpha * anneal);
    }
    const composed = composeAdvantages({ outcome: w.outcome, thinking: w.thinking, weight, groupSize: G }, c.advantageMode, { scale: c.advantageScale, eps: 1e-6 });
    return { gamma, weight, anneal, rewards: composed.rewards, advantages: composed.advantages, uniform: uniformShares(composed, G) };
  }

  /**
   * Phase 4, the update: old log-probs from the policy before this step's updates, reference
   * log-probs from the frozen policy, then PPO epochs of mini-batches: forward → fused loss (in
   * place) → backward → AdamW.
   */
  async update(r: Rollouts, a: StepAdvantages): Promise<UpdateStats> {
    const c = this.config;
    const s = r.step;
    const G = c.groupSize;
    const V = this.policy.config.vocab;
    const seconds = { loss: 0, update: 0 };
    let t = performance.now();
    const lap = (k: keyof typeof seconds) => {
      const now = performance.now();
      seconds[k] += (now - t) / 1000;
      t = now;
    };
    const { samples, prompts } = r;
    const seqs = samples.map((x) => ({ tokens: [...Array.from(prompts[x.prompt].tokens), ...x.tokens], image: prompts[x.prompt].image }));
    const groups = r.problems.length;
    const mbGroups = Array.from({ length: c.miniBatches }, (_, k) => {
      const lo = Math.floor((k * groups) / c.miniBatches), hi = Math.floor(((k + 1) * groups) / c.miniBatches);
      const ids: number[] = [];
      for (let g = lo; g < hi; g++) for (let j = 0; j < G; j++) ids.push(g * G + j);
      return ids;
    });
    const mbs = mbGroups.map((ids) => {
      const batch = this.policy.pack(ids.map((i) => seqs[i]), 'rollouts');
      const rows: number[] = [];
      const respStarts = new Int32Array(ids.length + 1);
      ids.forEach((i, b) => {
        const len = samples[i].tokens.length;
        const end = batch.seqStarts[b + 1];
        for (let q = end - len - 1; q < end - 1; q++) rows.push(q);
        respStarts[b + 1] = respStarts[b] + len;
      });
      const rowArr = Int32Array.from(rows);
      const labels = Int32Array.from(rows, (q) => batch.tokens[q + 1]);
      return { ids, batch, rows: rowArr, labels, respStarts, adv: Float32Array.from(ids, (i) => a.advantages[i]), old: null as Float32Array | null, ref: undefined as Float32Array | undefined };
    });
    if (c.miniBatches > 1 || c.ppoEpochs > 1) {
      for (const mb of mbs) mb.old = (await this.policy.logprobs(mb.batch, mb.rows, { temperature: c.temperature })).logp;
    }
    if (this.reference) {
      for (const mb of mbs) mb.ref = (await this.reference.logprobs(mb.batch, mb.rows, { temperature: c.temperature })).logp;
    }
    lap('loss');

    const totalOpt = c.steps * c.ppoEpochs * c.miniBatches;
    let pg = 0, kl = 0, ent = 0, clip = 0, gn = 0, lr = 0, k = 0;
    for (let e = 0; e < c.ppoEpochs; e++) {
      for (const mb of mbs) {
        this.hooks.onPhase?.(s, 'loss');
        const logits = await this.policy.forward(mb.batch, mb.rows);
        const lt = Tensor.from(logits, [mb.rows.length, V]);
        if (!mb.old) mb.old = (await logprobsOp(lt, mb.labels, { temperature: c.temperature })).logp;
        const res = await grpoLoss(
          { logits: lt, labels: mb.labels, oldLogp: mb.old, refLogp: mb.ref, advantages: mb.adv, seqStarts: mb.respStarts },
          {
            temperature: c.temperature, clipLow: c.clipLow, clipHigh: c.clipHigh, dualClip: c.dualClip || undefined,
            klCoef: this.reference ? c.klCoef : 0, klType: c.klType, entropyCoef: c.entropyCoef, lossAgg: c.lossAgg,
            maxLen: c.lossAgg === 'seq-mean-token-sum-norm' ? c.maxNew : undefined, inplace: true, advantagesPer: 'sequence',
          },
        );
        lap('loss');
        this.hooks.onPhase?.(s, 'update');
        this.policy.zeroGrad();
        await this.policy.backward(logits);
        if (c.freezeVision) this.zeroVisionGrads();
        lr = learningRate(c, this.optStep, totalOpt);
        const st = await this.policy.step({ lr, weightDecay: c.weightDecay, clipNorm: c.clipNorm });
        this.optStep++;
        lap('update');
        pg += res.metrics.pgLoss;
        kl += res.metrics.klLoss;
        ent += res.metrics.entropy;
        clip += res.metrics.clipFrac;
        gn += st.gradNorm;
        k++;
      }
    }
    const trainedTokens = mbs.reduce((acc, mb) => acc + mb.batch.tokens.length, 0) * c.ppoEpochs;
    return { pgLoss: pg / k, kl: kl / k, entropy: ent / k, clipFrac: clip / k, gradNorm: gn / k, lr, trainedTokens, seconds };
  }

  /** Phase 5, records: the step's samples appended to samples.jsonl, and its metrics (without timing). */
  private async record(r: Rollouts, w: RolloutRewards, a: StepAdvantages, u: UpdateStats): Promise<Omit<StepMetrics, 'time' | 'tokensPerSec'>> {
    const G = this.config.groupSize;
    const { samples, responses, problems } = r;
    const n = samples.length;
    const judges = samples.map((x, i) => judgeThinking(problems[x.prompt], responses[i]).score);
    const records: SampleRecord[] = samples.map((x, i) => {
      const p = problems[x.prompt];
      return {
        step: r.step, id: p.id, question: p.question, response: responses[i], tokens: x.tokens.length, outcome: w.outcome[i],
        thinking: Number.isNaN(w.thinking[i]) ? null : w.thinking[i], judge: judges[i],
        gamma: a.gamma[x.prompt], weight: a.weight[x.prompt], reward: a.rewards[i], advantage: a.advantages[i],
      };
    });
    await fsp.appendFile(path.join(this.runDir, 'samples.jsonl'), records.map((x) => JSON.stringify(x)).join('\n') + '\n');
    const responseTokens = samples.reduce((acc, x) => acc + x.tokens.length, 0);
    const g = Array.from(a.gamma);
    return {
      step: r.step,
      outcomeMean: mean(w.outcome),
      thinkingMean: mean(w.thinking),
      gammaMean: mean(a.gamma),
      gammaMin: Math.min(...g),
      gammaBelow1: g.filter((v) => v < 1 - 1e-7).length / g.length,
      gammas: g,
      thinkingWeight: mean(a.weight),
      anneal: a.anneal,
      rewardMean: mean(a.rewards),
      advMean: mean(a.advantages),
      advStd: std(a.advantages),
      uniformGroups: a.uniform.groups,
      uniformAdvShare: a.uniform.absAdvantage,
      thinkingJudgeCorr: withinGroupCorrelation(w.thinking, judges, G),
      judgeMean: mean(judges),
      pgLoss: u.pgLoss,
      kl: u.kl,
      entropy: u.entropy,
      clipFrac: u.clipFrac,
      gradNorm: u.gradNorm,
      lr: u.lr,
      responseTokens,
      meanResponseLength: responseTokens / n,
      truncated: samples.filter((x) => !x.tokens.includes(this.policy.tokenizer.special.eos)).length / n,
      rmCalls: w.calls,
      rmFailures: w.failures,
    };
  }

  /** Zeroes the gradients of the vision tower, so AdamW (fresh moments, no weight decay on them) leaves it as it is. */
  private zeroVisionGrads(): void {
    const vision = this.policy.tensors.filter((t) => t.name.startsWith('vis.'));
    if (vision.length === 0) return;
    const g = this.policy.getState('grads');
    for (const t of vision) g.fill(0, t.offset, t.offset + t.size);
    this.policy.setState('grads', g);
  }

  /** Frees the models. */
  dispose(): void {
    this.policy?.dispose();
    this.reference?.dispose();
    if (this.reward instanceof RewardModel && this.reward !== this.hooks.thinkingReward) this.reward.dispose();
  }
}

/** Reads a run's metrics.jsonl. */
export async function readMetrics(runDir: string): Promise<StepMetrics[]> {
  const text = await fsp.readFile(path.join(runDir, 'metrics.jsonl'), 'utf8').catch((err: Error) => {
    throw new SophiaError('E_IO', `cannot read ${runDir}/metrics.jsonl: ${err.message}`, { cause: err });
  });
  return text.split('\n').filter((l) => l.trim()).map((l, i) => {
    try {
      return JSON.parse(l) as StepMetrics;
    } catch {
      throw new SophiaError('E_IO', `${runDir}/metrics.jsonl line ${i + 1} is not JSON: ${describe(l)}`);
    }
  });
}

export async function readSamples(runDir: string): Promise<SampleRecord[]> {
  const text = await fsp.readFile(path.join(runDir, 'samples.jsonl'), 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l.trim()).flatMap((l) => {
    try {
      return [JSON.parse(l) as SampleRecord];
    } catch {
      return [];
    }
  });
}
