/**
 * Data preparation for charts: missing values, downsampling, smoothing, quantiles. Missing values are
 * NaN from here on; a NaN between points is a gap.
 */

/** Line series longer than this are downsampled. */
export const MAX_LINE_POINTS = 2000;

export function finite(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** The array with anything that is not a finite number (NaN, ±Infinity, null, undefined) as NaN. */
export function clean(a: ArrayLike<unknown>): number[] {
  const out = new Array<number>(a.length);
  for (let i = 0; i < a.length; i++) out[i] = finite(a[i]) ? (a[i] as number) : NaN;
  return out;
}

/** Bucket size for `n` points so that about `max` points remain (two per bucket); 1 means no downsampling. */
export function bucketSize(n: number, max = MAX_LINE_POINTS): number {
  return n <= max ? 1 : Math.ceil(n / Math.floor(max / 2));
}

function pushGap(x: number[], ...cols: number[][]): void {
  if (x.length > 0 && !Number.isNaN(x[x.length - 1])) {
    x.push(NaN);
    for (const c of cols) c.push(NaN);
  }
}

function firstPresent(x: number[], y: number[], s: number, e: number): number {
  for (let i = s; i < e; i++) if (!Number.isNaN(x[i]) && !Number.isNaN(y[i])) return i;
  return -1;
}

function lastPresent(x: number[], y: number[], s: number, e: number): number {
  for (let i = e - 1; i >= s; i--) if (!Number.isNaN(x[i]) && !Number.isNaN(y[i])) return i;
  return -1;
}

/**
 * Keeps the minimum and the maximum of each bucket of `bucket` consecutive points, in their original
 * order, so spikes survive; the first and last buckets also keep their first and last points. A
 * bucket holding missing points also keeps a gap, placed before or after its kept points as the
 * first and last missing points lie.
 */
export function downsampleMinMax(x: number[], y: number[], bucket: number): { x: number[]; y: number[] } {
  if (bucket <= 1) return { x, y };
  const ox: number[] = [];
  const oy: number[] = [];
  for (let s = 0; s < x.length; s += bucket) {
    const e = Math.min(x.length, s + bucket);
    let iMin = -1;
    let iMax = -1;
    let firstMissing = -1;
    let lastMissing = -1;
    for (let i = s; i < e; i++) {
      if (Number.isNaN(x[i]) || Number.isNaN(y[i])) {
        if (firstMissing < 0) firstMissing = i;
        lastMissing = i;
        continue;
      }
      if (iMin < 0 || y[i] < y[iMin]) iMin = i;
      if (iMax < 0 || y[i] > y[iMax]) iMax = i;
    }
    const keep = iMin < 0 ? [] : [...new Set([iMin, iMax])].sort((a, b) => a - b);
    // The series' first and last present points stay, so the line spans the whole x range.
    if (keep.length > 0 && s === 0) keep.unshift(firstPresent(x, y, s, e));
    if (keep.length > 0 && e === x.length) keep.push(lastPresent(x, y, s, e));
    if (firstMissing >= 0 && (keep.length === 0 || firstMissing < keep[0])) pushGap(ox, oy);
    for (const i of new Set(keep)) {
      ox.push(x[i]);
      oy.push(y[i]);
    }
    if (lastMissing >= 0 && keep.length > 0 && lastMissing > keep[keep.length - 1]) pushGap(ox, oy);
  }
  return { x: ox, y: oy };
}

/**
 * A band (lo, hi per point) reduced to its envelope per bucket: the bucket's lowest lo and highest hi
 * at the x of its first and last present points. Missing points leave gaps as in downsampleMinMax.
 */
export function downsampleBand(x: number[], lo: number[], hi: number[], bucket: number): { x: number[]; lo: number[]; hi: number[] } {
  if (bucket <= 1) return { x, lo, hi };
  const ox: number[] = [];
  const olo: number[] = [];
  const ohi: number[] = [];
  for (let s = 0; s < x.length; s += bucket) {
    const e = Math.min(x.length, s + bucket);
    let first = -1;
    let last = -1;
    let firstMissing = -1;
    let lastMissing = -1;
    let l = Infinity;
    let h = -Infinity;
    for (let i = s; i < e; i++) {
      if (Number.isNaN(x[i]) || Number.isNaN(lo[i]) || Number.isNaN(hi[i])) {
        if (firstMissing < 0) firstMissing = i;
        lastMissing = i;
        continue;
      }
      if (first < 0) first = i;
      last = i;
      l = Math.min(l, lo[i]);
      h = Math.max(h, hi[i]);
    }
    if (firstMissing >= 0 && (first < 0 || firstMissing < first)) pushGap(ox, olo, ohi);
    if (first >= 0) {
      for (const i of first === last ? [first] : [first, last]) {
        ox.push(x[i]);
        olo.push(l);
        ohi.push(h);
      }
    }
    if (lastMissing >= 0 && first >= 0 && lastMissing > last) pushGap(ox, olo, ohi);
  }
  return { x: ox, lo: olo, hi: ohi };
}

/**
 * Exponential moving average with span `window` (alpha = 2 / (window + 1)), started at the first
 * present value. Missing points stay missing and do not move the average.
 */
export function ema(y: number[], window: number): number[] {
  const alpha = 2 / (window + 1);
  let s = NaN;
  return y.map((v) => {
    if (Number.isNaN(v)) return NaN;
    s = Number.isNaN(s) ? v : s + alpha * (v - s);
    return s;
  });
}

/** The q-quantile of sorted values, linearly interpolated (Hyndman–Fan type 7, as numpy's default). */
export function quantileSorted(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const i = Math.floor(pos);
  const f = pos - i;
  return i + 1 < sorted.length ? sorted[i] + f * (sorted[i + 1] - sorted[i]) : sorted[i];
}

export const QUANTILES = [0.1, 0.25, 0.5, 0.75, 0.9] as const;

/**
 * For each x, the 10/25/50/75/90% quantiles of its present samples (NaN where none). Beyond `max` x
 * values, consecutive x's are pooled into buckets drawn at their mean x.
 */
export function quantileRows(x: number[], samples: ArrayLike<unknown>[], max = MAX_LINE_POINTS): { x: number[]; q: number[][]; bucket: number } {
  const bucket = x.length <= max ? 1 : Math.ceil(x.length / max);
  const ox: number[] = [];
  const q: number[][] = QUANTILES.map(() => []);
  for (let s = 0; s < x.length; s += bucket) {
    const e = Math.min(x.length, s + bucket);
    const pool: number[] = [];
    let sumX = 0;
    let nX = 0;
    for (let i = s; i < e; i++) {
      if (Number.isNaN(x[i])) continue;
      sumX += x[i];
      nX++;
      const row = samples[i];
      for (let j = 0; j < row.length; j++) if (finite(row[j])) pool.push(row[j] as number);
    }
    if (nX === 0) continue;
    pool.sort((a, b) => a - b);
    ox.push(sumX / nX);
    QUANTILES.forEach((p, k) => q[k].push(quantileSorted(pool, p)));
  }
  return { x: ox, q, bucket };
}

/** [min, max] of the present values of several arrays, or null when none is present. */
export function extent(...arrays: number[][]): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const a of arrays) {
    for (const v of a) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : null;
}
