/**
 * Argument checks for renderReport. Every error names where it is (the chart id or the section), the
 * field, what was expected and what came, so a report built from logged metrics can be fixed at once.
 */
import { SophiaError, describe, type SophiaErrorCode } from '../errors';
import type { ChartKind, Report } from './types';

export const CHART_KINDS: readonly ChartKind[] = ['line', 'scatter', 'quantiles', 'bar', 'heatmap'];

/** Heatmaps draw one rectangle per cell; beyond this the page gets slow and large. */
export const MAX_HEATMAP_CELLS = 40_000;

// "--" is kept for the ids the renderer derives (`<id>--clip`, `section--2`), so none can collide.
const ID = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

function fail(code: SophiaErrorCode, where: string, field: string, expected: string, got: string): never {
  throw new SophiaError(code, `report: ${where}: ${field}: expected ${expected}, got ${got}`);
}

const absent = (v: unknown): boolean => v === undefined || v === null;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function string(where: string, field: string, v: unknown): void {
  if (typeof v !== 'string') fail('E_TYPE', where, field, 'a string', describe(v));
}

function optString(where: string, field: string, v: unknown): void {
  if (!absent(v)) string(where, field, v);
}

function array(where: string, field: string, v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) fail('E_TYPE', where, field, `an array of ${what}`, describe(v));
  return v;
}

function strings(where: string, field: string, v: unknown): string[] {
  const a = array(where, field, v, 'strings');
  a.forEach((s, i) => string(where, `${field}[${i}]`, s));
  return a as string[];
}

/** An array (or numeric typed array) of numbers, where NaN, ±Infinity, null and undefined mean missing. */
function numbers(where: string, field: string, v: unknown, length?: { n: number; of: string }): ArrayLike<unknown> {
  const expected = length ? `an array of ${length.n} numbers (as many as ${length.of})` : 'an array of numbers';
  let a: ArrayLike<unknown>;
  if (Array.isArray(v)) {
    a = v;
    for (let i = 0; i < v.length; i++) {
      const e = v[i];
      if (typeof e !== 'number' && e !== null && e !== undefined)
        fail('E_TYPE', where, `${field}[${i}]`, 'a number (NaN, null or undefined for a missing value)', describe(e));
    }
  } else if (ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array)) {
    a = v as unknown as ArrayLike<number>;
  } else {
    return fail('E_TYPE', where, field, expected, describe(v));
  }
  if (length && a.length !== length.n) fail('E_SHAPE', where, field, expected, `an array of length ${a.length}`);
  return a;
}

function chartWhere(c: Record<string, unknown>, section: string): string {
  return typeof c.id === 'string' ? `chart ${JSON.stringify(c.id)}` : `${section}, a chart with id ${describe(c.id)}`;
}

function checkLine(w: string, c: Record<string, unknown>): void {
  const series = array(w, 'series', c.series, 'series objects');
  series.forEach((s, i) => {
    const f = `series[${i}]`;
    if (!isObject(s)) fail('E_TYPE', w, f, 'an object {name, x, y, band?, styleIndex?}', describe(s));
    string(w, `${f}.name`, s.name);
    const x = numbers(w, `${f}.x`, s.x);
    const len = { n: x.length, of: `${f}.x` };
    numbers(w, `${f}.y`, s.y, len);
    if (!absent(s.styleIndex) && !(Number.isInteger(s.styleIndex) && (s.styleIndex as number) >= 0))
      fail('E_TYPE', w, `${f}.styleIndex`, 'an integer >= 0', describe(s.styleIndex));
    if (!absent(s.band)) {
      if (!isObject(s.band)) fail('E_TYPE', w, `${f}.band`, 'an object {lo, hi}', describe(s.band));
      numbers(w, `${f}.band.lo`, s.band.lo, len);
      numbers(w, `${f}.band.hi`, s.band.hi, len);
    }
  });
  if (!absent(c.yRange)) {
    const r = c.yRange;
    if (!Array.isArray(r) || r.length !== 2 || !r.every((v) => typeof v === 'number' && Number.isFinite(v)))
      fail('E_TYPE', w, 'yRange', 'two finite numbers [lo, hi]', Array.isArray(r) ? `[${r.map(describe).join(', ')}]` : describe(r));
    if (!(r[0] < r[1])) fail('E_RANGE', w, 'yRange', 'lo < hi', `[${r[0]}, ${r[1]}]`);
  }
  if (!absent(c.smooth) && !(typeof c.smooth === 'number' && Number.isFinite(c.smooth) && c.smooth >= 1))
    fail('E_RANGE', w, 'smooth', 'an EMA window of at least 1 point', describe(c.smooth));
}

function checkScatter(w: string, c: Record<string, unknown>): void {
  const points = array(w, 'points', c.points, 'points {x, y, group?}');
  points.forEach((p, i) => {
    const f = `points[${i}]`;
    if (!isObject(p)) fail('E_TYPE', w, f, 'an object {x, y, group?}', describe(p));
    for (const k of ['x', 'y'] as const)
      if (typeof p[k] !== 'number' && !absent(p[k])) fail('E_TYPE', w, `${f}.${k}`, 'a number (NaN, null or undefined for a missing value)', describe(p[k]));
    optString(w, `${f}.group`, p.group);
  });
  if (!absent(c.diagonal) && typeof c.diagonal !== 'boolean') fail('E_TYPE', w, 'diagonal', 'a boolean', describe(c.diagonal));
}

