import { esc, formatCell, formatNumber, niceTicks, truncate, widen } from '../../lib/report/format';
import {
  bucketSize, clean, downsampleBand, downsampleMinMax, ema, quantileRows, quantileSorted,
} from '../../lib/report/series';

describe('formatNumber', () => {
  test.each([
    [0, undefined, '0'],
    [-0, undefined, '0'],
    [0.25, undefined, '0.25'],
    [1, undefined, '1'],
    [999, undefined, '999'],
    [1200, undefined, '1.2k'],
    [-1500, undefined, '-1.5k'],
    [1234567, undefined, '1.23M'],
    [2.5e9, undefined, '2.5G'],
    [7e12, undefined, '7T'],
    [1e18, undefined, '1e18'],
    [3e-5, undefined, '3e-5'],
    [-1.25e-7, undefined, '-1.25e-7'],
    [0.0015, undefined, '0.0015'],
    [NaN, undefined, '—'],
    [Infinity, undefined, '∞'],
    [-Infinity, undefined, '−∞'],
    // With a resolution (an axis step), neighbouring ticks stay distinct.
    [1000, 200, '1k'],
    [10001, 1, '10001'],
    [1000.5, 0.1, '1000.5'],
    [1234.5, 0.5, '1234.5'],
    [2e9 + 1, 1, '2000000001'],
    [0.30000000000000004, 0.1, '0.3'],
    [1.5e-5, 5e-6, '1.5e-5'],
    [7.5, 2.5, '7.5'],
    [10, 2.5, '10'],
    [1750, 250, '1.75k'],
    [0.075, 0.025, '0.075'],
  ])('%p (resolution %p) → %p', (v, res, want) => {
    expect(formatNumber(v, res)).toBe(want);
  });
});

test('formatCell shows integers exactly and other numbers to four significant digits', () => {
  expect(formatCell(300)).toBe('300');
  expect(formatCell(123456789)).toBe('123456789');
  expect(formatCell(0.831254)).toBe('0.8313');
  expect(formatCell(1.234e-5)).toBe('1.234e-5');
  expect(formatCell(NaN)).toBe('—');
});

describe('niceTicks', () => {
  test('round steps covering the range', () => {
    const t = niceTicks(0, 1, 5);
    expect(t.values).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(t.values.map((v) => formatNumber(v, t.step))).toEqual(['0', '0.2', '0.4', '0.6', '0.8', '1']);
  });

  test('extend rounds the range out to whole steps', () => {
    const t = niceTicks(0.13, 0.87, 5, { extend: true });
    expect([t.lo, t.hi]).toEqual([0, 1]);
    const inner = niceTicks(0.13, 0.87, 5);
    expect(inner.lo).toBe(0.13);
    expect(inner.values[0]).toBeCloseTo(0.2);
  });

  test('integer ticks never step below 1', () => {
    const t = niceTicks(0, 3, 6, { integer: true });
    expect(t.values).toEqual([0, 1, 2, 3]);
  });

  test('a zero-width range is widened so ticks exist', () => {
    expect(widen(3, 3)).toEqual([2.7, 3.3]);
    expect(widen(0, 0)).toEqual([-1, 1]);
    expect(widen(5, 5, true)).toEqual([4, 6]);
    const t = niceTicks(3, 3, 5, { extend: true });
    expect(t.values.length).toBeGreaterThanOrEqual(3);
    expect(t.lo).toBeLessThan(3);
    expect(t.hi).toBeGreaterThan(3);
  });

  test('ranges near ±Number.MAX_VALUE and tiny ranges give finite ticks', () => {
    for (const [lo, hi] of [[-1.7e308, 1.7e308], [0, 1e-300], [1e-9, 1.000001e-9]]) {
      const t = niceTicks(lo, hi, 5, { extend: true });
      expect(t.values.length).toBeGreaterThanOrEqual(2);
      expect(t.values.every(Number.isFinite)).toBe(true);
      expect(Number.isFinite(t.lo) && Number.isFinite(t.hi) && t.hi > t.lo).toBe(true);
    }
  });
});

