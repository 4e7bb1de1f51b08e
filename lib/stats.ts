/**
 * Agreement metrics between a learned score and a reference (the judge): mean absolute error,
 * Pearson and Spearman correlation, and the confusion of 0.1-wide score bins.
 */
import { SophiaError, describe } from './errors';
import { createRng } from './random';

/** Bins of the judge's grid {0, 0.1, …, 1}. */
export const SCORE_BINS = 11;

function pair(fn: string, x: ArrayLike<number>, y: ArrayLike<number>): number {
  if (x === null || typeof x !== 'object' || typeof x.length !== 'number') throw new SophiaError('E_TYPE', `${fn}: x must be an array of numbers, got ${describe(x)}`);
  if (y === null || typeof y !== 'object' || typeof y.length !== 'number') throw new SophiaError('E_TYPE', `${fn}: y must be an array of numbers, got ${describe(y)}`);
  if (x.length !== y.length) throw new SophiaError('E_SHAPE', `${fn}: x and y must have the same length, got ${x.length} and ${y.length}`);
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new SophiaError('E_NUMERIC', `${fn}: x[${i}] must be a finite number, got ${describe(x[i])}`);
    if (!Number.isFinite(y[i])) throw new SophiaError('E_NUMERIC', `${fn}: y[${i}] must be a finite number, got ${describe(y[i])}`);
  }
  return x.length;
}

/** Mean; NaN for empty input. */
export function mean(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return x.length === 0 ? NaN : s / x.length;
}

/** Mean of the values that are not NaN (a missing score); NaN when none is. */
export function nanMean(x: ArrayLike<number>): number {
  let s = 0, n = 0;
  for (let i = 0; i < x.length; i++) if (!Number.isNaN(x[i])) (s += x[i]), n++;
  return n ? s / n : NaN;
}

/**
 * Standard deviation: `'sample'` divides by n − 1 (spread over seeds or runs; 0 for one value),
 * `'population'` by n (the spread of a step's advantages). NaN for empty input.
 */
export function stdDev(x: ArrayLike<number>, kind: 'sample' | 'population'): number {
  if (x.length === 0) return NaN;
  const m = mean(x);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += (x[i] - m) ** 2;
  return Math.sqrt(s / Math.max(1, kind === 'sample' ? x.length - 1 : x.length));
}

/** Mean |x − y|; NaN for empty input. */
export function meanAbsError(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = pair('meanAbsError', x, y);
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.abs(x[i] - y[i]);
  return n === 0 ? NaN : s / n;
}

function pearsonUnchecked(x: ArrayLike<number>, y: ArrayLike<number>, n: number): number {
  if (n < 2) return NaN;
  const mx = mean(x);
  const my = mean(y);
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx;
    const dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  // a constant side has no correlation to speak of
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : NaN;
}

/** Pearson's r; NaN when fewer than 2 points or either side is constant. */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  return pearsonUnchecked(x, y, pair('pearson', x, y));
}

/** 1-based ranks, ties sharing the mean of the ranks they span. */
export function ranks(x: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const out = new Float64Array(x.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && x[order[j + 1]] === x[order[i]]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) out[order[k]] = r;
    i = j + 1;
  }
  return out;
}

/** Spearman's ρ: Pearson's r of the tie-averaged ranks. */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = pair('spearman', x, y);
  return pearsonUnchecked(ranks(x), ranks(y), n);
}

/** The bin of a score in [0, 1] on the 0.1 grid: round(10·s), clamped to 0…10. */
export function scoreBin(s: number): number {
  if (!Number.isFinite(s)) throw new SophiaError('E_NUMERIC', `scoreBin: score must be a finite number, got ${describe(s)}`);
  return Math.min(SCORE_BINS - 1, Math.max(0, Math.round(s * 10)));
}

/** How many scores fall in each of the 11 bins. */
export function binCounts(scores: ArrayLike<number>): number[] {
  const out = new Array<number>(SCORE_BINS).fill(0);
  for (let i = 0; i < scores.length; i++) out[scoreBin(scores[i])]++;
  return out;
}

/** 11×11 counts: `m[bin of truth][bin of predicted]`. */
export function binConfusion(truth: ArrayLike<number>, predicted: ArrayLike<number>): number[][] {
  const n = pair('binConfusion', truth, predicted);
  const m = Array.from({ length: SCORE_BINS }, () => new Array<number>(SCORE_BINS).fill(0));
  for (let i = 0; i < n; i++) m[scoreBin(truth[i])][scoreBin(predicted[i])]++;
  return m;
}

export interface Agreement {
  n: number;
  mae: number;
  pearson: number;
  spearman: number;
  /** Share of items whose predicted bin equals the reference bin. */
  binAccuracy: number;
  /** Share within one bin (|Δ| ≤ 0.1 after rounding). */
  withinOneBin: number;
  confusion: number[][];
}

