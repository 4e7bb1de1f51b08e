import * as net from 'node:net';
import { PNG } from 'pngjs';
import * as jpeg from 'jpeg-js';
import { OpenAIThinkingReward, listModels, type ThinkingItem, type ThinkingReward, type ThinkingRewardStats } from '../../lib/rewards/thinking';
import { fillThinkingPrompt } from '../../lib/rewards/prompt';
import { startThinkingRewardServer, type ThinkingRewardServer, type ThinkingRewardServerOptions } from '../../lib/serve/rm-server';

/**
 * A deterministic reward on the 0.1 grid: f(question, reasoning, image bytes). "NaN" in the
 * reasoning gives NaN, "THROW" makes score() throw; `gate` holds every call until released.
 */
class FakeReward implements ThinkingReward {
  readonly seen: ThinkingItem[] = [];
  readonly batches: number[] = [];
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 0;
  private held: (() => void)[] = [];
  holding = false;
  readonly stats: ThinkingRewardStats = {} as ThinkingRewardStats;

  static f(item: ThinkingItem): number {
    const x = item.question.length * 3 + item.response.length * 7 + (item.image?.length ?? 0);
    return (x % 11) / 10;
  }

  async score(items: ThinkingItem[]): Promise<number[]> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.batches.push(items.length);
    try {
      if (this.holding) await new Promise<void>((resolve) => this.held.push(resolve));
      if (this.delayMs) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
      this.seen.push(...items);
      if (items.some((it) => it.response.includes('THROW'))) throw new Error('the fake reward failed');
      return items.map((it) => (it.response.includes('NaN') ? NaN : FakeReward.f(it)));
    } finally {
      this.inFlight--;
    }
  }

  release(): void {
    this.holding = false;
    for (const resolve of this.held.splice(0)) resolve();
  }
}

