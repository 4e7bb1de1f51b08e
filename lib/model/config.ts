/** The embedded model's configuration: every field with its default and what it means. */
import { SophiaError, describe } from '../errors';

export interface ModelConfig {
  /** Token ids (the tokenizer's vocabSize). Default 104: the character tokenizer. */
  vocab: number;
  /** Width of every hidden state. Default 192. */
  dim: number;
  /** Decoder blocks. Default 4. */
  layers: number;
  /** Query heads; dim / heads is the head size (must be even for rotary positions). Default 6. */
  heads: number;
  /** Key/value heads (grouped-query attention when < heads; must divide heads). Default 2. */
  kvHeads: number;
  /** SwiGLU hidden width of the decoder MLPs. Default 512. */
  ffn: number;
  /** Longest sequence in tokens, the visual tokens included. Default 256. */
  context: number;
  /** Side of the square RGB input image in pixels; 0 makes a text-only model. Default 32. */
  imageSize: number;
  /** Image channels. Default 3. */
  channels: number;
  /** Side of a square patch; (imageSize / patch)² visual tokens per image. Default 8 (16 tokens). */
  patch: number;
  /** Bidirectional vision blocks. Default 2. */
  visionLayers: number;
  /** Heads of the vision blocks. Default 6. */
  visionHeads: number;
  /** SwiGLU hidden width of the vision blocks. Default 512. */
  visionFfn: number;
  /** The LM head reuses the token embedding. Default true. */
  tieEmbeddings: boolean;
  /** A scalar score head on the last token instead of the LM head (the thinking reward model). Default false. */
  rewardHead: boolean;
  /** Base of the rotary frequencies. Default 10000. */
  ropeTheta: number;
  /** RMSNorm epsilon. Default 1e-5. */
  normEps: number;
  /** The `<image>` token id, whose positions take the visual tokens. Default 3. */
  imageToken: number;
}

export const DEFAULT_MODEL_CONFIG: Readonly<ModelConfig> = Object.freeze({
  vocab: 104,
  dim: 192,
  layers: 4,
  heads: 6,
  kvHeads: 2,
  ffn: 512,
  context: 256,
  imageSize: 32,
  channels: 3,
  patch: 8,
  visionLayers: 2,
  visionHeads: 6,
  visionFfn: 512,
  tieEmbeddings: true,
  rewardHead: false,
  ropeTheta: 10000,
  normEps: 1e-5,
  imageToken: 3,
});

/**
 * Fills defaults and rejects unknown fields and wrong types; the addon checks the ranges and the
 * relations between fields (dim % heads, …) and names the field that is off. When `heads` is
 * given without `kvHeads`, kvHeads follows heads (no grouping).
 */
export function resolveModelConfig(partial: unknown = {}): ModelConfig {
  if (partial === null || typeof partial !== 'object' || Array.isArray(partial))
    throw new SophiaError('E_CONFIG', `model config must be an object, got ${describe(partial)}`);
  const p = partial as Record<string, unknown>;
  const out: Record<string, unknown> = { ...DEFAULT_MODEL_CONFIG };
  if (p.heads !== undefined && p.kvHeads === undefined) out.kvHeads = p.heads;
  for (const [k, v] of Object.entries(p)) {
    if (!(k in DEFAULT_MODEL_CONFIG))
      throw new SophiaError('E_CONFIG', `model config: unknown field '${k}' (known: ${Object.keys(DEFAULT_MODEL_CONFIG).join(', ')})`);
    if (v === undefined) continue;
    const want = typeof (DEFAULT_MODEL_CONFIG as unknown as Record<string, unknown>)[k];
    if (typeof v !== want) throw new SophiaError('E_CONFIG', `model config: ${k} must be a ${want}, got ${describe(v)}`);
    out[k] = v;
  }
  return out as unknown as ModelConfig;
}

/** A small configuration for tests and CI runs (about 60 k parameters). */
export const TINY_MODEL_CONFIG: Readonly<Partial<ModelConfig>> = Object.freeze({
  dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, context: 96, imageSize: 16, patch: 8, visionLayers: 1, visionHeads: 2, visionFfn: 64,
});
