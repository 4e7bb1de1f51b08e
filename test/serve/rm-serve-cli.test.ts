import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { RewardModel, TINY_MODEL_CONFIG, VisionLanguageModel, rewardModelFromPolicy, saveModel } from '../../lib/model';
import { PNG } from 'pngjs';
import { parseByteSize, registerRmServe, resolveRewardSource } from '../../lib/cli/rm-serve';
import { fillThinkingPrompt } from '../../lib/rewards/prompt';
import { OpenAIThinkingReward, type ThinkingItem, type ThinkingRewardStats } from '../../lib/rewards/thinking';
import { startThinkingRewardServer } from '../../lib/serve/rm-server';
import { startRmServer, userText, type RmServer } from '../helpers/rm-server';

const f = (it: ThinkingItem): number => ((it.question.length * 3 + it.response.length * 7 + (it.image?.length ?? 0)) % 11) / 10;

function png(): Buffer {
  const img = new PNG({ width: 3, height: 2 });
  img.data.fill(77);
  return PNG.sync.write(img);
}

/** Runs `sophia rm serve ARGS` in this process until SIGTERM; resolves with the URL it prints. */
async function startCli(args: string[]): Promise<{ url: string; stop: () => Promise<void>; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = jest.spyOn(console, 'log').mockImplementation((line: string) => void out.push(line));
  const error = jest.spyOn(console, 'error').mockImplementation((line: string) => void err.push(line));
  const program = new Command().exitOverride();
  registerRmServe(program);
  const done = program.parseAsync(['rm', 'serve', '--port', '0', ...args], { from: 'user' });
  let failed: unknown;
  done.catch((e: unknown) => (failed = e));
  while (out.length === 0 && failed === undefined) await new Promise((resolve) => setTimeout(resolve, 5));
  if (failed !== undefined) {
    log.mockRestore();
    error.mockRestore();
    throw failed;
  }
  const url = /on (http:\/\/\S+)\/v1 /.exec(out[0])![1];
  return {
    url, out, err,
    stop: async () => {
      process.emit('SIGTERM');
      await done;
      log.mockRestore();
      error.mockRestore();
    },
  };
}

