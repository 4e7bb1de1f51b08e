/** report.html of a run (and of an ablation): the per-step charts, built from the run folder. */
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { writeReport, type Chart, type LineSeries, type Report, type ReportSection } from '../report';
import { readMetrics, readSamples, type EvalMetricKey, type EvalMetrics, type SampleRecord, type StepMetrics } from './trainer';
import { redactSecrets } from './config';
import { mean, stdDev } from '../stats';

const fmt = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(3));

function line(id: string, title: string, yLabel: string, series: LineSeries[], extra: Partial<Extract<Chart, { kind: 'line' }>> = {}): Chart {
  return { kind: 'line', id, title, xLabel: 'step', yLabel, series, ...extra };
}

export function beforeAfterRows(before?: EvalMetrics, after?: EvalMetrics): (string | number)[][] {
  const row = (name: string, k: EvalMetricKey | 'swappedAccuracy') => {
    const b = before?.[k], a = after?.[k];
    return [name, fmt(b), fmt(a), b !== undefined && a !== undefined ? (a - b >= 0 ? '+' : '') + (a - b).toFixed(3) : '—'];
  };
  return [
    row('held-out accuracy', 'accuracy'),
    row('judge score of the reasoning', 'judgeScore'),
    row('wrong thinking, correct answer (rate)', 'wrongThinkingRightAnswer'),
    row('format rate', 'formatRate'),
    ...(before?.swappedAccuracy !== undefined || after?.swappedAccuracy !== undefined ? [row('accuracy with swapped images (seeing check)', 'swappedAccuracy')] : []),
  ];
}

