import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { PNG } from 'pngjs';
import { formatScoreSummary, registerScore, runScore } from '../lib/cli/score';
import { startRmServer, userText, type RecordedRequest, type RmServer } from './helpers/rm-server';

let dir: string;
let rm: RmServer;
beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-score-'));
  const img = new PNG({ width: 3, height: 2 });
  img.data.fill(90);
  fs.writeFileSync(path.join(dir, 'img.png'), PNG.sync.write(img));
  // the fake reward model reads its answer from the reasoning: "score=0.7"; "case=garbage" gets an unusable reply
  rm = await startRmServer((req: RecordedRequest) => {
    const text = userText(req.body);
    if (text.includes('case=garbage')) return { reply: 'I would rather not say.' };
    const m = /score=([0-9.]+)/.exec(text);
    return { reply: m ? `<answer>${m[1]}</answer>` : 'none' };
  });
});
afterEach(async () => {
  await rm.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const think = (t: string, a: string): string => `<think>${t}</think><answer>${a}</answer>`;
// [line, Ro worked out by hand, Rt the fake RM gives (NaN: no usable reply)]
const ROLLOUTS: [Record<string, unknown>, number, number][] = [
  [{ prompt: 'Half of one?', response: think('score=0.2 halve it', '0.5'), answer: '<answer>\\frac{1}{2}</answer>', problem_type: 'numerical' }, 1, 0.2],
  [{ prompt: 'Half of one?', response: think('score=0.9 guess', '3'), answer: '<answer>\\frac{1}{2}</answer>', problem_type: 'numerical' }, 0, 0.9],
  [{ prompt: 'Half of one?', response: think('score=0.6 divide', '$\\frac{1}{2}$'), answer: '<answer>\\frac{1}{2}</answer>', problem_type: 'numerical' }, 1, 0.6],
  [{ prompt: 'Half of one?', response: 'no format score=0.8 so 1/2', answer: '<answer>\\frac{1}{2}</answer>', problem_type: 'numerical' }, 0, 0.8],
  [{ prompt: 'Which are red?', response: think('score=0.5 look', 'C, A'), answer: 'A, C', problem_type: 'multiple choice', image: 'img.png' }, 1, 0.5],
  [{ prompt: 'Which are red?', response: think('score=0.7 look', 'A,C'), answer: 'A, C', problem_type: 'multiple choice', image: 'img.png' }, 1, 0.7],
  [{ prompt: 'Which are red?', response: think('score=0.1 look', 'B'), answer: 'A, C', problem_type: 'multiple choice', image: 'img.png' }, 0, 0.1],
  [{ prompt: 'Which are red?', response: think('case=garbage', 'AC'), answer: 'A, C', problem_type: 'multiple choice', image: 'img.png' }, 1, NaN],
  [{ prompt: 'Describe.', response: think('score=0.3 hmm', 'the cats ran'), answer: 'the cat is running', problem_type: 'free-form' }, 18 / 35, 0.3],
  [{ prompt: 'Describe.', response: think('score=0.4 hmm', 'the cat is running'), answer: 'the cat is running', problem_type: 'free-form' }, 1, 0.4],
  [{ prompt: 'Describe.', response: think('score=0.2 hmm', 'dogs bark'), answer: 'the cat is running', problem_type: 'free-form' }, 0, 0.2],
  [{ prompt: 'Describe.', response: think('score=0.9 hmm', ''), answer: 'the cat is running', problem_type: 'free-form' }, 0, 0.9],
];
const G = 4;

function writeRollouts(rows: Record<string, unknown>[]): string {
  const file = path.join(dir, 'rollouts.jsonl');
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return file;
}
const readOut = (file: string): Record<string, any>[] => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

/** Trust-GRPO in float64 from method.md §1: γ per group, R = Ro + γ·α·exp(−step/T)·Rt, group-normalised A. */
function oracle(ro: number[], rt: number[], step: number, T: number, alpha = 0.3) {
  const R: number[] = [], A: number[] = [], gamma: number[] = [];
  for (let g = 0; g < ro.length / G; g++) {
    const idx = [0, 1, 2, 3].map((k) => g * G + k);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const mc = mean(idx.filter((i) => ro[i] >= 0.5 && !Number.isNaN(rt[i])).map((i) => rt[i]));
    const mw = mean(idx.filter((i) => ro[i] < 0.5 && !Number.isNaN(rt[i])).map((i) => rt[i]));
    const gm = mc >= mw || Number.isNaN(mc) || Number.isNaN(mw) ? 1 : Math.exp(mc - mw);
    gamma.push(gm);
    const r = idx.map((i) => ro[i] + (Number.isNaN(rt[i]) ? 0 : gm * alpha * Math.exp(-step / T) * rt[i]));
    const m = mean(r);
    const sd = Math.sqrt(r.reduce((a, x) => a + (x - m) ** 2, 0) / (G - 1));
    R.push(...r);
    A.push(...r.map((x) => (x - m) / (sd + 1e-6)));
  }
  return { R, A, gamma };
}

test('sophia score end to end (paper mode) through the CLI against a local RM server', async () => {
  const data = writeRollouts(ROLLOUTS.map(([line]) => line));
  const out = path.join(dir, 'scored.jsonl');
  const printed: string[] = [];
  const log = jest.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void printed.push(args.join(' ')));
  try {
    const program = new Command().exitOverride();
    registerScore(program);
    await program.parseAsync(['score', '--data', data, '--rm-url', `${rm.url}/v1`, '--group-size', '4', '--step', '10', '--total-steps', '100', '--out', out, '--no-progress', '--max-retries', '1'], { from: 'user' });
  } finally {
    log.mockRestore();
  }
  const rows = readOut(out);
  expect(rows).toHaveLength(12);
  const ro = ROLLOUTS.map(([, r]) => r);
  const rt = ROLLOUTS.map(([, , t]) => t);
  const want = oracle(ro, rt, 10, 100);
  rows.forEach((row, i) => {
    expect(row.prompt).toBe(ROLLOUTS[i][0].prompt); // input fields are kept
    expect(row.outcome_reward).toBeCloseTo(ro[i], 6);
    if (Number.isNaN(rt[i])) expect(row.thinking_reward).toBeNull();
    else expect(row.thinking_reward).toBeCloseTo(rt[i], 6);
    expect(row.thinking_requested).toBe(true);
    expect(row.gamma).toBeCloseTo(want.gamma[Math.floor(i / G)], 5);
    expect(row.reward).toBeCloseTo(want.R[i], 5);
    expect(row.advantage).toBeCloseTo(want.A[i], 4);
  });
  expect(want.gamma[0]).toBeLessThan(1); // the case the trust weight exists for
  // the model name came from /v1/models; paper mode sends the <think> content; one request per rollout, garbage not retried
  expect(rm.requests).toHaveLength(12);
  expect(rm.requests.every((r) => r.body.model === 'fake-rm')).toBe(true);
  const first = rm.requests.find((r) => userText(r.body).includes('halve it'))!;
  expect(userText(first.body)).toContain('Reasoning process: score=0.2 halve it\n');
  const withImage = rm.requests.filter((r) => Array.isArray(r.body.messages[1].content));
  expect(withImage).toHaveLength(4);
  expect(withImage[0].body.messages[1].content[0].image_url.url).toMatch(/^data:image\/png;base64,/);
  const text = printed.join('\n');
  expect(text).toContain(`wrote ${out}`);
  expect(text).toMatch(/mean Ro\s+0\.543/); // (1+0+1+0 + 1+1+0+1 + 18/35+1+0+0) / 12 = 6.514/12
  expect(text).toMatch(/mean Rt\s+0\.509 \(11 of 12 requested scores received\)/); // 5.6 / 11
  expect(text).toMatch(/RM calls\s+12 made, 0 retried/);
  expect(text).toMatch(/RM failed\s+unparseable 1/);
  expect(text).toMatch(/groups with γ < 1\s+2 of 3/);
  expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
});

/** The reference code's rules (method.md §2), in float64. */
function referenceOracle(ro: number[], rt: number[], step: number, T = 500, alpha = 0.3) {
  const R: number[] = [];
  const asked: boolean[] = [];
  for (let g = 0; g < ro.length / G; g++) {
    const idx = [0, 1, 2, 3].map((k) => g * G + k);
    const skip = idx.every((i) => ro[i] >= 0.9) || idx.every((i) => ro[i] <= 0.1);
    const t = idx.map((i) => (!skip && ro[i] >= 0.2 ? rt[i] : 0));
    idx.forEach((i) => asked.push(!skip && ro[i] >= 0.2));
    const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
    const C = idx.map((i, k) => [ro[i], t[k]]).filter(([o]) => o >= 0.5).map(([, x]) => x);
    const W = idx.map((i, k) => [ro[i], t[k]]).filter(([o]) => o < 0.5).map(([, x]) => x);
    let w = skip ? 0 : alpha * Math.exp(-step / T);
    if (C.length > 0 && mean(C) < mean(W)) w *= Math.exp(mean(C) - mean(W));
    R.push(...idx.map((i, k) => ro[i] + w * t[k]));
  }
  return { R, asked };
}

test('sophia score in reference mode asks only for the thinking scores that mode needs', async () => {
  const lines = ROLLOUTS.filter(([, , t]) => !Number.isNaN(t)).slice(0, 4).concat(ROLLOUTS.slice(8, 12));
  // a group where every answer is right: the reference code never calls the reward model for it
  const allRight = [0, 1, 2, 3].map((k): [Record<string, unknown>, number, number] => [{ prompt: 'Two?', response: think(`score=0.${k + 1} $2$`, '2'), answer: '2', problem_type: 'numerical' }, 1, (k + 1) / 10]);
  const all = [...lines, ...allRight];
  const data = writeRollouts(all.map(([l]) => l));
  const out = path.join(dir, 'ref.jsonl');
  const summary = await runScore({ data, out, rmUrl: rm.url, rmModel: 'judge', groupSize: G, step: 3, mode: 'reference', progress: true });
  const want = referenceOracle(all.map(([, r]) => r), all.map(([, , t]) => t), 3);
  const rows = readOut(out);
  expect(rows.map((r) => r.thinking_requested)).toEqual(want.asked);
  expect(rm.requests).toHaveLength(want.asked.filter(Boolean).length);
  expect(want.asked.filter(Boolean)).toHaveLength(4); // 2 in the first group, 2 in the free-form one, none in the last
  expect(summary).toMatchObject({ lines: 12, groups: 3, mode: 'reference', thinkingRequested: 4, thinkingScored: 4, rmCalls: 4, rmFailed: {} });
  rows.forEach((row, i) => {
    expect(row.reward).toBeCloseTo(want.R[i], 5);
    if (!want.asked[i]) expect(row.thinking_reward).toBeNull();
  });
  // the reference code's RM sees the whole response without $ signs
  expect(rm.requests.map((r) => userText(r.body))).toContainEqual(expect.stringContaining('Reasoning process: <think>score=0.6 divide</think><answer>\\frac{1}{2}</answer>\n'));
  expect(rm.requests.every((r) => r.body.model === 'judge')).toBe(true);
  expect(formatScoreSummary(summary)).toMatch(/γ min\/p25\/median\/p75\/max\s+/);
});

test('input errors are caught before any reward-model call, and leave no output behind', async () => {
  const out = path.join(dir, 'x.jsonl');
  const base = { rmUrl: rm.url, rmModel: 'm', groupSize: G, step: 1, totalSteps: 10, out, progress: false };
  const five = writeRollouts(ROLLOUTS.slice(0, 5).map(([l]) => l));
  await expect(runScore({ ...base, data: five })).rejects.toThrow(/has 5 rollout lines; expected a positive multiple of the group size 4/);
  await expect(runScore({ ...base, data: five, totalSteps: undefined })).rejects.toMatchObject({ code: 'E_CONFIG' });
  const escaping = writeRollouts(ROLLOUTS.slice(4, 8).map(([l]) => ({ ...l, image: '../../etc/hostname' })));
  await expect(runScore({ ...base, data: escaping })).rejects.toMatchObject({ code: 'E_IO', message: expect.stringMatching(/rollouts\.jsonl rollout 1: path "\.\.\/\.\.\/etc\/hostname" escapes the image base directory/) });
  const badType = writeRollouts(ROLLOUTS.slice(0, 4).map(([l], i) => (i === 2 ? { ...l, response: 5 } : l)));
  await expect(runScore({ ...base, data: badType })).rejects.toThrow(/rollout 3: response must be a string, got 5/);
  const unknownType = writeRollouts(ROLLOUTS.slice(0, 4).map(([l], i) => (i === 1 ? { ...l, problem_type: 'chess' } : l)));
  await expect(runScore({ ...base, data: unknownType })).rejects.toThrow(/rollout 2: outcomeReward: problemType "chess" is unknown/);
  expect(rm.requests).toHaveLength(0);
  expect(fs.existsSync(out)).toBe(false);
  expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
});

test('the example in examples/score scores as its README says', async () => {
  const out = path.join(dir, 'example.jsonl');
  const example = path.resolve(__dirname, '../examples/score/rollouts.jsonl');
  const summary = await runScore({ data: example, out, rmUrl: rm.url, groupSize: 4, step: 10, totalSteps: 1500, progress: false });
  // hand-graded: 1/2 = 0.5, 3/4 wrong, $0.5$ right, no <think> fails the gate; {A,C} right, {A,C,D} wrong, C,A right, A wrong
  expect(readOut(out).map((r) => r.outcome_reward)).toEqual([1, 0, 1, 0, 1, 0, 1, 0]);
  expect(summary.thinkingRequested).toBe(8);
  expect(rm.requests.filter((r) => Array.isArray(r.body.messages[1].content))).toHaveLength(4); // square.png went with group 1
});

test('no score back at all: the CLI says so on stderr and exits non-zero; some missing: a warning', async () => {
  const run = async (rows: Record<string, unknown>[]): Promise<{ err: string; code: typeof process.exitCode }> => {
    const data = writeRollouts(rows);
    const errs: string[] = [];
    const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
    const error = jest.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void errs.push(args.join(' ')));
    const saved = process.exitCode;
    try {
      const program = new Command().exitOverride();
      registerScore(program);
      await program.parseAsync(['score', '--data', data, '--rm-url', rm.url, '--rm-model', 'm', '--group-size', '4', '--step', '0', '--total-steps', '10', '--out', path.join(dir, 'o.jsonl'), '--no-progress', '--max-retries', '0'], { from: 'user' });
      return { err: errs.join('\n'), code: process.exitCode };
    } finally {
      process.exitCode = saved;
      log.mockRestore();
      error.mockRestore();
    }
  };
  const garbage = ROLLOUTS.slice(0, 4).map(([line]) => ({ ...line, response: think('case=garbage', '1') }));
  const none = await run(garbage);
  expect(none.code).toBe(1);
  expect(none.err).toMatch(/error: none of the 4 thinking scores .* came back \(unparseable 4\)/);
  const some = await run(ROLLOUTS.slice(4, 8).map(([line]) => line));
  expect(some.code).not.toBe(1);
  expect(some.err).toMatch(/warning: 1 of 4 thinking scores are missing \(unparseable 1\)/);
});