test('esc escapes markup and drops characters XML forbids', () => {
  expect(esc(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  expect(esc('a\u0000b\u001bc\ud800d')).toBe('a\ufffdb\ufffdc\ufffdd');
  expect(esc('tab\tnewline\n😀')).toBe('tab\tnewline\n😀');
});

test('truncate cuts on code points, never inside a surrogate pair', () => {
  expect(truncate('😀😀😀😀', 3)).toBe('😀😀…');
  expect(truncate('short', 10)).toBe('short');
});

describe('downsampling', () => {
  test('series up to the limit are untouched', () => {
    expect(bucketSize(2000)).toBe(1);
    const x = [1, 2, 3];
    expect(downsampleMinMax(x, x, 1)).toEqual({ x, y: x });
  });

  test('min and max per bucket keep spikes, the ends, and the order', () => {
    const n = 100_000;
    const x = Array.from({ length: n }, (_, i) => i);
    const y = x.map((i) => Math.sin(i / 1000));
    y[54_321] = 50;
    y[77_777] = -50;
    const b = bucketSize(n);
    expect(b).toBe(100);
    const d = downsampleMinMax(x, y, b);
    expect(d.x.length).toBeLessThanOrEqual(2002);
    expect(d.y).toContain(50);
    expect(d.y).toContain(-50);
    expect(d.x[0]).toBe(0);
    expect(d.x[d.x.length - 1]).toBe(n - 1);
    for (let i = 1; i < d.x.length; i++) expect(d.x[i]).toBeGreaterThan(d.x[i - 1]);
  });

  test('missing stretches stay gaps, one NaN per gap', () => {
    const n = 10_000;
    const x = Array.from({ length: n }, (_, i) => i);
    const y = x.map((i) => (i >= 3000 && i < 6000 ? NaN : i));
    const d = downsampleMinMax(x, y, bucketSize(n));
    const gaps = d.y.filter(Number.isNaN).length;
    expect(gaps).toBe(1);
    const at = d.y.findIndex(Number.isNaN);
    expect(d.x[at - 1]).toBeLessThan(3000);
    expect(d.x[at + 1]).toBeGreaterThanOrEqual(6000);
  });

  test('a band keeps its envelope per bucket', () => {
    const n = 10_000;
    const x = Array.from({ length: n }, (_, i) => i);
    const lo = x.map(() => -1);
    const hi = x.map(() => 1);
    lo[4321] = -9;
    hi[1234] = 9;
    const d = downsampleBand(x, lo, hi, bucketSize(n));
    expect(d.x.length).toBeLessThanOrEqual(2000);
    expect(Math.min(...d.lo)).toBe(-9);
    expect(Math.max(...d.hi)).toBe(9);
  });
});

test('clean turns NaN, ±Infinity, null and undefined into NaN', () => {
  expect(clean([1, NaN, Infinity, -Infinity, null, undefined, 2])).toEqual([1, NaN, NaN, NaN, NaN, NaN, 2]);
});

test('ema: constant stays constant, missing values stay missing and do not move the average', () => {
  expect(ema([2, 2, 2], 10)).toEqual([2, 2, 2]);
  const s = ema([0, NaN, 10], 3);
  expect(s[0]).toBe(0);
  expect(s[1]).toBeNaN();
  expect(s[2]).toBeCloseTo(5);
  expect(ema([1, 5, 9], 1)).toEqual([1, 5, 9]);
});

test('quantiles interpolate linearly (numpy default) and ignore missing samples', () => {
  expect(quantileSorted([1, 2, 3, 4], 0.25)).toBe(1.75);
  expect(quantileSorted([1, 2, 3, 4], 0.5)).toBe(2.5);
  expect(quantileSorted([7], 0.9)).toBe(7);
  expect(quantileSorted([], 0.5)).toBeNaN();
  const r = quantileRows([0, 1, 2], [[5, 1, NaN, 3, Infinity], [], [NaN]]);
  expect(r.x).toEqual([0, 1, 2]);
  expect(r.q[2]).toEqual([3, NaN, NaN]);
  expect(r.q[0][0]).toBeCloseTo(1.4);
  expect(r.q[4][0]).toBeCloseTo(4.6);
});

test('quantiles beyond the limit pool samples over buckets of x', () => {
  const x = Array.from({ length: 5000 }, (_, i) => i);
  const r = quantileRows(x, x.map((i) => [i]), 2000);
  expect(r.bucket).toBe(3);
  expect(r.x.length).toBe(1667);
  expect(r.x[0]).toBe(1);
  expect(r.q[2][0]).toBe(1);
});
