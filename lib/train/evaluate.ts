/**
 * `sophia eval`: whether a policy reads its image and how it reasons, on held-out problems of the
 * embedded task (greedy): accuracy with its own, a swapped and a blank image, the text-only
 * baseline, judge score and "wrong thinking, right answer", per question kind, with paired
 * bootstrap intervals.
 */
import { loadPolicy } from '../model/checkpoint';
import { pairedBootstrap, type Interval } from '../stats';
import { EVAL_SEED, evaluateSeeing, evalSummary, generateProblems, type SeeingResult } from '../task';

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