test("--advantage-mode centred gives the trainer's centred advantages: norm(Ro) + w·(Rt − mean Rt) per group; a bad mode is refused", async () => {
  const data = writeRollouts(ROLLOUTS.map(([line]) => line));
  const out = path.join(dir, 'centred.jsonl');
  const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
  try {
    const program = new Command().exitOverride();
    registerScore(program);
    await program.parseAsync(['score', '--data', data, '--rm-url', rm.url, '--rm-model', 'm', '--group-size', '4', '--step', '10', '--total-steps', '100', '--out', out, '--no-progress', '--max-retries', '0', '--advantage-mode', 'centred'], { from: 'user' });
  } finally {
    log.mockRestore();
  }
  const rows = readOut(out);
  const ro = ROLLOUTS.map(([, r]) => r);
  const rt = ROLLOUTS.map(([, , t]) => t);
  const { gamma } = oracle(ro, rt, 10, 100);
  for (let g = 0; g < 3; g++) {
    const idx = [0, 1, 2, 3].map((k) => g * G + k);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const mo = mean(idx.map((i) => ro[i]));
    const sd = Math.sqrt(idx.reduce((a, i) => a + (ro[i] - mo) ** 2, 0) / (G - 1));
    const mt = mean(idx.filter((i) => !Number.isNaN(rt[i])).map((i) => rt[i]));
    const w = gamma[g] * 0.3 * Math.exp(-10 / 100);
    for (const i of idx) {
      const want = (ro[i] - mo) / (sd + 1e-6) + (Number.isNaN(rt[i]) ? 0 : w * (rt[i] - mt));
      expect(rows[i].advantage).toBeCloseTo(want, 4);
    }
  }
  await expect(runScore({ data, out: path.join(dir, 'x.jsonl'), rmUrl: rm.url, rmModel: 'm', groupSize: 4, step: 0, totalSteps: 10, advantageMode: 'sideways' as never })).rejects.toThrow(/advantageMode must be one of paper, centred, skip-uniform, got "sideways"/);
});
