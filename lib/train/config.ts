/**
 * The Trust-GRPO trainer's configuration: one typed, validated object with a default and a
 * one-line description per field, loadable from YAML or JSON.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { z } from 'zod';
import { SophiaError, describe } from '../errors';
import { lrAt } from './sft';

const num = (d: number, desc: string) => z.number().finite().default(d).describe(desc);

export const TrainConfigSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ - only').default('run').describe('run name: the folder runs/<name>'),
    runsDir: z.string().min(1).default('runs').describe('where run folders live'),
    seed: z.number().int().min(0).default(0).describe('seed of the prompts order, the sampling and the data'),
    steps: z.number().int().min(1).default(60).describe('training steps (one rollout batch each)'),
    promptsPerStep: z.number().int().min(1).default(8).describe('prompts per step'),
    groupSize: z.number().int().min(2).default(8).describe('G: responses sampled per prompt'),
    ppoEpochs: z.number().int().min(1).default(2).describe('passes over each rollout batch (above 1, the PPO ratio moves off 1 and clipping acts)'),
    miniBatches: z.number().int().min(1).default(2).describe('optimizer steps per epoch (groups are split evenly)'),
    clipLow: num(0.2, 'PPO clip: ratio ≥ 1 − clipLow'),
    clipHigh: num(0.2, 'PPO clip: ratio ≤ 1 + clipHigh'),
    dualClip: num(0, 'dual clip c > 1 for negative advantages; 0 = off'),
    klType: z.enum(['k1', 'k2', 'k3']).default('k3').describe('KL estimator against the frozen reference policy'),
    klCoef: num(0.1, 'KL coefficient (the paper: 0.04; 0.1 here keeps the small policy near its SFT start); 0 = no reference policy'),
    entropyCoef: num(0, 'entropy bonus (the released config: 1e-3)'),
    lossAgg: z.enum(['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm']).default('token-mean').describe('loss aggregation'),
    advantageScale: z.enum(['group', 'batch', 'none']).default('group').describe('advantage normalisation: group std, batch std, or none'),
    advantageMode: z.enum(['paper', 'centred', 'skip-uniform']).default('centred').describe("how Rt enters the advantages: 'paper' normalises Ro + w·Rt per group; 'centred' normalises Ro and adds w·(Rt − group mean) unscaled; 'skip-uniform' is 'paper' with no Rt in groups whose outcomes are all equal"),
    alpha: num(0.3, 'α: the thinking reward weight'),
    T: z.number().positive().optional().describe('annealing horizon; default: steps (paper) or 500 (reference)'),
    mode: z.enum(['paper', 'reference']).default('paper').describe('the paper or the public code (method.md §2)'),
    trust: z.boolean().default(true).describe('γ: trust weighting (false: γ = 1, the "no trust" ablation)'),
    anneal: z.boolean().default(true).describe('exp(−step/T) annealing (false: constant weight)'),
    thinking: z
      .object({
        source: z.enum(['embedded', 'http', 'untrained', 'none']).default('embedded').describe('the thinking reward: embedded model, HTTP server, an untrained model, or none (plain GRPO)'),
        checkpoint: z.string().optional().describe('embedded reward model folder (default: the shipped models/thinking-rm)'),
        url: z.string().optional().describe('http: base URL of an OpenAI-compatible reward server'),
        model: z.string().optional().describe('http: model name (default: the first the server lists)'),
        apiKey: z.string().optional().describe('http: bearer key (default: $SOPHIA_RM_API_KEY)'),
        scoreFormat: z.enum(['strict', 'reference']).optional().describe("http: how replies are read: 'strict' (default: <answer>x</answer>, \\boxed{x} or a bare x in [0, 1], anything else a failure) or 'reference' (the reference code's extractor chain, clamped)"),
      })
      .default({ source: 'embedded' }),
    policy: z.string().optional().describe('warm-started policy folder (default: the shipped models/sft-policy)'),
    lr: z.number().positive().default(3e-5).describe('peak learning rate'),
    schedule: z.enum(['constant', 'cosine']).default('constant').describe('learning-rate schedule after warm-up'),
    warmupSteps: z.number().int().min(0).default(0).describe('linear warm-up, in optimizer steps'),
    weightDecay: num(0, 'AdamW decoupled weight decay'),
    freezeVision: z.boolean().default(true).describe('keep the vision tower (vis.* tensors) fixed during RL (with weightDecay 0): at RL batch sizes its gradients are mostly noise, which Adam scales to full-size steps'),
    clipNorm: num(1, 'global gradient-norm clip; 0 = off'),
    temperature: z.number().positive().default(1).describe('sampling temperature (also used in the loss)'),
    topP: z.number().gt(0).max(1).default(1).describe('nucleus sampling; 1 = off'),
    maxNew: z.number().int().min(1).default(48).describe('new tokens per response at most'),
    difficulty: z.enum(['easy', 'normal']).default('normal').describe('synthetic task difficulty'),
    trainProblems: z.number().int().min(1).default(4000).describe('training problems (cycled)'),
    evalProblems: z.number().int().min(1).default(500).describe('held-out problems per evaluation (greedy; the same problems in every run)'),
    evalEvery: z.number().int().min(0).default(10).describe('evaluate every K steps (and at the start and the end); 0 = start and end only'),
    checkpointEvery: z.number().int().min(0).default(10).describe('checkpoint every K steps (and at the end); 0 = end only'),
  })
  .strict();

export type TrainConfig = z.infer<typeof TrainConfigSchema>;
export type TrainConfigInput = z.input<typeof TrainConfigSchema>;

/** What a redacted secret reads as in printed and written configs. */
export const REDACTED = '[redacted]';

