import { PNG } from 'pngjs';
import * as jpeg from 'jpeg-js';
import { OpenAIThinkingReward, chatCompletionsUrl, listModels, type ThinkingItem } from '../../lib/rewards/thinking';
import { fillThinkingPrompt } from '../../lib/rewards/prompt';
import { SophiaError } from '../../lib/errors';
import { startRmServer, userText, type Behaviour, type RecordedRequest, type RmServer } from '../helpers/rm-server';

const KEY = 'sk-test-SECRET-4242';
let servers: RmServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});
async function server(script: (req: RecordedRequest, index: number) => Behaviour): Promise<RmServer> {
  const s = await startRmServer(script);
  servers.push(s);
  return s;
}

/** The fake RM's answer is written in the reasoning ("score=0.7"), so every item maps to a known score. */
const scoreFromText = (req: RecordedRequest): Behaviour => {
  const m = /score=([0-9.]+)/.exec(userText(req.body));
  return { reply: m ? `<answer>${m[1]}</answer>` : 'I cannot judge this.' };
};

const fast = { timeoutMs: 300, backoffMs: 5, maxBackoffMs: 20 };

test('sends the published prompt at temperature 0 and maps replies to scores', async () => {
  const s = await server(scoreFromText);
  const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'fake-rm', apiKey: KEY, ...fast });
  const items: ThinkingItem[] = [
    { question: 'What is 2+2?', response: 'score=0.7 because 2+2=4' },
    { question: 'Name the colour.', response: 'score=0.2' },
  ];
  expect(await rm.score(items)).toEqual([0.7, 0.2]);
  expect(s.requests).toHaveLength(2);
  const req = s.requests.find((r) => userText(r.body).includes('2+2'))!;
  expect(req.headers.authorization).toBe(`Bearer ${KEY}`);
  expect(req.body.model).toBe('fake-rm');
  expect(req.body.temperature).toBe(0);
  expect(req.body.messages[0]).toEqual({ role: 'system', content: 'You are a helpful assistant.' });
  expect(req.body.messages[1]).toEqual({ role: 'user', content: fillThinkingPrompt('What is 2+2?', 'score=0.7 because 2+2=4') });
  expect(rm.stats).toMatchObject({ requested: 2, scored: 2, calls: 2, cacheHits: 0 });
});

test('accepts a base URL, a /v1 URL or the full chat-completions URL', async () => {
  const s = await server(() => ({ reply: '<answer>0.5</answer>' }));
  for (const baseUrl of [s.url, `${s.url}/`, `${s.url}/v1`, `${s.url}/v1/chat/completions`]) {
    const rm = new OpenAIThinkingReward({ baseUrl, model: 'm', ...fast });
    expect(await rm.score([{ question: 'q', response: baseUrl }])).toEqual([0.5]);
  }
  expect(s.requests.map((r) => r.path)).toEqual(Array(4).fill('/v1/chat/completions'));
  expect(chatCompletionsUrl('https://rm.example/api/v1')).toBe('https://rm.example/api/v1/chat/completions');
  expect(() => chatCompletionsUrl('ftp://x')).toThrow(expect.objectContaining({ code: 'E_CONFIG' }));
  expect(() => chatCompletionsUrl('not a url')).toThrow(/baseUrl must be an http\(s\) URL/);
});

function solidPng(width: number, height: number): Buffer {
  const png = new PNG({ width, height });
  png.data.fill(200);
  return PNG.sync.write(png);
}

test('sends the image as a base64 PNG data URL and prefixes <image> once', async () => {
  const s = await server(() => ({ reply: '<answer>0.9</answer>' }));
  const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast });
  const png = solidPng(4, 3);
  const jpg = Buffer.from(jpeg.encode({ width: 5, height: 2, data: Buffer.alloc(5 * 2 * 4, 128) }, 90).data);
  await rm.score([
    { question: 'Which shape?', response: 'a', image: png },
    { question: '<image> Which colour?', response: 'b', image: jpg },
  ]);
  const [a, b] = ['a', 'b'].map((r) => s.requests.find((q) => userText(q.body).includes(`Reasoning process: ${r}\n`))!);
  const parts = a.body.messages[1].content;
  expect(parts[0]).toEqual({ type: 'image_url', image_url: { url: `data:image/png;base64,${png.toString('base64')}` } });
  expect(parts[1].text).toBe(fillThinkingPrompt('<image> Which shape?', 'a'));
  expect(userText(b.body)).toContain('Question: <image> Which colour?\n');
  const sent = Buffer.from(b.body.messages[1].content[0].image_url.url.replace('data:image/png;base64,', ''), 'base64');
  const decoded = PNG.sync.read(sent); // the JPEG went out as a PNG of the same size
  expect([decoded.width, decoded.height]).toEqual([5, 2]);
  await expect(rm.score([{ question: 'q', response: 'r', image: Buffer.from('GIF89a....') }])).rejects.toMatchObject({ code: 'E_IO' });
  await expect(rm.score([{ question: 'q', response: 7 as unknown as string }])).rejects.toThrow(/items\[0\]\.response must be a string, got 7/);
});

