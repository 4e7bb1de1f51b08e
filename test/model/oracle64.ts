/**
 * Float64 reference implementations of the embedded model's layers (the ops of `nnOp`), written
 * from the contract in native/cpu/nn.h, not from nn.cpp; plus the scalar loss L = Σ out ⊙ R used
 * for gradient checks and central finite differences over it.
 *
 * Every function reads float32 inputs as the exact values they hold and computes in float64, so
 * the only differences left against the native layers are float32 rounding there. Scalars the
 * addon narrows to float (eps, theta) are narrowed here too with Math.fround.
 */
import type { Rng } from '../ops/oracle';

// Math's functions taken once: under jest, every `Math.x` lookup in a hot loop costs ~100× the
// call itself (the test environment's globals are not plain objects), the functions do not.
const { abs, cos, exp, floor, fround, log, max, pow, sin, sqrt } = Math;

export type Num = ArrayLike<number>;

// ------------------------------------------------------------------ inputs

/** n normal values (times `scale`), rounded to float32: Box–Muller over rng's uniform stream. */
export function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = sqrt(-2 * log(1 - rng.next())); // 1 − [0, 1): never log(0)
    const t = 2 * Math.PI * rng.next();
    out[i] = scale * r * cos(t);
    if (i + 1 < n) out[i + 1] = scale * r * sin(t);
  }
  return out;
}

/** Every index below n when n ≤ k, else k distinct random ones (sorted). */
export function sampleIndices(rng: Rng, n: number, k: number): number[] {
  if (n <= k) return Array.from({ length: n }, (_, i) => i);
  const picked = new Set<number>();
  while (picked.size < k) picked.add(rng.int(0, n - 1));
  return [...picked].sort((a, b) => a - b);
}

/** Packed-sequence offsets [0, l0, l0 + l1, …] from the lengths. */
export function seqOffsets(lengths: readonly number[]): Int32Array {
  const out = new Int32Array(lengths.length + 1);
  for (let s = 0; s < lengths.length; s++) out[s + 1] = out[s] + lengths[s];
  return out;
}

/** Row-major transpose of a [rows, cols] matrix. */
export function transpose<T extends Float32Array | Float64Array>(x: T, rows: number, cols: number): T {
  const out = new (x.constructor as { new (n: number): T })(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  return out;
}

export function maxAbs(x: Num): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = max(m, abs(x[i]));
  return m;
}

// ------------------------------------------------------------------ layers, forward

/** C[M, N] = A[M, K] · B[K, N] (+ C0 when given); A and B in their logical (untransposed) layout. */
export function gemm64(M: number, N: number, K: number, A: Num, B: Num, C0?: Num): Float64Array {
  const C = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    const row = new Float64Array(N);
    for (let k = 0; k < K; k++) {
      const a = A[i * K + k];
      const off = k * N;
      for (let j = 0; j < N; j++) row[j] += a * B[off + j];
    }
    for (let j = 0; j < N; j++) C[i * N + j] = row[j] + (C0 ? C0[i * N + j] : 0);
  }
  return C;
}

/** out[N, O] = inp[N, I] · W[O, I]ᵀ + bias[O]. */
export function matmul64(N: number, I: number, O: number, inp: Num, W: Num, bias?: Num): Float64Array {
  const out = new Float64Array(N * O);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      let s = bias ? bias[o] : 0;
      for (let i = 0; i < I; i++) s += inp[n * I + i] * W[o * I + i];
      out[n * O + o] = s;
    }
  return out;
}

/** out = x · rstd · w per row, rstd = 1 / sqrt(mean(x²) + eps) (eps as the float the addon uses). */
export function rmsnorm64(N: number, C: number, eps: number, x: Num, w: Num): { out: Float64Array; rstd: Float64Array } {
  const e = fround(eps);
  const out = new Float64Array(N * C);
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let i = 0; i < C; i++) ss += x[n * C + i] * x[n * C + i];
    const r = 1 / sqrt(ss / C + e);
    rstd[n] = r;
    for (let i = 0; i < C; i++) out[n * C + i] = x[n * C + i] * r * w[i];
  }
  return { out, rstd };
}

