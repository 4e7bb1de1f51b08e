/**
 * The Trust-GRPO trainer on tiny models: a step's rewards, advantages and loss against hand
 * computation, run folders, and kill-and-resume giving the metrics of an uninterrupted run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RewardModel, TINY_MODEL_CONFIG, VisionLanguageModel, saveModel } from '../../lib/model';
import { TrustGrpoTrainer, readMetrics, readSamples, type StepMetrics } from '../../lib/train/trainer';
import { REDACTED, redactSecrets, resolveTrainConfig, learningRate } from '../../lib/train/config';
import { startRmServer } from '../helpers/rm-server';
import { findChromium, renderCharts } from '../helpers/chromium';

let root: string;
let policyDir: string;
let rmDir: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-train-'));
  policyDir = path.join(root, 'policy');
  rmDir = path.join(root, 'rm');
  const p = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 1 });
  await saveModel(p, policyDir);
  p.dispose();
  const r = RewardModel.create({ config: TINY_MODEL_CONFIG, seed: 2 });
  // A reward model that is not constant: random head weights.
  const w = r.getState('params');
  for (const t of r.tensors) if (t.name.startsWith('score.')) for (let i = 0; i < t.size; i++) w[t.offset + i] = Math.sin(i + 1);
  r.setState('params', w);
  await saveModel(r, rmDir);
  r.dispose();
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const base = (name: string, extra: Record<string, unknown> = {}) => ({
  name, runsDir: path.join(root, 'runs'), policy: policyDir, thinking: { source: 'embedded' as const, checkpoint: rmDir },
  steps: 4, promptsPerStep: 3, groupSize: 4, maxNew: 12, trainProblems: 50, evalProblems: 6, evalEvery: 2, checkpointEvery: 2,
  lr: 1e-3, klCoef: 0.04, ...extra,
});

const strip = (m: StepMetrics) => {
  const { time: _t, tokensPerSec: _s, ...rest } = m;
  return rest;
};

test.each(['paper', 'centred'] as const)('a step: rewards, γ, advantages (%s) and the policy loss agree with hand computation', async (advantageMode) => {
  // one epoch, one mini-batch: the whole step is on-policy
  const trainer = await TrustGrpoTrainer.create(base(`hand-${advantageMode}`, { steps: 1, evalEvery: 0, checkpointEvery: 0, advantageMode, ppoEpochs: 1, miniBatches: 1 }));
  await trainer.run();
  trainer.dispose();
  const dir = path.join(root, 'runs', `hand-${advantageMode}`);
  const [m0, m1] = await readMetrics(dir);
  expect(m0.step).toBe(0);
  expect(m0.eval).toBeDefined();
  const samples = await readSamples(dir);
  expect(samples).toHaveLength(12);
  const G = 4, alpha = 0.3, T = 1, step = 1;
  for (let g = 0; g < 3; g++) {
    const grp = samples.slice(g * G, g * G + G);
    const correct = grp.filter((x) => x.outcome >= 0.5).map((x) => x.thinking!);
    const wrong = grp.filter((x) => x.outcome < 0.5).map((x) => x.thinking!);
    const mu = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const gamma = correct.length && wrong.length && mu(correct) < mu(wrong) ? Math.exp(mu(correct) - mu(wrong)) : 1;
    expect(grp[0].gamma).toBeCloseTo(gamma, 5);
    const R = grp.map((x) => x.outcome + gamma * alpha * Math.exp(-step / T) * x.thinking!);
    grp.forEach((x, i) => expect(x.reward).toBeCloseTo(R[i], 5));
    const norm = (v: number[]) => {
      const mean = mu(v);
      const sd = Math.sqrt(v.reduce((a, r) => a + (r - mean) ** 2, 0) / (G - 1));
      return v.map((r) => (r - mean) / (sd + 1e-6));
    };
    const rt = grp.map((x) => x.thinking!);
    const want = advantageMode === 'paper'
      ? norm(R)
      : norm(grp.map((x) => x.outcome)).map((a, i) => a + gamma * alpha * Math.exp(-step / T) * (rt[i] - mu(rt)));
    grp.forEach((x, i) => expect(x.advantage).toBeCloseTo(want[i], 4));
  }
  expect(m1.uniformGroups).toBeCloseTo([0, 1, 2].filter((g) => new Set(samples.slice(g * G, g * G + G).map((x) => x.outcome)).size === 1).length / 3, 10);
  expect(m1.judgeMean).toBeCloseTo(samples.reduce((a, x) => a + x.judge, 0) / samples.length, 10);
  // On-policy first step: ratio 1 and no KL (the reference is the same policy), so the token-mean
  // PPO loss is −Σ A_i·len_i / Σ len_i.
  const num = samples.reduce((a, x) => a + x.advantage * x.tokens, 0);
  const den = samples.reduce((a, x) => a + x.tokens, 0);
  expect(m1.pgLoss).toBeCloseTo(-num / den, 5);
  expect(m1.kl).toBeCloseTo(0, 6);
  expect(m1.clipFrac).toBe(0);
  expect(m1.responseTokens).toBe(den);
  expect(m1.gammas).toHaveLength(3);
  expect(fs.existsSync(path.join(dir, 'checkpoints', 'latest.json'))).toBe(true);
});

test.each([true, false])('freezeVision %s: the decoder moves; the vision tower moves only when not frozen', async (freezeVision) => {
  const name = `freeze-${freezeVision}`;
  const trainer = await TrustGrpoTrainer.create(base(name, { steps: 2, evalEvery: 0, checkpointEvery: 0, freezeVision, klCoef: 0 }));
  await trainer.run();
  trainer.dispose();
  const { loadPolicy } = await import('../../lib/model');
  const latest = JSON.parse(fs.readFileSync(path.join(root, 'runs', name, 'checkpoints', 'latest.json'), 'utf8')) as { dir: string };
  const after = await loadPolicy(path.join(root, 'runs', name, 'checkpoints', latest.dir));
  const before = await loadPolicy(policyDir);
  const a = after.getState('params'), b = before.getState('params');
  const moved = (prefix: (n: string) => boolean) =>
    after.tensors.filter((t) => prefix(t.name)).reduce((m, t) => Math.max(m, ...Array.from(a.subarray(t.offset, t.offset + t.size), (v, i) => Math.abs(v - b[t.offset + i]))), 0);
  expect(moved((n) => !n.startsWith('vis.'))).toBeGreaterThan(1e-5);
  if (freezeVision) expect(moved((n) => n.startsWith('vis.'))).toBe(0);
  else expect(moved((n) => n.startsWith('vis.'))).toBeGreaterThan(1e-5);
  after.dispose();
  before.dispose();
});

test('kill and resume gives the metrics of an uninterrupted run', async () => {
  const whole = await TrustGrpoTrainer.create(base('whole'));
  await whole.run();
  whole.dispose();

  const killed = await TrustGrpoTrainer.create(base('killed'), {
    onStep: (m) => {
      if (m.step === 3) throw new Error('simulated kill after step 3 (checkpoint at 2)');
    },
  });
  await expect(killed.run()).rejects.toThrow(/simulated kill/);
  killed.dispose();
  // the report followed the run to its checkpoint at step 2
  expect(fs.readFileSync(path.join(root, 'runs', 'killed', 'report.html'), 'utf8')).toContain('2 steps');
  // A torn line as a kill mid-write would leave.
  fs.appendFileSync(path.join(root, 'runs', 'killed', 'metrics.jsonl'), '{"step": 4, "outc');
  const resumed = await TrustGrpoTrainer.resume(path.join(root, 'runs', 'killed'));
  await resumed.run();
  resumed.dispose();

  const a = (await readMetrics(path.join(root, 'runs', 'whole'))).map(strip);
  const b = (await readMetrics(path.join(root, 'runs', 'killed'))).map(strip);
  expect(b.map((m) => m.step)).toEqual([0, 1, 2, 3, 4]);
  expect(b).toEqual(a);
  const sa = await readSamples(path.join(root, 'runs', 'whole'));
  const sb = await readSamples(path.join(root, 'runs', 'killed'));
  expect(sb).toEqual(sa);
});

test('killed at random points, with the run folder damaged as a kill can leave it, resume still ends with the uninterrupted metrics', async () => {
  const want = (await readMetrics(path.join(root, 'runs', 'whole'))).map(strip);
  const wantSamples = await readSamples(path.join(root, 'runs', 'whole'));
  let r = 7;
  const rnd = (n: number): number => ((r = (Math.imul(r, 1664525) + 1013904223) >>> 0) % n);
  const phases = ['sampling', 'rewards', 'loss', 'update', 'eval', 'checkpoint'] as const;
  const damages: ((dir: string) => void)[] = [
    (dir) => fs.rmSync(path.join(dir, 'checkpoints', 'latest.json'), { force: true }),
    (dir) => fs.writeFileSync(path.join(dir, 'checkpoints', 'latest.json'), '{"step": 4, "dir": "step-0'),
    (dir) => fs.writeFileSync(path.join(dir, 'checkpoints', 'latest.json'), '{"step": 4, "dir": "step-000004"}'),
    (dir) => fs.mkdirSync(path.join(dir, 'checkpoints', '.step-000004.abcd.tmp'), { recursive: true }),
    (dir) => {
      const newest = fs.readdirSync(path.join(dir, 'checkpoints')).filter((d) => /^step-/.test(d)).sort().pop();
      if (newest) fs.truncateSync(path.join(dir, 'checkpoints', newest, 'model.safetensors'), 1000);
    },
    (dir) => {
      const newest = fs.readdirSync(path.join(dir, 'checkpoints')).filter((d) => /^step-/.test(d)).sort().pop();
      if (newest) fs.rmSync(path.join(dir, 'checkpoints', newest, 'trainer.json'), { force: true });
    },
    (dir) => fs.appendFileSync(path.join(dir, 'metrics.jsonl'), '{"step": 9, "outc'),
  ];
  const warn = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    for (let scenario = 0; scenario < 4; scenario++) {
      const name = `faults-${scenario}`;
      const dir = path.join(root, 'runs', name);
      for (let kills = 0; kills < 3; kills++) {
        const at = { step: 1 + rnd(4), phase: phases[rnd(phases.length)] };
        const hooks = { onPhase: (step: number, phase: string) => { if (step === at.step && phase === at.phase) throw new Error(`kill at ${phase} of step ${step}`); } };
        const trainer = kills === 0 ? await TrustGrpoTrainer.create(base(name), hooks) : await TrustGrpoTrainer.resume(dir, hooks);
        await trainer.run().catch((e: Error) => expect(e.message).toMatch(/kill at/));
        trainer.dispose();
        damages[rnd(damages.length)](dir);
        damages[rnd(damages.length)](dir);
      }
      const last = await TrustGrpoTrainer.resume(dir);
      await last.run();
      last.dispose();
      const got = (await readMetrics(dir)).map(strip);
      expect(got.map((m) => m.step)).toEqual([0, 1, 2, 3, 4]);
      expect(got).toEqual(want);
      expect(await readSamples(dir)).toEqual(wantSamples);
      expect(fs.readdirSync(path.join(dir, 'checkpoints')).some((d) => d.endsWith('.tmp'))).toBe(false);
    }
  } finally {
    warn.mockRestore();
  }
});

test('an existing run is not overwritten; bad configs name the field', async () => {
  await expect(TrustGrpoTrainer.create(base('hand-paper'))).rejects.toMatchObject({ code: 'E_STATE' });
  expect(() => resolveTrainConfig({ groupSize: 1 })).toThrow(/groupSize/);
  expect(() => resolveTrainConfig({ klType: 'k9' })).toThrow(/klType/);
  expect(() => resolveTrainConfig({ bogus: 1 })).toThrow(/bogus|Unrecognized/);
  expect(() => resolveTrainConfig({ thinking: { source: 'http' } })).toThrow(/thinking.url/);
  await expect(TrustGrpoTrainer.resume(path.join(root, 'runs', 'nope'))).rejects.toMatchObject({ code: 'E_IO' });
  // a config that fails on loading (a reward model that is not there) leaves no run folder behind
  await expect(TrustGrpoTrainer.create(base('half', { thinking: { source: 'embedded', checkpoint: path.join(root, 'no-rm') } }))).rejects.toBeInstanceOf(Error);
  expect(fs.existsSync(path.join(root, 'runs', 'half'))).toBe(false);
  await expect(TrustGrpoTrainer.create(base('half', { policy: path.join(root, 'no-policy') }))).rejects.toMatchObject({ code: 'E_CONFIG' });
  expect(fs.existsSync(path.join(root, 'runs', 'half'))).toBe(false);
  expect(learningRate({ lr: 1, schedule: 'cosine', warmupSteps: 2 }, 0, 12)).toBeCloseTo(0.5);
  expect(learningRate({ lr: 1, schedule: 'cosine', warmupSteps: 2 }, 2, 12)).toBeCloseTo(1);
  expect(learningRate({ lr: 1, schedule: 'cosine', warmupSteps: 2 }, 12, 12)).toBeCloseTo(0.1);
});

test('an HTTP reward model that never scores: the run warns on stderr every step, the key is never printed or written', async () => {
  const server = await startRmServer(() => ({ reply: 'Error: upstream overloaded, 1 request dropped' }));
  const secret = 'sk-live-TOPSECRET-1234';
  const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const trainer = await TrustGrpoTrainer.create(base('rm-down', { steps: 2, evalEvery: 0, checkpointEvery: 0, thinking: { source: 'http', url: server.url, model: 'm', apiKey: secret } }));
    await trainer.run();
    trainer.dispose();
    const warnings = err.mock.calls.map((c) => String(c[0])).filter((l) => /all \d+ thinking-reward scores are missing/.test(l));
    expect(warnings).toHaveLength(2);
  } finally {
    err.mockRestore();
    await server.close();
  }
  expect(server.requests.every((r) => r.headers.authorization === `Bearer ${secret}`)).toBe(true);
  const dir = path.join(root, 'runs', 'rm-down');
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  expect(config.thinking.apiKey).toBe(REDACTED);
  const metrics = await readMetrics(dir);
  expect(metrics.filter((m) => m.step > 0).every((m) => m.rmCalls > 0 && m.rmFailures === m.rmCalls)).toBe(true);
  const { writeRunReport } = await import('../../lib/train/report');
  const html = fs.readFileSync(await writeRunReport(dir), 'utf8');
  for (const f of fs.readdirSync(dir)) if (fs.statSync(path.join(dir, f)).isFile()) expect(fs.readFileSync(path.join(dir, f), 'utf8')).not.toContain(secret);
  expect(html).not.toContain(secret);
  expect(html).toMatch(/<svg[^>]*id="rm-failed"/);
});

test('a script can plug in its own thinking reward and outcome reward; bad ones are refused', async () => {
  const seen: string[] = [];
  const thinkingReward = {
    stats: { requested: 0, scored: 0, cacheHits: 0, calls: 0, retries: {}, failed: {} } as never,
    async score(items: { question: string; response: string }[]) {
      seen.push(...items.map((i) => i.response));
      return items.map((i) => (i.response.length % 10) / 10);
    },
  };
  const outcomeReward = ({ response, problem }: { response: string; problem: { answer: string } }) => (response.includes(`<answer>${problem.answer}</answer>`) ? 1 : 0.25);
  const trainer = await TrustGrpoTrainer.create(base('plugged', { steps: 2, evalEvery: 0, checkpointEvery: 0 }), { thinkingReward, outcomeReward });
  await trainer.run();
  trainer.dispose();
  const samples = await readSamples(path.join(root, 'runs', 'plugged'));
  expect(samples.length).toBe(2 * 3 * 4);
  expect(seen.length).toBe(samples.length);
  for (const x of samples) {
    expect(x.thinking).toBeCloseTo((seen[samples.indexOf(x)].length % 10) / 10, 6);
    expect([1, 0.25]).toContain(x.outcome);
  }
  expect(samples.some((x) => x.outcome === 0.25)).toBe(true);
  await expect(TrustGrpoTrainer.create(base('plugged-bad', { steps: 1 }), { outcomeReward: 'x' as never })).rejects.toThrow(/outcomeReward must be a function/);
  await expect(TrustGrpoTrainer.create(base('plugged-bad', { steps: 1 }), { thinkingReward: {} as never })).rejects.toThrow(/thinkingReward must be a ThinkingReward/);
  const out = await TrustGrpoTrainer.create(base('plugged-range', { steps: 1, evalEvery: 0, checkpointEvery: 0 }), { outcomeReward: () => 2 });
  await expect(out.run()).rejects.toThrow(/outcomeReward must return a number in \[0, 1\], got 2/);
  out.dispose();
});

test('a step is four public phases: rollout, rewards, advantages, update', async () => {
  const t = await TrustGrpoTrainer.create(base('phases', { steps: 1, evalEvery: 0, checkpointEvery: 0 }));
  try {
    const r = await t.rollout(1);
    expect(r.problems).toHaveLength(3);
    expect(r.samples).toHaveLength(12);
    expect(r.responses).toHaveLength(12);
    const w = await t.rewards(r);
    expect(w.outcome).toHaveLength(12);
    expect(w.calls).toBe(12);
    const a = t.advantages(r, w);
    expect(a.gamma).toHaveLength(3);
    expect(a.advantages).toHaveLength(12);
    const u = await t.update(r, a);
    expect(u.trainedTokens).toBeGreaterThan(0);
    expect(Number.isFinite(u.pgLoss) && Number.isFinite(u.gradNorm)).toBe(true);
  } finally {
    t.dispose();
  }
});

test('redactSecrets: secret-like keys and URL user-info, at any depth; other values kept', () => {
  const input = { thinking: { apiKey: 'k1', url: 'http://alice:pw@host:8000/v1', model: 'm' }, list: [{ token: 't', password: '', n: 3 }], note: 'https://x.org/a@b' };
  expect(redactSecrets(input)).toEqual({
    thinking: { apiKey: REDACTED, url: 'http://***@host:8000/v1', model: 'm' }, list: [{ token: REDACTED, password: '', n: 3 }], note: 'https://x.org/a@b',
  });
  expect(redactSecrets(input, { urls: false }).thinking.url).toBe('http://alice:pw@host:8000/v1');
  expect(input.thinking.apiKey).toBe('k1'); // a copy
});

test('sophia report rebuilds a run folder\'s report; a folder that is not a run is an E_IO error', async () => {
  const { Command } = await import('commander');
  const { registerTrain } = await import('../../lib/cli/train');
  const dir = path.join(root, 'runs', 'whole');
  fs.rmSync(path.join(dir, 'report.html'), { force: true });
  const program = new Command().exitOverride();
  registerTrain(program);
  const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
  try {
    await program.parseAsync(['report', dir], { from: 'user' });
    await expect(program.parseAsync(['report', path.join(root, 'no-run')], { from: 'user' })).rejects.toMatchObject({ code: 'E_IO' });
  } finally {
    log.mockRestore();
  }
  expect(fs.readFileSync(path.join(dir, 'report.html'), 'utf8')).toContain('held-out accuracy');
});

test('the run report is one self-contained file with every chart', async () => {
  const { writeRunReport } = await import('../../lib/train/report');
  const file = await writeRunReport(path.join(root, 'runs', 'whole'));
  const html = fs.readFileSync(file, 'utf8');
  for (const id of await runCharts()) expect(html).toMatch(new RegExp(`<svg[^>]*id="${id}"`));
  expect(html).not.toMatch(/<script[^>]*src=|https?:\/\/(?!www\.w3\.org)/);
  expect(html).not.toMatch(/NaN|undefined/);
  expect(html).toContain('held-out accuracy');
  // the sample rollouts table: the first rollout of a step, with its rewards
  const first = (await readSamples(path.join(root, 'runs', 'whole')))[0];
  expect(html).toContain('Sample rollouts');
  expect(html).toContain(`<td>${first.question.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')}</td>`);
});

/** The run report's charts; 'rt-judge' only when some group had both Rt and the judge varying. */
async function runCharts(): Promise<string[]> {
  const metrics = await readMetrics(path.join(root, 'runs', 'whole'));
  const corr = metrics.some((m) => Number.isFinite(m.thinkingJudgeCorr));
  return ['outcome', 'thinking', 'gamma', 'weight', 'uniform', 'rm-failed', ...(corr ? ['rt-judge'] : []), 'rm-vs-judge', 'loss', 'kl', 'entropy', 'gradnorm', 'length', 'clip', 'lr', 'adv-std', 'truncated', 'eval', 'time'];
}
const ABLATION_CHARTS = ['abl-outcome', 'abl-thinking', 'abl-gamma', 'abl-final', 'abl-eval-accuracy', 'abl-eval-judge', 'abl-eval-wtra'];