describe('every fault ends in a retry or a counted NaN, never a hang, a crash or a 0', () => {
  test('a reply past the timeout is retried', async () => {
    const s = await server((req, i) => (i === 0 ? { reply: '<answer>0.1</answer>', delayMs: 1000 } : { reply: '<answer>0.6</answer>' }));
    const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast });
    expect(await rm.score([{ question: 'q', response: 'r' }])).toEqual([0.6]);
    expect(rm.stats.retries.timeout).toBe(1);
    expect(rm.stats.calls).toBe(2);
  });

  test('429 with Retry-After waits that long, then succeeds', async () => {
    const s = await server((req, i) => (i === 0 ? { status: 429, headers: { 'retry-after': '1' } } : { reply: '<answer>0.3</answer>' }));
    const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast });
    expect(await rm.score([{ question: 'q', response: 'r' }])).toEqual([0.3]);
    expect(s.requests[1].at - s.requests[0].at).toBeGreaterThanOrEqual(950);
    expect(rm.stats.retries.http_429).toBe(1);
  });

  test('a Retry-After past maxRetryAfterMs gives up at once', async () => {
    const s = await server(() => ({ status: 429, headers: { 'retry-after': '3600' } }));
    const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast, maxRetryAfterMs: 5000 });
    const t0 = Date.now();
    expect(await rm.score([{ question: 'q', response: 'r' }])).toEqual([NaN]);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(rm.stats.failed.http_429).toBe(1);
    expect(s.requests).toHaveLength(1);
  });

  test('500 is retried with backoff', async () => {
    const s = await server((req, i) => (i < 2 ? { status: 500 } : { reply: '<answer>0.8</answer>' }));
    const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast });
    expect(await rm.score([{ question: 'q', response: 'r' }])).toEqual([0.8]);
    expect(rm.stats.retries.http_5xx).toBe(2);
  });

  test.each<[string, string, Behaviour, number]>([
    ['malformed JSON', 'bad_json', { malformed: true }, 3],
    ['JSON without choices', 'bad_response', { status: 200, body: '{"id": "x"}' }, 3],
    ['a connection reset', 'network', { reset: true }, 3],
    ['a reply that never comes', 'timeout', { hang: true }, 3],
    ['a slow trickle', 'timeout', { trickle: '<answer>0.5</answer>', intervalMs: 40 }, 3],
    ['persistent 503', 'http_5xx', { status: 503 }, 3],
    ['401 (not retried)', 'http_4xx', { status: 401 }, 1],
    ['unparseable content (not retried)', 'unparseable', { reply: 'The reasoning is fine.' }, 1],
    ['an error text with a 1 in it', 'unparseable', { reply: 'Error: upstream overloaded, 1 request dropped' }, 1],
    ['a step count where a score belongs', 'unparseable', { reply: '**Total Wrong Steps**: 0' }, 1],
    ['<answer>-5</answer>', 'out_of_range', { reply: '<answer>-5</answer>' }, 1],
    ['a bare 7', 'out_of_range', { reply: '7' }, 1],
    ['a 302 redirect on the POST (not followed)', 'http_3xx', { status: 302, headers: { location: '/elsewhere' } }, 1],
  ])('%s → NaN counted as %s', async (_name, reason, behaviour, calls) => {
    const s = await server(() => behaviour);
    const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast, maxRetries: 2 });
    const t0 = Date.now();
    const scores = await rm.score([{ question: 'q', response: 'r' }]);
    expect(scores).toHaveLength(1);
    expect(Number.isNaN(scores[0])).toBe(true);
    expect(rm.stats.failed[reason as keyof typeof rm.stats.failed]).toBe(1);
    expect(rm.stats.scored).toBe(0);
    expect(s.requests).toHaveLength(calls);
    expect(Date.now() - t0).toBeLessThan(4000); // 3 tries of 300 ms and short backoffs: bounded, not hung
  });

  test("scoreFormat 'reference' reads replies as the reference code does (extractor chain, clamped); a bad scoreFormat is refused", async () => {
    const replies = ['Error: upstream overloaded, 1 request dropped', '<answer>7</answer>', '<answer>-5</answer>', 'The score is 0.6.'];
    const s = await server((req) => ({ reply: replies[Number(/case=(\d)/.exec(userText(req.body))![1])] }));
    const items = replies.map((_, i) => ({ question: 'q', response: `case=${i}` }));
    const reference = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast, scoreFormat: 'reference' });
    expect(await reference.score(items)).toEqual([1, 1, 0, 0.6]);
    const strict = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast });
    expect((await strict.score(items)).every(Number.isNaN)).toBe(true);
    expect(strict.stats.failed).toMatchObject({ unparseable: 2, out_of_range: 2 });
    expect(() => new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', scoreFormat: 'loose' as never })).toThrow(/scoreFormat must be 'strict' or 'reference', got "loose"/);
  });

  test('a server that is gone → NaN counted as network', async () => {
    const s = await server(() => ({ reply: '<answer>1</answer>' }));
    await s.close();
    const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast, maxRetries: 1 });
    const scores = await rm.score([{ question: 'q', response: 'r' }]);
    expect(Number.isNaN(scores[0])).toBe(true);
    expect(rm.stats.failed.network).toBe(1);
  });

  test('a reply body over maxResponseBytes is cut off', async () => {
    const s = await server(() => ({ reply: `<answer>0.5</answer>${'x'.repeat(5000)}` }));
    const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast, maxRetries: 0, maxResponseBytes: 1000 });
    expect(Number.isNaN((await rm.score([{ question: 'q', response: 'r' }]))[0])).toBe(true);
    expect(rm.stats.failed.bad_response).toBe(1);
  });

  test('a mixed batch: good items score, bad ones are NaN, none is 0', async () => {
    const s = await server((req) => {
      const text = userText(req.body);
      if (text.includes('case=reset')) return { reset: true };
      if (text.includes('case=garbage')) return { reply: 'no idea' };
      return scoreFromText(req);
    });
    const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast, maxRetries: 1 });
    const scores = await rm.score([
      { question: 'q', response: 'score=0.4' },
      { question: 'q', response: 'case=reset' },
      { question: 'q', response: 'case=garbage' },
      { question: 'q', response: 'score=1.0' },
    ]);
    expect(scores.slice(0, 1).concat(scores.slice(3))).toEqual([0.4, 1]);
    expect(Number.isNaN(scores[1]) && Number.isNaN(scores[2])).toBe(true);
    expect(rm.stats).toMatchObject({ requested: 4, scored: 2, failed: expect.objectContaining({ network: 1, unparseable: 1 }) });
  });
});

