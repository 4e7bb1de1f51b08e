/**
 * `sophia train` (a Trust-GRPO run from a config, or --resume), `sophia start` (the main job on
 * the embedded defaults) and `sophia ablate` (the paper's Table 3 rows on the embedded task).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { SingleBar } from 'cli-progress';
import { SophiaError } from '../errors';
import { infoLines } from './info';
import { loadTrainConfig, redactSecrets, resolveTrainConfig, type TrainConfig, type TrainConfigInput } from '../train/config';
import { TrustGrpoTrainer, readMetrics, type EvalMetrics, type RunSummary, type StepMetrics } from '../train/trainer';
import { beforeAfterRows, writeAblationReport, writeRunReport, type AblationRun } from '../train/report';
import { pairedRunsBootstrap, type Interval } from '../stats';

const intArg = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
};

const quiet = () => process.env.SOPHIA_QUIET === '1';

function fmtMetrics(m: StepMetrics): string {
  return `Ro ${m.outcomeMean.toFixed(3)} Rt ${Number.isNaN(m.thinkingMean) ? '—' : m.thinkingMean.toFixed(3)} γ ${m.gammaMean.toFixed(3)} loss ${m.pgLoss.toFixed(4)} KL ${m.kl.toFixed(4)} ${Math.round(m.tokensPerSec)} tok/s`;
}

/** Runs a trainer with a progress bar (or one line per step when not a TTY). */
export async function runWithProgress(make: (hooks: Parameters<typeof TrustGrpoTrainer.create>[1]) => Promise<TrustGrpoTrainer>, label = 'train'): Promise<RunSummary> {
  let bar: SingleBar | null = null;
  let last = '';
  const tty = Boolean(process.stderr.isTTY) && !quiet();
  const trainer = await make({
    onStep: (m) => {
      last = fmtMetrics(m);
      if (bar) bar.update(m.step, { metrics: last });
      else if (!quiet()) console.log(`${label} step ${m.step}: ${last}`);
    },
    onEval: (step, e) => {
      const line = `eval @${step}: accuracy ${e.accuracy.toFixed(3)}, judge ${e.judgeScore.toFixed(3)}, wrong-thinking-right-answer ${e.wrongThinkingRightAnswer.toFixed(3)}, format ${e.formatRate.toFixed(3)}`;
      if (bar) bar.update({ metrics: line });
      else if (!quiet()) console.log(`${label} ${line}`);
    },
  });
  const c = trainer.config;
  if (tty) {
    bar = new SingleBar({ format: `${label} |{bar}| {value}/{total} steps | ETA {eta_formatted} | {metrics}`, stream: process.stderr, hideCursor: true, etaBuffer: 5 }, undefined);
    bar.start(c.steps, 0, { metrics: 'evaluating the start…' });
  }
  try {
    return await trainer.run();
  } finally {
    bar?.stop();
    trainer.dispose();
  }
}

function printBeforeAfter(s: RunSummary): void {
  const rows = beforeAfterRows(s.before, s.after);
  const w = [40, 8, 8, 8];
  console.log(['metric', 'start', 'end', 'change'].map((h, i) => h.padEnd(w[i])).join(' '));
  for (const r of rows) console.log(r.map((c, i) => String(c).padEnd(w[i])).join(' '));
}

/** The main job's configuration: the shipped policy and reward model, sized for ≤ 10 minutes on 2 CPU cores. */
export const MAIN_JOB: TrainConfigInput = {
  steps: 80, promptsPerStep: 8, groupSize: 8, ppoEpochs: 2, miniBatches: 2, maxNew: 48, evalProblems: 500, evalEvery: 20, checkpointEvery: 20,
};

function uniqueName(runsDir: string, base: string): string {
  let name = base;
  for (let i = 2; fs.existsSync(path.join(runsDir, name)); i++) name = `${base}-${i}`;
  return name;
}

