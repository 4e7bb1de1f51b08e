/**
 * The ablation (`sophia ablate`): the rows of the paper's Table 3 on the embedded task, several
 * seeds each at the same budget, evaluated on the same held-out problems, with paired comparisons.
 * MAIN_JOB is the main job's config (`npm start`), which the ablation's runs start from.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SophiaError } from '../errors';
import { mean, pairedRunsBootstrap, stdDev, type Interval } from '../stats';
import type { TrainConfigInput } from './config';
import { TrustGrpoTrainer, readMetrics, type EvalMetrics, type RunSummary, type TrainerHooks } from './trainer';
import { writeAblationReport, type AblationRun } from './report';

/** The main job (`npm start`): Trust-GRPO from the shipped checkpoints, 80 steps × 8 prompts × G = 8. */
export const MAIN_JOB: TrainConfigInput = {
  steps: 80, promptsPerStep: 8, groupSize: 8, ppoEpochs: 2, miniBatches: 2, maxNew: 48, evalProblems: 500, evalEvery: 20, checkpointEvery: 20,
};

/**
 * The paper's Table 3 rows, with the paper's advantage formula (normalising Ro + w·Rt per group),
 * then Trust-GRPO with this project's default advantages (Ro normalised, w·Rt only centred).
 */
export const ABLATION_VARIANTS: { name: string; config: TrainConfigInput }[] = [
  { name: 'GRPO (no thinking reward)', config: { thinking: { source: 'none' } } },
  { name: 'untrained thinking RM', config: { thinking: { source: 'untrained' }, advantageMode: 'paper' } },
  { name: 'no trust, no annealing', config: { trust: false, anneal: false, advantageMode: 'paper' } },
  { name: 'no trust', config: { trust: false, advantageMode: 'paper' } },
  { name: 'Trust-GRPO', config: { advantageMode: 'paper' } },
  { name: 'Trust-GRPO, centred advantages (default)', config: { advantageMode: 'centred' } },
];

/** Held-out problems of each ablation run's start and end evaluation (the same problems in every run). */
export const ABLATION_EVAL_PROBLEMS = 1000;

/** "Wrong thinking, right answer" per problem: a right answer with a judge score below 0.5. */
const wtraOf = (e: { outcomes?: number[]; judges?: number[] }): number[] | undefined =>
  e.outcomes && e.judges ? e.outcomes.map((o, i) => (o > 0.5 && e.judges![i] < 0.5 ? 1 : 0)) : undefined;

/**
 * Paired comparisons of the ablation: each Trust-GRPO row and GRPO against the SFT start, and each
 * thinking-reward row against GRPO, on accuracy, judge score and wrong-thinking-right-answer, with
 * 95% intervals from a bootstrap over the shared held-out problems and over seeds.
 */
export function ablationComparisons(runs: AblationRun[], variants: string[]): { header: string[]; rows: string[][]; json: Record<string, unknown>[] } {
  const header = ['comparison', 'accuracy', 'judge score', 'wrong thinking, right answer'];
  const per = (v: string, pick: (e: EvalMetrics) => number[] | undefined): number[][] =>
    runs.filter((r) => r.variant === v && r.after).map((r) => pick(r.after!)).filter((x): x is number[] => x !== undefined);
  const start = runs.find((r) => r.metrics.some((m) => m.step === 0 && m.eval))?.metrics.find((m) => m.step === 0)?.eval;
  const pickers: [string, (e: EvalMetrics) => number[] | undefined][] = [['accuracy', (e) => e.outcomes], ['judgeScore', (e) => e.judges], ['wrongThinkingRightAnswer', wtraOf]];
  const fmt = (i: Interval) => `${i.estimate >= 0 ? '+' : ''}${i.estimate.toFixed(3)} [${i.lo.toFixed(3)}, ${i.hi.toFixed(3)}]`;
  const rows: string[][] = [];
  const json: Record<string, unknown>[] = [];
  const compare = (label: string, a: (p: (e: EvalMetrics) => number[] | undefined) => number[][], b: (p: (e: EvalMetrics) => number[] | undefined) => number[][]) => {
    const cells = pickers.map(([key, pick]) => {
      const x = a(pick), y = b(pick);
      if (!x.length || !y.length || x[0].length !== y[0].length) return { key, interval: null };
      return { key, interval: pairedRunsBootstrap(x, y) };
    });
    if (cells.every((c) => c.interval === null)) return;
    rows.push([label, ...cells.map((c) => (c.interval ? fmt(c.interval) : '—'))]);
    json.push({ comparison: label, ...Object.fromEntries(cells.map((c) => [c.key, c.interval])) });
  };
  const sft = (pick: (e: EvalMetrics) => number[] | undefined): number[][] => {
    const x = start ? pick(start) : undefined;
    return x ? [x] : [];
  };
  const grpo = variants[0];
  compare(`${grpo} − SFT start`, (p) => per(grpo, p), sft);
  for (const v of variants.slice(1)) compare(`${v} − ${grpo}`, (p) => per(v, p), (p) => per(grpo, p));
  for (const v of variants.filter((x) => x.startsWith('Trust-GRPO'))) compare(`${v} − SFT start`, (p) => per(v, p), sft);
  return { header, rows, json };
}