/** The rotation angle of pair i at position pos: pos · theta^(-2i/hd). */
export function ropeAngle(pos: number, i: number, hd: number, theta: number): number {
  return pos * pow(fround(theta), (-2 * i) / hd);
}

/** x[N, heads, hd] with each pair (2i, 2i+1) turned by the angle (backwards when inverse). */
export function rope64(N: number, heads: number, hd: number, x: Num, pos: Num, theta: number, inverse: boolean): Float64Array {
  const out = new Float64Array(N * heads * hd);
  for (let n = 0; n < N; n++)
    for (let i = 0; i < hd / 2; i++) {
      const a = ropeAngle(pos[n], i, hd, theta) * (inverse ? -1 : 1);
      const c = cos(a);
      const s = sin(a);
      for (let h = 0; h < heads; h++) {
        const o = (n * heads + h) * hd + 2 * i;
        out[o] = x[o] * c - x[o + 1] * s;
        out[o + 1] = x[o] * s + x[o + 1] * c;
      }
    }
  return out;
}

export interface Attention64 {
  out: Float64Array;
  /** max |q·k| / sqrt(hd) over the scores that are read */
  maxScore: number;
}

/**
 * softmax(q·kᵀ / sqrt(hd)) · v for each packed sequence and head; query head h reads kv head
 * floor(h / (H / Hkv)); causal: row t sees positions 0..t of its own sequence.
 */
export function attention64(H: number, Hkv: number, hd: number, seq: Num, q: Num, k: Num, v: Num, causal: boolean): Attention64 {
  const N = seq[seq.length - 1];
  const group = H / Hkv;
  const scale = 1 / sqrt(hd);
  const out = new Float64Array(N * H * hd);
  let maxScore = 0;
  for (let s = 0; s + 1 < seq.length; s++) {
    const start = seq[s];
    const len = seq[s + 1] - start;
    const sc = new Float64Array(len);
    for (let h = 0; h < H; h++) {
      const kvh = floor(h / group);
      for (let t = 0; t < len; t++) {
        const qo = ((start + t) * H + h) * hd;
        const end = causal ? t + 1 : len;
        let m = -Infinity;
        for (let u = 0; u < end; u++) {
          const ko = ((start + u) * Hkv + kvh) * hd;
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[qo + i] * k[ko + i];
          sc[u] = d * scale;
          m = max(m, sc[u]);
          maxScore = max(maxScore, abs(sc[u]));
        }
        let z = 0;
        for (let u = 0; u < end; u++) z += sc[u] = exp(sc[u] - m);
        for (let u = 0; u < end; u++) {
          const p = sc[u] / z;
          const vo = ((start + u) * Hkv + kvh) * hd;
          for (let i = 0; i < hd; i++) out[qo + i] += p * v[vo + i];
        }
      }
    }
  }
  return { out, maxScore };
}

/** h = silu(g) · u = g · σ(g) · u. */
export function swiglu64(g: Num, u: Num): Float64Array {
  const h = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) h[i] = (g[i] / (1 + exp(-g[i]))) * u[i];
  return h;
}

// ------------------------------------------------------------------ loss and finite differences

/** L = Σ out ⊙ R: its gradient with respect to out is R, the dout handed to the native backward. */
export function lossDot(out: Num, R: Num): number {
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] * R[i];
  return s;
}

/**
 * Central differences dL/dx[i] = (L(x + h·e_i) − L(x − h·e_i)) / 2h of L(x) = Σ f(x) ⊙ R, for the
 * listed indices, in float64. Returns the values in the order of `indices`.
 */
export function fdGrad(f: (x: Float64Array) => Num, x: Num, R: Num, indices: readonly number[], h = 1e-6): Float64Array {
  const xs = Float64Array.from(x);
  const out = new Float64Array(indices.length);
  indices.forEach((i, j) => {
    const x0 = xs[i];
    xs[i] = x0 + h;
    const lp = lossDot(f(xs), R);
    xs[i] = x0 - h;
    const lm = lossDot(f(xs), R);
    xs[i] = x0;
    out[j] = (lp - lm) / (2 * h);
  });
  return out;
}