let servers: ThinkingRewardServer[] = [];
let fake: FakeReward;
beforeEach(() => {
  fake = new FakeReward();
});
afterEach(async () => {
  fake.release();
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

async function serve(opts: ThinkingRewardServerOptions = {}, reward: ThinkingReward = fake): Promise<ThinkingRewardServer> {
  const s = await startThinkingRewardServer(reward, { port: 0, ...opts });
  servers.push(s);
  return s;
}

const client = (s: ThinkingRewardServer, extra: Record<string, unknown> = {}): OpenAIThinkingReward =>
  new OpenAIThinkingReward({ baseUrl: s.url, model: 'sophia-thinking-rm', apiKey: '', timeoutMs: 2000, maxRetries: 0, backoffMs: 1, cacheSize: 0, ...extra });

function solidPng(width: number, height: number, value = 200): Buffer {
  const png = new PNG({ width, height });
  png.data.fill(value);
  return PNG.sync.write(png);
}

const chat = (messages: unknown, extra: Record<string, unknown> = {}): string => JSON.stringify({ model: 'sophia-thinking-rm', messages, ...extra });
const userMessage = (question: string, reasoning: string): unknown[] => [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: fillThinkingPrompt(question, reasoning) },
];

async function post(s: ThinkingRewardServer, body: string | Buffer, headers: Record<string, string> = {}, path = '/v1/chat/completions'): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

function expectError(r: { status: number; json: any }, status: number, code?: string): void {
  expect(r.status).toBe(status);
  expect(r.json).toEqual({ error: { message: expect.any(String), type: expect.any(String), param: r.json?.error?.param ?? null, code: code ?? expect.any(String) } });
  expect(['string', 'object']).toContain(typeof r.json.error.param);
}

test('scores round-trip exactly through the real client, images included', async () => {
  const s = await serve();
  const png = solidPng(4, 3);
  const items: ThinkingItem[] = [
    { question: 'What is 2+2?', response: 'Add: 2+2=4.' },
    { question: 'Which shape?', response: 'A circle, since it is round.', image: png },
    { question: '<image>Which colour? {reasoning}', response: 'Grey.\n    Reasoning process: quoted\n    Question: also quoted', image: png },
    { question: '', response: '' },
    { question: 'Ünïcödé ∑ 文字?', response: '答案是 $x^2$ \\frac{1}{2} <answer>0.9</answer>' },
    ...Array.from({ length: 11 }, (_, i) => ({ question: `q${i}`, response: 'r'.repeat(i) })),
  ];
  const scores = await client(s).score(items);
  expect(scores).toEqual(items.map((it) => FakeReward.f(it)));
  expect(new Set(scores).size).toBeGreaterThan(5);
  for (const x of scores) expect(Math.round(x * 10) / 10).toBe(x);
  // the server hands the reward exactly what the client was given: question, reasoning and image bytes
  for (const it of items) expect(fake.seen).toContainEqual(it.image ? { ...it, image: Buffer.from(it.image) } : it);
  expect(s.stats).toMatchObject({ requests: items.length, scored: items.length, errors: 0 });
});

test('a JPEG arrives as the PNG the client converts it to; a data URL of JPEG bytes arrives as sent', async () => {
  const s = await serve();
  const jpg = Buffer.from(jpeg.encode({ width: 5, height: 2, data: Buffer.alloc(5 * 2 * 4, 128) }, 90).data);
  const [score] = await client(s).score([{ question: 'q', response: 'r', image: jpg }]);
  const got = fake.seen[0].image!;
  expect(PNG.sync.read(Buffer.from(got))).toMatchObject({ width: 5, height: 2 });
  expect(score).toBe(FakeReward.f(fake.seen[0]));

  const r = await post(s, chat([{ role: 'user', content: [
    { type: 'text', text: fillThinkingPrompt('q2', 'r2') },
    { type: 'image_url', image_url: { url: `data:image/jpeg;base64,${jpg.toString('base64')}` } },
  ] }]));
  expect(r.status).toBe(200);
  expect(Buffer.from(fake.seen[1].image!).equals(jpg)).toBe(true);
  expect(fake.seen[1].question).toBe('q2');
});

test('a chat.completion with id, model, created, usage; n > 1 repeats the score; /v1/models lists the model', async () => {
  const s = await serve({ modelName: 'my-rm' });
  const r = await post(s, JSON.stringify({ model: 'my-rm', messages: userMessage('q', 'abc'), temperature: 0, max_tokens: 16, n: 3, seed: 1, stop: null, user: 'u', top_p: 1, logprobs: false }));
  expect(r.status).toBe(200);
  const content = `<answer>${FakeReward.f({ question: 'q', response: 'abc' })}</answer>`;
  expect(r.json).toMatchObject({ object: 'chat.completion', model: 'my-rm', id: expect.stringMatching(/^chatcmpl-/), created: expect.any(Number) });
  expect(r.json.choices).toEqual([0, 1, 2].map((index) => ({ index, message: { role: 'assistant', content }, logprobs: null, finish_reason: 'stop' })));
  const { prompt_tokens, completion_tokens, total_tokens } = r.json.usage;
  expect(prompt_tokens).toBeGreaterThan(100);
  expect(total_tokens).toBe(prompt_tokens + completion_tokens);

  const models = await (await fetch(`${s.url}/v1/models`)).json();
  expect(models).toEqual({ object: 'list', data: [{ id: 'my-rm', object: 'model', created: expect.any(Number), owned_by: 'sophia-rl' }] });
  expect(await listModels(s.url, { apiKey: '' })).toEqual(['my-rm']);
  expect((await fetch(`${s.url}/health`)).status).toBe(200);
  expectError(await post(s, chat(userMessage('q', 'r'), { model: 'other' })), 404, 'model_not_found');
});

test('never more reward calls in flight than concurrency; waiting requests are batched up to maxBatch', async () => {
  const s = await serve({ concurrency: 2 });
  fake.delayMs = 20;
  const items = Array.from({ length: 12 }, (_, i) => ({ question: `q${i}`, response: `r${i}` }));
  expect(await client(s, { concurrency: 8 }).score(items)).toEqual(items.map((it) => FakeReward.f(it)));
  expect(fake.maxInFlight).toBe(2);
  expect(s.stats.maxInFlight).toBe(2);
  expect(fake.batches.every((b) => b === 1)).toBe(true);

  const batching = new FakeReward();
  const b = await serve({ concurrency: 1, maxBatch: 4 }, batching);
  batching.delayMs = 20;
  expect(await client(b, { concurrency: 8 }).score(items)).toEqual(items.map((it) => FakeReward.f(it)));
  expect(batching.maxInFlight).toBe(1);
  expect(Math.max(...batching.batches)).toBe(4);
});

test('a full queue answers 503 with Retry-After; the client sees http_5xx', async () => {
  const s = await serve({ concurrency: 1, maxQueue: 1 });
  fake.holding = true;
  const first = post(s, chat(userMessage('a', '1')));
  const second = post(s, chat(userMessage('b', '2')));
  while (s.stats.queued < 1) await new Promise((resolve) => setTimeout(resolve, 5));
  const third = await post(s, chat(userMessage('c', '3')));
  expectError(third, 503, 'queue_full');
  expect(third.headers.get('retry-after')).toBe('1');
  const rm = client(s);
  expect(await rm.score([{ question: 'd', response: '4' }])).toEqual([NaN]);
  expect(rm.stats.failed.http_5xx).toBe(1);
  fake.release();
  expect((await first).status).toBe(200);
  expect((await second).status).toBe(200);
  expect(fake.maxInFlight).toBe(1);
});

test('a queued request whose client gives up is never scored', async () => {
  const s = await serve({ concurrency: 1 });
  fake.holding = true;
  const first = post(s, chat(userMessage('a', 'kept')));
  const abort = new AbortController();
  const gaveUp = fetch(`${s.url}/v1/chat/completions`, { method: 'POST', body: chat(userMessage('b', 'abandoned')), signal: abort.signal });
  while (s.stats.queued < 1) await new Promise((resolve) => setTimeout(resolve, 5));
  abort.abort();
  await expect(gaveUp).rejects.toThrow();
  while (s.stats.queued > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  fake.release();
  expect((await first).status).toBe(200);
  expect(fake.seen.map((it) => it.response)).toEqual(['kept']);
});

test('with apiKey: the right bearer key is served, a wrong or missing one gets 401', async () => {
  const s = await serve({ apiKey: 'sk-serve-SECRET' });
  const items = [{ question: 'q', response: 'r' }];
  expect(await client(s, { apiKey: 'sk-serve-SECRET' }).score(items)).toEqual([FakeReward.f(items[0])]);
  const wrong = client(s, { apiKey: 'sk-wrong' });
  expect(await wrong.score(items)).toEqual([NaN]);
  expect(wrong.stats.failed.http_4xx).toBe(1);
  expect(await client(s).score(items)).toEqual([NaN]);

  const raw = await post(s, chat(userMessage('q', 'r')));
  expectError(raw, 401, 'invalid_api_key');
  expect(raw.headers.get('www-authenticate')).toBe('Bearer');
  expect(JSON.stringify(raw.json)).not.toContain('SECRET');
  expect((await fetch(`${s.url}/v1/models`)).status).toBe(401);
  expect((await fetch(`${s.url}/v1/models`, { headers: { authorization: 'Bearer sk-serve-SECRET' } })).status).toBe(200);
  expect(fake.seen).toHaveLength(1);
});

test('an oversized body gets 413, declared or streamed, and the server goes on', async () => {
  const s = await serve({ maxBodyBytes: 4096 });
  const big = chat(userMessage('q', 'x'.repeat(100_000)));
  expectError(await post(s, big), 413, 'request_too_large');

  // no content-length: the body is counted as it comes
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 50; i++) c.enqueue(new Uint8Array(1024).fill(32));
      c.close();
    },
  });
  const res = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
  expect(res.status).toBe(413);
  expect(((await res.json()) as any).error.code).toBe('request_too_large');

  expect(await client(s).score([{ question: 'q', response: 'r' }])).toEqual([FakeReward.f({ question: 'q', response: 'r' })]);
  expect(fake.seen).toHaveLength(1);
});

