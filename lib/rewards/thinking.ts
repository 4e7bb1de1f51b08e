/** Thinking rewards Rt: a reward model scores the whole reasoning in [0, 1] (method.md §1.3). */
import { createHash } from 'node:crypto';
import { SophiaError, describe } from '../errors';
import { toPngAsync } from '../data/images';
import { extractThinkingScore, parseThinkingScore, type ScoreFormat } from './extract';
import type { Mode } from './outcome';
import { fillThinkingPrompt } from './prompt';

export interface ThinkingItem {
  /** The question as the policy saw it. */
  question: string;
  /** The reasoning to judge (see thinkingInput for what to pass). */
  response: string;
  /** The question's first image, PNG or JPEG bytes. */
  image?: Uint8Array;
}

/** Why a score is missing. */
export type ThinkingFailure =
  | 'timeout' // no complete reply within timeoutMs
  | 'network' // connection refused or reset
  | 'http_429' // rate limited past the retries or past maxRetryAfterMs
  | 'http_5xx' // server error past the retries
  | 'http_4xx' // rejected (bad key, unknown model, …): not retried
  | 'http_3xx' // a redirect: not followed (a POST redirected is not a score), not retried
  | 'bad_json' // the body is not JSON
  | 'bad_response' // JSON without choices[0].message.content, or a body over maxResponseBytes
  | 'unparseable' // the content holds no score in the expected form
  | 'out_of_range'; // the content's score lies outside [0, 1]

export const THINKING_FAILURES: readonly ThinkingFailure[] = [
  'timeout', 'network', 'http_429', 'http_5xx', 'http_4xx', 'http_3xx', 'bad_json', 'bad_response', 'unparseable', 'out_of_range',
];

export interface ThinkingRewardStats {
  /** Items asked for. */
  requested: number;
  /** Items that got a score. */
  scored: number;
  /** Items answered from the cache (included in scored). */
  cacheHits: number;
  /** HTTP requests sent, retries included. */
  calls: number;
  /** Requests retried, by the failure that caused the retry. */
  retries: Record<ThinkingFailure, number>;
  /** Items left without a score (NaN), by the last failure. */
  failed: Record<ThinkingFailure, number>;
}

/** Anything that scores reasoning: NaN marks a missing score, never a silent 0. */
export interface ThinkingReward {
  score(items: ThinkingItem[]): Promise<number[]>;
  readonly stats: ThinkingRewardStats;
}

/**
 * What the reward model judges: the `<think>` content (paper), or the whole response with `$` removed
 * (reference code). A response without `<think>` is passed whole in paper mode.
 */
export function thinkingInput(response: string, mode: Mode = 'paper'): string {
  if (typeof response !== 'string') throw new SophiaError('E_TYPE', `thinkingInput: response must be a string, got ${describe(response)}`);
  if (mode === 'reference') return response.replace(/\$/g, '');
  const m = /<think>([\s\S]*?)<\/think>/.exec(response);
  return m ? m[1].trim() : response;
}

export interface OpenAIThinkingRewardOptions {
  /** Server base URL (`http://host:8000`, `…/v1`) or the full `…/v1/chat/completions` URL. */
  baseUrl: string;
  /** Served model name. */
  model: string;
  /** Bearer key; defaults to $SOPHIA_RM_API_KEY, then $OPENAI_API_KEY. Never logged. */
  apiKey?: string;
  /** Most requests in flight at once (default 8). */
  concurrency?: number;
  /** Time for one request, headers and body, in ms (default 60000). */
  timeoutMs?: number;
  /** Retries after the first try for timeouts, network errors, 429, 5xx and bad bodies (default 3). */
  maxRetries?: number;
  /** First backoff in ms, doubled per retry, with jitter (default 500). */
  backoffMs?: number;
  /** Largest backoff in ms (default 8000). */
  maxBackoffMs?: number;
  /** A Retry-After longer than this (ms) ends the retries at once (default 60000). */
  maxRetryAfterMs?: number;
  /** Largest reply body in bytes (default 1 MiB). */
  maxResponseBytes?: number;
  /** Sent as max_tokens when set. */
  maxTokens?: number;
  /** Scores kept for identical items (default 10000; 0 turns the cache off). */
  cacheSize?: number;
  /**
   * How a reply is read: 'strict' (default) takes only `<answer>x</answer>`, `\boxed{x}` or a bare
   * number, with x in [0, 1], and counts anything else as a failure (unparseable, out_of_range);
   * 'reference' runs the reference code's extractor chain and clamps (extractThinkingScore).
   */
  scoreFormat?: ScoreFormat;
  /** Receives one line per retry and per failure. */
  log?: (line: string) => void;
}

