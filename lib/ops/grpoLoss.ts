import { addon, type DeviceBuffer } from '../native';
import { Tensor, holdForAsync } from '../tensor';
import { SophiaError, describe } from '../errors';
import { int32Host, logitsShape, options } from './common';

export type KlType = 'k1' | 'k2' | 'k3';
export type LossAgg = 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum' | 'seq-mean-token-sum-norm';

export interface GrpoLossInputs {
  /** [N, V] logits (f32/bf16/f16, host or device). Give either logits + labels, or logp. */
  logits?: Tensor;
  /** [N] log-probs of the sampled tokens (the log-prob-only variant; gradient w.r.t. logp). */
  logp?: Float32Array;
  /** [N] token ids, 0 ≤ label < V (only read where the mask is non-zero). */
  labels?: Int32Array | Tensor;
  /** [N] log-probs under the policy that sampled the tokens. */
  oldLogp: Float32Array;
  /** [N] log-probs under the frozen reference policy (needed when klCoef ≠ 0). */
  refLogp?: Float32Array;
  /** Advantages: length B (per sequence, broadcast) or N (per token). */
  advantages: Float32Array;
  /** [B+1] cu_seqlens: sequence b owns tokens seqStarts[b] … seqStarts[b+1]−1. */
  seqStarts: Int32Array;
  /** [N] 1 = token counts, 0 = ignored (Uint8Array), or non-negative weights (Float32Array). */
  mask?: Uint8Array | Float32Array;
  /**
   * Where to write d loss / d logits: a [N, V] tensor of the logits' dtype and device, reused across
   * calls (a fresh N·V buffer per call costs its page faults on first touch). Default: a new buffer.
   */
  gradOut?: Tensor;
}

export interface GrpoLossOptions {
  /** Softmax temperature τ > 0. Default 1. */
  temperature?: number;
  /** Lower clip ε: ratio ≥ 1 − clipLow. Default 0.2. */
  clipLow?: number;
  /** Upper clip: ratio ≤ 1 + clipHigh (DAPO's clip-higher uses 0.28). Default 0.2. */
  clipHigh?: number;
  /** Dual clip c > 1 for negative advantages (verl uses 3); 0 or undefined = off. */
  dualClip?: number;
  /** KL-to-reference coefficient (the paper: 0.04). Default 0. */
  klCoef?: number;
  /** KL estimator: k1, k2 or k3 ("low_var_kl"). Default 'k3'. */
  klType?: KlType;
  /** Entropy bonus coefficient (the released config: 1e-3). Default 0. */
  entropyCoef?: number;
  /** Loss aggregation. Default 'token-mean'. */
  lossAgg?: LossAgg;
  /** Fixed length L for 'seq-mean-token-sum-norm' (required there). */
  maxLen?: number;
  /** Compute the gradient. Default true. */
  backward?: boolean;
  /** Write gradLogits over the logits buffer (saves N·V memory). Default false. */
  inplace?: boolean;
  /** Whether `advantages` is per sequence or per token; needed only when B = N. Default 'auto'. */
  advantagesPer?: 'auto' | 'sequence' | 'token';
}

export interface GrpoLossMetrics {
  pgLoss: number;
  klLoss: number;
  /** Aggregated entropy; NaN for the logp variant (no logits to take it from). */
  entropy: number;
  clipFrac: number;
  ppoKl: number;
  /** Active tokens whose loss was not finite (NaN/inf inputs). */
  nonFinite: number;
}

export interface GrpoLossResult {
  loss: number;
  metrics: GrpoLossMetrics;
  /** d loss / d logits, [N, V] in the logits' dtype and device (the logits tensor itself when inplace). */
  gradLogits?: Tensor;
  /** d loss / d logp, [N] (logp variant). */
  gradLogp?: Float32Array;
}