test('an image that declares more than maxImagePixels is a 400 before any decoding, fast; /health stays answered', async () => {
  const s = await serve({ maxImagePixels: 1_000_000 });
  // a real 8×8 PNG whose header is rewritten to claim 20000×20000 pixels
  const png = new PNG({ width: 8, height: 8 });
  const bytes = PNG.sync.write(png);
  bytes.writeUInt32BE(20000, 16);
  bytes.writeUInt32BE(20000, 20);
  const body = chat([{ role: 'user', content: [
    { type: 'image_url', image_url: { url: `data:image/png;base64,${bytes.toString('base64')}` } },
    { type: 'text', text: fillThinkingPrompt('q', 'r') },
  ] }]);
  const t0 = Date.now();
  const r = await post(s, body);
  expect(Date.now() - t0).toBeLessThan(2000);
  expectError(r, 400);
  expect(r.json.error.message).toMatch(/declares 20000×20000 pixels, over this server's limit of 1000000/);
  expect(fake.seen).toHaveLength(0);
  expect((await fetch(`${s.url}/health`)).status).toBe(200);
});

test('400 for bad JSON and bad fields, naming the field; 404 and 405 for routes and methods', async () => {
  const s = await serve();
  expectError(await post(s, '{"messages": [', {}), 400, 'invalid_json');
  expectError(await post(s, ''), 400, 'invalid_json');
  const missing = await post(s, JSON.stringify({ model: 'sophia-thinking-rm' }));
  expectError(missing, 400);
  expect(missing.json.error.param).toBe('messages');
  expect(missing.json.error.message).toMatch(/messages: required/);
  const cases: [unknown, string][] = [
    [[], 'body'],
    [{ messages: [] }, 'messages'],
    [{ messages: 'hi' }, 'messages'],
    [{ messages: [null] }, 'messages[0]'],
    [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: 42 }] }, 'messages[0].content'],
    [{ messages: [{ role: 'system', content: 'x' }] }, 'messages'],
    [{ messages: [{ role: 'user', content: 'just chatting' }] }, 'messages[0].content'],
    [{ messages: [{ role: 'user', content: [{ type: 'audio' }] }] }, 'messages[0].content[0].type'],
    [{ messages: [{ role: 'user', content: [{ type: 'text', text: 5 }] }] }, 'messages[0].content[0].text'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }] }, 'messages[0].content[0].image_url'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,!!!' } }] }] }, 'messages[0].content[0].image_url'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${Buffer.from('GIF89a....').toString('base64')}` } }] }] }, 'messages[0].content[0].image_url'],
    [{ messages: userMessage('q', 'r'), stream: true }, 'stream'],
    [{ messages: userMessage('q', 'r'), n: 0 }, 'n'],
    [{ messages: userMessage('q', 'r'), n: 1000 }, 'n'],
    [{ messages: userMessage('q', 'r'), temperature: 'hot' }, 'temperature'],
    [{ messages: userMessage('q', 'r'), max_tokens: -1 }, 'max_tokens'],
    [{ messages: userMessage('q', 'r'), model: 7 }, 'model'],
  ];
  for (const [body, param] of cases) {
    const r = await post(s, JSON.stringify(body));
    expectError(r, 400);
    expect([body, r.json.error.param]).toEqual([body, param]);
  }

  expectError(await post(s, chat(userMessage('q', 'r')), {}, '/v1/completions'), 404, 'unknown_route');
  const get = await fetch(`${s.url}/v1/chat/completions`);
  expect(get.status).toBe(405);
  expect(get.headers.get('allow')).toBe('POST');
  expect(((await get.json()) as any).error.code).toBe('method_not_allowed');
  expectError(await post(s, '{}', {}, '/v1/models'), 405, 'method_not_allowed');
  expect(fake.seen).toHaveLength(0);
});