export function registerTrain(program: Command): void {
  program
    .command('report')
    .description('(re)write runs/<name>/report.html from the run folder, e.g. after a kill or while the run goes on')
    .argument('<runDir>', 'a run folder made by sophia train')
    .action(async (runDir: string) => {
      console.log(`report: ${await writeRunReport(runDir)}`);
    });
  program
    .command('train')
    .description('run Trust-GRPO from a YAML/JSON config, or resume a run folder')
    .option('--config <file>', 'YAML or JSON training config (fields: see TrainConfigSchema)')
    .option('--resume <runDir>', 'continue runs/<name> from its last checkpoint')
    .option('--name <name>', 'run name (folder runs/<name>)')
    .option('--steps <n>', 'training steps', intArg('--steps'))
    .option('--seed <n>', 'seed', intArg('--seed'))
    .action(async (o: { config?: string; resume?: string; name?: string; steps?: number; seed?: number }) => {
      const overrides: Record<string, unknown> = {};
      if (o.name) overrides.name = o.name;
      if (o.steps !== undefined) overrides.steps = o.steps;
      if (o.seed !== undefined) overrides.seed = o.seed;
      let summary: RunSummary;
      if (o.resume) {
        if (o.config) throw new SophiaError('E_CONFIG', 'train: --resume takes its config from the run folder; drop --config');
        summary = await runWithProgress((hooks) => TrustGrpoTrainer.resume(o.resume!, hooks));
      } else {
        const config: TrainConfig = o.config ? loadTrainConfig(o.config, overrides) : resolveTrainConfig(overrides);
        console.log(`config:\n${JSON.stringify(redactSecrets(config), null, 2)}`);
        summary = await runWithProgress((hooks) => TrustGrpoTrainer.create(config, hooks));
      }
      printBeforeAfter(summary);
      console.log(`report: ${await writeRunReport(summary.runDir)}`);
    });

  program
    .command('start')
    .description('the main job: Trust-GRPO on the embedded task with the shipped policy and thinking reward model')
    .option('--steps <n>', 'training steps', intArg('--steps'))
    .option('--seed <n>', 'seed', intArg('--seed'))
    .action(async (o: { steps?: number; seed?: number }) => {
      console.log(infoLines().join('\n'));
      const runsDir = 'runs';
      const config = resolveTrainConfig({ ...MAIN_JOB, name: uniqueName(runsDir, 'main'), runsDir, ...(o.steps !== undefined ? { steps: o.steps } : {}), ...(o.seed !== undefined ? { seed: o.seed } : {}) });
      console.log(`\nTrust-GRPO on the embedded task: ${config.steps} steps × ${config.promptsPerStep} prompts × G = ${config.groupSize}; run folder ${path.join(runsDir, config.name)}`);
      const t0 = Date.now();
      const summary = await runWithProgress((hooks) => TrustGrpoTrainer.create(config, hooks), 'trust-grpo');
      console.log(`\ndone in ${((Date.now() - t0) / 60000).toFixed(1)} min`);
      printBeforeAfter(summary);
      console.log(`report: ${await writeRunReport(summary.runDir)}`);
    });

  program
    .command('ablate')
    .description("the paper's Table 3 rows on the embedded task, several seeds each, the same budget")
    .option('--seeds <n>', 'seeds per row', intArg('--seeds'), 3)
    .option('--steps <n>', 'steps per run', intArg('--steps'), 30)
    .option('--name <name>', 'folder runs/<name>', 'ablate')
    .option('--reference', 'also run the reference preset (mode "reference")')
    .action(async (o: { seeds: number; steps: number; name: string; reference?: boolean }) => {
      const out = await runAblation(o);
      console.log(`report: ${out}`);
    });
}

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