function prepare(inputs: GrpoLossInputs, opts: GrpoLossOptions | undefined, async: boolean) {
  const fn = async ? 'grpoLoss' : 'grpoLossSync';
  if (typeof inputs !== 'object' || inputs === null)
    throw new SophiaError('E_TYPE', `${fn}: inputs must be an object, got ${describe(inputs)}`);
  const o = options(fn, 'opts', opts);
  const args: Record<string, unknown> = { ...o, async };
  let shape: { N: number; V: number; tensor: Tensor } | undefined;
  if (inputs.logits !== undefined) {
    shape = logitsShape(fn, inputs.logits);
    if (inputs.labels === undefined) throw new SophiaError('E_CONFIG', `${fn}: labels are required with logits`);
    const labels = int32Host(fn, 'labels', inputs.labels);
    if (labels.length !== shape.N)
      throw new SophiaError('E_SHAPE', `${fn}: labels must have N = ${shape.N} elements (one per logits row), got ${labels.length}`);
    Object.assign(args, { logits: shape.tensor.nativeData, dtype: shape.tensor.dtype, V: shape.V, labels });
  }
  if (inputs.gradOut !== undefined) {
    const g = inputs.gradOut;
    if (!(g instanceof Tensor)) throw new SophiaError('E_TYPE', `${fn}: gradOut must be a Tensor, got ${describe(g)}`);
    if (shape && (g.dtype !== shape.tensor.dtype || g.shape.length !== 2 || g.shape[0] !== shape.N || g.shape[1] !== shape.V))
      throw new SophiaError('E_SHAPE', `${fn}: gradOut must be a ${shape.tensor.dtype} tensor of shape [${shape.N}, ${shape.V}] like the logits, got ${g.dtype} [${g.shape.join(', ')}]`);
    args.gradOut = g.nativeData;
  }
  Object.assign(args, {
    logp: inputs.logp,
    oldLogp: inputs.oldLogp,
    refLogp: inputs.refLogp,
    advantages: inputs.advantages,
    seqStarts: inputs.seqStarts,
    mask: inputs.mask,
  });
  return { args, shape };
}

function finish(raw: unknown, shape: { N: number; V: number; tensor: Tensor } | undefined, inplace: boolean, gradOut?: Tensor): GrpoLossResult {
  const r = raw as { loss: number; metrics: GrpoLossMetrics; gradLogits?: Float32Array | Uint16Array | DeviceBuffer; gradLogp?: Float32Array };
  const out: GrpoLossResult = { loss: r.loss, metrics: r.metrics };
  if (r.gradLogp) out.gradLogp = r.gradLogp;
  if (r.gradLogits && shape) {
    const { N, V, tensor } = shape;
    if (gradOut) out.gradLogits = gradOut;
    else if (inplace) out.gradLogits = tensor;
    else if (ArrayBuffer.isView(r.gradLogits)) out.gradLogits = Tensor.from(r.gradLogits, [N, V], tensor.dtype);
    else out.gradLogits = Tensor.fromDeviceBuffer(r.gradLogits, [N, V], tensor.dtype);
  }
  return out;
}

/**
 * The fused GRPO / PPO-clip loss with KL and entropy terms (shared/reference/kernels.md), and its
 * gradient w.r.t. the logits (or the log-probs). Runs off the event loop; device logits run on the GPU.
 */
export async function grpoLoss(inputs: GrpoLossInputs, opts?: GrpoLossOptions): Promise<GrpoLossResult> {
  const { args, shape } = prepare(inputs, opts, true);
  holdForAsync(args.logits, args.gradOut);
  return finish(await addon().grpoLoss(args), shape, opts?.inplace === true, inputs.gradOut);
}

/** As grpoLoss(), on the calling thread. */
export function grpoLossSync(inputs: GrpoLossInputs, opts?: GrpoLossOptions): GrpoLossResult {
  const { args, shape } = prepare(inputs, opts, false);
  return finish(addon().grpoLoss(args), shape, opts?.inplace === true, inputs.gradOut);
}
