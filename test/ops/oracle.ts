/**
 * Float64 reference implementation of the kernel contract (shared/reference/kernels.md) and of the
 * trust weights / advantages (method.md §1.4–1.7, §2), plus the seeded random inputs the op tests use.
 * Written from the documents, not from the native code.
 */
import { SophiaError } from '../../lib/errors';
import { bf16ToFloat32, f16ToFloat32, float32ToBf16, float32ToF16, Tensor } from '../../lib/tensor';

export type FloatDType = 'f32' | 'bf16' | 'f16';
export type KlType = 'k1' | 'k2' | 'k3';
export type LossAgg = 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum' | 'seq-mean-token-sum-norm';
export const LOSS_AGGS: LossAgg[] = ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'];
export const KL_TYPES: KlType[] = ['k1', 'k2', 'k3'];
export const DTYPES: FloatDType[] = ['f32', 'bf16', 'f16'];

// ------------------------------------------------------------------ seed and PRNG

/** The run's seed: SOPHIA_TEST_SEED, else from the clock. Printed once per test file. */
export function testSeed(file: string): number {
  const env = process.env.SOPHIA_TEST_SEED;
  let seed: number;
  if (env !== undefined && env.trim() !== '') {
    seed = Number(env);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`SOPHIA_TEST_SEED must be a non-negative integer, got ${JSON.stringify(env)}`);
    seed = seed >>> 0;
  } else {
    seed = Date.now() % 0x7fffffff >>> 0;
  }
  console.log(`${file}: seed ${seed} (reproduce with SOPHIA_TEST_SEED=${seed})`);
  return seed;
}

