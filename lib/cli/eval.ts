/** `sophia eval`: the CLI of runEval (lib/train/evaluate.ts). */
import * as path from 'node:path';
import type { Command } from 'commander';
import { writeFileAtomic } from '../model/checkpoint';
import { packageRoot } from '../native';
import { formatEval, runEval, type EvalCliOptions } from '../train/evaluate';
import { EVAL_SEED, evalSummary } from '../task';
import { defined, difficultyArg, intArg } from './sft';

export { runEval, formatEval, type EvalCliOptions, type PolicyEvaluation } from '../train/evaluate';

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('held-out evaluation of a policy: accuracy with its own, a swapped and a blank image, the text-only baseline, judge score, per question kind')
    .option('--policy <dir>', 'policy checkpoint folder (default: the shipped models/sft-policy)')
    .option('--problems <n>', 'held-out problems (default 1000)', intArg(2))
    .option('--seed <n>', `seed of the held-out problems (default ${EVAL_SEED}, the trainer's)`, intArg(0))
    .option('--train-problems <n>', 'training problems for the text-only baseline (default 4000)', intArg(0))
    .option('--difficulty <d>', 'synthetic task: easy or normal (default normal)', difficultyArg)
    .option('--max-new <n>', 'new tokens per response at most (default 96)', intArg(1))
    .option('--no-blank', 'skip the blank-image pass')
    .option('--json <file>', 'also write the full result (per-problem outcomes included) as JSON')
    .action(async (o: Record<string, unknown>) => {
      const opts: EvalCliOptions = {
        policy: path.join(packageRoot(), 'models', 'sft-policy'),
        problems: 1000,
        seed: EVAL_SEED,
        trainProblems: 4000,
        trainSeed: 0,
        difficulty: 'normal',
        maxNew: 96,
        blank: true,
        ...defined({ policy: o.policy, problems: o.problems, seed: o.seed, trainProblems: o.trainProblems, difficulty: o.difficulty, maxNew: o.maxNew, blank: o.blank }),
      } as EvalCliOptions;
      const passes = opts.blank ? 3 : 2;
      const r = await runEval(opts, (done) => {
        if (process.env.SOPHIA_QUIET !== '1') process.stderr.write(`sophia eval: pass ${done}/${passes} done\n`);
      });
      console.log(`sophia eval\n${formatEval(r)}`);
      if (typeof o.json === 'string') {
        const { seeing, ...rest } = r;
        const out = { ...rest, summary: { own: evalSummary(seeing.own), swapped: evalSummary(seeing.swapped), blank: seeing.blank ? evalSummary(seeing.blank) : null, textOnly: seeing.textOnly, seeingGap: seeing.seeingGap, byKind: seeing.byKind }, perProblem: { own: seeing.own.outcomes, swapped: seeing.swapped.outcomes, judge: seeing.own.judges } };
        await writeFileAtomic(o.json, JSON.stringify(out, null, 2) + '\n');
        console.log(`  wrote ${o.json}`);
      }
    });
}