test('NaN from the reward is a 502 error, a throw is a 500: never a made-up score', async () => {
  const s = await serve();
  const nan = await post(s, chat(userMessage('q', 'this gives NaN')));
  expectError(nan, 502, 'no_score');
  expect(JSON.stringify(nan.json)).not.toMatch(/<answer>/);
  const thrown = await post(s, chat(userMessage('q', 'THROW')));
  expectError(thrown, 500, 'reward_failed');
  const rm = client(s);
  expect(await rm.score([{ question: 'q', response: 'NaN again' }, { question: 'q', response: 'ok' }])).toEqual([NaN, FakeReward.f({ question: 'q', response: 'ok' })]);
  expect(rm.stats.failed.http_5xx).toBe(1);

  const broken: ThinkingReward = { stats: {} as ThinkingRewardStats, score: async () => [0.5, 0.5] };
  expectError(await post(await serve({}, broken), chat(userMessage('q', 'r'))), 500, 'reward_failed');
});

test('a request that outlives requestTimeoutMs gets 504; close() waits for the reward call', async () => {
  const s = await serve({ requestTimeoutMs: 100 });
  fake.holding = true;
  const r = await post(s, chat(userMessage('q', 'r')));
  expectError(r, 504, 'timeout');
  let closed = false;
  const closing = s.close().then(() => (closed = true));
  await new Promise((resolve) => setTimeout(resolve, 30));
  expect(closed).toBe(false);
  fake.release();
  await closing;
});