const SYSTEM_PROMPT = 'You are a helpful assistant.';

/** The chat-completions URL for a base URL or a full one; E_CONFIG when it is not http(s). */
export function chatCompletionsUrl(baseUrl: string): string {
  if (typeof baseUrl !== 'string' || baseUrl.length === 0) {
    throw new SophiaError('E_CONFIG', `baseUrl must be a non-empty http(s) URL, got ${describe(baseUrl)}`);
  }
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new SophiaError('E_CONFIG', `baseUrl must be an http(s) URL such as http://127.0.0.1:8000/v1, got ${describe(baseUrl)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SophiaError('E_CONFIG', `baseUrl must use http or https, got ${describe(url.protocol)}`);
  }
  const path = url.pathname.replace(/\/+$/, '');
  if (path.endsWith('/chat/completions')) url.pathname = path;
  else if (path.endsWith('/v1')) url.pathname = `${path}/chat/completions`;
  else url.pathname = `${path}/v1/chat/completions`;
  return url.toString();
}

type Attempt =
  | { ok: true; score: number }
  | { ok: false; reason: ThinkingFailure; retryable: boolean; retryAfterMs?: number; detail?: string };

type Scored = { score: number; reason?: ThinkingFailure };

/** Limits work in flight; waiters are served in arrival order. */
class Semaphore {
  private active = 0;
  private readonly waiters: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    }
  }
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function positiveInt(name: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new SophiaError('E_CONFIG', `OpenAIThinkingReward: ${name} must be an integer >= ${min}, got ${describe(value)}`);
  }
  return value;
}

const emptyCounts = (): Record<ThinkingFailure, number> =>
  Object.fromEntries(THINKING_FAILURES.map((r) => [r, 0])) as Record<ThinkingFailure, number>;

/**
 * A thinking reward model behind an OpenAI-compatible chat-completions server (vLLM, SGLang, …),
 * sent the published prompt at temperature 0. Bounded concurrency, a timeout per request, retries
 * with exponential backoff and jitter that honour Retry-After, and a cache of identical items.
 */
export class OpenAIThinkingReward implements ThinkingReward {
  readonly url: string;
  readonly model: string;
  private readonly opts: Required<Omit<OpenAIThinkingRewardOptions, 'apiKey' | 'maxTokens' | 'log' | 'baseUrl' | 'model' | 'scoreFormat'>>;
  readonly scoreFormat: ScoreFormat;
  private readonly maxTokens?: number;
  private readonly log: (line: string) => void;
  readonly #apiKey: string | undefined;
  private readonly gate: Semaphore;
  private readonly cache = new Map<string, number>();
  private readonly pending = new Map<string, Promise<Scored>>();
  private counters = { requested: 0, scored: 0, cacheHits: 0, calls: 0, retries: emptyCounts(), failed: emptyCounts() };

  constructor(options: OpenAIThinkingRewardOptions) {
    if (options === null || typeof options !== 'object') {
      throw new SophiaError('E_CONFIG', `OpenAIThinkingReward: options must be an object, got ${describe(options)}`);
    }
    this.url = chatCompletionsUrl(options.baseUrl);
    if (typeof options.model !== 'string' || options.model.length === 0) {
      throw new SophiaError('E_CONFIG', `OpenAIThinkingReward: model must be a non-empty string, got ${describe(options.model)}`);
    }
    this.model = options.model;
    const key = options.apiKey ?? process.env.SOPHIA_RM_API_KEY ?? process.env.OPENAI_API_KEY;
    if (key !== undefined && typeof key !== 'string') throw new SophiaError('E_CONFIG', `OpenAIThinkingReward: apiKey must be a string, got ${describe(key)}`);
    this.#apiKey = key || undefined;
    this.opts = {
      concurrency: positiveInt('concurrency', options.concurrency, 8, 1),
      timeoutMs: positiveInt('timeoutMs', options.timeoutMs, 60_000, 1),
      maxRetries: positiveInt('maxRetries', options.maxRetries, 3, 0),
      backoffMs: positiveInt('backoffMs', options.backoffMs, 500, 0),
      maxBackoffMs: positiveInt('maxBackoffMs', options.maxBackoffMs, 8_000, 0),
      maxRetryAfterMs: positiveInt('maxRetryAfterMs', options.maxRetryAfterMs, 60_000, 0),
      maxResponseBytes: positiveInt('maxResponseBytes', options.maxResponseBytes, 1 << 20, 1),
      cacheSize: positiveInt('cacheSize', options.cacheSize, 10_000, 0),
    };
    if (options.maxTokens !== undefined) this.maxTokens = positiveInt('maxTokens', options.maxTokens, 0, 1);
    if (options.log !== undefined && typeof options.log !== 'function') {
      throw new SophiaError('E_CONFIG', `OpenAIThinkingReward: log must be a function, got ${describe(options.log)}`);
    }
    this.log = options.log ?? (() => {});
    if (options.scoreFormat !== undefined && options.scoreFormat !== 'strict' && options.scoreFormat !== 'reference') {
      throw new SophiaError('E_CONFIG', `OpenAIThinkingReward: scoreFormat must be 'strict' or 'reference', got ${describe(options.scoreFormat)}`);
    }
    this.scoreFormat = options.scoreFormat ?? 'strict';
    this.gate = new Semaphore(this.opts.concurrency);
  }

  get stats(): ThinkingRewardStats {
    const c = this.counters;
    return { ...c, retries: { ...c.retries }, failed: { ...c.failed } };
  }

  /** Sets every counter back to zero (the cache stays). */
  resetStats(): void {
    this.counters = { requested: 0, scored: 0, cacheHits: 0, calls: 0, retries: emptyCounts(), failed: emptyCounts() };
  }

  /** Scores every item; a score that could not be had is NaN and counted in stats.failed. */
  async score(items: ThinkingItem[]): Promise<number[]> {
    if (!Array.isArray(items)) throw new SophiaError('E_TYPE', `score: items must be an array, got ${describe(items)}`);
    const bodies = await Promise.all(items.map((item, i) => this.requestBody(item, i)));
    this.counters.requested += items.length;
    return Promise.all(bodies.map((body) => this.scoreBody(body)));
  }

  private async requestBody(item: ThinkingItem, i: number): Promise<string> {
    if (item === null || typeof item !== 'object') throw new SophiaError('E_TYPE', `score: items[${i}] must be an object, got ${describe(item)}`);
    if (typeof item.question !== 'string') throw new SophiaError('E_TYPE', `score: items[${i}].question must be a string, got ${describe(item.question)}`);
    if (typeof item.response !== 'string') throw new SophiaError('E_TYPE', `score: items[${i}].response must be a string, got ${describe(item.response)}`);
    if (item.image !== undefined && !(item.image instanceof Uint8Array)) {
      throw new SophiaError('E_TYPE', `score: items[${i}].image must be PNG or JPEG bytes (a Buffer), got ${describe(item.image)}`);
    }
    let question = item.question;
    let content: unknown;
    if (item.image !== undefined) {
      if (!question.includes('<image>')) question = `<image> ${question}`;
      // A JPEG is converted off the event loop when large.
      const png = await toPngAsync(item.image, `score: items[${i}].image`);
      content = [
        { type: 'image_url', image_url: { url: `data:image/png;base64,${png.toString('base64')}` } },
        { type: 'text', text: fillThinkingPrompt(question, item.response) },
      ];
    } else {
      content = fillThinkingPrompt(question, item.response);
    }
    return JSON.stringify({
      model: this.model,
      messages: [
        { role: 'system', content: SYSTEM_PROMPT },
        { role: 'user', content },
      ],
      temperature: 0,
      ...(this.maxTokens !== undefined ? { max_tokens: this.maxTokens } : {}),
    });
  }

  private async scoreBody(body: string): Promise<number> {
    const key = createHash('sha256').update(body).digest('hex');
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      this.counters.cacheHits++;
      this.counters.scored++;
      return cached;
    }
    const shared = this.pending.get(key);
    const outcome = await (shared ?? this.startFetch(key, body));
    if (outcome.reason !== undefined) {
      this.counters.failed[outcome.reason]++;
    } else {
      this.counters.scored++;
      if (shared) this.counters.cacheHits++;
    }
    return outcome.score;
  }

  /** One chain of requests per distinct body; identical items asked meanwhile share it. */
  private startFetch(key: string, body: string): Promise<Scored> {
    const work = this.fetchScore(body).then((outcome) => {
      this.pending.delete(key);
      if (outcome.reason === undefined && this.opts.cacheSize > 0) {
        if (this.cache.size >= this.opts.cacheSize) this.cache.delete(this.cache.keys().next().value as string);
        this.cache.set(key, outcome.score);
      }
      return outcome;
    });
    this.pending.set(key, work);
    return work;
  }

  private async fetchScore(body: string): Promise<Scored> {
    for (let attempt = 0; ; attempt++) {
      const result = await this.gate.run(() => this.attempt(body));
      if (result.ok) return { score: result.score };
      const { reason } = result;
      const tooLong = result.retryAfterMs !== undefined && result.retryAfterMs > this.opts.maxRetryAfterMs;
      if (!result.retryable || attempt >= this.opts.maxRetries || tooLong) {
        this.log(`thinking RM: no score (${reason}${result.detail ? `: ${this.redact(result.detail)}` : ''}) after ${attempt + 1} request(s)`);
        return { score: NaN, reason };
      }
      this.counters.retries[reason]++;
      const backoff = Math.min(this.opts.maxBackoffMs, this.opts.backoffMs * 2 ** attempt);
      const wait = Math.max(result.retryAfterMs ?? 0, backoff * (0.5 + Math.random() / 2));
      this.log(`thinking RM: ${reason}, retry ${attempt + 1}/${this.opts.maxRetries} in ${Math.round(wait)} ms`);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  private async attempt(body: string): Promise<Attempt> {
    this.counters.calls++;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.opts.timeoutMs);
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
      if (this.#apiKey) headers.authorization = `Bearer ${this.#apiKey}`;
      const res = await fetch(this.url, { method: 'POST', headers, body, signal: abort.signal, redirect: 'manual' });
      const text = await this.readBody(res);
      if (text === null) return { ok: false, reason: 'bad_response', retryable: true, detail: `reply over ${this.opts.maxResponseBytes} bytes` };
      if (res.status === 429) return { ok: false, reason: 'http_429', retryable: true, retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) };
      if (res.status >= 500) return { ok: false, reason: 'http_5xx', retryable: true, retryAfterMs: parseRetryAfter(res.headers.get('retry-after')), detail: `HTTP ${res.status}` };
      if (res.status === 408) return { ok: false, reason: 'timeout', retryable: true };
      if (res.status >= 300 && res.status < 400) return { ok: false, reason: 'http_3xx', retryable: false, detail: `HTTP ${res.status} to ${res.headers.get('location') ?? '(no location)'}` };
      if (res.status < 200 || res.status >= 300) return { ok: false, reason: 'http_4xx', retryable: false, detail: `HTTP ${res.status} ${text.slice(0, 200)}` };
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        return { ok: false, reason: 'bad_json', retryable: true };
      }
      const content = (json as { choices?: { message?: { content?: unknown } }[] })?.choices?.[0]?.message?.content;
      if (typeof content !== 'string') return { ok: false, reason: 'bad_response', retryable: true, detail: 'no choices[0].message.content' };
      if (this.scoreFormat === 'reference') {
        const score = extractThinkingScore(content);
        if (Number.isNaN(score)) return { ok: false, reason: 'unparseable', retryable: false, detail: JSON.stringify(content.slice(0, 80)) };
        return { ok: true, score };
      }
      const parsed = parseThinkingScore(content);
      if (parsed.problem) return { ok: false, reason: parsed.problem, retryable: false, detail: JSON.stringify(content.slice(0, 80)) };
      return { ok: true, score: parsed.score };
    } catch {
      return abort.signal.aborted ? { ok: false, reason: 'timeout', retryable: true } : { ok: false, reason: 'network', retryable: true };
    } finally {
      clearTimeout(timer);
    }
  }

  /** The body as text, or null past maxResponseBytes (leaving the loop cancels the rest of the body). */
  private async readBody(res: Response): Promise<string | null> {
    if (!res.body) return '';
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      size += chunk.length;
      if (size > this.opts.maxResponseBytes) return null;
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  private redact(text: string): string {
    return this.#apiKey ? text.split(this.#apiKey).join('[redacted]') : text;
  }
}

