/**
 * `sophia eval`: whether a policy reads its image and how it reasons, on held-out problems of the
 * embedded task (greedy): accuracy with its own, a swapped and a blank image, the text-only
 * baseline, judge score and "wrong thinking, right answer", per question kind, with paired
 * bootstrap intervals.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { loadPolicy, writeFileAtomic } from '../model/checkpoint';
import { packageRoot } from '../native';
import { pairedBootstrap, type Interval } from '../stats';
import { EVAL_SEED, evaluateSeeing, evalSummary, generateProblems, type SeeingResult } from '../task';
import { defined, difficultyArg, intArg } from './sft';

export interface EvalCliOptions {
  policy: string;
  problems: number;
  seed: number;
  trainProblems: number;
  trainSeed: number;
  difficulty: 'easy' | 'normal';
  maxNew: number;
  blank: boolean;
}

export interface PolicyEvaluation {
  policy: string;
  options: EvalCliOptions;
  seeing: SeeingResult;
  /** own − swapped accuracy, paired over problems. */
  seeingGapCi: Interval;
  /** own − text-only baseline accuracy, paired over problems. */
  overTextOnlyCi: Interval;
  seconds: number;
}

const f3 = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const ci = (i: Interval): string => `${f3(i.estimate)} [${f3(i.lo)}, ${f3(i.hi)}]`;

export async function runEval(o: EvalCliOptions, onProgress?: (done: number, total: number) => void): Promise<PolicyEvaluation> {
  const started = performance.now();
  const model = await loadPolicy(o.policy);
  try {
    const problems = generateProblems({ seed: o.seed, count: o.problems, split: 'test', difficulty: o.difficulty });
    const train = generateProblems({ seed: o.trainSeed, count: o.trainProblems, split: 'train', difficulty: o.difficulty });
    const seeing = await evaluateSeeing(model, problems, { trainProblems: train, maxNew: o.maxNew, blank: o.blank, onProgress });
    const base = problems.map((p) => (seeing.textOnlyAnswerFor(p) === p.answer ? 1 : 0));
    return {
      policy: o.policy,
      options: o,
      seeing,
      seeingGapCi: pairedBootstrap(seeing.own.outcomes, seeing.swapped.outcomes),
      overTextOnlyCi: pairedBootstrap(seeing.own.outcomes, base),
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    model.dispose();
  }
}

export function formatEval(r: PolicyEvaluation): string {
  const s = r.seeing;
  const rows: [string, string][] = [
    ['policy', r.policy],
    ['held-out problems', `${s.own.n} (test split, seed ${r.options.seed}, ${r.options.difficulty}, greedy)`],
    ['accuracy, own image', f3(s.own.accuracy)],
    ['accuracy, swapped image', f3(s.swapped.accuracy)],
    ...(s.blank ? [['accuracy, blank image', f3(s.blank.accuracy)] as [string, string]] : []),
    ['text-only baseline', `${f3(s.textOnly)} (most common training answer per question, ${r.options.trainProblems} training problems)`],
    ['seeing gap (own − swapped)', `${ci(r.seeingGapCi)} (paired bootstrap, 95%)`],
    ['own − text-only baseline', `${ci(r.overTextOnlyCi)}`],
    ['judge score', f3(s.own.judgeScore)],
    ['wrong thinking, right answer', f3(s.own.wrongThinkingRightAnswer)],
    ['format rate', f3(s.own.formatRate)],
    ['time', `${r.seconds.toFixed(1)} s`],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  const lines = rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`);
  const kinds = Object.entries(s.byKind).sort(([a], [b]) => (a < b ? -1 : 1));
  const kw = Math.max(4, ...kinds.map(([k]) => k.length));
  lines.push('', `  ${'kind'.padEnd(kw)}  ${'n'.padStart(5)}  ${'own'.padStart(6)}  ${'swapped'.padStart(7)}  ${'text-only'.padStart(9)}`);
  for (const [k, v] of kinds) lines.push(`  ${k.padEnd(kw)}  ${String(v.n).padStart(5)}  ${f3(v.own).padStart(6)}  ${f3(v.swapped).padStart(7)}  ${f3(v.textOnly).padStart(9)}`);
  return lines.join('\n');
}

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
