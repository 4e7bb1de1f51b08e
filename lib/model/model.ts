/**
 * The embedded vision-language model (native/cpu/model.cpp): a small LLaMA-style decoder with a
 * vision tower, trained and sampled from TypeScript. `VisionLanguageModel` is the policy;
 * `RewardModel` (reward.ts) is the same network with a score head.
 */
import { native as loadedBackend, type Backend } from '../native';
import { SophiaError, describe } from '../errors';
import { resizeImage, type RgbImage } from '../data/images';
import { Tensor, holdForAsync } from '../tensor';
import { logprobs as logprobsOp } from '../ops/logprobs';
import { resolveModelConfig, type ModelConfig } from './config';
import { CharTokenizer, expandImageTokens, type Tokenizer } from './tokenizer';

export interface TensorInfo {
  name: string;
  shape: number[];
  offset: number;
  size: number;
  decay: boolean;
}

interface NativeModel {
  info(): { device: Backend; config: ModelConfig; params: number; bytes: number; adamStep: number; tensors: TensorInfo[] };
  forward(a: Record<string, unknown>): Float32Array | Promise<Float32Array>;
  backward(a: Record<string, unknown>): undefined | Promise<undefined>;
  zeroGrad(): void;
  step(a: Record<string, unknown>): Promise<StepResult>;
  generate(a: Record<string, unknown>): Promise<{ tokens: Int32Array; logp: Float32Array; lengths: Int32Array }>;
  copyState(a: { which: StateBuffer; out: Float32Array }): number;
  setState(a: { which: StateBuffer; data: Float32Array; adamStep?: number }): void;
  dispose(): void;
}

export type StateBuffer = 'params' | 'grads' | 'adamM' | 'adamV';

export interface MemoryPlan {
  params: number;
  grads: number;
  optimizer: number;
  activations: number;
  attention: number;
  scratch: number;
  total: number;
}

export interface CreateModelOptions {
  /** Architecture (defaults: DEFAULT_MODEL_CONFIG). */
  config?: Partial<ModelConfig>;
  /** Seed of the initial weights. Default 0. */
  seed?: number;
  /** Refuse any call that would need more bytes than this (0 = no limit). Default 0. */
  maxBytes?: number;
  /** Default: the character tokenizer. Its vocabSize must equal config.vocab. */
  tokenizer?: Tokenizer;
  /**
   * Where weights, optimizer state and activations live: 'cpu', or 'cuda' (needs the CUDA-enabled
   * binary, i.e. SOPHIA_DEVICE=cuda or auto with a usable GPU). Default: the process backend.
   */
  device?: Backend;
}

/** One sequence: token ids (with one `<image>` token, or already expanded) and its image. */
export interface SequenceInput {
  tokens: ArrayLike<number>;
  /** Sequences that share one RgbImage object share its vision pass. */
  image?: RgbImage | null;
}

/** Packed sequences, ready for the addon. */
export interface PackedBatch {
  tokens: Int32Array;
  seqStarts: Int32Array;
  pixels?: Float32Array;
  imageOf?: Int32Array;
}

export interface StepOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global gradient-norm clip; 0 = off. */
  clipNorm?: number;
}

export interface StepResult {
  /** Gradient norm before clipping. */
  gradNorm: number;
  clipScale: number;
  /** A non-finite gradient: nothing was updated. */
  skipped: boolean;
  /** AdamW steps taken so far. */
  step: number;
}

export interface GenerateOptions {
  /** Samples per prompt (the group size G); they share one prompt pass. Default 1. */
  samples?: number;
  /** New tokens at most (the response also stops at EOS and at the context end). Default 64. */
  maxNew?: number;
  /** 0 = greedy. Default 1. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off. Default 0. */
  topK?: number;
  /** Nucleus sampling mass; 1 = off. Default 1. */
  topP?: number;
  /** Seed of the sampling streams. Default 0. */
  seed?: number;
}

export interface Sample {
  /** Index of the prompt it answers. */
  prompt: number;
  /** Sampled tokens, EOS included when reached. */
  tokens: Int32Array;
  /** Log-prob of each sampled token under the temperature-scaled (untruncated) distribution. */
  logp: Float32Array;
}

const STATE_BUFFERS: readonly StateBuffer[] = ['params', 'grads', 'adamM', 'adamV'];

