/**
 * `sophia rm train`: the embedded thinking reward model (lib/train/rm.ts) with a progress bar,
 * the resolved config printed first and the held-out agreement table at the end.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { formatRmSummary, resolveRmOptions, runRmTrain, type RmOptions } from '../train/rm';
import { defaultPolicyDir } from '../train/trainer';
import { DEFAULT_SFT_OUT, createProgressReporter, defined, difficultyArg, intArg, positiveArg, readJsonOptions } from './sft';

export const DEFAULT_RM_OUT = 'models/thinking-rm';

/** `--tiny`: a quick run for a tiny policy (sophia sft --tiny). Explicit options still win. */
export const TINY_RM: Partial<RmOptions> = { difficulty: 'easy', problems: 150, samples: 2, steps: 150, lr: 2e-3, eval: 40, evalEvery: 50 };

function initArg(value: string): 'policy' | 'random' {
  if (value !== 'policy' && value !== 'random') throw new InvalidArgumentError(`expected "policy" or "random", got ${JSON.stringify(value)}`);
  return value;
}

function nonNegativeArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected a number >= 0, got ${JSON.stringify(value)}`);
  return n;
}

export function registerRmTrain(program: Command): void {
  const d = resolveRmOptions({ policy: DEFAULT_SFT_OUT, out: DEFAULT_RM_OUT });
  const rm = program.commands.find((c) => c.name() === 'rm') ?? program.command('rm').description('thinking reward model tools');
  rm.command('train')
    .description('train the embedded thinking reward model on judged policy samples, flawed and gold responses (bins balanced), evaluate it on held-out problems and save it')
    .option('--policy <dir>', 'warm-started policy to sample responses from (sophia sft; default: the shipped models/sft-policy, as the other commands)', defaultPolicyDir())
    .option('--out <dir>', 'output folder: checkpoint, rm.json, report.html', DEFAULT_RM_OUT)
    .option('--seed <n>', 'seed of the problems, sampling, balancing and batch order', intArg(0))
    .option('--problems <n>', `training problems (default ${d.problems})`, intArg(1))
    .option('--samples <n>', `policy samples per problem at temperature ${d.temperature} (default ${d.samples})`, intArg(0))
    .option('--flawed <n>', `deliberately flawed responses per problem (default ${d.flawed})`, intArg(0))
    .option('--steps <n>', `optimizer steps (default ${d.steps})`, intArg(1))
    .option('--batch <n>', `items per step (default ${d.batch})`, intArg(1))
    .option('--lr <x>', `peak learning rate (default ${d.lr}; ${d.warmup} warm-up steps, then cosine)`, positiveArg)
    .option('--bin-cap <n>', 'most training items per 0.1 score bin (default: the median bin size)', intArg(1))
    .option('--init <how>', `'policy' (the policy's weights, a fresh score head) or 'random' (default ${d.init})`, initArg)
    .option('--difficulty <d>', `synthetic task: easy or normal (default ${d.difficulty})`, difficultyArg)
    .option('--eval <n>', `held-out problems (default ${d.eval})`, intArg(1))
    .option('--rollouts <paths...>', 'RL run folders or samples.jsonl files whose rollouts join the training set (one problem in five kept out for the late-RL check)')
    .option('--rank-weight <x>', `weight of the within-problem ranking loss (default ${d.rankWeight}; 0 = off)`, nonNegativeArg)
    .option('--config <file>', 'JSON file of runRmTrain options (model, warmup, weightDecay, evalEvery, …); flags override it')
    .option('--tiny', 'a quick run for a tiny policy on the easy task (seconds)')
    .action(async (o: Record<string, unknown>) => {
      const file = typeof o.config === 'string' ? readJsonOptions(o.config, 'rm train') : {};
      const flags = defined({
        policy: o.policy, out: o.out, seed: o.seed, problems: o.problems, samples: o.samples, flawed: o.flawed, steps: o.steps,
        batch: o.batch, lr: o.lr, binCap: o.binCap, init: o.init, difficulty: o.difficulty, eval: o.eval,
        rollouts: o.rollouts, rankWeight: o.rankWeight,
      });
      const merged = { ...(o.tiny ? TINY_RM : {}), ...file, ...flags };
      const config = resolveRmOptions(merged);
      console.log(`sophia rm train: resolved config\n${JSON.stringify(config, null, 2)}`);
      const progress = createProgressReporter({ sample: 'sample+judge', 'eval-before': 'eval (start)', train: 'train', eval: 'eval (end)' });
      let result;
      try {
        result = await runRmTrain({ ...(merged as RmOptions), onProgress: (p) => progress.update(p) });
      } finally {
        progress.stop();
      }
      console.log(`sophia rm train: wrote ${result.out} (checkpoint, rm.json, report.html)\n${formatRmSummary(result)}`);
    });
}
