/**
 * `sophia score`: rewards, trust and advantages for rollouts made elsewhere (e.g. by vLLM), G
 * consecutive JSONL lines per group, against a thinking reward model behind an OpenAI-compatible API.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { SingleBar } from 'cli-progress';
import { SophiaError, describe } from '../errors';
import { mean } from '../stats';
import { readImageUnder } from '../data/dataset';
import { ADVANTAGE_MODES, composeAdvantages, type AdvantageMode } from './advantage';
import { thinkingNeeded, trustRewards } from '../ops/trust';
import { outcomeReward, type Mode } from '../rewards/outcome';
import {
  OpenAIThinkingReward, THINKING_FAILURES, listModels, thinkingInput,
  type ThinkingFailure, type ThinkingItem, type ThinkingReward,
} from '../rewards/thinking';
import type { ScoreFormat } from '../rewards/extract';

export interface ScoreOptions {
  /** JSONL rollouts: { prompt, response, answer, problem_type, image? } per line, G consecutive lines per group. */
  data: string;
  /** Where the scored JSONL goes (written to a temp file, then renamed). */
  out: string;
  /** The thinking reward model's server (base or full chat-completions URL). Not needed with `thinkingReward`. */
  rmUrl?: string;
  /** Served model name (default: the first model the server lists). */
  rmModel?: string;
  /** Bearer key (default $SOPHIA_RM_API_KEY, then $OPENAI_API_KEY). */
  apiKey?: string;
  /** A ready thinking reward (instead of rmUrl), e.g. an embedded model. */
  thinkingReward?: ThinkingReward;
  groupSize: number;
  /** The training step the rollouts belong to. */
  step: number;
  /** Total training steps: the annealing horizon in paper mode. */
  totalSteps?: number;
  /** Annealing horizon T; overrides totalSteps (reference mode default 500). */
  T?: number;
  /** Thinking-reward weight α (default 0.3). */
  alpha?: number;
  /** 'paper' (default) or 'reference' (asks only for the thinking scores the reference code would). */
  mode?: Mode;
  concurrency?: number;
  timeoutMs?: number;
  maxRetries?: number;
  /**
   * How Rt enters the advantages (as the trainer's advantageMode): 'paper' (default here: the
   * paper's formula, for rollouts of a run that uses it), 'centred' or 'skip-uniform'.
   */
  advantageMode?: AdvantageMode;
  /** How replies are read: 'strict' (default) or 'reference' (see OpenAIThinkingRewardOptions.scoreFormat). */
  scoreFormat?: ScoreFormat;
  /** Folder that relative `image` paths are under (default: the data file's folder). */
  imageBase?: string;
  /** Show a progress bar on stderr (default: when stderr is a terminal). */
  progress?: boolean;
  /** Groups scored per round (default 64). */
  chunkGroups?: number;
}

export interface ScoreSummary {
  lines: number;
  groups: number;
  mode: Mode;
  meanOutcome: number;
  /** Mean of the thinking scores received (NaN when none). */
  meanThinking: number;
  thinkingRequested: number;
  thinkingScored: number;
  /** γ over groups (NaN entries when no groups). */
  gamma: { min: number; p25: number; median: number; p75: number; max: number; belowOne: number };
  rmCalls: number;
  rmRetries: number;
  rmFailed: Partial<Record<ThinkingFailure, number>>;
  seconds: number;
}

interface Rollout {
  raw: Record<string, unknown>;
  prompt: string;
  response: string;
  answer: string;
  problemType: string;
  image?: string;
}

