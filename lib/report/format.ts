/** Escaping, number formatting and axis ticks for the report renderer. */
import { SophiaError } from '../errors';

// Characters XML 1.0 forbids (C0 controls other than tab/newline/return, U+FFFE/U+FFFF) and lone surrogates.
const XML_INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text safe inside an element or a quoted attribute, in both HTML and XML (SVG). */
export function esc(text: string): string {
  return text.replace(XML_INVALID, '\uFFFD').replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** At most `max` characters (code points), with an ellipsis when cut. */
export function truncate(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, Math.max(1, max - 1)).join('')}…`;
}

/** A coordinate with one decimal: short path data, sub-pixel precision. */
export function px(v: number): string {
  if (!Number.isFinite(v)) throw new SophiaError('E_INTERNAL', `report: a coordinate came out as ${v}; please report this with the chart's data`);
  return String(Math.round(v * 10) / 10);
}

const SI: [number, string][] = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];

function trimZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** The power of ten of the last significant digit of r: 1 for 250, -1 for 2.5, -4 for 5e-4. */
function lastDigit(r: number): number {
  let m = Math.floor(Math.log10(r));
  for (let k = 0; k < 15; k++, m--) {
    const scaled = r / 10 ** m;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-9 * scaled) return m;
  }
  return m;
}

/**
 * A compact number: `1.2k`, `3.5M`, `0.25`, `3e-5`. `resolution` is the smallest difference that must
 * stay visible (an axis's tick step); without it, three significant digits. Non-finite values
 * become `—` (missing) or `∞`/`−∞`, never "NaN" or "Infinity".
 */
export function formatNumber(v: number, resolution?: number): string {
  if (Number.isNaN(v)) return '—';
  if (v === Infinity) return '∞';
  if (v === -Infinity) return '−∞';
  if (v === 0) return '0';
  const a = Math.abs(v);
  const mag = Math.floor(Math.log10(a));
  const resMag = resolution !== undefined && resolution > 0 && Number.isFinite(resolution) ? lastDigit(resolution) : mag - 2;
  if (a >= 1e15 || a < 1e-3) {
    const digits = Math.min(6, Math.max(1, mag - resMag + 1));
    const [mant, exp] = v.toExponential(digits - 1).split('e');
    return `${trimZeros(mant)}e${exp.replace('+', '')}`;
  }
  const plain = trimZeros(v.toFixed(Math.min(10, Math.max(0, -resMag))));
  for (const [unit, suffix] of SI) {
    if (a >= unit) {
      const decimals = Math.min(6, Math.max(0, Math.log10(unit) - resMag));
      // 1.5k reads better than 1500, but 1000.5 better than 1.0005k.
      if (decimals > 2 && plain.length <= 12) return plain;
      return `${trimZeros((v / unit).toFixed(decimals))}${suffix}`;
    }
  }
  return plain;
}

/** A table cell's number: integers exactly, other values to four significant digits. */
export function formatCell(v: number): string {
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  if (!Number.isFinite(v)) return formatNumber(v);
  const a = Math.abs(v);
  if (a >= 1e15 || a < 1e-4) return formatNumber(v, 10 ** (Math.floor(Math.log10(a)) - 3));
  return trimZeros(v.toPrecision(4));
}

export interface Ticks {
  /** The axis range, widened to whole steps when the ticks are nice. */
  lo: number;
  hi: number;
  step: number;
  values: number[];
}

function niceStep(raw: number): number {
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

/** A zero-width range made visible: ±1 around 0, ±10% (or ±1 for integers) elsewhere. */
export function widen(lo: number, hi: number, integer = false): [number, number] {
  if (hi > lo) return [lo, hi];
  if (integer) return [lo - 1, hi + 1];
  const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
  return [lo - pad, hi + pad];
}

/**
 * About `count` ticks at round values (1, 2, 2.5 or 5 × 10^k) covering [lo, hi]. With `extend` the
 * range grows to the outer ticks; with `integer` the step is a whole number.
 */
export function niceTicks(lo: number, hi: number, count = 5, opts: { extend?: boolean; integer?: boolean } = {}): Ticks {
  [lo, hi] = widen(lo, hi, opts.integer);
  // Halving first keeps hi - lo finite for ranges near ±Number.MAX_VALUE.
  const span = (hi / 2 - lo / 2) * 2;
  let step = Number.isFinite(span) ? niceStep(span / Math.max(1, count)) : niceStep(hi / 2 / count - lo / 2 / count) * 2;
  if (opts.integer) step = Math.max(1, Math.round(step));
  if (!(step > 0) || !Number.isFinite(step)) return { lo, hi, step: hi - lo, values: [lo, hi] };
  let first = Math.ceil(lo / step - 1e-9);
  let last = Math.floor(hi / step + 1e-9);
  if (opts.extend) {
    first = Math.floor(lo / step + 1e-9);
    last = Math.ceil(hi / step - 1e-9);
    const elo = first * step;
    const ehi = last * step;
    if (Number.isFinite(elo) && Number.isFinite(ehi)) [lo, hi] = [elo, ehi];
  }
  const values: number[] = [];
  for (let i = first; i <= last && values.length < 50; i++) {
    // 12 significant digits drop float noise such as 0.6000000000000001.
    const v = Number((i * step).toPrecision(12));
    if (Number.isFinite(v)) values.push(v === 0 ? 0 : v);
  }
  return { lo, hi, step, values };
}

/** Estimated width in px of `text` at `fontSize` (proportional sans-serif; ~0.6 em per character). */
export function textWidth(text: string, fontSize: number): number {
  return Array.from(text).length * fontSize * 0.6;
}

/** The widest of `texts` at `fontSize`, estimated as by textWidth. */
export function maxWidth(texts: string[], fontSize: number): number {
  let w = 0;
  for (const t of texts) w = Math.max(w, textWidth(t, fontSize));
  return w;
}