test('in-flight requests never exceed the concurrency limit', async () => {
  const s = await server((req) => ({ ...scoreFromText(req), delayMs: 40 }));
  const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast, concurrency: 3 });
  const items = Array.from({ length: 15 }, (_, i) => ({ question: `q${i}`, response: `score=0.${i % 10}` }));
  const scores = await rm.score(items);
  expect(scores).toEqual(items.map((_, i) => (i % 10) / 10));
  expect(s.requests).toHaveLength(15);
  expect(s.maxInFlight).toBe(3);
});

test('identical items are answered from the cache', async () => {
  const s = await server(scoreFromText);
  const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast });
  const item = { question: 'q', response: 'score=0.5' };
  expect(await rm.score([item, item, { ...item }])).toEqual([0.5, 0.5, 0.5]);
  expect(await rm.score([item])).toEqual([0.5]);
  expect(s.requests).toHaveLength(1);
  expect(rm.stats).toMatchObject({ requested: 4, scored: 4, cacheHits: 3, calls: 1 });
  const uncached = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast, cacheSize: 0 });
  await uncached.score([item]);
  await uncached.score([item]);
  expect(s.requests).toHaveLength(3);
});

test('the API key never appears in logs or errors, and comes from the environment when not given', async () => {
  // a hostile server echoes the authorization header back in its error body
  const s = await server((req) => ({ status: 401, body: `bad key: ${req.headers.authorization}` }));
  const lines: string[] = [];
  const saved = { s: process.env.SOPHIA_RM_API_KEY, o: process.env.OPENAI_API_KEY };
  process.env.SOPHIA_RM_API_KEY = KEY;
  process.env.OPENAI_API_KEY = 'sk-other';
  try {
    const rm = new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', ...fast, log: (l) => lines.push(l) });
    expect(Number.isNaN((await rm.score([{ question: 'q', response: 'r' }]))[0])).toBe(true);
    expect(s.requests[0].headers.authorization).toBe(`Bearer ${KEY}`);
    expect(lines.join('\n')).toContain('http_4xx');
    expect(lines.join('\n')).toContain('[redacted]');
    const errors: string[] = [];
    for (const bad of [{ concurrency: 0 }, { timeoutMs: -1 }, { model: '' }, { baseUrl: 'nope' }]) {
      try {
        new OpenAIThinkingReward({ baseUrl: s.url, model: 'm', apiKey: KEY, ...bad });
      } catch (err) {
        expect(err).toBeInstanceOf(SophiaError);
        errors.push(String(err), (err as Error).stack ?? '');
      }
    }
    expect(errors).toHaveLength(8);
    const text = [...lines, ...errors, JSON.stringify(rm), require('node:util').inspect(rm)].join('\n');
    expect(text).not.toContain(KEY);
  } finally {
    for (const [name, value] of [['SOPHIA_RM_API_KEY', saved.s], ['OPENAI_API_KEY', saved.o]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});

test('listModels reads /v1/models, and a server without one is an E_REMOTE error', async () => {
  const s = await server(() => ({ reply: '<answer>1</answer>' }));
  expect(await listModels(`${s.url}/v1/chat/completions`)).toEqual(['fake-rm']);
  await s.close();
  await expect(listModels(s.url, { apiKey: KEY, timeoutMs: 500 })).rejects.toMatchObject({ code: 'E_REMOTE', message: expect.not.stringContaining(KEY) });
});
