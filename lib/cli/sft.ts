/**
 * `sophia sft`: the warm start of the embedded policy (lib/train/sft.ts) with a progress bar, the
 * resolved config printed first and a before/after table at the end. Also the progress reporter
 * and option parsers that `sophia rm train` shares.
 */
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import { SophiaError, describe } from '../errors';
import { TINY_MODEL_CONFIG } from '../model';
import { formatSftSummary, resolveSftOptions, runSft, type SftOptions } from '../train/sft';
import { difficultyArg, fractionArg, intArg, positiveArg } from './args';

export { difficultyArg, fractionArg, intArg, positiveArg } from './args';

export const DEFAULT_SFT_OUT = 'models/sft-policy';
/** `sophia sft` trains this many steps unless --steps, --epochs or the config file say otherwise (the shipped policy's). */
export const DEFAULT_SFT_STEPS = 1500;

const quiet = (): boolean => process.env.SOPHIA_QUIET === '1';

export interface PhaseProgress {
  phase: string;
  done: number;
  total: number;
  loss?: number;
  lr?: number;
  mae?: number;
}

/**
 * Shows phases of work: a bar per phase (ETA, loss) on a terminal, else plain lines at every
 * tenth of a phase and at its end (also under SOPHIA_QUIET=1).
 */
export function createProgressReporter(labels: Record<string, string>): { update(p: PhaseProgress): void; stop(): void } {
  const tty = Boolean(process.stdout.isTTY) && Boolean(process.stderr.isTTY) && !quiet();
  let bar: SingleBar | null = null;
  let phase = '';
  let lastTenth = -1;
  const extra = (p: PhaseProgress): string =>
    [p.loss !== undefined ? `loss ${p.loss.toFixed(4)}` : '', p.lr !== undefined ? `lr ${p.lr.toExponential(2)}` : '', p.mae !== undefined && Number.isFinite(p.mae) ? `held-out MAE ${p.mae.toFixed(3)}` : '']
      .filter(Boolean).join(' | ');
  return {
    update(p: PhaseProgress): void {
      const label = labels[p.phase] ?? p.phase;
      if (p.phase !== phase) {
        bar?.stop();
        bar = null;
        phase = p.phase;
        lastTenth = -1;
        if (tty) {
          bar = new SingleBar({ format: `${label.padEnd(12)} |{bar}| {value}/{total} | ETA {eta_formatted} | {extra}`, stream: process.stderr, hideCursor: true, etaBuffer: 20 }, undefined);
          bar.start(p.total, 0, { extra: '' });
        }
      }
      if (bar) {
        bar.setTotal(p.total);
        bar.update(p.done, { extra: extra(p) });
        return;
      }
      const tenth = Math.floor((10 * p.done) / Math.max(1, p.total));
      if (tenth > lastTenth || p.done === p.total) {
        lastTenth = tenth;
        const e = extra(p);
        console.log(`${label} ${p.done}/${p.total}${e ? ` | ${e}` : ''}`);
      }
    },
    stop(): void {
      bar?.stop();
      bar = null;
    },
  };
}

/** Reads a JSON options file (an object); `what` names the command in errors. */
export function readJsonOptions(file: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new SophiaError('E_IO', `${what}: cannot read --config ${file}: ${(err as Error).message}`, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new SophiaError('E_CONFIG', `${what}: --config ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new SophiaError('E_CONFIG', `${what}: --config ${file} must hold a JSON object of options, got ${describe(data)}`);
  return data as Record<string, unknown>;
}

/** Drops undefined fields so they do not override file or default values. */
export function defined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/** `--tiny`: the CI-sized model on the easy task, a run of seconds. Explicit options still win. */
export const TINY_SFT: Partial<SftOptions> = { model: { ...TINY_MODEL_CONFIG }, difficulty: 'easy', problems: 400, steps: 120, lr: 3e-3, eval: 32 };

export function registerSft(program: Command): void {
  const d = resolveSftOptions({ out: DEFAULT_SFT_OUT });
  program
    .command('sft')
    .description('warm-start the embedded policy on gold and flawed reasoning (teacher forcing), evaluate it and save the checkpoint')
    .option('--out <dir>', 'output folder: checkpoint, sft.json, report.html', DEFAULT_SFT_OUT)
    .option('--seed <n>', 'seed of the weights, problems, response mix and batch order', intArg(0))
    .option('--problems <n>', `training problems (default ${d.problems})`, intArg(1))
    .option('--epochs <n>', 'passes over the training problems (instead of --steps)', intArg(1))
    .option('--steps <n>', `optimizer steps (default ${DEFAULT_SFT_STEPS}; overrides --epochs)`, intArg(1))
    .option('--batch <n>', `sequences per step (default ${d.batch})`, intArg(1))
    .option('--lr <x>', `peak learning rate (default ${d.lr}; ${d.warmup} warm-up steps, then cosine)`, positiveArg)
    .option('--flawed-fraction <x>', `share of flawed training responses (default ${d.flawedFraction})`, fractionArg)
    .option('--difficulty <d>', `synthetic task: easy or normal (default ${d.difficulty})`, difficultyArg)
    .option('--census <x>', `share of images that also get a census sequence per epoch (default ${d.census})`, fractionArg)
    .option('--grid <x>', `share of images that also get a grid sequence per epoch (default ${d.grid})`, fractionArg)
    .option('--vision-share <x>', `share of the steps, first, on census and grid sequences only (default ${d.visionShare.toFixed(3)})`, fractionArg)
    .option('--eval <n>', `held-out problems for the greedy evaluation (default ${d.eval}; 0 = none)`, intArg(0))
    .option('--config <file>', 'JSON file of runSft options (model, warmup, weightDecay, flawedKinds, …); flags override it')
    .option('--tiny', 'the tiny CI model on the easy task, 120 steps (seconds)')
    .action(async (o: Record<string, unknown>) => {
      const file = typeof o.config === 'string' ? readJsonOptions(o.config, 'sft') : {};
      const flags = defined({
        out: o.out, seed: o.seed, problems: o.problems, epochs: o.epochs, steps: o.steps, batch: o.batch, lr: o.lr,
        flawedFraction: o.flawedFraction, difficulty: o.difficulty, eval: o.eval, census: o.census, grid: o.grid, visionShare: o.visionShare,
      });
      const given = { ...(o.tiny ? TINY_SFT : {}), ...file, ...flags };
      const merged = given.steps === undefined && given.epochs === undefined ? { steps: DEFAULT_SFT_STEPS, ...given } : given;
      const config = resolveSftOptions(merged);
      console.log(`sophia sft: resolved config\n${JSON.stringify(config, null, 2)}`);
      const progress = createProgressReporter({ 'eval-before': 'eval (start)', train: 'train', eval: 'eval (end)' });
      let result;
      try {
        result = await runSft({ ...(merged as SftOptions), onProgress: (p) => progress.update(p) });
      } finally {
        progress.stop();
      }
      console.log(`sophia sft: wrote ${result.out} (checkpoint, sft.json, report.html)\n${formatSftSummary(result)}`);
    });
}