async function ablationReport(): Promise<string> {
  const { writeAblationReport } = await import('../../lib/train/report');
  const metrics = await readMetrics(path.join(root, 'runs', 'whole'));
  const after = [...metrics].reverse().find((m) => m.eval)!.eval!;
  // Two variants × two "seeds" made from the finished run (the second with shifted values).
  const shift = (ms: StepMetrics[], d: number): StepMetrics[] =>
    ms.map((m) => ({ ...m, ...(m.outcomeMean === undefined ? {} : { outcomeMean: m.outcomeMean + d }), eval: m.eval && { ...m.eval, accuracy: m.eval.accuracy + d } }));
  const runs = [
    { variant: 'GRPO', seed: 0, metrics, after },
    { variant: 'GRPO', seed: 1, metrics: shift(metrics, 0.05), after: { ...after, accuracy: after.accuracy + 0.05 } },
    { variant: 'Trust-GRPO', seed: 0, metrics: shift(metrics, 0.1), after: { ...after, accuracy: after.accuracy + 0.1 } },
    { variant: 'Trust-GRPO', seed: 1, metrics: shift(metrics, 0.02), after },
  ];
  const file = path.join(root, 'ablation.html');
  await writeAblationReport(file, runs, { header: ['variant', 'accuracy'], rows: [['GRPO', '0.1 ± 0'], ['Trust-GRPO', '0.2 ± 0']] }, { seeds: 2 });
  return file;
}