test('resolveRewardSource: one source; an embedded checkpoint loads as a RewardModel; a missing one is E_IO', async () => {
  await expect(resolveRewardSource({ upstream: 'http://127.0.0.1:1', checkpoint: 'ckpt' })).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(/not both/) });
  await expect(resolveRewardSource({ checkpoint: path.join(os.tmpdir(), 'no-such-rm-checkpoint') })).rejects.toMatchObject({ code: 'E_IO' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-rm-'));
  try {
    const rm = RewardModel.create({ config: TINY_MODEL_CONFIG, seed: 1 });
    await saveModel(rm, dir);
    rm.dispose();
    const embedded = await resolveRewardSource({ checkpoint: dir });
    expect(embedded.reward).toBeInstanceOf(RewardModel);
    const [score] = await embedded.reward.score([{ question: 'how many?', response: 'red 2.', image: png() }]);
    expect(score).toBeGreaterThan(0);
    expect(score).toBeLessThan(1);
    embedded.dispose?.();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  await expect(resolveRewardSource({ upstream: 'ftp://x', upstreamModel: 'm' })).rejects.toMatchObject({ code: 'E_CONFIG' });
  await expect(resolveRewardSource({ upstream: 'http://127.0.0.1:1' })).rejects.toMatchObject({ code: 'E_REMOTE' });
  const source = await resolveRewardSource({ upstream: 'http://127.0.0.1:1/v1', upstreamModel: 'm' });
  expect(source.reward).toBeInstanceOf(OpenAIThinkingReward);
  expect(source.description).toBe('m at http://127.0.0.1:1/v1/chat/completions');
});

test('an embedded model behind the CLI (defaults: 4 in flight) answers 16 concurrent requests with 200, and scores match one call each', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-rm-'));
  try {
    const policy = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 3 });
    const rm = rewardModelFromPolicy(policy, { seed: 3, headStd: 1 });
    policy.dispose();
    await saveModel(rm, dir);
    const items = Array.from({ length: 16 }, (_, i) => ({ question: `how many? ${i}`, response: `red ${i}.`, image: png() }));
    const want = await rm.score(items);
    expect(new Set(want).size).toBeGreaterThan(1);
    rm.dispose();
    fs.writeFileSync(path.join(dir, 'key.txt'), 'file-key-77\n');
    const cli = await startCli(['--checkpoint', dir, '--api-key-file', path.join(dir, 'key.txt')]);
    try {
      expect(cli.out[0]).toMatch(/batch 32, .*bearer key required/);
      expect((await fetch(`${cli.url}/v1/models`)).status).toBe(401);
      const replies = await Promise.all(items.map(async (it) => {
        const res = await fetch(`${cli.url}/v1/chat/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer file-key-77' },
          body: JSON.stringify({ model: 'sophia-thinking-rm', messages: [{ role: 'user', content: [
            { type: 'image_url', image_url: { url: `data:image/png;base64,${it.image.toString('base64')}` } },
            { type: 'text', text: fillThinkingPrompt(it.question, it.response) },
          ] }] }),
        });
        return { status: res.status, body: await res.text() };
      }));
      expect(replies.map((r) => r.status)).toEqual(Array(16).fill(200));
      const got = replies.map((r) => Number(/<answer>([^<]+)<\/answer>/.exec(JSON.parse(r.body).choices[0].message.content)![1]));
      got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 4));
    } finally {
      await cli.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('RewardModel.score called concurrently queues the calls instead of failing with E_BUSY', async () => {
  const policy = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 4 });
  const rm = rewardModelFromPolicy(policy, { seed: 4, headStd: 1 });
  policy.dispose();
  try {
    const items = (i: number): ThinkingItem[] => [{ question: `q${i}`, response: `r${i}`, image: png() }];
    const alone: number[] = [];
    for (let i = 0; i < 6; i++) alone.push((await rm.score(items(i)))[0]);
    expect(new Set(alone).size).toBeGreaterThan(1);
    const together = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => rm.score(items(i))));
    expect(together.map((x) => x[0])).toEqual(alone);
    await expect(rm.scoreTexts([{ question: 'q', reasoning: 'r', image: { width: 2, height: 2, data: new Uint8Array(3) } }])).rejects.toBeTruthy();
    expect((await rm.score(items(0)))[0]).toBe(alone[0]); // a failed call does not block the queue
  } finally {
    rm.dispose();
  }
});

test('parseByteSize reads bytes, binary and decimal units', () => {
  expect(parseByteSize('1048576')).toBe(1 << 20);
  expect(parseByteSize('8MiB')).toBe(8 << 20);
  expect(parseByteSize('8m')).toBe(8 << 20);
  expect(parseByteSize('512 KiB')).toBe(512 << 10);
  expect(parseByteSize('2MB')).toBe(2_000_000);
  expect(parseByteSize('1.5k')).toBe(1536);
  for (const bad of ['', 'lots', '-1', '0', '8 parsecs']) expect(() => parseByteSize(bad)).toThrow(/expected a size/);
});

describe('sophia rm serve --upstream', () => {
  let upstream: RmServer;
  beforeEach(async () => {
    upstream = await startRmServer((req) => {
      const m = /Reasoning process: score=([0-9.]+)/.exec(userText(req.body));
      return { reply: m ? `<answer>${m[1]}</answer>` : 'no idea' };
    }, ['upstream-rm']);
  });
  afterEach(() => upstream.close());

  test('forwards the very request the client would have sent upstream, and never forwards its own key', async () => {
    const cli = await startCli(['--upstream', upstream.url, '--api-key', 'sk-proxy-SECRET', '--model-name', 'proxy-rm', '--verbose']);
    try {
      expect(cli.out[0]).toMatch(/^sophia rm serve: upstream-rm at http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions as "proxy-rm" on http:\/\/127\.0\.0\.1:\d+\/v1 .*bearer key required/);
      const image = png();
      const items: ThinkingItem[] = [
        { question: 'Which shape?', response: 'score=0.7 it is round', image },
        { question: '<image>Count them.', response: 'score=0.2 three', image },
        { question: 'No picture.', response: 'score=1 fine' },
      ];
      const rm = new OpenAIThinkingReward({ baseUrl: cli.url, model: 'proxy-rm', apiKey: 'sk-proxy-SECRET', maxRetries: 0 });
      expect(await rm.score(items)).toEqual([0.7, 0.2, 1]);
      const direct = new OpenAIThinkingReward({ baseUrl: upstream.url, model: 'upstream-rm', apiKey: '', maxRetries: 0, cacheSize: 0 });
      await direct.score(items);
      const [viaProxy, sentDirect] = [upstream.requests.slice(0, 3), upstream.requests.slice(3)];
      const byText = (reqs: typeof viaProxy) => reqs.map((r) => r.body).sort((a, b) => userText(a).localeCompare(userText(b)));
      expect(byText(viaProxy)).toEqual(byText(sentDirect));
      expect(userText(viaProxy.find((r) => userText(r.body).includes('round'))!.body)).toBe(fillThinkingPrompt('<image> Which shape?', 'score=0.7 it is round'));
      for (const r of viaProxy) expect(r.headers.authorization).toBeUndefined();

      const denied = new OpenAIThinkingReward({ baseUrl: cli.url, model: 'proxy-rm', apiKey: 'wrong', maxRetries: 0 });
      expect(await denied.score([{ question: 'q', response: 'score=0.5' }])).toEqual([NaN]);
      expect(cli.err.filter((l) => / POST \/v1\/chat\/completions 200 \d+ ms score=/.test(l))).toHaveLength(3);
      expect(cli.err.some((l) => / POST \/v1\/chat\/completions 401 /.test(l))).toBe(true);
      expect(cli.err.join('\n')).not.toContain('SECRET');
    } finally {
      await cli.stop();
    }
    expect(cli.err.some((l) => /SIGTERM: finishing/.test(l))).toBe(true);
    expect(cli.err.at(-1)).toMatch(/stopped after 4 request\(s\), 3 scored, 1 answered with an error/);
    await expect(fetch(`${cli.url}/v1/models`)).rejects.toThrow();
  });

  test('the key comes from SOPHIA_RM_API_KEY too; an unusable upstream score is an error, not a score', async () => {
    const before = process.env.SOPHIA_RM_API_KEY;
    process.env.SOPHIA_RM_API_KEY = 'sk-env-key';
    let cli;
    try {
      cli = await startCli(['--upstream', upstream.url, '--upstream-model', 'upstream-rm']);
    } finally {
      if (before === undefined) delete process.env.SOPHIA_RM_API_KEY;
      else process.env.SOPHIA_RM_API_KEY = before;
    }
    try {
      const res = await fetch(`${cli.url}/v1/models`);
      expect(res.status).toBe(401);
      const models = (await (await fetch(`${cli.url}/v1/models`, { headers: { authorization: 'Bearer sk-env-key' } })).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id)).toEqual(['sophia-thinking-rm']);
      const rm = new OpenAIThinkingReward({ baseUrl: cli.url, model: 'sophia-thinking-rm', apiKey: 'sk-env-key', maxRetries: 0 });
      expect(await rm.score([{ question: 'q', response: 'no score here' }, { question: 'q', response: 'score=0.4' }])).toEqual([NaN, 0.4]);
      expect(rm.stats.failed.http_5xx).toBe(1);
    } finally {
      await cli.stop();
    }
  });
});

test('the CLI refuses a checkpoint that is not there, and an upstream that is itself', async () => {
  const program = new Command().exitOverride();
  registerRmServe(program);
  await expect(program.parseAsync(['rm', 'serve', '--port', '0', '--checkpoint', 'no-such-ckpt'], { from: 'user' })).rejects.toMatchObject({ code: 'E_IO' });
  await expect(program.parseAsync(['rm', 'serve', '--port', '8123', '--upstream', 'http://localhost:8123/v1'], { from: 'user' })).rejects.toMatchObject({
    code: 'E_CONFIG', message: expect.stringMatching(/is this server/),
  });
});

test('a server wrapping a fake reward and the CLI proxy in front of it give the same scores', async () => {
  const fake = { stats: {} as ThinkingRewardStats, score: async (items: ThinkingItem[]) => items.map(f) };
  const inner = await startThinkingRewardServer(fake, { port: 0, modelName: 'inner' });
  const cli = await startCli(['--upstream', inner.url, '--concurrency', '2', '--queue', '8', '--max-body', '1MiB', '--timeout-ms', '5000']);
  try {
    const image = png();
    const items: ThinkingItem[] = [
      { question: 'Shape?', response: 'round', image },
      { question: '<image>Shape?', response: 'round', image },
      { question: 'Plain', response: 'text only' },
    ];
    const viaProxy = await new OpenAIThinkingReward({ baseUrl: cli.url, model: 'sophia-thinking-rm', apiKey: '', maxRetries: 0 }).score(items);
    const direct = await new OpenAIThinkingReward({ baseUrl: inner.url, model: 'inner', apiKey: '', maxRetries: 0 }).score(items);
    expect(viaProxy).toEqual(items.map(f));
    expect(direct).toEqual(viaProxy);
  } finally {
    await cli.stop();
    await inner.close();
  }
});