export interface AblationOptions {
  seeds: number;
  steps: number;
  /** Folder runs/<name> (default 'ablate'). */
  name?: string;
  /** Also run the reference preset (mode 'reference'). */
  reference?: boolean;
  /** Parent of the ablation folder (default 'runs'). */
  runsDir?: string;
  /** How each run is carried out (default: run() on the trainer make() gives); the CLI adds a progress bar. */
  runOne?: (make: (hooks: TrainerHooks | undefined) => Promise<TrustGrpoTrainer>, label: string) => Promise<RunSummary>;
  /** Receives one line per run started. */
  log?: (line: string) => void;
}

export interface AblationResult {
  /** The ablation's report.html. */
  file: string;
  table: { header: string[]; rows: string[][] };
  comparisons: { header: string[]; rows: string[][] };
  minutes: number;
  /** Runs that were already finished (a resumed ablation). */
  runsFinishedBefore: number;
  runs: number;
  /** Held-out problems each comparison is over. */
  problems: number | undefined;
}

async function runPlain(make: (hooks: TrainerHooks | undefined) => Promise<TrustGrpoTrainer>): Promise<RunSummary> {
  const t = await make({});
  try {
    return await t.run();
  } finally {
    t.dispose();
  }
}

export async function runAblation(o: AblationOptions): Promise<AblationResult> {
  const runOne = o.runOne ?? runPlain;
  if (o.seeds < 1) throw new SophiaError('E_CONFIG', `ablate: --seeds must be at least 1, got ${o.seeds}`);
  const runsDir = path.join(o.runsDir ?? 'runs', o.name ?? 'ablate');
  const variants = [...ABLATION_VARIANTS, ...(o.reference ? [{ name: 'Trust-GRPO (reference preset)', config: { mode: 'reference' } as TrainConfigInput }] : [])];
  const runs: AblationRun[] = [];
  const t0 = Date.now();
  let finishedBefore = 0;
  for (const [vi, v] of variants.entries()) {
    for (let seed = 0; seed < o.seeds; seed++) {
      const name = `v${vi}-s${seed}`;
      const runDir = path.join(runsDir, name);
      const base = { ...MAIN_JOB, ...v.config, steps: o.steps, seed, name, runsDir, evalEvery: 0, checkpointEvery: 0, evalProblems: ABLATION_EVAL_PROBLEMS };
      o.log?.(`ablate: ${v.name}, seed ${seed}`);
      if (fs.existsSync(path.join(runDir, 'config.json'))) {
        const made = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')) as { steps?: unknown };
        if (made.steps !== o.steps)
          throw new SophiaError('E_CONFIG', `ablate: ${runDir} was started with ${String(made.steps)} steps, not --steps ${o.steps}; use the same --steps to continue it, or another --name`);
        if ((await readMetrics(runDir)).some((m) => m.step === o.steps && m.eval)) finishedBefore++;
        else await runOne((hooks) => TrustGrpoTrainer.resume(runDir, hooks), name);
      } else {
        await runOne((hooks) => TrustGrpoTrainer.create(base, hooks), name);
      }
      const metrics = await readMetrics(runDir);
      runs.push({ variant: v.name, seed, metrics, after: metrics.find((m) => m.step === o.steps)?.eval });
    }
  }
  const ms = (xs: number[]) => `${mean(xs).toFixed(3)} ± ${stdDev(xs, 'sample').toFixed(3)}`;
  const header = ['variant', 'held-out accuracy', 'judge score', 'wrong thinking, right answer'];
  const rows = variants.map((v) => {
    const rs = runs.filter((r) => r.variant === v.name && r.after);
    return [v.name, ms(rs.map((r) => r.after!.accuracy)), ms(rs.map((r) => r.after!.judgeScore)), ms(rs.map((r) => r.after!.wrongThinkingRightAnswer))];
  });
  const start = runs[0]?.metrics.find((m) => m.step === 0)?.eval;
  if (start) rows.unshift(['(SFT start)', start.accuracy.toFixed(3), start.judgeScore.toFixed(3), start.wrongThinkingRightAnswer.toFixed(3)]);
  const minutes = (Date.now() - t0) / 60000;
  const cmp = ablationComparisons(runs, variants.map((v) => v.name));
  const file = path.join(runsDir, 'report.html');
  await writeAblationReport(file, runs, { header, rows }, { seeds: o.seeds, steps: o.steps, base: MAIN_JOB, minutes, runsFinishedBefore: finishedBefore }, { header: cmp.header, rows: cmp.rows });
  fs.writeFileSync(path.join(runsDir, 'ablation.json'), JSON.stringify({ header, rows, comparisons: cmp.json, seeds: o.seeds, steps: o.steps, minutes, runsFinishedBefore: finishedBefore }, null, 2) + '\n');
  return {
    file, table: { header, rows }, comparisons: { header: cmp.header, rows: cmp.rows }, minutes,
    runsFinishedBefore: finishedBefore, runs: runs.length, problems: start?.outcomes?.length,
  };
}
