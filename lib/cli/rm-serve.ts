/**
 * `sophia rm serve`: a thinking reward model (embedded, or another server's) on an OpenAI-compatible
 * API, so trainers and `sophia score` reach every reward model the same way.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { packageRoot } from '../native';
import { intArg } from './args';
import { loadRewardModel } from '../model/checkpoint';
import { SophiaError, describe } from '../errors';
import { OpenAIThinkingReward, listModels, type ThinkingReward } from '../rewards/thinking';
import { startThinkingRewardServer, type ThinkingRewardServerOptions } from '../serve/rm-server';

export interface RewardSourceOptions {
  /** An OpenAI-compatible reward server to forward to (base or chat-completions URL). */
  upstream?: string;
  /** The upstream's model name (default: the first one it lists). */
  upstreamModel?: string;
  /** Bearer key for the upstream (default: none; the server's own key is never forwarded). */
  upstreamApiKey?: string;
  /** Folder of an embedded reward model checkpoint. */
  checkpoint?: string;
  /** Upstream requests in flight at once (default 8). */
  concurrency?: number;
  /** Time for one upstream request in ms (default 60000). */
  timeoutMs?: number;
  /** Upstream retries after the first try (default 1: the caller's client retries too). */
  maxRetries?: number;
  /** Receives the upstream client's retry and failure lines. */
  log?: (line: string) => void;
}

export interface RewardSource {
  reward: ThinkingReward;
  /** One line saying what scores, for the startup message. */
  description: string;
  /** Frees what the source holds (a model's memory); called after the server has closed. */
  dispose?(): Promise<void> | void;
}

/** The reward to serve: exactly one of `upstream` and `checkpoint`. E_CONFIG otherwise. */
/** Where the package's trained thinking reward model lives. */
export function defaultRewardModelDir(): string {
  return path.join(packageRoot(), 'models', 'thinking-rm');
}

export async function resolveRewardSource(opts: RewardSourceOptions): Promise<RewardSource> {
  if (opts === null || typeof opts !== 'object') throw new SophiaError('E_CONFIG', `resolveRewardSource: options must be an object, got ${describe(opts)}`);
  const { upstream, checkpoint } = opts;
  if (upstream !== undefined && checkpoint !== undefined) {
    throw new SophiaError('E_CONFIG', 'rm serve: pass one reward source, --upstream URL or --checkpoint DIR, not both');
  }
  if (upstream === undefined) {
    // The embedded reward model is the default: the checkpoint shipped with the package.
    const dir = checkpoint ?? defaultRewardModelDir();
    if (typeof dir !== 'string' || dir.length === 0) {
      throw new SophiaError('E_CONFIG', `rm serve: checkpoint must be a folder path, got ${describe(dir)}`);
    }
    if (checkpoint === undefined && !fs.existsSync(path.join(dir, 'config.json'))) {
      throw new SophiaError('E_CONFIG', `rm serve: no reward source given and no shipped reward model at ${dir}: pass --upstream URL or --checkpoint DIR (make one with \`sophia rm train\`)`);
    }
    const reward = await loadRewardModel(dir);
    return { reward, description: `embedded reward model ${dir}`, dispose: () => reward.dispose() };
  }
  // a key the caller did not give is not looked up in the environment: the server's own key must not travel upstream
  const apiKey = opts.upstreamApiKey ?? '';
  const model = opts.upstreamModel ?? (await listModels(upstream, { apiKey }))[0];
  const reward = new OpenAIThinkingReward({
    baseUrl: upstream, model, apiKey,
    concurrency: opts.concurrency, timeoutMs: opts.timeoutMs, maxRetries: opts.maxRetries ?? 1, log: opts.log,
  });
  return { reward, description: `${model} at ${reward.url}` };
}

export interface RmServeOptions extends ThinkingRewardServerOptions {
  source: RewardSourceOptions;
  /** Logs one line per request on stderr. */
  verbose?: boolean;
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);
/** Names under which a server listening on any of these hosts is reached from this machine. */
const LOCAL = new Set([...LOOPBACK, '0.0.0.0', '::', '[::]']);