test('a body that stops arriving gets 408 and the connection is closed', async () => {
  const s = await serve({ requestTimeoutMs: 100 });
  const reply = await new Promise<string>((resolve) => {
    let got = '';
    const sock = net.connect(s.port, '127.0.0.1', () => sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"mess'));
    sock.on('data', (d) => (got += d));
    sock.on('error', () => {});
    sock.on('close', () => resolve(got));
  });
  expect(reply).toMatch(/^HTTP\/1\.1 408 /);
  expect(JSON.parse(reply.slice(reply.indexOf('{'))).error.code).toBe('request_timeout');
});

test('the bearer scheme is case-insensitive; trailing slashes and query strings do not change the route', async () => {
  const s = await serve({ apiKey: 'k1' });
  const get = (path: string, auth: string): Promise<Response> => fetch(`${s.url}${path}`, { headers: { authorization: auth } });
  expect((await get('/v1/models', 'bearer   k1')).status).toBe(200);
  expect((await get('/v1/models/?x=1', 'Bearer k1')).status).toBe(200);
  expect((await get('/v1/models', 'Bearer k1 extra')).status).toBe(401);
  expect((await get('/v1/models', 'Basic k1')).status).toBe(401);
  expect((await get('/v1/models', 'Bearer k')).status).toBe(401);
  expect((await get(`/${'/'.repeat(8000)}x`, 'Bearer k1')).status).toBe(404);
});

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('random garbage bodies and broken HTTP never crash the server', async () => {
  const s = await serve({ maxBodyBytes: 200_000 });
  const rand = rng(20240611);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  const value = (depth: number): unknown => {
    const leaves = [null, true, 0, -1, 1e308, NaN, 'x', '', '<image>', 'data:image/png;base64,iVBORw0KGgo=', fillThinkingPrompt('q', 'r')];
    if (depth > 3 || rand() < 0.4) return pick(leaves);
    if (rand() < 0.5) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1));
    const keys = ['messages', 'role', 'content', 'type', 'text', 'image_url', 'url', 'model', 'n', 'stream', 'user', '__proto__', 'constructor'];
    return Object.fromEntries(Array.from({ length: Math.floor(rand() * 5) }, () => [pick(keys), value(depth + 1)]));
  };
  const bodies: (string | Buffer)[] = [];
  for (let i = 0; i < 120; i++) {
    const kind = i % 4;
    if (kind === 0) bodies.push(Buffer.from(Array.from({ length: Math.floor(rand() * 3000) }, () => Math.floor(rand() * 256))));
    else if (kind === 1) bodies.push(JSON.stringify(value(0)));
    else if (kind === 2) bodies.push(JSON.stringify({ model: 'sophia-thinking-rm', messages: [{ role: pick(['user', 'system', 'assistant']), content: value(1) }, value(1)] }));
    else bodies.push(JSON.stringify({ messages: [{ role: 'user', content: [{ type: pick(['text', 'image_url']), text: value(2), image_url: value(2) }] }], n: value(2) }));
  }
  bodies.push('['.repeat(100_000), '{"a":'.repeat(3000), JSON.stringify({ messages: [{ role: 'user', content: `Question: ${'\n Reasoning process: '.repeat(500)}` }] }));
  for (const body of bodies) {
    const r = await post(s, body);
    expect([200, 400, 404, 413, 502]).toContain(r.status);
    if (r.status !== 200) expect(typeof r.json.error.message).toBe('string');
  }
  for (const raw of ['GARBAGE\r\n\r\n', 'POST /v1/chat/completions HTTP/1.1\r\nContent-Length: nope\r\n\r\n', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"mess']) {
    await new Promise<void>((resolve) => {
      const sock = net.connect(s.port, '127.0.0.1', () => sock.end(raw));
      sock.on('data', () => {});
      sock.on('error', () => resolve());
      sock.on('close', () => resolve());
    });
  }
  expect(await client(s).score([{ question: 'still', response: 'alive' }])).toEqual([FakeReward.f({ question: 'still', response: 'alive' })]);
});