/** Builds and writes runDir/report.html; returns its path. */
export async function writeRunReport(runDir: string): Promise<string> {
  const metrics = (await readMetrics(runDir)).filter((m) => m.step > 0 || m.eval);
  const steps = metrics.filter((m) => m.step > 0 && m.outcomeMean !== undefined);
  const samples = await readSamples(runDir);
  const config = redactSecrets(JSON.parse(await fsp.readFile(path.join(runDir, 'config.json'), 'utf8')) as Record<string, unknown>);
  const x = steps.map((m) => m.step);
  const evals = metrics.filter((m) => m.eval);
  const before = metrics.find((m) => m.step === 0)?.eval;
  const after = evals.length > 1 ? evals[evals.length - 1].eval : undefined;
  const sampled = samples.filter((s) => s.thinking !== null);
  const stride = Math.max(1, Math.floor(sampled.length / 3000));
  const sections: ReportSection[] = [
    {
      title: 'Before and after',
      tables: [{ caption: 'Held-out problems, greedy decoding', header: ['metric', 'start', 'end', 'change'], rows: beforeAfterRows(before, after) }],
    },
    {
      title: 'Rewards',
      text: 'The mean outcome reward per step is the curve of the paper\'s Figure 5.',
      charts: [
        line('outcome', 'Mean outcome reward per step', 'outcome reward', [{ name: 'outcome', x, y: steps.map((m) => m.outcomeMean) }], { smooth: 5 }),
        line('thinking', 'Mean thinking reward and judge score of the rollouts per step', 'score', [
          { name: 'thinking reward', x, y: steps.map((m) => m.thinkingMean) },
          { name: 'judge score', x, y: steps.map((m) => m.judgeMean ?? NaN) },
        ], { smooth: 5 }),
        { kind: 'quantiles', id: 'gamma', title: 'Trust weight γ of the groups, per step', xLabel: 'step', yLabel: 'γ', x, samples: steps.map((m) => m.gammas ?? []) },
        line('weight', 'Thinking-reward weight: α·exp(−step/T) and γ·α·exp(−step/T) as applied', 'weight', [
          { name: 'α·exp(−step/T)', x, y: steps.map((m) => (config.alpha as number) * m.anneal) },
          { name: 'applied (mean over groups)', x, y: steps.map((m) => m.thinkingWeight) },
        ]),
        line('uniform', 'Groups whose outcomes are all equal, and their share of |advantage|', 'share', [
          { name: 'all-same-outcome groups', x, y: steps.map((m) => m.uniformGroups ?? NaN) },
          { name: 'their share of |advantage|', x, y: steps.map((m) => m.uniformAdvShare ?? NaN) },
        ], { yRange: [0, 1], smooth: 5 }),
        // Only when the thinking reward was asked for at all.
        ...(steps.some((m) => m.rmCalls > 0)
          ? [line('rm-failed', 'Share of thinking-reward scores missing (failed calls), per step', 'share', [
            { name: 'missing', x, y: steps.map((m) => (m.rmCalls > 0 ? m.rmFailures / m.rmCalls : NaN)) },
          ], { yRange: [0, 1] })]
          : []),
        // Only where some group had both Rt and the judge varying (else there is nothing to draw).
        ...(steps.some((m) => Number.isFinite(m.thinkingJudgeCorr))
          ? [line('rt-judge', 'Within-group correlation of the thinking reward with the judge', 'Pearson r', [
            { name: 'mean over groups', x, y: steps.map((m) => m.thinkingJudgeCorr ?? NaN) },
          ], { smooth: 5 })]
          : []),
        {
          kind: 'scatter', id: 'rm-vs-judge', title: 'Thinking reward against the judge\'s score (every rollout)', xLabel: 'judge score', yLabel: 'thinking reward',
          points: sampled.filter((_s, i) => i % stride === 0).map((s) => ({ x: s.judge, y: s.thinking as number, group: s.outcome >= 0.5 ? 'right answer' : 'wrong answer' })), diagonal: true,
        },
      ],
    },
    {
      title: 'Optimisation',
      charts: [
        line('loss', 'Policy-gradient loss', 'loss', [{ name: 'pg loss', x, y: steps.map((m) => m.pgLoss) }], { smooth: 5 }),
        line('kl', 'KL to the reference policy', 'KL', [{ name: 'KL', x, y: steps.map((m) => m.kl) }]),
        line('entropy', 'Entropy of the policy', 'nats', [{ name: 'entropy', x, y: steps.map((m) => m.entropy) }]),
        line('gradnorm', 'Gradient norm (before clipping)', 'norm', [{ name: 'grad norm', x, y: steps.map((m) => m.gradNorm) }]),
        line('length', 'Mean response length', 'tokens', [{ name: 'length', x, y: steps.map((m) => m.meanResponseLength) }]),
        line('clip', 'Share of tokens whose ratio was clipped (PPO)', 'share', [{ name: 'clip fraction', x, y: steps.map((m) => m.clipFrac) }]),
        line('lr', 'Learning rate', 'lr', [{ name: 'lr', x, y: steps.map((m) => m.lr) }]),
        line('adv-std', 'Standard deviation of the advantages', 'std', [{ name: 'advantage std', x, y: steps.map((m) => m.advStd) }]),
        line('truncated', 'Share of responses cut off at maxNew (no EOS)', 'share', [{ name: 'truncated', x, y: steps.map((m) => m.truncated ?? NaN) }], { yRange: [0, 1] }),
      ],
    },
    {
      title: 'Sample rollouts',
      text: 'The first response of the first group, every few steps: what the policy writes and what each reward made of it.',
      tables: [{
        header: ['step', 'question', 'response', 'outcome', 'thinking reward', 'judge', 'advantage'],
        rows: sampleRows(samples),
      }],
    },
    {
      title: 'Held-out evaluation',
      charts: [
        line('eval', 'Held-out metrics', 'rate', [
          { name: 'accuracy', x: evals.map((m) => m.step), y: evals.map((m) => m.eval!.accuracy) },
          { name: 'judge score', x: evals.map((m) => m.step), y: evals.map((m) => m.eval!.judgeScore) },
          { name: 'wrong thinking, correct answer', x: evals.map((m) => m.step), y: evals.map((m) => m.eval!.wrongThinkingRightAnswer) },
        ], { yRange: [0, 1] }),
      ],
    },
    {
      title: 'Speed',
      charts: [
        line('time', 'Seconds per step by phase', 'seconds', (['sampling', 'rewards', 'loss', 'update'] as const).map((k) => ({ name: k, x, y: steps.map((m) => m.time[k]) }))),
      ],
    },
  ];
  const file = path.join(runDir, 'report.html');
  const report: Report = { title: `Trust-GRPO run ${path.basename(runDir)}`, subtitle: `${steps.length} steps`, sections, config };
  await writeReport(file, report);
  return file;
}

/** Up to 12 rollouts spread over the run: the first sample of each chosen step. */
function sampleRows(samples: SampleRecord[]): (string | number)[][] {
  const steps = [...new Set(samples.map((s) => s.step))];
  const every = Math.max(1, Math.ceil(steps.length / 12));
  const chosen = new Set(steps.filter((_, i) => i % every === 0));
  const rows: (string | number)[][] = [];
  for (const s of samples) {
    if (!chosen.has(s.step)) continue;
    chosen.delete(s.step);
    rows.push([s.step, s.question, s.response, s.outcome, s.thinking ?? 'missing', s.judge, s.advantage]);
  }
  return rows;
}

