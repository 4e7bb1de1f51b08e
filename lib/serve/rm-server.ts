/**
 * Serves any ThinkingReward on an OpenAI-compatible HTTP API (`GET /v1/models`,
 * `POST /v1/chat/completions`), so that OpenAIThinkingReward reaches an embedded reward model and a
 * vLLM-served one the same way.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SophiaError, describe } from '../errors';
import type { ThinkingItem, ThinkingReward } from '../rewards/thinking';
import { ApiError, MAX_REQUEST_IMAGE_PIXELS, parseChatRequest } from './parse';

export interface ThinkingRewardServerOptions {
  /** Interface to listen on (default '127.0.0.1', loopback only; '0.0.0.0' for every interface). */
  host?: string;
  /** TCP port (default 8000; 0 picks a free one, see `port` on the result). */
  port?: number;
  /** The model name /v1/models lists and replies carry; a request naming another model gets 404 (default 'sophia-thinking-rm'). */
  modelName?: string;
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>` (401 otherwise). Never logged. */
  apiKey?: string;
  /** Largest request body in bytes; larger ones get 413 and are not read further (default 8 MiB). */
  maxBodyBytes?: number;
  /**
   * Most pixels an image in a request may declare (default 16,777,216 = 4096²); a larger one is a
   * 400, refused from its header before anything decodes it (decoding runs on the event loop).
   */
  maxImagePixels?: number;
  /** Most reward.score calls in flight at once (default 4). */
  concurrency?: number;
  /** Requests that may wait for a free call beyond those in flight; more get 503 (default 64; 0: none wait). */
  maxQueue?: number;
  /** Most waiting requests scored by one reward.score call, for models that batch (default 1). */
  maxBatch?: number;
  /** Time from a request's headers to its reply in ms: 408 while the body is still arriving, 504 after (default 120000). */
  requestTimeoutMs?: number;
  /** Receives one line per request (method, path, status, time, score or error code). */
  log?: (line: string) => void;
}

export interface ThinkingRewardServerStats {
  /** HTTP requests received. */
  requests: number;
  /** Chat completions answered with a score. */
  scored: number;
  /** Requests answered with an error status. */
  errors: number;
  /** Replies by HTTP status. */
  byStatus: Record<number, number>;
  /** reward.score calls running now. */
  inFlight: number;
  /** The most reward.score calls that ran at once. */
  maxInFlight: number;
  /** Requests waiting for a free call now. */
  queued: number;
}

export interface ThinkingRewardServer {
  /** `http://host:port` (no path); give it to OpenAIThinkingReward as baseUrl. */
  url: string;
  port: number;
  /**
   * Stops taking connections, lets the requests already received (in flight and queued) finish,
   * and resolves once every connection is closed and no reward call is running.
   */
  close(): Promise<void>;
  readonly stats: ThinkingRewardServerStats;
}

const DEFAULTS = {
  host: '127.0.0.1',
  port: 8000,
  modelName: 'sophia-thinking-rm',
  maxBodyBytes: 8 * 1024 * 1024,
  concurrency: 4,
  maxQueue: 64,
  maxBatch: 1,
  requestTimeoutMs: 120_000,
};

function intOption(name: string, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new SophiaError('E_CONFIG', `startThinkingRewardServer: ${name} must be an integer ${range}, got ${describe(value)}`);
  }
  return value;
}

function stringOption(name: string, value: unknown, fallback: string | undefined, expected: string): string | undefined {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0 || /[\s\x00-\x1f]/.test(value)) {
    throw new SophiaError('E_CONFIG', `startThinkingRewardServer: ${name} must be ${expected}, got ${describe(value)}`);
  }
  return value;
}

type Outcome = { score: number } | { error: unknown };

interface Job {
  item: ThinkingItem;
  settle: (outcome: Outcome) => void;
}

/** At most `concurrency` reward.score calls at once, each taking up to `maxBatch` waiting items in arrival order. */
class RewardQueue {
  active = 0;
  maxActive = 0;
  private readonly waiting: Job[] = [];
  private idle: (() => void)[] = [];

  constructor(
    private readonly reward: ThinkingReward,
    private readonly concurrency: number,
    private readonly maxQueue: number,
    private readonly maxBatch: number,
  ) {}

  get queued(): number {
    return this.waiting.length;
  }