/** E_CONFIG when `upstream` is this very server: every request would forward to itself. */
function checkNotSelf(upstream: string | undefined, host: string, port: number): void {
  if (upstream === undefined || port === 0) return;
  let url: URL;
  try {
    url = new URL(upstream);
  } catch {
    return; // the reward client reports the bad URL
  }
  const upstreamPort = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const sameHost = url.hostname === host || (LOCAL.has(url.hostname) && LOCAL.has(host));
  if (sameHost && upstreamPort === port) {
    throw new SophiaError('E_CONFIG', `rm serve: --upstream ${upstream} is this server (${host}:${port}); point it at the reward model's server`);
  }
}

function formatBytes(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  return `${n} bytes`;
}

/**
 * Serves the reward until SIGINT or SIGTERM, then stops taking requests, finishes those in flight
 * and resolves. A second signal exits at once.
 */
export async function runRmServe(opts: RmServeOptions): Promise<void> {
  const host = opts.host ?? '127.0.0.1';
  checkNotSelf(opts.source.upstream, host, opts.port ?? 8000);
  const source = await resolveRewardSource({
    ...opts.source,
    concurrency: opts.source.concurrency ?? opts.concurrency,
    // two tries fit in the time the server gives a request
    timeoutMs: opts.source.timeoutMs ?? Math.max(1, Math.floor((opts.requestTimeoutMs ?? 120_000) / 2)),
    log: opts.source.log ?? (opts.verbose ? (line) => console.error(line) : undefined),
  });
  // An embedded model scores one call at a time, so waiting requests are batched into one forward pass.
  const maxBatch = opts.maxBatch ?? (opts.source.upstream === undefined ? 32 : 1);
  const server = await startThinkingRewardServer(source.reward, {
    host: opts.host, port: opts.port, modelName: opts.modelName, apiKey: opts.apiKey, maxBodyBytes: opts.maxBodyBytes,
    concurrency: opts.concurrency, maxQueue: opts.maxQueue, maxBatch, maxImagePixels: opts.maxImagePixels, requestTimeoutMs: opts.requestTimeoutMs,
    log: opts.log ?? (opts.verbose ? (line) => console.error(`${new Date().toISOString()} ${line}`) : undefined),
  });
  const modelName = opts.modelName ?? 'sophia-thinking-rm';
  console.log(
    `sophia rm serve: ${source.description} as ${JSON.stringify(modelName)} on ${server.url}/v1 ` +
      `(concurrency ${opts.concurrency ?? 4}, queue ${opts.maxQueue ?? 64}, batch ${maxBatch}, ` +
      `max body ${formatBytes(opts.maxBodyBytes ?? 8 * 2 ** 20)}, ${opts.apiKey ? 'bearer key required' : 'no key'})`,
  );
  if (!opts.apiKey && !LOOPBACK.has(host)) {
    console.error(`sophia rm serve: warning: listening on ${host} without --api-key; anyone who reaches this port can use the reward model`);
  }

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const onInt = (): void => stop('SIGINT');
    const onTerm = (): void => stop('SIGTERM');
    const stop = (sig: NodeJS.Signals): void => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(sig);
    };
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
  const force = (): void => {
    console.error('sophia rm serve: second signal, exiting without waiting');
    process.exit(1);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  try {
    const { inFlight, queued } = server.stats;
    console.error(`sophia rm serve: ${signal}: finishing ${inFlight} reward call(s) and ${queued} queued request(s), then exiting`);
    await server.close();
    await source.dispose?.();
    const s = server.stats;
    console.error(`sophia rm serve: stopped after ${s.requests} request(s), ${s.scored} scored, ${s.errors} answered with an error`);
  } finally {
    process.off('SIGINT', force);
    process.off('SIGTERM', force);
  }
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, kib: 2 ** 10, kb: 1e3, m: 2 ** 20, mib: 2 ** 20, mb: 1e6, g: 2 ** 30, gib: 2 ** 30, gb: 1e9 };