const SECRET_KEY = /^(api[-_]?key|token|password|secret|authorization)$/i;

/** A URL without its user-info (`http://user:pass@host` → `http://***@host`); other text unchanged. */
export function redactUrl(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, '$1***@');
}

/**
 * A deep copy fit to print or write: values under secret-like keys (apiKey, token, password, …)
 * become REDACTED, and with `urls` (default true) URL user-info becomes `***`.
 */
export function redactSecrets<T>(value: T, opts: { urls?: boolean } = {}): T {
  const urls = opts.urls ?? true;
  const walk = (v: unknown, key: string): unknown => {
    if (typeof v === 'string') return SECRET_KEY.test(key) && v !== '' ? REDACTED : urls ? redactUrl(v) : v;
    if (Array.isArray(v)) return v.map((x) => walk(x, ''));
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]));
    return v;
  };
  return walk(value, '') as T;
}

/** Validates and fills defaults; errors name the field, what was expected and what came. */
export function resolveTrainConfig(input: unknown = {}): TrainConfig {
  const r = TrainConfigSchema.safeParse(input ?? {});
  if (!r.success) {
    const lines = r.error.issues.map((i) => {
      const at = i.path.length ? i.path.join('.') : '(config)';
      let got = input as unknown;
      for (const k of i.path) got = got && typeof got === 'object' ? (got as Record<string, unknown>)[k as string] : undefined;
      return `${at}: ${i.message} (got ${describe(got)})`;
    });
    throw new SophiaError('E_CONFIG', `train config: ${lines.join('; ')}`);
  }
  const c = r.data;
  if (c.thinking.source === 'http' && !c.thinking.url) throw new SophiaError('E_CONFIG', 'train config: thinking.url is required when thinking.source is "http"');
  if (c.clipLow >= 1 || c.clipLow < 0) throw new SophiaError('E_CONFIG', `train config: clipLow must be in [0, 1), got ${c.clipLow}`);
  if (c.dualClip !== 0 && c.dualClip <= 1) throw new SophiaError('E_CONFIG', `train config: dualClip must be 0 (off) or > 1, got ${c.dualClip}`);
  if (c.miniBatches > c.promptsPerStep) throw new SophiaError('E_CONFIG', `train config: miniBatches (${c.miniBatches}) cannot exceed promptsPerStep (${c.promptsPerStep}): groups are not split`);
  return c;
}

/** Reads a YAML (.yaml/.yml) or JSON config file, then resolves it. */
export function loadTrainConfig(file: string, overrides: Record<string, unknown> = {}): TrainConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new SophiaError('E_IO', `cannot read the config ${file}: ${(err as Error).message}`, { cause: err });
  }
  let data: unknown;
  try {
    data = /\.ya?ml$/i.test(path.extname(file)) ? yaml.load(text) : JSON.parse(text);
  } catch (err) {
    throw new SophiaError('E_CONFIG', `${file} does not parse: ${(err as Error).message}`, { cause: err });
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new SophiaError('E_CONFIG', `${file} must hold an object, got ${describe(data)}`);
  return resolveTrainConfig({ ...(data as Record<string, unknown>), ...overrides });
}

/** Learning rate at optimizer step `s` (0-based): linear warm-up, then constant, or the SFT schedule's cosine to 10% of the peak. */
export function learningRate(c: Pick<TrainConfig, 'lr' | 'schedule' | 'warmupSteps'>, s: number, total: number): number {
  if (c.schedule === 'constant') return s < c.warmupSteps ? (c.lr * (s + 1)) / c.warmupSteps : c.lr;
  return lrAt(s, { lr: c.lr, warmup: c.warmupSteps, total, minLrRatio: 0.1 });
}