/**
 * The model names an OpenAI-compatible server lists at /v1/models (vLLM serves one), for picking a
 * default model. E_REMOTE when the server does not answer with a model list.
 */
export async function listModels(baseUrl: string, opts: { apiKey?: string; timeoutMs?: number } = {}): Promise<string[]> {
  const url = chatCompletionsUrl(baseUrl).replace(/\/chat\/completions$/, '/models');
  const key = opts.apiKey ?? process.env.SOPHIA_RM_API_KEY ?? process.env.OPENAI_API_KEY;
  let json: unknown;
  try {
    const res = await fetch(url, {
      headers: key ? { authorization: `Bearer ${key}` } : {},
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    json = await res.json();
  } catch (err) {
    const why = (err as Error).name === 'TimeoutError' ? 'timed out' : (err as Error).message;
    throw new SophiaError('E_REMOTE', `listModels: ${url} did not list models (${key ? why.split(key).join('[redacted]') : why}); pass the model name explicitly`);
  }
  const data = (json as { data?: { id?: unknown }[] })?.data;
  const ids = Array.isArray(data) ? data.map((m) => m?.id).filter((id): id is string => typeof id === 'string') : [];
  if (ids.length === 0) throw new SophiaError('E_REMOTE', `listModels: ${url} answered without any model id; pass the model name explicitly`);
  return ids;
}