test('close() lets in-flight and queued requests finish, then resolves and refuses new connections', async () => {
  const s = await serve({ concurrency: 1 });
  fake.holding = true;
  const a = post(s, chat(userMessage('a', '1')));
  const b = post(s, chat(userMessage('b', '2')));
  while (s.stats.queued < 1) await new Promise((resolve) => setTimeout(resolve, 5));
  const closing = s.close();
  setTimeout(() => fake.release(), 20);
  expect((await a).status).toBe(200);
  expect((await b).status).toBe(200);
  await closing;
  await expect(fetch(`${s.url}/v1/models`)).rejects.toThrow();
  await s.close();
});

test('options are checked, naming the option, what was expected and what came', async () => {
  const bad: [ThinkingRewardServerOptions, RegExp][] = [
    [{ port: -1 }, /port must be an integer from 0 to 65535, got -1/],
    [{ port: 1.5 }, /port must be/],
    [{ concurrency: 0 }, /concurrency must be an integer >= 1, got 0/],
    [{ maxQueue: -1 }, /maxQueue must be an integer >= 0/],
    [{ maxBodyBytes: '8MiB' as unknown as number }, /maxBodyBytes must be an integer >= 1, got "8MiB"/],
    [{ apiKey: '' }, /apiKey must be a non-empty string/],
    [{ modelName: 'has space' }, /modelName must be a non-empty name without spaces/],
    [{ host: '' }, /host must be a host name or IP address/],
    [{ requestTimeoutMs: 0 }, /requestTimeoutMs must be/],
    [{ log: 'yes' as unknown as () => void }, /log must be a function, got "yes"/],
  ];
  for (const [opts, message] of bad) {
    await expect(startThinkingRewardServer(fake, opts)).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(message) });
  }
  await expect(startThinkingRewardServer({} as ThinkingReward)).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(/reward must be a ThinkingReward/) });
  const s = await serve();
  await expect(startThinkingRewardServer(fake, { port: s.port })).rejects.toMatchObject({ code: 'E_IO', message: expect.stringMatching(/port is in use/) });
});