function parseLine(text: string, where: string): Rollout {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SophiaError('E_IO', `${where}: not JSON (${(err as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new SophiaError('E_TYPE', `${where}: expected an object, got ${describe(raw)}`);
  const r = raw as Record<string, unknown>;
  const str = (key: string, numbersToo = false): string => {
    const v = r[key];
    if (typeof v === 'string') return v;
    if (numbersToo && typeof v === 'number') return String(v);
    throw new SophiaError('E_TYPE', `${where}: ${key} must be a string, got ${describe(v)}`);
  };
  const image = r.image;
  if (image !== undefined && image !== null && typeof image !== 'string') {
    throw new SophiaError('E_TYPE', `${where}: image must be a path or a data URL, got ${describe(image)}`);
  }
  return { raw: r, prompt: str('prompt'), response: str('response'), answer: str('answer', true), problemType: str('problem_type'), image: image || undefined };
}

async function countLines(file: string): Promise<number> {
  let n = 0;
  for await (const line of readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity })) if (line.trim()) n++;
  return n;
}

async function imageBytes(image: string, base: string, where: string): Promise<Buffer> {
  const dataUrl = /^data:image\/[a-z+]+;base64,(.*)$/s.exec(image);
  if (dataUrl) return Buffer.from(dataUrl[1], 'base64');
  return readImageUnder(base, image, where);
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

const finiteOrNull = (x: number): number | null => (Number.isFinite(x) ? x : null);

function checkInt(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new SophiaError('E_CONFIG', `score: ${name} must be an integer >= ${min}, got ${describe(value)}`);
  }
  return value;
}

/** Scores a rollouts file and writes one scored line per input line; returns the summary. */
export async function runScore(opts: ScoreOptions): Promise<ScoreSummary> {
  const started = performance.now();
  const mode = opts.mode ?? 'paper';
  if (mode !== 'paper' && mode !== 'reference') throw new SophiaError('E_CONFIG', `score: mode must be 'paper' or 'reference', got ${describe(mode)}`);
  const advantageMode = opts.advantageMode ?? 'paper';
  if (!ADVANTAGE_MODES.includes(advantageMode)) throw new SophiaError('E_CONFIG', `score: advantageMode must be one of ${ADVANTAGE_MODES.join(', ')}, got ${describe(advantageMode)}`);
  const G = checkInt('groupSize', opts.groupSize, 1);
  checkInt('step', opts.step, 0);
  const chunkGroups = checkInt('chunkGroups', opts.chunkGroups ?? 64, 1);
  if (mode === 'paper' && opts.totalSteps === undefined && opts.T === undefined) {
    throw new SophiaError('E_CONFIG', 'score: paper mode anneals over the whole run; pass totalSteps (--total-steps) or T');
  }
  if (typeof opts.data !== 'string' || !fs.existsSync(opts.data)) throw new SophiaError('E_IO', `score: data file ${describe(opts.data)} does not exist`);
  if (typeof opts.out !== 'string' || opts.out.length === 0) throw new SophiaError('E_CONFIG', `score: out must be a file path, got ${describe(opts.out)}`);

  const lines = await countLines(opts.data);
  if (lines === 0 || lines % G !== 0) {
    throw new SophiaError('E_SHAPE', `score: ${opts.data} has ${lines} rollout lines; expected a positive multiple of the group size ${G}`);
  }

  let rm = opts.thinkingReward;
  if (!rm) {
    if (!opts.rmUrl) throw new SophiaError('E_CONFIG', 'score: pass rmUrl (--rm-url), the thinking reward model server');
    const model = opts.rmModel ?? (await listModels(opts.rmUrl, { apiKey: opts.apiKey }))[0];
    rm = new OpenAIThinkingReward({
      baseUrl: opts.rmUrl, model, apiKey: opts.apiKey,
      concurrency: opts.concurrency, timeoutMs: opts.timeoutMs, maxRetries: opts.maxRetries, scoreFormat: opts.scoreFormat,
    });
  }
  const rmBefore = rm.stats;
  const imageBase = path.resolve(opts.imageBase ?? path.dirname(path.resolve(opts.data)));

  const tmp = `${opts.out}.tmp-${process.pid}`;
  const out = fs.createWriteStream(tmp);
  const bar = (opts.progress ?? Boolean(process.stderr.isTTY))
    ? new SingleBar({ format: 'scoring |{bar}| {value}/{total} rollouts | ETA {eta_formatted} | RM failed {failed}', stream: process.stderr, hideCursor: true }, undefined)
    : null;
  bar?.start(lines, 0, { failed: 0 });

  const outcomes: number[] = [];
  const thinkingScores: number[] = [];
  const gammas: number[] = [];
  let requested = 0;
  let lineNo = 0;

  const scoreChunk = async (chunk: Rollout[], firstLine: number): Promise<void> => {
    const n = chunk.length;
    const outcome = Float32Array.from(
      await Promise.all(
        chunk.map((r, i) =>
          outcomeReward({ response: r.response, groundTruth: r.answer, problemType: r.problemType }, { mode }).catch((err: unknown) => {
            if (!(err instanceof SophiaError)) throw err;
            throw new SophiaError(err.code, `score: ${opts.data} rollout ${firstLine + i + 1}: ${err.message}`, { cause: err });
          }),
        ),
      ),
    );
    const needed = mode === 'reference' ? thinkingNeeded(outcome, { groupSize: G }, { mode: 'reference' }) : new Uint8Array(n).fill(1);
    const asked: number[] = [];
    const items: ThinkingItem[] = [];
    for (let i = 0; i < n; i++) {
      if (!needed[i]) continue;
      const r = chunk[i];
      asked.push(i);
      items.push({
        question: r.prompt,
        response: thinkingInput(r.response, mode),
        image: r.image === undefined ? undefined : await imageBytes(r.image, imageBase, `score: ${opts.data} rollout ${firstLine + i + 1}`),
      });
    }
    // responses the reference code never sends to the reward model get Rt = 0, as there
    const thinking = new Float32Array(n);
    const scores = await rm!.score(items);
    asked.forEach((i, k) => (thinking[i] = scores[k]));
    requested += items.length;

    // The trainer's own phase-3 arithmetic: γ and the annealed weight, then the advantages of the chosen mode.
    const trust = trustRewards({ outcome, thinking, groupSize: G }, { step: opts.step, totalSteps: opts.totalSteps, T: opts.T, alpha: opts.alpha, mode });
    const { rewards, advantages } = composeAdvantages({ outcome, thinking, weight: trust.thinkingWeight, groupSize: G }, advantageMode, { scale: 'group', eps: 1e-6 });
    for (let i = 0; i < n; i++) {
      const g = Math.floor(i / G);
      const scored = {
        ...chunk[i].raw,
        outcome_reward: outcome[i],
        thinking_reward: needed[i] ? finiteOrNull(thinking[i]) : null,
        thinking_requested: needed[i] === 1,
        gamma: finiteOrNull(trust.gamma[g]),
        thinking_weight: finiteOrNull(trust.thinkingWeight[g]),
        reward: rewards[i],
        advantage: advantages[i],
      };
      if (!out.write(JSON.stringify(scored) + '\n')) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
      outcomes.push(outcome[i]);
    }
    for (let k = 0; k < asked.length; k++) if (Number.isFinite(scores[k])) thinkingScores.push(scores[k]);
    for (let g = 0; g < n / G; g++) gammas.push(trust.gamma[g]);
    const failed = Object.values(rm!.stats.failed).reduce((a, b) => a + b, 0) - Object.values(rmBefore.failed).reduce((a, b) => a + b, 0);
    bar?.increment(n, { failed });
  };

  try {
    let chunk: Rollout[] = [];
    let chunkStart = 0;
    for await (const text of readline.createInterface({ input: fs.createReadStream(opts.data), crlfDelay: Infinity })) {
      if (!text.trim()) continue;
      chunk.push(parseLine(text, `score: ${opts.data} rollout ${lineNo + 1}`));
      lineNo++;
      if (chunk.length === chunkGroups * G) {
        await scoreChunk(chunk, chunkStart);
        chunkStart = lineNo;
        chunk = [];
      }
    }
    if (chunk.length > 0) await scoreChunk(chunk, chunkStart);
    await new Promise<void>((resolve, reject) => {
      out.once('error', reject);
      out.end(() => resolve());
    });
    fs.renameSync(tmp, opts.out);
  } catch (err) {
    out.destroy();
    fs.rmSync(tmp, { force: true });
    throw err;
  } finally {
    bar?.stop();
  }

  const after = rm.stats;
  const rmFailed: Partial<Record<ThinkingFailure, number>> = {};
  let rmRetries = 0;
  for (const reason of THINKING_FAILURES) {
    const failed = after.failed[reason] - rmBefore.failed[reason];
    if (failed > 0) rmFailed[reason] = failed;
    rmRetries += after.retries[reason] - rmBefore.retries[reason];
  }
  const sorted = gammas.filter(Number.isFinite).sort((a, b) => a - b);
  return {
    lines, groups: lines / G, mode,
    meanOutcome: mean(outcomes),
    meanThinking: mean(thinkingScores),
    thinkingRequested: requested,
    thinkingScored: thinkingScores.length,
    gamma: {
      min: quantile(sorted, 0), p25: quantile(sorted, 0.25), median: quantile(sorted, 0.5), p75: quantile(sorted, 0.75), max: quantile(sorted, 1),
      belowOne: sorted.filter((x) => x < 1).length,
    },
    rmCalls: after.calls - rmBefore.calls,
    rmRetries,
    rmFailed,
    seconds: (performance.now() - started) / 1000,
  };
}

/** The closing table of `sophia score`. */
export const failedText = (s: ScoreSummary): string => Object.entries(s.rmFailed).map(([r, n]) => `${r} ${n}`).join(', ') || 'no reason recorded';

export function formatScoreSummary(s: ScoreSummary): string {
  const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
  const failed = Object.entries(s.rmFailed);
  const rows: [string, string][] = [
    ['rollouts', `${s.lines} in ${s.groups} groups (${s.mode} mode)`],
    ['mean Ro', f(s.meanOutcome)],
    ['mean Rt', `${f(s.meanThinking)} (${s.thinkingScored} of ${s.thinkingRequested} requested scores received)`],
    ['γ min/p25/median/p75/max', [s.gamma.min, s.gamma.p25, s.gamma.median, s.gamma.p75, s.gamma.max].map(f).join(' / ')],
    ['groups with γ < 1', `${s.gamma.belowOne} of ${s.groups}`],
    ['RM calls', `${s.rmCalls} made, ${s.rmRetries} retried`],
    ['RM failed', failed.length === 0 ? '0' : failed.map(([r, n]) => `${r} ${n}`).join(', ')],
    ['time', `${s.seconds.toFixed(1)} s`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
}