function hashString(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

/** sfc32: small, fast, seeded; `fork(label)` gives an independent stream per test. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | undefined;
  constructor(readonly seed: number, readonly label = '') {
    this.a = hashString(label, seed ^ 0x9e3779b9);
    this.b = hashString(label, seed ^ 0x243f6a88) ^ 0x85a308d3;
    this.c = hashString(label + '#', seed) | 1;
    this.d = 1;
    for (let i = 0; i < 16; i++) this.u32();
  }
  fork(label: string): Rng {
    return new Rng(this.seed, `${this.label}/${label}`);
  }
  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }
  /** [0, 1) */
  next(): number {
    return this.u32() / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

// ------------------------------------------------------------------ dtype rounding

export interface Quantized {
  /** What the kernel reads (Float32Array for f32, Uint16Array bits for bf16/f16). */
  data: Float32Array | Uint16Array;
  /** The values those bits hold, as the oracle reads them. */
  values: Float64Array;
}

export function quantize(src: ArrayLike<number>, dtype: FloatDType): Quantized {
  if (dtype === 'f32') {
    const data = Float32Array.from(src);
    return { data, values: Float64Array.from(data) };
  }
  const data = dtype === 'bf16' ? float32ToBf16(src) : float32ToF16(src);
  return { data, values: Float64Array.from(dtype === 'bf16' ? bf16ToFloat32(data) : f16ToFloat32(data)) };
}

/** A host [N, V] logits tensor of `dtype` and the rounded values it holds. */
export function logitsTensor(src: ArrayLike<number>, N: number, V: number, dtype: FloatDType): { tensor: Tensor; x: Float64Array } {
  const q = quantize(src, dtype);
  return { tensor: Tensor.from(q.data, [N, V], dtype), x: q.values };
}

/** Output values of a gradient tensor as float64. */
export function gradValues(t: Tensor): Float64Array {
  return Float64Array.from(t.toFloat32());
}

// ------------------------------------------------------------------ per-row softmax statistics

export interface RowStats {
  lse: number;
  entropy: number;
  /** max |z| over the finite entries (the scale of fp32 rounding errors). */
  mag: number;
}

/** lse and entropy of z = x[off .. off+V) / tau. NaN or +inf anywhere: NaN; every entry −inf: lse −inf, entropy NaN. */
export function rowStats(x: ArrayLike<number>, off: number, V: number, tau: number): RowStats {
  let m = -Infinity;
  let mag = 0;
  for (let j = 0; j < V; j++) {
    const z = x[off + j] / tau;
    if (Number.isNaN(z) || z === Infinity) return { lse: NaN, entropy: NaN, mag: NaN };
    if (z > m) m = z;
    if (Number.isFinite(z)) mag = Math.max(mag, Math.abs(z));
  }
  if (m === -Infinity) return { lse: -Infinity, entropy: NaN, mag };
  let S = 0;
  let T = 0;
  for (let j = 0; j < V; j++) {
    const d = x[off + j] / tau - m;
    if (d === -Infinity) continue; // p = 0 and p·log p = 0
    const e = Math.exp(d);
    S += e;
    T += e * d;
  }
  const logS = Math.log(S);
  return { lse: m + logS, entropy: logS - T / S, mag };
}

export interface LogprobsOracle {
  logp: Float64Array;
  entropy: Float64Array;
  mag: Float64Array;
}

/** logp = z[label] − lse and H per row (rows: which rows to evaluate; others NaN). */
export function logprobsOracle(x: ArrayLike<number>, N: number, V: number, labels: ArrayLike<number>, tau = 1, rows?: number[]): LogprobsOracle {
  const out = { logp: new Float64Array(N).fill(NaN), entropy: new Float64Array(N).fill(NaN), mag: new Float64Array(N).fill(NaN) };
  for (const t of rows ?? Array.from({ length: N }, (_, i) => i)) {
    const st = rowStats(x, t * V, V, tau);
    out.logp[t] = Number.isNaN(st.lse) ? NaN : x[t * V + labels[t]] / tau - st.lse;
    out.entropy[t] = st.entropy;
    out.mag[t] = st.mag;
  }
  return out;
}

// ------------------------------------------------------------------ GRPO loss

export interface GrpoOracleInputs {
  /** Rounded logits [N, V] (logits variant). */
  x?: ArrayLike<number>;
  V?: number;
  labels?: ArrayLike<number>;
  /** Log-prob-only variant. */
  logp?: ArrayLike<number>;
  oldLogp: ArrayLike<number>;
  refLogp?: ArrayLike<number>;
  advantages: ArrayLike<number>;
  seqStarts: ArrayLike<number>;
  mask?: ArrayLike<number>;
}

export interface GrpoOracleOptions {
  temperature?: number;
  clipLow?: number;
  clipHigh?: number;
  dualClip?: number;
  klCoef?: number;
  klType?: KlType;
  entropyCoef?: number;
  lossAgg?: LossAgg;
  maxLen?: number;
  advantagesPer?: 'auto' | 'sequence' | 'token';
}

export interface TokenTerms {
  logp: number;
  entropy: number;
  mag: number;
  r: number;
  ratio: number;
  pg: number;
  kl: number;
  loss: number;
  clipped: boolean;
  /** ∂pg/∂logp and ∂KL/∂logp (0 where clipped or clamped). */
  dPg: number;
  dKl: number;
  /** ∂(pg + klCoef·KL)/∂logp (before the aggregation weight). */
  dLogp: number;
}

const clamp = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);

/** The per-token formulas of kernels.md for one token. */
export function tokenTerms(logp: number, old: number, ref: number | undefined, A: number, H: number, o: Required<Omit<GrpoOracleOptions, 'maxLen' | 'advantagesPer' | 'lossAgg'>>): Omit<TokenTerms, 'entropy' | 'mag'> {
  const rawR = logp - old;
  const r = clamp(rawR, -20, 20);
  const ratio = Math.exp(r);
  const pg1 = -A * ratio;
  const pg2 = -A * clamp(ratio, 1 - o.clipLow, 1 + o.clipHigh);
  let pg = Math.max(pg1, pg2);
  let unclipped = pg1 >= pg2;
  if (o.dualClip > 0 && A < 0 && -A * o.dualClip < pg) {
    pg = -A * o.dualClip;
    unclipped = false;
  }
  const rInside = rawR >= -20 && rawR <= 20;
  const dPg = unclipped && rInside ? -A * ratio : 0;
  let kl = 0;
  let dKl = 0;
  if (ref !== undefined) {
    const d = logp - ref;
    if (o.klType === 'k1') {
      kl = d;
      dKl = 1;
    } else if (o.klType === 'k2') {
      kl = 0.5 * d * d;
      dKl = d;
    } else {
      const u = clamp(-d, -20, 20);
      const raw = Math.exp(u) - u - 1;
      kl = clamp(raw, -10, 10);
      dKl = -d >= -20 && -d <= 20 && raw >= -10 && raw <= 10 ? 1 - Math.exp(-d) : 0;
    }
  }
  return {
    logp, r, ratio, pg, kl,
    loss: pg + o.klCoef * kl - o.entropyCoef * H,
    clipped: pg2 > pg1,
    dPg,
    dKl,
    dLogp: dPg + o.klCoef * dKl,
  };
}

/** Aggregation weights w_t = ∂loss/∂ℓ_t, and the per-token advantage. */
export function aggregation(inp: GrpoOracleInputs, N: number, o: GrpoOracleOptions): { w: Float64Array; m: Float64Array; adv: Float64Array; B: number } {
  const s = inp.seqStarts;
  const B = s.length - 1;
  const m = new Float64Array(N).fill(1);
  if (inp.mask) for (let t = 0; t < N; t++) m[t] = inp.mask[t];
  const seqSum = new Float64Array(B);
  let total = 0;
  let active = 0;
  for (let b = 0; b < B; b++) {
    for (let t = s[b]; t < s[b + 1]; t++) seqSum[b] += m[t];
    total += seqSum[b];
    if (seqSum[b] > 0) active++;
  }
  const perToken = o.advantagesPer === 'token' || ((o.advantagesPer ?? 'auto') === 'auto' && inp.advantages.length === N);
  const w = new Float64Array(N);
  const adv = new Float64Array(N);
  const agg = o.lossAgg ?? 'token-mean';
  for (let b = 0; b < B; b++) {
    for (let t = s[b]; t < s[b + 1]; t++) {
      adv[t] = perToken ? inp.advantages[t] : inp.advantages[b];
      if (m[t] === 0) continue;
      if (agg === 'token-mean') w[t] = m[t] / total;
      else if (agg === 'seq-mean-token-mean') w[t] = m[t] / (seqSum[b] * active);
      else if (agg === 'seq-mean-token-sum') w[t] = m[t] / active;
      else w[t] = m[t] / (B * (o.maxLen as number));
    }
  }
  return { w, m, adv, B };
}

export interface GrpoOracleResult {
  loss: number;
  metrics: { pgLoss: number; klLoss: number; entropy: number; clipFrac: number; ppoKl: number; nonFinite: number };
  /** ∂loss/∂logits [N, V] (logits variant, when asked for). */
  gradLogits?: Float64Array;
  /** ∂loss/∂logp [N] (logp variant). */
  gradLogp?: Float64Array;
  w: Float64Array;
  m: Float64Array;
  tok: (TokenTerms | undefined)[];
  /** Per row: the scale of its gradient's fp32 errors, (w·(|∂pg| + klCoef·(|∂KL| + 1)) + |entropyCoef·w|·(1 + |H| + 2·mag)) / τ. */
  gradScale: Float64Array;
}

export function grpoOracle(inp: GrpoOracleInputs, opts: GrpoOracleOptions = {}, wantGrad = true): GrpoOracleResult {
  const o = {
    temperature: opts.temperature ?? 1,
    clipLow: opts.clipLow ?? 0.2,
    clipHigh: opts.clipHigh ?? 0.2,
    dualClip: opts.dualClip ?? 0,
    klCoef: opts.klCoef ?? 0,
    klType: opts.klType ?? 'k3',
    entropyCoef: opts.entropyCoef ?? 0,
  };
  const hasLogits = inp.x !== undefined;
  const N = hasLogits ? (inp.labels as ArrayLike<number>).length : (inp.logp as ArrayLike<number>).length;
  const V = inp.V ?? 0;
  const tau = o.temperature;
  const { w, m, adv } = aggregation(inp, N, opts);
  const tok: (TokenTerms | undefined)[] = new Array(N).fill(undefined);
  const gradScale = new Float64Array(N);
  const gradLogits = hasLogits && wantGrad ? new Float64Array(N * V) : undefined;
  const gradLogp = !hasLogits && wantGrad ? new Float64Array(N) : undefined;
  let loss = 0, pgL = 0, klL = 0, ent = 0, msum = 0, clip = 0, negR = 0, nonFinite = 0;
  for (let t = 0; t < N; t++) {
    if (m[t] === 0) continue; // never read
    let logp: number, H: number, st: RowStats | undefined;
    if (hasLogits) {
      st = rowStats(inp.x as ArrayLike<number>, t * V, V, tau);
      logp = Number.isNaN(st.lse) ? NaN : (inp.x as ArrayLike<number>)[t * V + (inp.labels as ArrayLike<number>)[t]] / tau - st.lse;
      H = st.entropy;
    } else {
      logp = (inp.logp as ArrayLike<number>)[t];
      H = NaN;
    }
    const tt = tokenTerms(logp, inp.oldLogp[t], inp.refLogp?.[t], adv[t], hasLogits ? H : 0, o);
    const terms: TokenTerms = { ...tt, entropy: H, mag: st?.mag ?? 0 };
    tok[t] = terms;
    if (!Number.isFinite(terms.loss)) nonFinite++;
    loss += w[t] * terms.loss;
    pgL += w[t] * terms.pg;
    klL += w[t] * terms.kl;
    if (hasLogits) ent += w[t] * H;
    msum += m[t];
    clip += m[t] * (terms.clipped ? 1 : 0);
    negR -= m[t] * terms.r;
    const g = w[t] * terms.dLogp;
    const ce = o.entropyCoef * w[t];
    // the parts of g, not g (they may cancel), and the curvature of k2/k3 (≤ 1 + |∂KL/∂logp|)
    const gParts = Math.abs(w[t]) * (Math.abs(terms.dPg) + o.klCoef * (Math.abs(terms.dKl) + (inp.refLogp ? 1 : 0)));
    gradScale[t] = (gParts + Math.abs(ce) * (1 + Math.abs(H) + 2 * terms.mag)) / tau;
    if (gradLogp) gradLogp[t] = g;
    if (gradLogits && st) {
      const x = inp.x as ArrayLike<number>;
      const label = (inp.labels as ArrayLike<number>)[t];
      const bad = !Number.isFinite(st.lse) || Number.isNaN(st.entropy);
      for (let j = 0; j < V; j++) {
        if (bad) {
          gradLogits[t * V + j] = NaN;
          continue;
        }
        const lp = x[t * V + j] / tau - st.lse;
        const p = Math.exp(lp);
        const entTerm = p > 0 ? ce * p * (lp + H) : 0;
        gradLogits[t * V + j] = (g * ((j === label ? 1 : 0) - p) + entTerm) / tau;
      }
    }
  }
  return {
    loss,
    metrics: {
      pgLoss: pgL,
      klLoss: klL,
      entropy: hasLogits ? ent : NaN,
      clipFrac: msum > 0 ? clip / msum : 0,
      ppoKl: msum > 0 ? negR / msum : 0,
      nonFinite,
    },
    gradLogits,
    gradLogp,
    w,
    m,
    tok,
    gradScale,
  };
}

/** Central differences of the oracle loss w.r.t. every logit (or logp entry), in float64. */
export function finiteDiff(inp: GrpoOracleInputs, opts: GrpoOracleOptions, h = 1e-5): Float64Array {
  const key = inp.x !== undefined ? 'x' : 'logp';
  const base = Float64Array.from(inp[key] as ArrayLike<number>);
  const out = new Float64Array(base.length);
  for (let i = 0; i < base.length; i++) {
    const plus = Float64Array.from(base);
    const minus = Float64Array.from(base);
    plus[i] += h;
    minus[i] -= h;
    const lp = grpoOracle({ ...inp, [key]: plus }, opts, false).loss;
    const lm = grpoOracle({ ...inp, [key]: minus }, opts, false).loss;
    out[i] = (lp - lm) / (2 * h);
  }
  return out;
}

// ------------------------------------------------------------------ groups, trust weights, advantages

/** Groups in order of first appearance: lists of response indices. */
export function groupsOf(n: number, g: { groupSize?: number; groupIds?: ArrayLike<number> }): number[][] {
  if (g.groupIds) {
    const map = new Map<number, number[]>();
    for (let i = 0; i < n; i++) {
      const id = g.groupIds[i];
      if (!map.has(id)) map.set(id, []);
      map.get(id)!.push(i);
    }
    return [...map.values()];
  }
  const size = g.groupSize as number;
  const out: number[][] = [];
  for (let s = 0; s < n; s += size) out.push(Array.from({ length: size }, (_, k) => s + k));
  return out;
}

export interface TrustOracleOptions {
  mode?: 'paper' | 'reference';
  alpha?: number;
  step: number;
  T: number;
  threshold?: number;
  gate?: number;
  allSameHigh?: number;
  allSameLow?: number;
}

export interface TrustOracleResult {
  rewards: Float64Array;
  gamma: Float64Array;
  thinkingWeight: Float64Array;
  muCorrect: Float64Array;
  muWrong: Float64Array;
  anneal: number;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** method.md §1.4–1.6 (paper) and §2 (reference preset); NaN thinking = missing. */
export function trustOracle(outcome: ArrayLike<number>, thinking: ArrayLike<number>, groups: number[][], o: TrustOracleOptions): TrustOracleResult {
  const ref = o.mode === 'reference';
  const alpha = o.alpha ?? 0.3;
  const thr = o.threshold ?? 0.5;
  const gate = o.gate ?? 0.2;
  const hi = o.allSameHigh ?? 0.9;
  const lo = o.allSameLow ?? 0.1;
  const anneal = Math.exp(-o.step / o.T);
  const G = groups.length;
  const res: TrustOracleResult = {
    rewards: new Float64Array(outcome.length),
    gamma: new Float64Array(G),
    thinkingWeight: new Float64Array(G),
    muCorrect: new Float64Array(G),
    muWrong: new Float64Array(G),
    anneal,
  };
  groups.forEach((idx, g) => {
    const skip = ref && idx.length > 0 && (idx.every((i) => outcome[i] >= hi) || idx.every((i) => outcome[i] <= lo));
    const rt = (i: number) => (ref && (skip || outcome[i] < gate) ? 0 : thinking[i]);
    const C = idx.filter((i) => outcome[i] >= thr).map(rt).filter((v) => !Number.isNaN(v));
    const W = idx.filter((i) => outcome[i] < thr).map(rt).filter((v) => !Number.isNaN(v));
    const empty = ref ? 0 : NaN;
    const muC = C.length ? mean(C) : empty;
    const muW = W.length ? mean(W) : empty;
    let gamma = 1;
    if (ref ? C.length > 0 && muC < muW : C.length > 0 && W.length > 0 && muC < muW) gamma = Math.exp(muC - muW);
    const weight = skip ? 0 : gamma * alpha * anneal;
    res.gamma[g] = gamma;
    res.thinkingWeight[g] = weight;
    res.muCorrect[g] = muC;
    res.muWrong[g] = muW;
    for (const i of idx) {
      const v = rt(i);
      res.rewards[i] = outcome[i] + (Number.isNaN(v) ? 0 : weight * v);
    }
  });
  return res;
}

/** Which responses the reference preset sends to the reward model (all of them in paper mode). */
export function thinkingNeededOracle(outcome: ArrayLike<number>, groups: number[][], o: Omit<TrustOracleOptions, 'step' | 'T'>): Uint8Array {
  const out = new Uint8Array(outcome.length);
  const gate = o.gate ?? 0.2;
  const hi = o.allSameHigh ?? 0.9;
  const lo = o.allSameLow ?? 0.1;
  for (const idx of groups) {
    const skip = o.mode === 'reference' && (idx.every((i) => outcome[i] >= hi) || idx.every((i) => outcome[i] <= lo));
    for (const i of idx) out[i] = o.mode !== 'reference' || (!skip && outcome[i] >= gate) ? 1 : 0;
  }
  return out;
}

/** A = (R − mean_g) / (std + eps); std unbiased; group of one: mean 0, std 1; 'batch': std over all rewards. */
export function advantagesOracle(rewards: ArrayLike<number>, groups: number[][], scale: 'group' | 'batch' | 'none' = 'group', eps = 1e-6): Float64Array {
  const n = rewards.length;
  const out = new Float64Array(n);
  const unbiasedStd = (xs: number[]) => {
    const mu = mean(xs);
    return Math.sqrt(xs.reduce((a, x) => a + (x - mu) * (x - mu), 0) / (xs.length - 1));
  };
  const all = Array.from(rewards);
  const batchStd = n > 1 ? unbiasedStd(all) : 1;
  for (const idx of groups) {
    const xs = idx.map((i) => rewards[i]);
    const mu = xs.length > 1 ? mean(xs) : 0;
    const sd = xs.length > 1 ? unbiasedStd(xs) : 1;
    const denom = scale === 'group' ? sd + eps : scale === 'batch' ? batchStd + eps : 1;
    for (const i of idx) out[i] = (rewards[i] - mu) / denom;
  }
  return out;
}

// ------------------------------------------------------------------ comparison helpers

/** First index where |got − exp| > tol(i) (NaN must match NaN, ±inf must match exactly), or −1. */
export function firstMismatch(got: ArrayLike<number>, exp: ArrayLike<number>, tol: (i: number) => number): number {
  if (got.length !== exp.length) return -2;
  for (let i = 0; i < exp.length; i++) {
    const g = got[i];
    const e = exp[i];
    if (Number.isNaN(e) || Number.isNaN(g)) {
      if (Number.isNaN(e) !== Number.isNaN(g)) return i;
      continue;
    }
    if (!Number.isFinite(e) || !Number.isFinite(g)) {
      if (g !== e) return i;
      continue;
    }
    if (!(Math.abs(g - e) <= tol(i))) return i;
  }
  return -1;
}

/** Throws an Error naming the seed, the case and the first mismatch. */
export function expectClose(what: string, seedMsg: string, got: ArrayLike<number>, exp: ArrayLike<number>, tol: (i: number) => number): void {
  const i = firstMismatch(got, exp, tol);
  if (i === -2) throw new Error(`${what}: length ${got.length}, expected ${exp.length} [${seedMsg}]`);
  if (i >= 0) {
    let count = 0;
    for (let k = 0; k < exp.length; k++) if (firstMismatch([got[k]], [exp[k]], () => tol(k)) === 0) count++;
    throw new Error(`${what}: [${i}] got ${got[i]}, expected ${exp[i]} (|diff| ${Math.abs(got[i] - exp[i])}, tol ${tol(i)}); ${count} of ${exp.length} entries off [${seedMsg}]`);
  }
}

export function expectScalar(what: string, seedMsg: string, got: number, exp: number, tol: number): void {
  expectClose(what, seedMsg, [got], [exp], () => tol);
}

/** Byte-for-byte equality of two typed arrays (NaN payloads included). */
export function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

// ------------------------------------------------------------------ random inputs

/** Sequence lengths summing to N over B sequences (some may be 0). */
export function randomSeqStarts(rng: Rng, N: number, B: number): Int32Array {
  const cuts = Array.from({ length: B - 1 }, () => rng.int(0, N)).sort((a, b) => a - b);
  return Int32Array.from([0, ...cuts, N]);
}

/** A log-ratio r whose ratio e^r stays at least `margin` (relative) away from every kink in `kinks`. */
export function safeLogRatio(rng: Rng, kinks: number[], lo = 0.3, hi = 5, margin = 0.03): number {
  for (;;) {
    const ratio = Math.exp(rng.uniform(Math.log(lo), Math.log(hi)));
    if (kinks.every((k) => Math.abs(ratio - k) > margin * k)) return Math.log(ratio);
  }
}

/** A KL offset d = logp − ref away from the k3 clamp edges (raw k3 = 10 near d ≈ −2.53). */
export function safeKlOffset(rng: Rng): number {
  return rng.uniform(-1.8, 1.8);
}

export interface GrpoCaseSpec {
  N: number;
  V?: number; // omitted: the logp variant
  B: number;
  dtype?: FloatDType;
  opts: GrpoOracleOptions;
  mask?: 'none' | 'u8' | 'f32';
  advPer?: 'sequence' | 'token';
  withRef?: boolean;
  /** Fraction of logits set to −inf (never the label). */
  negInf?: number;
  /** Given logits [N, V] (before rounding to dtype) and labels instead of random ones. */
  src?: Float32Array;
  labels?: Int32Array;
}

export interface GrpoCase {
  /** Arguments for grpoLoss / grpoLossSync (logits as a host tensor). */
  inputs: {
    logits?: Tensor;
    labels?: Int32Array;
    logp?: Float32Array;
    oldLogp: Float32Array;
    refLogp?: Float32Array;
    advantages: Float32Array;
    seqStarts: Int32Array;
    mask?: Uint8Array | Float32Array;
  };
  /** The same inputs as the oracle reads them. */
  oracle: GrpoOracleInputs;
  opts: GrpoOracleOptions;
  describe: string;
}

/**
 * Random GRPO inputs whose ratios and KL offsets keep clear of every clip / clamp kink: oldLogp and
 * refLogp are set from the oracle's own logp of the rounded logits.
 */
export function randomGrpoCase(rng: Rng, spec: GrpoCaseSpec): GrpoCase {
  const { N, V, B } = spec;
  const dtype = spec.dtype ?? 'f32';
  const opts: GrpoOracleOptions = { ...spec.opts };
  const tau = opts.temperature ?? 1;
  const seqStarts = randomSeqStarts(rng, N, B);
  let logits: Tensor | undefined;
  let x: Float64Array | undefined;
  let labels: Int32Array | undefined;
  let logpIn: Float32Array | undefined;
  let logp: Float64Array;
  if (V !== undefined) {
    const src = spec.src ?? new Float32Array(N * V);
    labels = spec.labels ?? Int32Array.from({ length: N }, () => rng.int(0, V - 1));
    for (let t = 0; t < N && !spec.src; t++) {
      const sigma = rng.uniform(0.5, 3);
      const offset = rng.uniform(-10, 10);
      for (let j = 0; j < V; j++)
        src[t * V + j] = spec.negInf && j !== labels[t] && rng.bool(spec.negInf) ? -Infinity : offset + sigma * rng.normal();
    }
    ({ tensor: logits, x } = logitsTensor(src, N, V, dtype));
    logp = logprobsOracle(x, N, V, labels, tau).logp;
  } else {
    logpIn = Float32Array.from({ length: N }, () => -rng.uniform(0, 6));
    logp = Float64Array.from(logpIn);
  }
  const perToken = spec.advPer === 'token';
  const advantages = Float32Array.from({ length: perToken ? N : B }, () => (rng.bool(0.1) ? 0 : rng.normal()));
  if (B === N) opts.advantagesPer = perToken ? 'token' : 'sequence';
  const advOf = (t: number) => {
    if (perToken) return advantages[t];
    for (let b = 0; b < B; b++) if (t < seqStarts[b + 1]) return advantages[b];
    return 0;
  };
  const cl = opts.clipLow ?? 0.2;
  const ch = opts.clipHigh ?? 0.2;
  const oldLogp = new Float32Array(N);
  const refLogp = spec.withRef || (opts.klCoef ?? 0) !== 0 ? new Float32Array(N) : undefined;
  for (let t = 0; t < N; t++) {
    const kinks = [1 - cl, 1 + ch];
    if (opts.dualClip && advOf(t) < 0) kinks.push(opts.dualClip);
    oldLogp[t] = logp[t] - safeLogRatio(rng, kinks);
    if (refLogp) refLogp[t] = logp[t] - safeKlOffset(rng);
  }
  let mask: Uint8Array | Float32Array | undefined;
  if (spec.mask === 'u8') mask = Uint8Array.from({ length: N }, () => (rng.bool(0.75) ? 1 : 0));
  else if (spec.mask === 'f32') mask = Float32Array.from({ length: N }, () => rng.pick([0, 0.5, 1, 1, 2]));
  if (opts.lossAgg === 'seq-mean-token-sum-norm' && opts.maxLen === undefined) {
    let longest = 1;
    for (let b = 0; b < B; b++) longest = Math.max(longest, seqStarts[b + 1] - seqStarts[b]);
    opts.maxLen = rng.int(longest, 2 * longest);
  }
  return {
    inputs: { logits, labels, logp: logpIn, oldLogp, refLogp, advantages, seqStarts, mask },
    oracle: { x, V, labels, logp: logpIn, oldLogp, refLogp, advantages, seqStarts, mask },
    opts,
    describe: `N=${N} V=${V ?? 'logp'} B=${B} ${dtype} mask=${spec.mask ?? 'none'} adv=${perToken ? 'token' : 'sequence'} opts=${JSON.stringify(opts)}`,
  };
}

/** Expects `fn` to throw a SophiaError with this code and a message matching `names`. */
export function expectError(fn: () => unknown, code: string, names: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SophiaError);
  expect((err as SophiaError).code).toBe(code);
  expect((err as SophiaError).message).toMatch(names);
}