/** Mean and sample standard deviation of each group (NaN for an empty group; sd 0 for one value). */
function meanSd(groups: number[][]): { mean: number[]; sd: number[] } {
  return { mean: groups.map((xs) => mean(xs)), sd: groups.map((xs) => stdDev(xs, 'sample')) };
}

export interface AblationRun {
  variant: string;
  seed: number;
  metrics: StepMetrics[];
  after?: EvalMetrics;
}

/** The ablation report: curves of every variant overlaid (mean ± std over seeds) and the table. */
export async function writeAblationReport(file: string, runs: AblationRun[], table: { header: string[]; rows: (string | number)[][] }, config: unknown, comparisons?: { header: string[]; rows: (string | number)[][] }): Promise<void> {
  const variants = [...new Set(runs.map((r) => r.variant))];
  // One curve per variant (mean ± std over its seeds) at the steps `at` picks; a variant keeps its
  // colour in every chart, also where another variant has no curve.
  const curves = (at: (m: StepMetrics) => boolean, value: (m: StepMetrics) => number | null | undefined): LineSeries[] =>
    variants.map((v, styleIndex) => {
      const rs = runs.filter((r) => r.variant === v);
      const steps = rs[0].metrics.filter(at).map((m) => m.step);
      const vals = steps.map((s) => rs.map((r) => {
        const m = r.metrics.find((q) => q.step === s);
        return (m ? value(m) : undefined) ?? NaN;
      }));
      const { mean, sd } = meanSd(vals);
      return { name: v, styleIndex, x: steps, y: mean, band: { lo: mean.map((m, i) => m - sd[i]), hi: mean.map((m, i) => m + sd[i]) } };
    });
  const curve = (key: 'outcomeMean' | 'thinkingMean' | 'gammaMean') => curves((m) => m.step > 0 && m[key] !== undefined, (m) => m[key]);
  // Held-out metrics at every evaluation step (step 0 is the shared SFT start).
  const evalCurve = (key: EvalMetricKey) => curves((m) => m.eval !== undefined, (m) => m.eval?.[key]);
  const finals = (key: EvalMetricKey) => meanSd(variants.map((v) => runs.filter((r) => r.variant === v && r.after).map((r) => r.after![key])));
  const heldOut: (EvalMetricKey)[] = ['accuracy', 'judgeScore', 'wrongThinkingRightAnswer'];
  const bars = variants.map((v, i) => ({
    name: v,
    values: heldOut.map((k) => finals(k).mean[i]),
    err: heldOut.map((k) => finals(k).sd[i]),
  }));
  await writeReport(file, {
    title: 'Trust-GRPO ablation (the paper\'s Table 3 on the embedded task)',
    sections: [
      {
        title: 'Results',
        tables: [
          { caption: 'Held-out, mean ± std over seeds', ...table },
          ...(comparisons ? [{ caption: 'Differences with paired 95% intervals (bootstrap over the shared held-out problems and over seeds)', ...comparisons }] : []),
        ],
      },
      {
        title: 'Curves (mean ± std over seeds)',
        charts: [
          { kind: 'line', id: 'abl-outcome', title: 'Mean outcome reward per step', xLabel: 'step', yLabel: 'outcome reward', series: curve('outcomeMean'), smooth: 5 },
          { kind: 'line', id: 'abl-thinking', title: 'Mean thinking reward per step', xLabel: 'step', yLabel: 'thinking reward', series: curve('thinkingMean').filter((s) => s.y.some((v) => !Number.isNaN(v))) },
          { kind: 'line', id: 'abl-gamma', title: 'Mean γ per step', xLabel: 'step', yLabel: 'γ', series: curve('gammaMean') },
        ],
      },
      {
        title: 'Held-out evaluation (mean ± std over seeds)',
        charts: [
          { kind: 'bar', id: 'abl-final', title: 'After training', xLabel: 'metric', yLabel: 'value', categories: ['accuracy', 'judge score', 'wrong thinking, right answer'], series: bars },
          { kind: 'line', id: 'abl-eval-accuracy', title: 'Held-out accuracy', xLabel: 'step', yLabel: 'accuracy', series: evalCurve('accuracy') },
          { kind: 'line', id: 'abl-eval-judge', title: "Judge's score of the reasoning", xLabel: 'step', yLabel: 'judge score', series: evalCurve('judgeScore') },
          { kind: 'line', id: 'abl-eval-wtra', title: 'Wrong thinking, right answer (rate)', xLabel: 'step', yLabel: 'rate', series: evalCurve('wrongThinkingRightAnswer') },
        ],
      },
    ],
    config,
  });
}