/** A byte size: `1048576`, `512KiB`, `8MiB`, `8M` (binary) or `8MB` (decimal). */
export function parseByteSize(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`expected a size such as 8MiB, 512KiB or 1048576, got ${JSON.stringify(value)}`);
  return n;
}

/** Adds `sophia rm serve` to the CLI (under an `rm` command, made here unless it exists). */
export function registerRmServe(program: Command): void {
  const rm = program.commands.find((c) => c.name() === 'rm') ?? program.command('rm').description('thinking reward model tools');
  rm.command('serve')
    .description('serve a thinking reward model on an OpenAI-compatible API (GET /v1/models, POST /v1/chat/completions)')
    .option('--upstream <url>', 'reward source: an OpenAI-compatible reward model server to forward to (e.g. vLLM serving the SophiaVL-R1 thinking reward model)')
    .option('--checkpoint <dir>', 'reward source: an embedded reward model checkpoint folder')
    .option('--upstream-model <name>', "the upstream's model name (default: the first one it lists)")
    .addOption(new Option('--upstream-api-key <key>', 'bearer key for the upstream').env('SOPHIA_RM_UPSTREAM_API_KEY'))
    .option('--host <host>', 'interface to listen on (0.0.0.0: every interface)', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', intArg(0, 65535), 8000)
    .option('--model-name <name>', 'the model name to serve under', 'sophia-thinking-rm')
    .addOption(new Option('--api-key <key>', 'require "Authorization: Bearer <key>" on every request').env('SOPHIA_RM_API_KEY'))
    .option('--api-key-file <file>', 'read the required key from this file (its first line), so it shows neither in `ps` nor in the environment')
    .addOption(new Option('--max-body <size>', 'largest request body (e.g. 8MiB, 512KiB, 1048576)').argParser(parseByteSize).default(8 * 2 ** 20, '8MiB'))
    .option('--max-image-pixels <n>', 'most pixels an image in a request may declare; larger ones get 400 before any decoding', intArg(1), 16_777_216)
    .option('--concurrency <n>', 'reward calls in flight at once', intArg(1), 4)
    .option('--queue <n>', 'requests that may wait beyond those in flight; more get 503', intArg(0), 64)
    .option('--batch <n>', 'most waiting requests scored in one reward call (default: 32 for an embedded model, 1 for an upstream)', intArg(1))
    .option('--timeout-ms <ms>', 'time from a request to its reply', intArg(1, 2 ** 31 - 1), 120_000)
    .option('--verbose', 'log one line per request on stderr')
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      if (o.apiKeyFile !== undefined) {
        // The file wins over $SOPHIA_RM_API_KEY; with --api-key on the command line too, it is unclear which is meant.
        if (cmd.getOptionValueSource('apiKey') === 'cli') throw new SophiaError('E_CONFIG', 'rm serve: pass the key one way, --api-key (or $SOPHIA_RM_API_KEY) or --api-key-file, not both');
        let text: string;
        try {
          text = fs.readFileSync(o.apiKeyFile as string, 'utf8');
        } catch (err) {
          throw new SophiaError('E_IO', `rm serve: cannot read --api-key-file ${o.apiKeyFile as string} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
        }
        const key = text.split(/\r?\n/)[0].trim();
        if (!key) throw new SophiaError('E_CONFIG', `rm serve: --api-key-file ${o.apiKeyFile as string} holds no key on its first line`);
        o.apiKey = key;
      }
      await runRmServe({
        source: {
          upstream: o.upstream as string | undefined, checkpoint: o.checkpoint as string | undefined,
          upstreamModel: o.upstreamModel as string | undefined, upstreamApiKey: (o.upstreamApiKey as string | undefined) || undefined,
        },
        host: o.host as string, port: o.port as number, modelName: o.modelName as string,
        apiKey: (o.apiKey as string | undefined) || undefined, maxBodyBytes: o.maxBody as number,
        concurrency: o.concurrency as number, maxQueue: o.queue as number, maxBatch: o.batch as number | undefined, maxImagePixels: o.maxImagePixels as number,
        requestTimeoutMs: o.timeoutMs as number, verbose: o.verbose === true,
      });
    });
}
