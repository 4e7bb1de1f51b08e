/**
 * `sophia train` (a Trust-GRPO run from a config, or --resume), `sophia start` (the main job on
 * the embedded defaults), `sophia ablate` (lib/train/ablation.ts) and `sophia report`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { intArg } from './args';
import { SingleBar } from 'cli-progress';
import { SophiaError } from '../errors';
import { infoLines } from './info';
import { loadTrainConfig, redactSecrets, resolveTrainConfig, type TrainConfig } from '../train/config';
import { TrustGrpoTrainer, type RunSummary, type StepMetrics } from '../train/trainer';
import { beforeAfterRows, writeRunReport } from '../train/report';
import { MAIN_JOB, runAblation, type AblationResult } from '../train/ablation';

export { MAIN_JOB, ABLATION_VARIANTS, ABLATION_EVAL_PROBLEMS, ablationComparisons, runAblation } from '../train/ablation';


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
    .option('--steps <n>', 'training steps', intArg(0))
    .option('--seed <n>', 'seed', intArg(0))
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
    .option('--steps <n>', 'training steps', intArg(0))
    .option('--seed <n>', 'seed', intArg(0))
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
    .option('--seeds <n>', 'seeds per row', intArg(0), 3)
    .option('--steps <n>', 'steps per run', intArg(0), 30)
    .option('--name <name>', 'folder runs/<name>', 'ablate')
    .option('--reference', 'also run the reference preset (mode "reference")')
    .action(async (o: { seeds: number; steps: number; name: string; reference?: boolean }) => {
      const r = await runAblation({ ...o, runOne: runWithProgress, log: (line) => quiet() || console.log(line) });
      console.log(formatAblation(r, o.seeds, o.steps));
      console.log(`report: ${r.file}`);
    });
}

/** The ablation's closing tables, as `sophia ablate` prints them. */
export function formatAblation(r: AblationResult, seeds: number, steps: number): string {
  const done = r.runsFinishedBefore;
  const took =
    done === r.runs ? `all ${r.runs} runs were already finished`
    : done ? `${r.minutes.toFixed(1)} min for the ${r.runs - done} runs left (${done} of ${r.runs} were already finished)`
    : `${r.minutes.toFixed(1)} min`;
  const w = [34, 18, 18, 18];
  const cw = [64, 26, 26, 26];
  const lines = [`\nablation: ${seeds} seeds × ${steps} steps per row, ${took}`, r.table.header.map((h, i) => h.padEnd(w[i])).join(' ')];
  for (const row of r.table.rows) lines.push(row.map((c, i) => String(c).padEnd(w[i])).join(' '));
  lines.push(`\npaired differences, 95% intervals (bootstrap over ${r.problems ?? '?'} held-out problems and seeds):`);
  lines.push(r.comparisons.header.map((h, i) => h.padEnd(cw[i])).join(' '));
  for (const row of r.comparisons.rows) lines.push(row.map((c, i) => String(c).padEnd(cw[i])).join(' '));
  return lines.join('\n');
}