test('the ablation report has every chart, self-contained', async () => {
  const html = fs.readFileSync(await ablationReport(), 'utf8');
  for (const id of ABLATION_CHARTS) expect(html).toMatch(new RegExp(`<svg[^>]*id="${id}"`));
  expect(html).not.toMatch(/<script[^>]*src=|https?:\/\/(?!www\.w3\.org)/);
  expect(html).not.toMatch(/NaN|undefined/);
});

// Opens both reports in headless Chromium (about a second) where one is installed; .ci/run installs
// chromium-headless-shell from Debian when it can.
const chromium = findChromium();
if (!chromium.bin) console.log(`trainer.test: Chromium render check skipped: ${chromium.why}`);
(chromium.bin ? describe : describe.skip)('reports render in headless Chromium', () => {
  test.each([
    ['run report', runCharts, async () => (await import('../../lib/train/report')).writeRunReport(path.join(root, 'runs', 'whole'))],
    ['ablation report', async () => ABLATION_CHARTS, ablationReport],
  ])('%s: every chart is laid out and draws its data', async (_name, ids, make) => {
    const charts = renderCharts(chromium.bin!, await make());
    expect(charts.map((c) => c.id).sort()).toEqual([...(await ids())].sort());
    for (const c of charts) {
      const msg = `chart ${c.id}: ${JSON.stringify(c)}`;
      if (!(c.width > 200 && c.height > 100)) throw new Error(`${msg}: not laid out`);
      // axes, grid and at least one data mark with real geometry
      if (!(c.drawn >= 5 && c.lines + c.dots >= 1)) throw new Error(`${msg}: draws too little`);
    }
  });
});