/** Every agreement metric of predictions against a reference. */
export function agreement(truth: ArrayLike<number>, predicted: ArrayLike<number>): Agreement {
  const n = pair('agreement', truth, predicted);
  const confusion = binConfusion(truth, predicted);
  let exact = 0, near = 0;
  confusion.forEach((row, i) => row.forEach((c, j) => {
    if (i === j) exact += c;
    if (Math.abs(i - j) <= 1) near += c;
  }));
  return {
    n,
    mae: meanAbsError(truth, predicted),
    pearson: pearson(truth, predicted),
    spearman: spearman(truth, predicted),
    binAccuracy: n ? exact / n : NaN,
    withinOneBin: n ? near / n : NaN,
    confusion,
  };
}

export interface Interval {
  /** The statistic on the data as given. */
  estimate: number;
  lo: number;
  hi: number;
  /** Confidence level, e.g. 0.95. */
  level: number;
  resamples: number;
}

/**
 * Percentile bootstrap interval of mean(a − b) over paired observations (the same problems scored
 * under two conditions, e.g. two policies): resamples the pairs, so the shared difficulty of each
 * problem cancels. Seeded: the same inputs give the same interval.
 */
export function pairedBootstrap(a: ArrayLike<number>, b: ArrayLike<number>, opts: { level?: number; resamples?: number; seed?: number } = {}): Interval {
  const n = pair('pairedBootstrap', a, b);
  if (n === 0) throw new SophiaError('E_RANGE', 'pairedBootstrap: needs at least one pair, got 0');
  const resamples = opts.resamples ?? 2000;
  if (!Number.isInteger(resamples) || resamples < 10) throw new SophiaError('E_RANGE', `pairedBootstrap: resamples must be an integer >= 10, got ${describe(resamples)}`);
  if (opts.level !== undefined && !(opts.level > 0 && opts.level < 1)) throw new SophiaError('E_RANGE', `pairedBootstrap: level must be in (0, 1), got ${describe(opts.level)}`);
  return pairedRunsBootstrap([a], [b], opts);
}

/**
 * Percentile bootstrap interval of mean(A) − mean(B) where A and B are runs × problems (several seeds
 * of two training variants, scored on the same held-out problems): each resample draws the problems
 * (shared by both sides, so each problem's difficulty cancels) and, independently per side, the runs,
 * so that seed-to-seed variation widens the interval as it should.
 */
export function pairedRunsBootstrap(a: readonly ArrayLike<number>[], b: readonly ArrayLike<number>[], opts: { level?: number; resamples?: number; seed?: number } = {}): Interval {
  const fn = 'pairedRunsBootstrap';
  if (!Array.isArray(a) || a.length === 0 || !Array.isArray(b) || b.length === 0) throw new SophiaError('E_RANGE', `${fn}: a and b must each hold at least one run, got ${describe(a)} and ${describe(b)}`);
  const n = a[0].length;
  for (const [side, runs] of [['a', a], ['b', b]] as const)
    runs.forEach((r, i) => {
      if (r.length !== n) throw new SophiaError('E_SHAPE', `${fn}: every run must score the same ${n} problems, ${side}[${i}] has ${r.length}`);
    });
  if (n === 0) throw new SophiaError('E_RANGE', `${fn}: needs at least one problem, got 0`);
  const level = opts.level ?? 0.95;
  const resamples = opts.resamples ?? 2000;
  if (!(level > 0 && level < 1)) throw new SophiaError('E_RANGE', `${fn}: level must be in (0, 1), got ${describe(level)}`);
  if (!Number.isInteger(resamples) || resamples < 10) throw new SophiaError('E_RANGE', `${fn}: resamples must be an integer >= 10, got ${describe(resamples)}`);
  const rng = createRng(opts.seed ?? 0x5eed, 'bootstrap');
  const meanOf = (runs: readonly ArrayLike<number>[], idx: Int32Array, picks: Int32Array): number => {
    let s = 0;
    for (const r of picks) for (const i of idx) s += runs[r][i];
    return s / (picks.length * idx.length);
  };
  const all = (k: number) => Int32Array.from({ length: k }, (_, i) => i);
  const estimate = meanOf(a, all(n), all(a.length)) - meanOf(b, all(n), all(b.length));
  const out = new Float64Array(resamples);
  const idx = new Int32Array(n);
  const pa = new Int32Array(a.length);
  const pb = new Int32Array(b.length);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) idx[i] = Math.floor(rng() * n);
    for (let i = 0; i < pa.length; i++) pa[i] = Math.floor(rng() * a.length);
    for (let i = 0; i < pb.length; i++) pb[i] = Math.floor(rng() * b.length);
    out[r] = meanOf(a, idx, pa) - meanOf(b, idx, pb);
  }
  out.sort();
  const q = (p: number): number => out[Math.min(resamples - 1, Math.max(0, Math.round(p * (resamples - 1))))];
  return { estimate, lo: q((1 - level) / 2), hi: q(1 - (1 - level) / 2), level, resamples };
}