  /** The job, queued or started; null when the queue is full. */
  submit(item: ThinkingItem, settle: (outcome: Outcome) => void): Job | null {
    if (this.active >= this.concurrency && this.waiting.length >= this.maxQueue) return null;
    const job = { item, settle };
    this.waiting.push(job);
    this.pump();
    return job;
  }

  /** Takes a job out of the queue; false when it is already being scored. */
  withdraw(job: Job): boolean {
    const i = this.waiting.indexOf(job);
    if (i < 0) return false;
    this.waiting.splice(i, 1);
    return true;
  }

  /** Resolves when no call runs and none waits. */
  drained(): Promise<void> {
    if (this.active === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private pump(): void {
    while (this.active < this.concurrency && this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.maxBatch);
      this.active++;
      this.maxActive = Math.max(this.maxActive, this.active);
      void this.run(batch);
    }
    if (this.active === 0 && this.waiting.length === 0) {
      const idle = this.idle;
      this.idle = [];
      for (const resolve of idle) resolve();
    }
  }

  private async run(batch: Job[]): Promise<void> {
    let outcomes: Outcome[];
    try {
      const scores: unknown = await this.reward.score(batch.map((j) => j.item));
      if (!Array.isArray(scores) || scores.length !== batch.length) {
        throw new SophiaError('E_INTERNAL', `the reward returned ${describe(scores)} for ${batch.length} item(s); expected one number per item`);
      }
      outcomes = scores.map((s) => (typeof s === 'number' ? { score: s } : { error: new SophiaError('E_INTERNAL', `the reward returned ${describe(s)} as a score`) }));
    } catch (error) {
      outcomes = batch.map(() => ({ error }));
    }
    batch.forEach((job, i) => job.settle(outcomes[i]));
    this.active--;
    this.pump();
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** About 4 bytes of English per token: there is no tokenizer here, and usage is only informative. */
const estimateTokens = (bytes: number): number => Math.max(1, Math.ceil(bytes / 4));

/** The score as text the client's extractor reads back to the same double. */
const answer = (score: number): string => `<answer>${score}</answer>`;

const ROUTES: Record<string, string[]> = {
  '/v1/models': ['GET', 'HEAD'],
  '/v1/chat/completions': ['POST'],
  '/health': ['GET', 'HEAD'],
};

/**
 * Serves `reward` on an OpenAI-compatible API. Every request is answered with JSON: a
 * chat.completion whose content is `<answer>score</answer>`, or `{error: {message, type, param,
 * code}}` with 400 (bad JSON or fields, naming the field), 401, 404 (route or model), 405, 408,
 * 413, 500 (the reward threw), 502 (the reward gave NaN: no score, never a made-up one), 503
 * (queue full, with Retry-After) or 504 (timed out). `GET /health` answers 200 without a key, for
 * readiness probes. Resolves once listening.
 */
export async function startThinkingRewardServer(reward: ThinkingReward, options: ThinkingRewardServerOptions = {}): Promise<ThinkingRewardServer> {
  if (reward === null || typeof reward !== 'object' || typeof (reward as ThinkingReward).score !== 'function') {
    throw new SophiaError('E_CONFIG', `startThinkingRewardServer: reward must be a ThinkingReward (an object with score(items)), got ${describe(reward)}`);
  }
  if (options === null || typeof options !== 'object') {
    throw new SophiaError('E_CONFIG', `startThinkingRewardServer: options must be an object, got ${describe(options)}`);
  }
  const host = stringOption('host', options.host, DEFAULTS.host, 'a host name or IP address') as string;
  const port = intOption('port', options.port, DEFAULTS.port, 0, 65535);
  const modelName = stringOption('modelName', options.modelName, DEFAULTS.modelName, 'a non-empty name without spaces') as string;
  if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey.length === 0)) {
    throw new SophiaError('E_CONFIG', `startThinkingRewardServer: apiKey must be a non-empty string or left out, got ${options.apiKey === '' ? 'an empty string' : typeof options.apiKey}`);
  }
  const maxBodyBytes = intOption('maxBodyBytes', options.maxBodyBytes, DEFAULTS.maxBodyBytes, 1);
  const concurrency = intOption('concurrency', options.concurrency, DEFAULTS.concurrency, 1);
  const maxQueue = intOption('maxQueue', options.maxQueue, DEFAULTS.maxQueue, 0);
  const maxBatch = intOption('maxBatch', options.maxBatch, DEFAULTS.maxBatch, 1);
  const maxImagePixels = intOption('maxImagePixels', options.maxImagePixels, MAX_REQUEST_IMAGE_PIXELS, 1);
  const requestTimeoutMs = intOption('requestTimeoutMs', options.requestTimeoutMs, DEFAULTS.requestTimeoutMs, 1, 2 ** 31 - 1);
  if (options.log !== undefined && typeof options.log !== 'function') {
    throw new SophiaError('E_CONFIG', `startThinkingRewardServer: log must be a function, got ${describe(options.log)}`);
  }
  const log = options.log;
  const keyHash = options.apiKey !== undefined ? sha256(options.apiKey) : null;

  const queue = new RewardQueue(reward, concurrency, maxQueue, maxBatch);
  const counts = { requests: 0, scored: 0, errors: 0, byStatus: {} as Record<number, number> };
  let closing = false;
  let open = 0;
  const allAnswered: (() => void)[] = [];

  const authorized = (req: http.IncomingMessage): boolean => {
    if (keyHash === null) return true;
    const token = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '')?.[1];
    return token !== undefined && timingSafeEqual(sha256(token), keyHash);
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const started = performance.now();
    counts.requests++;
    open++;
    const target = (req.url ?? '/').split('?')[0];
    let end = target.length;
    while (end > 1 && target[end - 1] === '/') end--;
    const path = target.slice(0, end);
    let note = '';
    let timer: NodeJS.Timeout | undefined;
    let job: ReturnType<RewardQueue['submit']> = null;
    let stage: 'body' | 'wait' = 'body';

    const send = (status: number, payload: unknown, headers: Record<string, string> = {}): void => {
      clearTimeout(timer);
      if (res.headersSent || res.destroyed) return;
      counts.byStatus[status] = (counts.byStatus[status] ?? 0) + 1;
      if (status >= 400) counts.errors++;
      const body = JSON.stringify(payload);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
        ...(closing ? { connection: 'close' } : {}),
        ...headers,
      });
      res.end(body);
    };
    const fail = (err: ApiError): void => {
      note = err.code;
      send(err.status, { error: { message: err.message, type: err.type, param: err.param, code: err.code } }, err.headers);
    };

    res.on('close', () => {
      clearTimeout(timer);
      // a client that gave up frees its place in the queue
      if (job !== null) queue.withdraw(job);
      if (!res.writableFinished) note ||= 'client_closed';
      log?.(`${req.method} ${path} ${res.headersSent ? res.statusCode : '-'} ${(performance.now() - started).toFixed(0)} ms${note ? ` ${note}` : ''}`);
      if (--open === 0) for (const resolve of allAnswered.splice(0)) resolve();
      if (closing) setImmediate(() => server.closeIdleConnections());
    });

    const methods = ROUTES[path];
    if (!methods) return fail(new ApiError(404, 'not_found_error', 'unknown_route', `no route ${describe(path)}; this server answers GET /v1/models and POST /v1/chat/completions`));
    if (!methods.includes(req.method ?? '')) {
      return fail(new ApiError(405, 'invalid_request_error', 'method_not_allowed', `${path} takes ${methods.filter((m) => m !== 'HEAD').join(', ')}, got ${describe(req.method)}`, null, { allow: methods.join(', ') }));
    }
    if (path === '/health') return send(200, { status: 'ok' });
    if (!authorized(req)) {
      return fail(new ApiError(401, 'authentication_error', 'invalid_api_key', 'missing or wrong API key: send the header "Authorization: Bearer <key>"', null, { 'www-authenticate': 'Bearer' }));
    }
    if (path === '/v1/models') {
      return send(200, { object: 'list', data: [{ id: modelName, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'sophia-rl' }] });
    }

    const tooLarge = (): ApiError =>
      new ApiError(413, 'invalid_request_error', 'request_too_large', `the request body is over the limit of ${maxBodyBytes} bytes`, null, { connection: 'close' });
    const declared = Number(req.headers['content-length']);
    if (declared > maxBodyBytes) {
      fail(tooLarge());
      req.resume();
      return;
    }
    timer = setTimeout(() => {
      if (stage === 'body') {
        fail(new ApiError(408, 'timeout_error', 'request_timeout', `the request body did not arrive within ${requestTimeoutMs} ms`, null, { connection: 'close' }));
        res.once('finish', () => req.destroy());
      } else {
        if (job !== null) queue.withdraw(job);
        fail(new ApiError(504, 'timeout_error', 'timeout', `no score within ${requestTimeoutMs} ms`));
      }
    }, requestTimeoutMs);

    const chunks: Buffer[] = [];
    let size = 0;
    req.on('error', () => clearTimeout(timer));
    req.on('data', (chunk: Buffer) => {
      if (res.headersSent) return;
      size += chunk.length;
      if (size > maxBodyBytes) {
        chunks.length = 0;
        fail(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      stage = 'wait';
      let parsed;
      try {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks, size).toString('utf8'));
        } catch (err) {
          throw new ApiError(400, 'invalid_request_error', 'invalid_json', `the request body is not JSON (${(err as Error).message})`, 'body');
        }
        parsed = parseChatRequest(body, { maxImagePixels });
        if (parsed.model !== undefined && parsed.model !== modelName) {
          throw new ApiError(404, 'not_found_error', 'model_not_found', `the model ${describe(parsed.model)} does not exist; this server serves ${JSON.stringify(modelName)}`, 'model');
        }
      } catch (err) {
        return fail(err instanceof ApiError ? err : new ApiError(400, 'invalid_request_error', 'invalid_value', String(err)));
      }
      const { n, promptBytes } = parsed;
      job = queue.submit(parsed.item, (outcome) => {
        job = null;
        if (res.headersSent || res.destroyed) return;
        if ('error' in outcome) {
          const e = outcome.error;
          const why = e instanceof SophiaError ? `${e.code}: ${e.message}` : 'an internal error';
          return fail(new ApiError(500, 'server_error', 'reward_failed', `the reward model failed: ${why}`));
        }
        const { score } = outcome;
        if (!Number.isFinite(score)) {
          return fail(new ApiError(502, 'server_error', 'no_score', `the reward model gave no score (${describe(score)})`));
        }
        counts.scored++;
        note = `score=${score}`;
        const content = answer(score);
        const completionTokens = estimateTokens(Buffer.byteLength(content));
        const promptTokens = estimateTokens(promptBytes);
        send(200, {
          id: `chatcmpl-${randomBytes(12).toString('hex')}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model: modelName,
          choices: Array.from({ length: n }, (_, index) => ({ index, message: { role: 'assistant', content }, logprobs: null, finish_reason: 'stop' })),
          usage: { prompt_tokens: promptTokens, completion_tokens: n * completionTokens, total_tokens: promptTokens + n * completionTokens },
        });
      });
      if (job === null) {
        fail(new ApiError(503, 'server_overloaded', 'queue_full', `the server is busy: ${concurrency} request(s) in flight and ${maxQueue} waiting; retry later`, null, { 'retry-after': '1' }));
      }
    });
  };

  const server = http.createServer((req, res) => {
    try {
      handle(req, res);
    } catch {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'internal server error', type: 'server_error', param: null, code: 'internal' } }));
      } else {
        res.destroy();
      }
    }
  });
  // our timer answers first; Node's only guards against bodies that never end
  server.requestTimeout = requestTimeoutMs + 1000;
  server.headersTimeout = Math.min(60_000, server.requestTimeout);
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? 'the port is in use' : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : err.code === 'EACCES' ? 'permission denied' : err.message;
      reject(new SophiaError('E_IO', `startThinkingRewardServer: cannot listen on ${host}:${port}: ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' || address.address.includes(':') ? `[${address.address}]` : address.address;

  let closed: Promise<void> | null = null;
  return {
    url: `http://${urlHost}:${address.port}`,
    port: address.port,
    close(): Promise<void> {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (open > 0) await new Promise<void>((resolve) => allAnswered.push(resolve));
        // what is left holds no request: kept-alive or freshly opened connections
        server.closeAllConnections();
        await Promise.all([stopped, queue.drained()]);
      })();
      return closed;
    },
    get stats(): ThinkingRewardServerStats {
      return { ...counts, byStatus: { ...counts.byStatus }, inFlight: queue.active, maxInFlight: queue.maxActive, queued: queue.queued };
    },
  };
}