test('ablation comparisons: paired intervals against GRPO and the SFT start', async () => {
  const { ablationComparisons } = await import('../../lib/cli/train');
  const n = 150;
  const ev = (acc: number, judge: number, shift: number) => {
    const outcomes = Array.from({ length: n }, (_, i) => (((i * 7 + shift) % 100) / 100 < acc ? 1 : 0));
    const judges = Array.from({ length: n }, (_, i) => (((i * 13 + shift) % 100) / 100 < judge ? 1 : 0.2));
    return { accuracy: acc, judgeScore: judge, wrongThinkingRightAnswer: 0, formatRate: 1, outcomes, judges };
  };
  const start = { step: 0, eval: ev(0.5, 0.5, 0) } as unknown as StepMetrics;
  const runs = [0, 1, 2].flatMap((seed) => [
    { variant: 'GRPO (no thinking reward)', seed, metrics: [start], after: ev(0.6, 0.4, seed) },
    { variant: 'Trust-GRPO', seed, metrics: [start], after: ev(0.6, 0.7, seed) },
  ]);
  const c = ablationComparisons(runs, ['GRPO (no thinking reward)', 'Trust-GRPO']);
  expect(c.rows.map((r) => r[0])).toEqual(['GRPO (no thinking reward) − SFT start', 'Trust-GRPO − GRPO (no thinking reward)', 'Trust-GRPO − SFT start']);
  const j = c.json as { comparison: string; accuracy: { estimate: number; lo: number; hi: number }; judgeScore: { estimate: number; lo: number; hi: number } }[];
  expect(j[0].accuracy.estimate).toBeCloseTo(0.1, 1);
  expect(j[0].accuracy.lo).toBeGreaterThan(0);
  expect(j[1].accuracy.lo).toBeLessThan(0.01);
  expect(j[1].accuracy.hi).toBeGreaterThan(-0.01);
  expect(j[1].judgeScore.lo).toBeGreaterThan(0.1);
});