function checkQuantiles(w: string, c: Record<string, unknown>): void {
  const x = numbers(w, 'x', c.x);
  const samples = array(w, 'samples', c.samples, 'arrays of numbers');
  if (samples.length !== x.length) fail('E_SHAPE', w, 'samples', `an array of ${x.length} sample arrays (as many as x)`, `an array of length ${samples.length}`);
  samples.forEach((s, i) => numbers(w, `samples[${i}]`, s));
}

function checkBar(w: string, c: Record<string, unknown>): void {
  const cats = strings(w, 'categories', c.categories);
  const len = { n: cats.length, of: 'categories' };
  const series = array(w, 'series', c.series, 'series objects');
  series.forEach((s, i) => {
    const f = `series[${i}]`;
    if (!isObject(s)) fail('E_TYPE', w, f, 'an object {name, values, err?}', describe(s));
    string(w, `${f}.name`, s.name);
    numbers(w, `${f}.values`, s.values, len);
    if (!absent(s.err)) {
      const err = numbers(w, `${f}.err`, s.err, len);
      for (let j = 0; j < err.length; j++) {
        const e = err[j];
        if (typeof e === 'number' && e < 0) fail('E_RANGE', w, `${f}.err[${j}]`, 'an error of at least 0', describe(e));
      }
    }
  });
}

function checkHeatmap(w: string, c: Record<string, unknown>): void {
  const xCats = strings(w, 'xCats', c.xCats);
  const yCats = strings(w, 'yCats', c.yCats);
  const values = array(w, 'values', c.values, 'rows');
  if (values.length !== yCats.length)
    fail('E_SHAPE', w, 'values', `${yCats.length} rows (as many as yCats)`, `an array of length ${values.length}`);
  values.forEach((row, i) => numbers(w, `values[${i}]`, row, { n: xCats.length, of: 'xCats' }));
  const cells = xCats.length * yCats.length;
  if (cells > MAX_HEATMAP_CELLS) fail('E_RANGE', w, 'values', `at most ${MAX_HEATMAP_CELLS} cells`, `${yCats.length} × ${xCats.length} = ${cells}`);
}

function checkChart(c: unknown, section: string, ids: Map<string, string>): void {
  if (!isObject(c)) fail('E_TYPE', section, 'chart', 'a chart object {kind, id, title, ...}', describe(c));
  const w = chartWhere(c, section);
  if (typeof c.id !== 'string') fail('E_TYPE', w, 'id', 'a string', describe(c.id));
  if (!ID.test(c.id) || c.id.includes('--'))
    fail('E_CONFIG', w, 'id', 'a string of letters, digits, "_", "-" or "." starting with a letter or "_", without "--"', describe(c.id));
  const first = ids.get(c.id);
  if (first !== undefined) fail('E_CONFIG', w, 'id', `an id unique in the report (${first} uses it already)`, JSON.stringify(c.id));
  ids.set(c.id, section);
  if (!CHART_KINDS.includes(c.kind as ChartKind))
    fail('E_CONFIG', w, 'kind', `one of ${CHART_KINDS.map((k) => `'${k}'`).join(', ')}`, describe(c.kind));
  for (const k of ['title', 'xLabel', 'yLabel']) string(w, k, c[k]);
  const check = { line: checkLine, scatter: checkScatter, quantiles: checkQuantiles, bar: checkBar, heatmap: checkHeatmap }[c.kind as ChartKind];
  check(w, c);
}

function checkTable(t: unknown, where: string): void {
  if (!isObject(t)) fail('E_TYPE', where, 'table', 'an object {caption?, header, rows}', describe(t));
  optString(where, 'caption', t.caption);
  const header = strings(where, 'header', t.header);
  const rows = array(where, 'rows', t.rows, 'rows');
  rows.forEach((r, i) => {
    const row = array(where, `rows[${i}]`, r, 'cells');
    if (row.length !== header.length) fail('E_SHAPE', where, `rows[${i}]`, `${header.length} cells (as many as header)`, `${row.length} cells`);
    row.forEach((cell, j) => {
      if (typeof cell !== 'string' && typeof cell !== 'number') fail('E_TYPE', where, `rows[${i}][${j}]`, 'a string or a number', describe(cell));
    });
  });
}

/** Throws a SophiaError for the first thing in `r` that renderReport cannot draw. */
export function checkReport(r: unknown): asserts r is Report {
  if (!isObject(r)) fail('E_TYPE', 'report', 'report', 'an object {title, sections, ...}', describe(r));
  string('report', 'title', r.title);
  optString('report', 'subtitle', r.subtitle);
  optString('report', 'generated', r.generated);
  const sections = array('report', 'sections', r.sections, 'sections');
  const ids = new Map<string, string>();
  sections.forEach((s, i) => {
    const where = `section ${i + 1}`;
    if (!isObject(s)) fail('E_TYPE', 'report', `sections[${i}]`, 'an object {title, text?, charts?, tables?}', describe(s));
    string(where, 'title', s.title);
    const named = `section ${i + 1} (${JSON.stringify(s.title)})`;
    optString(named, 'text', s.text);
    if (!absent(s.charts)) array(named, 'charts', s.charts, 'charts').forEach((c) => checkChart(c, named, ids));
    if (!absent(s.tables)) array(named, 'tables', s.tables, 'tables').forEach((t, j) => checkTable(t, `${named}, table ${j + 1}`));
  });
}