function int(v: unknown, what: string, lo: number, hi: number, def?: number): number {
  if (v === undefined && def !== undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
    throw new SophiaError('E_RANGE', `${what} must be an integer in [${lo}, ${hi}], got ${describe(v)}`);
  return v;
}

export class VisionLanguageModel {
  readonly config: ModelConfig;
  readonly tokenizer: Tokenizer;
  readonly numParams: number;
  readonly tensors: readonly TensorInfo[];
  /** Where the model lives ('cpu' or 'cuda'). */
  readonly device: Backend;
  protected native: NativeModel | null;

  protected constructor(native: NativeModel, tokenizer: Tokenizer) {
    this.native = native;
    const info = native.info();
    this.config = info.config;
    this.numParams = info.params;
    this.tensors = info.tensors;
    this.device = info.device;
    this.tokenizer = tokenizer;
    if (tokenizer.vocabSize !== this.config.vocab)
      throw new SophiaError('E_CONFIG', `the tokenizer has ${tokenizer.vocabSize} tokens but the model config says vocab = ${this.config.vocab}`);
    if (tokenizer.special.image !== this.config.imageToken)
      throw new SophiaError('E_CONFIG', `the tokenizer's <image> id is ${tokenizer.special.image} but the model config says imageToken = ${this.config.imageToken}`);
  }

  /** A new model with freshly initialised weights. */
  static create(opts: CreateModelOptions = {}): VisionLanguageModel {
    const { native, tokenizer } = createNative(opts, false);
    return new VisionLanguageModel(native, tokenizer);
  }

  /** Adopts a native model (used by load()). */
  static fromNative(native: unknown, tokenizer: Tokenizer): VisionLanguageModel {
    return new VisionLanguageModel(native as NativeModel, tokenizer);
  }

  protected get m(): NativeModel {
    if (!this.native) throw new SophiaError('E_DISPOSED', 'the model was disposed');
    return this.native;
  }

  get disposed(): boolean {
    return this.native === null;
  }

  /** Visual tokens per image ((imageSize / patch)²). */
  get visualTokens(): number {
    return this.config.imageSize > 0 ? (this.config.imageSize / this.config.patch) ** 2 : 0;
  }

  /** Bytes the native side holds now (weights, gradients, AdamW state, activation arenas). */
  get bytes(): number {
    return this.m.info().bytes;
  }

  /** AdamW steps taken. */
  get adamStep(): number {
    return this.m.info().adamStep;
  }

  /** The bytes a training batch will need before anything is allocated. */
  memoryPlan(batch: { tokens: number; rows: number; images?: number; seqSquares?: number }): MemoryPlan {
    return (loadedBackend().addon as unknown as { modelMemoryPlan(a: unknown): MemoryPlan }).modelMemoryPlan({ config: this.config, ...batch });
  }

  /**
   * Encodes a prompt for this model: `text` may contain `<image>` (one per image; the visual tokens
   * go there), else `<image>` is put first when an image is given.
   */
  encode(text: string, hasImage: boolean): Int32Array {
    const t = this.tokenizer.encode(hasImage && !text.includes('<image>') ? `<image>${text}` : text);
    return t;
  }

  /** Packs sequences: expands `<image>`, dedupes images by object, converts pixels to [0, 1] CHW floats. */
  pack(seqs: readonly SequenceInput[], what = 'sequences'): PackedBatch {
    if (!Array.isArray(seqs) || seqs.length === 0) throw new SophiaError('E_SHAPE', `${what} must be a non-empty array, got ${describe(seqs)}`);
    const c = this.config;
    const img = this.tokenizer.special.image;
    const nv = this.visualTokens;
    const images: RgbImage[] = [];
    const index = new Map<RgbImage, number>();
    const parts: Int32Array[] = [];
    const imageOf = new Int32Array(seqs.length).fill(-1);
    let anyImage = false;
    seqs.forEach((s, b) => {
      if (s === null || typeof s !== 'object' || s.tokens === undefined)
        throw new SophiaError('E_TYPE', `${what}[${b}] must be { tokens, image? }, got ${describe(s)}`);
      let toks: Int32Array = Int32Array.from(s.tokens as ArrayLike<number>);
      const count = toks.reduce((n, t) => n + (t === img ? 1 : 0), 0);
      if (s.image) {
        if (c.imageSize === 0) throw new SophiaError('E_CONFIG', `${what}[${b}] has an image but this model is text-only (imageSize 0)`);
        const im = s.image as Partial<RgbImage>;
        if (!(Number.isInteger(im.width) && Number.isInteger(im.height) && im.width! >= 1 && im.height! >= 1 && im.data instanceof Uint8Array && im.data.length === im.width! * im.height! * 3))
          throw new SophiaError('E_SHAPE', `${what}[${b}].image must be { width, height, data } with data a Uint8Array of width × height × 3 RGB bytes, got ${describe(im.width)}×${describe(im.height)} with ${im.data instanceof Uint8Array ? `${im.data.length} bytes` : describe(im.data)}`);
        if (count === 1) toks = expandImageTokens(toks, nv, img);
        else if (count !== nv)
          throw new SophiaError('E_SHAPE', `${what}[${b}] must hold one <image> token (or ${nv} expanded ones) for its image, got ${count}`);
        let i = index.get(s.image);
        if (i === undefined) {
          i = images.length;
          images.push(s.image);
          index.set(s.image, i);
        }
        imageOf[b] = i;
        anyImage = true;
      } else if (count > 0) {
        throw new SophiaError('E_SHAPE', `${what}[${b}] holds ${count} <image> tokens but no image`);
      }
      if (toks.length > c.context)
        throw new SophiaError('E_RANGE', `${what}[${b}] has ${toks.length} tokens, more than the context (${c.context})`);
      parts.push(toks);
    });
    const seqStarts = new Int32Array(seqs.length + 1);
    parts.forEach((p, i) => (seqStarts[i + 1] = seqStarts[i] + p.length));
    const tokens = new Int32Array(seqStarts[seqs.length]);
    parts.forEach((p, i) => tokens.set(p, seqStarts[i]));
    const out: PackedBatch = { tokens, seqStarts };
    if (anyImage) {
      out.pixels = imagesToPixels(images, c.imageSize, c.channels);
      out.imageOf = imageOf;
    }
    return out;
  }

  /** Logits [rows.length, vocab] for the given rows (row r predicts the token at r + 1); keeps activations for backward(). */
  async forward(batch: PackedBatch, rows: Int32Array, out?: Float32Array): Promise<Float32Array> {
    const o = out ?? new Float32Array(rows.length * this.config.vocab);
    holdForAsync(o);
    await this.m.forward({ ...batch, rows, out: o, async: true });
    return o;
  }

  /** Adds d loss / d logits (of the last forward) into the gradients. The buffer may be the forward's own output. */
  async backward(dlogits: Float32Array): Promise<void> {
    holdForAsync(dlogits);
    await this.m.backward({ dout: dlogits, async: true });
  }

  zeroGrad(): void {
    this.m.zeroGrad();
  }

  /** One AdamW step (decoupled weight decay on matrices, optional global-norm clipping). */
  async step(opts: StepOptions): Promise<StepResult> {
    if (opts === null || typeof opts !== 'object') throw new SophiaError('E_TYPE', `step: options must be an object, got ${describe(opts)}`);
    return this.m.step({ ...opts, async: true });
  }

  /**
   * Log-probs (and entropies) of the labels at the given rows: labels[i] is the token at rows[i] + 1.
   */
  async logprobs(batch: PackedBatch, rows: Int32Array, opts: { temperature?: number; entropy?: boolean } = {}): Promise<{ logp: Float32Array; entropy?: Float32Array }> {
    const logits = await this.forward(batch, rows);
    const labels = new Int32Array(rows.length);
    for (let i = 0; i < rows.length; i++) labels[i] = batch.tokens[rows[i] + 1] ?? 0;
    return logprobsOp(Tensor.from(logits, [rows.length, this.config.vocab]), labels, { temperature: opts.temperature ?? 1, entropy: opts.entropy ?? false });
  }

  /** Samples `samples` responses per prompt with a KV cache (one prompt pass shared by its samples). */
  async generate(prompts: readonly SequenceInput[], opts: GenerateOptions = {}): Promise<Sample[]> {
    const G = int(opts.samples, 'generate: samples', 1, 4096, 1);
    const maxNew = int(opts.maxNew, 'generate: maxNew', 1, this.config.context, 64);
    const batch = this.pack(prompts, 'generate: prompts');
    const r = await this.m.generate({
      prompt: batch.tokens,
      promptStarts: batch.seqStarts,
      pixels: batch.pixels,
      imageOf: batch.imageOf,
      samples: G,
      maxNew,
      temperature: opts.temperature ?? 1,
      topK: opts.topK ?? 0,
      topP: opts.topP ?? 1,
      seed: opts.seed ?? 0,
      eos: this.tokenizer.special.eos,
      async: true,
    });
    const out: Sample[] = [];
    for (let s = 0; s < r.lengths.length; s++) {
      const n = r.lengths[s];
      out.push({ prompt: Math.floor(s / G), tokens: r.tokens.slice(s * maxNew, s * maxNew + n), logp: r.logp.slice(s * maxNew, s * maxNew + n) });
    }
    return out;
  }

  /** A copy of the weights, gradients or AdamW moments (flat, in the order of `tensors`). */
  getState(which: StateBuffer = 'params'): Float32Array {
    if (!STATE_BUFFERS.includes(which)) throw new SophiaError('E_CONFIG', `getState: which must be one of ${STATE_BUFFERS.join(', ')}, got ${describe(which)}`);
    const out = new Float32Array(this.numParams);
    this.m.copyState({ which, out });
    return out;
  }

  setState(which: StateBuffer, data: Float32Array, adamStep?: number): void {
    if (!STATE_BUFFERS.includes(which)) throw new SophiaError('E_CONFIG', `setState: which must be one of ${STATE_BUFFERS.join(', ')}, got ${describe(which)}`);
    this.m.setState(adamStep === undefined ? { which, data } : { which, data, adamStep });
  }

  /** Copies weights (and optionally AdamW state) from another model of the same configuration. */
  copyFrom(other: VisionLanguageModel, opts: { optimizer?: boolean } = {}): void {
    if (other.numParams !== this.numParams || JSON.stringify(other.config) !== JSON.stringify(this.config))
      throw new SophiaError('E_CONFIG', 'copyFrom: the two models have different configurations');
    this.setState('params', other.getState('params'));
    if (opts.optimizer) {
      this.setState('adamM', other.getState('adamM'));
      this.setState('adamV', other.getState('adamV'), other.adamStep);
    }
  }

  /** Frees the native memory now; the model is unusable afterwards. Safe to call twice. */
  dispose(): void {
    if (!this.native) return;
    this.native.dispose();
    this.native = null;
  }
}

export function createNative(opts: CreateModelOptions, rewardHead: boolean): { native: NativeModel; tokenizer: Tokenizer } {
  if (opts === null || typeof opts !== 'object') throw new SophiaError('E_TYPE', `model options must be an object, got ${describe(opts)}`);
  const tokenizer = opts.tokenizer ?? CharTokenizer.default();
  const config = resolveModelConfig({ vocab: tokenizer.vocabSize, imageToken: tokenizer.special.image, ...(opts.config ?? {}), rewardHead });
  const backend = loadedBackend();
  const device = opts.device ?? backend.backend;
  if (device !== 'cpu' && device !== 'cuda') throw new SophiaError('E_CONFIG', `model device must be 'cpu' or 'cuda', got ${describe(device)}`);
  if (device === 'cuda' && backend.backend !== 'cuda')
    throw new SophiaError('E_DEVICE', `model device 'cuda' needs the CUDA backend, but this process runs on the CPU one (${backend.line}); set SOPHIA_DEVICE=cuda`);
  const Ctor = (backend.addon as unknown as { Model: new (a: unknown) => NativeModel }).Model;
  const native = new Ctor({ config, seed: int(opts.seed, 'model seed', 0, Number.MAX_SAFE_INTEGER, 0), maxBytes: opts.maxBytes ?? 0, device });
  return { native, tokenizer };
}

/** RGB images (HWC bytes) → [n, C, S, S] floats in [0, 1], resized to S × S when needed. */
export function imagesToPixels(images: readonly RgbImage[], size: number, channels: number): Float32Array {
  if (channels !== 3) throw new SophiaError('E_CONFIG', `images are RGB: the model must have channels = 3, got ${channels}`);
  const per = 3 * size * size;
  const out = new Float32Array(images.length * per);
  images.forEach((im0, i) => {
    const im = im0.width === size && im0.height === size ? im0 : resizeImage(im0, size, size);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let ch = 0; ch < 3; ch++) out[i * per + (ch * size + y) * size + x] = im.data[(y * size + x) * 3 + ch] / 255;
  });
  return out;
}