test('ablate refuses to continue a run folder made with another --steps', async () => {
  const { runAblation } = await import('../../lib/cli/train');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-ablate-'));
  fs.mkdirSync(path.join(dir, 'runs', 'abl', 'v0-s0'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'runs', 'abl', 'v0-s0', 'config.json'), JSON.stringify({ steps: 5 }));
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    await expect(runAblation({ seeds: 1, steps: 3, name: 'abl' })).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(/started with 5 steps, not --steps 3/) });
  } finally {
    process.chdir(cwd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('formatAblation prints the table and the paired comparisons as sophia ablate does', async () => {
  const { formatAblation } = await import('../../lib/cli/train');
  const text = formatAblation({
    file: 'runs/ablate/report.html', minutes: 30.6, runsFinishedBefore: 0, runs: 18, problems: 1000,
    table: { header: ['variant', 'held-out accuracy', 'judge score', 'wrong thinking, right answer'], rows: [['(SFT start)', '0.511', '0.602', '0.083'], ['GRPO', '0.499 ± 0.022', '0.592 ± 0.015', '0.087 ± 0.006']] },
    comparisons: { header: ['comparison', 'accuracy', 'judge score', 'wrong thinking, right answer'], rows: [['GRPO − SFT start', '-0.012 [-0.043, 0.019]', '-0.010 [-0.031, 0.007]', '+0.004 [-0.012, 0.021]']] },
  }, 3, 20);
  expect(text).toContain('ablation: 3 seeds × 20 steps per row, 30.6 min');
  expect(text).toMatch(/\(SFT start\)\s+0\.511\s+0\.602\s+0\.083/);
  expect(text).toContain('bootstrap over 1000 held-out problems and seeds');
  expect(text).toMatch(/GRPO − SFT start\s+-0\.012 \[-0\.043, 0\.019\]/);
  expect(formatAblation({ file: '', minutes: 0, runsFinishedBefore: 4, runs: 4, problems: 10, table: { header: [], rows: [] }, comparisons: { header: [], rows: [] } }, 2, 5)).toContain('all 4 runs were already finished');
});