export async function runAblation(o: { seeds: number; steps: number; name: string; reference?: boolean }): Promise<string> {
  if (o.seeds < 1) throw new SophiaError('E_CONFIG', `ablate: --seeds must be at least 1, got ${o.seeds}`);
  const runsDir = path.join('runs', o.name);
  const variants = [...ABLATION_VARIANTS, ...(o.reference ? [{ name: 'Trust-GRPO (reference preset)', config: { mode: 'reference' } as TrainConfigInput }] : [])];
  const runs: AblationRun[] = [];
  const t0 = Date.now();
  let finishedBefore = 0;
  for (const [vi, v] of variants.entries()) {
    for (let seed = 0; seed < o.seeds; seed++) {
      const name = `v${vi}-s${seed}`;
      const runDir = path.join(runsDir, name);
      const base = { ...MAIN_JOB, ...v.config, steps: o.steps, seed, name, runsDir, evalEvery: 0, checkpointEvery: 0, evalProblems: ABLATION_EVAL_PROBLEMS };
      if (!quiet()) console.log(`ablate: ${v.name}, seed ${seed}`);
      if (fs.existsSync(path.join(runDir, 'config.json'))) {
        const made = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')) as { steps?: unknown };
        if (made.steps !== o.steps)
          throw new SophiaError('E_CONFIG', `ablate: ${runDir} was started with ${String(made.steps)} steps, not --steps ${o.steps}; use the same --steps to continue it, or another --name`);
        if ((await readMetrics(runDir)).some((m) => m.step === o.steps && m.eval)) finishedBefore++;
        else await runWithProgress((hooks) => TrustGrpoTrainer.resume(runDir, hooks), name);
      } else {
        await runWithProgress((hooks) => TrustGrpoTrainer.create(base, hooks), name);
      }
      const metrics = await readMetrics(runDir);
      runs.push({ variant: v.name, seed, metrics, after: metrics.find((m) => m.step === o.steps)?.eval });
    }
  }
  const ms = (xs: number[]) => {
    const m = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
    return `${m.toFixed(3)} ± ${sd.toFixed(3)}`;
  };
  const header = ['variant', 'held-out accuracy', 'judge score', 'wrong thinking, right answer'];
  const rows = variants.map((v) => {
    const rs = runs.filter((r) => r.variant === v.name && r.after);
    return [v.name, ms(rs.map((r) => r.after!.accuracy)), ms(rs.map((r) => r.after!.judgeScore)), ms(rs.map((r) => r.after!.wrongThinkingRightAnswer))];
  });
  const start = runs[0]?.metrics.find((m) => m.step === 0)?.eval;
  if (start) rows.unshift(['(SFT start)', start.accuracy.toFixed(3), start.judgeScore.toFixed(3), start.wrongThinkingRightAnswer.toFixed(3)]);
  const minutes = (Date.now() - t0) / 60000;
  const w = [34, 18, 18, 18];
  const total = runs.length;
  const took =
    finishedBefore === total ? `all ${total} runs were already finished`
    : finishedBefore ? `${minutes.toFixed(1)} min for the ${total - finishedBefore} runs left (${finishedBefore} of ${total} were already finished)`
    : `${minutes.toFixed(1)} min`;
  console.log(`\nablation: ${o.seeds} seeds × ${o.steps} steps per row, ${took}`);
  console.log(header.map((h, i) => h.padEnd(w[i])).join(' '));
  for (const r of rows) console.log(r.map((c, i) => String(c).padEnd(w[i])).join(' '));
  const cmp = ablationComparisons(runs, variants.map((v) => v.name));
  console.log(`\npaired differences, 95% intervals (bootstrap over ${start?.outcomes?.length ?? '?'} held-out problems and seeds):`);
  const cw = [64, 26, 26, 26];
  console.log(cmp.header.map((h, i) => h.padEnd(cw[i])).join(' '));
  for (const r of cmp.rows) console.log(r.map((c, i) => String(c).padEnd(cw[i])).join(' '));
  const file = path.join(runsDir, 'report.html');
  await writeAblationReport(file, runs, { header, rows }, { seeds: o.seeds, steps: o.steps, base: MAIN_JOB, minutes, runsFinishedBefore: finishedBefore }, { header: cmp.header, rows: cmp.rows });
  fs.writeFileSync(path.join(runsDir, 'ablation.json'), JSON.stringify({ header, rows, comparisons: cmp.json, seeds: o.seeds, steps: o.steps, minutes, runsFinishedBefore: finishedBefore }, null, 2) + '\n');
  return file;
}
