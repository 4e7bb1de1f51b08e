import { addon } from '../native';
import { Tensor, holdForAsync } from '../tensor';
import { SophiaError } from '../errors';
import { int32Host, logitsShape, options } from './common';

export interface LogprobsOptions {
  /** Softmax temperature τ > 0; logits are divided by it. Default 1. */
  temperature?: number;
  /** Also return the per-token entropy −Σ p log p. Default false. */
  entropy?: boolean;
}

export interface LogprobsResult {
  /** log p(label) per token, fp32. */
  logp: Float32Array;
  /** Per-token entropy in nats, when asked for. */
  entropy?: Float32Array;
}

function prepare(logits: Tensor, labels: Int32Array | Tensor, opts: LogprobsOptions | undefined, async: boolean) {
  const fn = async ? 'logprobs' : 'logprobsSync';
  const { N, V, tensor } = logitsShape(fn, logits);
  const lab = int32Host(fn, 'labels', labels);
  if (lab.length !== N)
    throw new SophiaError('E_SHAPE', `${fn}: labels must have N = ${N} elements (one per logits row), got ${lab.length}`);
  const o = options(fn, 'opts', opts);
  return { logits: tensor.nativeData, dtype: tensor.dtype, V, labels: lab, temperature: o.temperature, entropy: o.entropy, async };
}

/**
 * Per-token log-probabilities of `labels` under softmax(logits / τ), and optionally the entropy.
 * Runs off the event loop; a device tensor runs on the GPU.
 */
export async function logprobs(logits: Tensor, labels: Int32Array | Tensor, opts?: LogprobsOptions): Promise<LogprobsResult> {
  const args = prepare(logits, labels, opts, true);
  holdForAsync(args.logits);
  return (await addon().logprobs(args)) as LogprobsResult;
}

/** As logprobs(), on the calling thread. */
export function logprobsSync(logits: Tensor, labels: Int32Array | Tensor, opts?: LogprobsOptions): LogprobsResult {
  return addon().logprobs(prepare(logits, labels, opts, false)) as LogprobsResult;
}
