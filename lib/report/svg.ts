/**
 * The parts every chart shares: the <svg> element with its <title>, the legend, axes with ticks and
 * grid lines, paths with gaps, and the "no data" placeholder. Output is well-formed XML: every
 * element closed, every attribute quoted, all text escaped.
 */
import { esc, formatNumber, maxWidth, niceTicks, px, textWidth, truncate, type Ticks } from './format';

export const WIDTH = 720;
const RIGHT = 20;
const LEGEND_TOP = 38;
const LEGEND_ROW = 18;
const PLOT_HEIGHT = 260;
const NOTE_LINE = 14;
const CATEGORY_CHARS = 24;
const ROTATE_DEG = 40;

/** Okabe–Ito colours (safe for the common colour-vision deficiencies), yellow left out for contrast on white. */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#56B4E9', '#CC79A7', '#555555'];
const DASHES = ['', '6 3', '2 3', '8 3 2 3'];

/** Colour of series `i`; past the palette, colours repeat with a dash pattern. */
export function seriesStyle(i: number): { color: string; dash: string } {
  return { color: PALETTE[i % PALETTE.length], dash: DASHES[Math.floor(i / PALETTE.length) % DASHES.length] };
}

export interface LegendItem {
  label: string;
  color: string;
  mark: 'line' | 'band' | 'dot' | 'box';
  dash?: string;
  /** With mark 'line': a faint band behind the line, for series drawn with a band. */
  withBand?: boolean;
  opacity?: number;
}

interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

type Scale = (v: number) => number;

/** Maps [lo, hi] onto [a, b]; halving first keeps the arithmetic finite for ranges near ±Number.MAX_VALUE. */
function linear(lo: number, hi: number, a: number, b: number): Scale {
  const span = hi / 2 - lo / 2;
  return (v) => a + ((v / 2 - lo / 2) / span) * (b - a);
}

const attr = (name: string, value: string | undefined): string => (value ? ` ${name}="${esc(value)}"` : '');

/** The opening <svg> with its accessible <title> and the visible title. */
export function openSvg(id: string, kind: string, title: string, height: number): string {
  const h = px(height);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" id="${esc(id)}" class="chart chart-${kind}" data-testid="chart-${kind}" ` +
    `viewBox="0 0 ${WIDTH} ${h}" width="${WIDTH}" height="${h}" role="img" aria-labelledby="${esc(id)}--title">` +
    `<title id="${esc(id)}--title">${esc(title)}</title>` +
    `<text class="chart-title" x="16" y="24">${esc(truncate(title, 75))}</text>`
  );
}

/** A chart with nothing to draw: its title and a note saying why. */
export function noData(id: string, kind: string, title: string, reason: string): string {
  return (
    openSvg(id, kind, title, 110) +
    `<rect class="no-data-box" x="16" y="40" width="${WIDTH - 32}" height="56" rx="6"/>` +
    `<text class="no-data" x="${WIDTH / 2}" y="73" text-anchor="middle">No data: ${esc(reason)}</text></svg>`
  );
}

function legendMark(item: LegendItem, x: number, y: number): string {
  const o = item.opacity !== undefined ? ` opacity="${item.opacity}"` : '';
  switch (item.mark) {
    case 'line':
      return (item.withBand ? `<rect x="${px(x)}" y="${px(y - 5)}" width="18" height="10" fill="${item.color}" opacity="0.2"/>` : '') +
        `<line x1="${px(x)}" y1="${px(y)}" x2="${px(x + 18)}" y2="${px(y)}" stroke="${item.color}" stroke-width="2.5"${attr('stroke-dasharray', item.dash)}${o}/>`;
    case 'band':
      return `<rect x="${px(x)}" y="${px(y - 5)}" width="18" height="10" fill="${item.color}"${o}/>`;
    case 'dot':
      return `<circle cx="${px(x + 9)}" cy="${px(y)}" r="4" fill="${item.color}"${o}/>`;
    case 'box':
      return `<rect x="${px(x + 3)}" y="${px(y - 6)}" width="12" height="12" fill="${item.color}"${o}/>`;
  }
}

/** Legend items laid out left to right, wrapping; returns the markup and the height it takes. */
function legend(items: LegendItem[], left: number): { svg: string; height: number } {
  if (items.length === 0) return { svg: '', height: 0 };
  let x = left;
  let row = 0;
  const parts: string[] = [];
  for (const item of items) {
    const label = truncate(item.label, 40);
    const w = 24 + textWidth(label, 12) + 18;
    if (x > left && x + w > WIDTH - RIGHT) {
      x = left;
      row++;
    }
    const y = LEGEND_TOP + row * LEGEND_ROW;
    parts.push(`${legendMark(item, x, y)}<text class="legend" x="${px(x + 24)}" y="${px(y + 4)}">${esc(label)}</text>`);
    x += w;
  }
  return { svg: `<g class="legend-items">${parts.join('')}</g>`, height: (row + 1) * LEGEND_ROW };
}

/** Notes under the plot (downsampling, skipped points), right-aligned. */
function notes(lines: string[], bottom: number): string {
  return lines
    .map((n, i) => `<text class="note" x="${WIDTH - RIGHT}" y="${px(bottom - (lines.length - 1 - i) * NOTE_LINE)}" text-anchor="end">${esc(n)}</text>`)
    .join('');
}

/** Every k-th label so that labels of width `labelWidth` spaced `spacing` apart do not overlap. */
function thinning(spacing: number, labelWidth: number): number {
  return spacing <= 0 ? 1 : Math.max(1, Math.ceil((labelWidth + 8) / spacing));
}

function xAxis(box: Box, t: Ticks, sx: Scale): string {
  const labels = t.values.map((v) => formatNumber(v, t.step));
  const spacing = t.values.length > 1 ? Math.abs(sx(t.values[1]) - sx(t.values[0])) : box.width;
  const every = thinning(spacing, maxWidth(labels, 11));
  const bottom = box.top + box.height;
  return t.values
    .map((v, i) => {
      const x = px(sx(v));
      const text = i % every === 0 ? `<text class="tick" x="${x}" y="${px(bottom + 16)}" text-anchor="middle">${esc(labels[i])}</text>` : '';
      return `<line class="grid" x1="${x}" y1="${px(box.top)}" x2="${x}" y2="${px(bottom)}"/><line class="axis" x1="${x}" y1="${px(bottom)}" x2="${x}" y2="${px(bottom + 4)}"/>${text}`;
    })
    .join('');
}

function yAxis(box: Box, t: Ticks, sy: Scale, label: string): string {
  const ticks = t.values
    .map((v) => {
      const y = px(sy(v));
      return `<line class="grid" x1="${px(box.left)}" y1="${y}" x2="${px(box.left + box.width)}" y2="${y}"/><text class="tick" x="${px(box.left - 6)}" y="${px(sy(v) + 4)}" text-anchor="end">${esc(formatNumber(v, t.step))}</text>`;
    })
    .join('');
  const cy = px(box.top + box.height / 2);
  return ticks + `<text class="axis-label" x="16" y="${cy}" transform="rotate(-90 16 ${cy})" text-anchor="middle">${esc(truncate(label, 60))}</text>`;
}

/** The width the y tick labels need, plus room for the rotated axis label. */
function leftMargin(labels: string[]): number {
  return Math.max(56, 34 + maxWidth(labels, 11));
}

/**
 * Category labels centred under bands of width `band` starting at `left`, with their top at `y`:
 * rotated when they do not fit side by side, thinned when bands are too narrow for any label.
 */
export function categoryAxis(labels: string[], left: number, band: number, y: number): { svg: string; height: number } {
  const shown = labels.map((l) => truncate(l, CATEGORY_CHARS));
  const widest = maxWidth(shown, 11);
  const rotate = widest > band - 6;
  const every = rotate ? thinning(band, 6) : 1;
  const parts = shown.map((l, i) => {
    if (i % every !== 0) return '';
    const cx = px(left + (i + 0.5) * band);
    const full = l === labels[i] ? '' : `<title>${esc(labels[i])}</title>`;
    return rotate
      ? `<text class="tick" x="${cx}" y="${px(y + 10)}" text-anchor="end" transform="rotate(-${ROTATE_DEG} ${cx} ${px(y + 10)})">${full}${esc(l)}</text>`
      : `<text class="tick" x="${cx}" y="${px(y + 12)}" text-anchor="middle">${full}${esc(l)}</text>`;
  });
  return { svg: parts.join(''), height: rotate ? Math.sin((ROTATE_DEG * Math.PI) / 180) * widest + 18 : 16 };
}

/** How far left of the first band rotated category labels reach: the left margin they need (at most 200 px). */
export function categoryOverhang(labels: string[], band: number): number {
  const widest = maxWidth(labels.map((l) => truncate(l, CATEGORY_CHARS)), 11);
  if (widest <= band - 6) return 0;
  return Math.min(200, Math.cos((ROTATE_DEG * Math.PI) / 180) * widest - band / 2 + 12);
}

export interface XYFrame {
  box: Box;
  sx: Scale;
  sy: Scale;
  /** The drawn ranges, after rounding out to nice ticks. */
  x: [number, number];
  y: [number, number];
  /** With categories: the width of one category's band; sx(i) is the centre of category i. */
  band: number;
  height: number;
  /** The opening <svg>, title, legend, clip path, grid and axes. */
  open: string;
  /** Opens the clipped data group; the chart closes it with </g> and may draw unclipped marks after. */
  clip: string;
  /** The notes and the closing </svg>. */
  close: string;
}

export interface XYOptions {
  /** The x data range; ignored with `categories`. */
  x: [number, number];
  y: [number, number];
  /** A categorical x axis instead of a numeric one. */
  categories?: string[];
  /** Keep the y range as given (no rounding out to nice ticks). */
  yFixed?: boolean;
  /** Round the x range out to nice ticks (scatter plots; line charts run edge to edge). */
  xExtend?: boolean;
  xInteger?: boolean;
  legend: LegendItem[];
  notes: string[];
}

/** The frame of a chart with a numeric y axis and a numeric or categorical x axis. */
export function xyFrame(id: string, kind: string, c: { title: string; xLabel: string; yLabel: string }, o: XYOptions): XYFrame {
  const yt = niceTicks(o.y[0], o.y[1], 5, { extend: !o.yFixed });
  let left = leftMargin(yt.values.map((v) => formatNumber(v, yt.step)));
  if (o.categories) left = Math.max(left, categoryOverhang(o.categories, (WIDTH - left - RIGHT) / Math.max(1, o.categories.length)));
  const leg = legend(o.legend, left);
  const top = leg.height > 0 ? LEGEND_TOP + leg.height + 4 : 44;
  const box: Box = { left, top, width: WIDTH - left - RIGHT, height: PLOT_HEIGHT };
  const bottom = box.top + box.height;
  let sx: Scale;
  let xRange: [number, number];
  let band = 0;
  let xTicks: string;
  let xSpace: number;
  if (o.categories) {
    const n = Math.max(1, o.categories.length);
    band = box.width / n;
    sx = (i) => box.left + (i + 0.5) * band;
    xRange = [-0.5, n - 0.5];
    const axis = categoryAxis(o.categories, box.left, band, bottom);
    xTicks = axis.svg;
    xSpace = axis.height;
  } else {
    const xt = niceTicks(o.x[0], o.x[1], Math.max(2, Math.round(box.width / 100)), { extend: o.xExtend, integer: o.xInteger });
    sx = linear(xt.lo, xt.hi, box.left, box.left + box.width);
    xRange = [xt.lo, xt.hi];
    xTicks = xAxis(box, xt, sx);
    xSpace = 16;
  }
  const sy = linear(yt.lo, yt.hi, bottom, box.top);
  const labelY = bottom + xSpace + 20;
  const noteBottom = labelY + 18 + (o.notes.length - 1) * NOTE_LINE;
  const height = o.notes.length > 0 ? noteBottom + 8 : labelY + 14;
  const clipId = `${id}--clip`;
  const open =
    openSvg(id, kind, c.title, height) +
    `<defs><clipPath id="${esc(clipId)}"><rect x="${px(box.left - 4)}" y="${px(box.top - 4)}" width="${px(box.width + 8)}" height="${px(box.height + 8)}"/></clipPath></defs>` +
    leg.svg +
    `<g class="axes">${yAxis(box, yt, sy, c.yLabel)}${xTicks}` +
    `<text class="axis-label" x="${px(box.left + box.width / 2)}" y="${px(labelY)}" text-anchor="middle">${esc(truncate(c.xLabel, 100))}</text>` +
    `<rect class="frame" x="${px(box.left)}" y="${px(box.top)}" width="${px(box.width)}" height="${px(box.height)}"/></g>`;
  return {
    box, sx, sy, x: xRange, y: [yt.lo, yt.hi], band, height, open,
    clip: `<g class="data" clip-path="url(#${esc(clipId)})">`,
    close: `${o.notes.length > 0 ? notes(o.notes, noteBottom) : ''}</svg>`,
  };
}

/**
 * Path data through (x[i], y[i]), starting a new subpath after each NaN. Points with no present
 * neighbour are returned separately so they can be drawn as dots (a one-point subpath is invisible).
 */
export function linePath(x: number[], y: number[], sx: Scale, sy: Scale): { d: string; lone: [number, number][] } {
  const parts: string[] = [];
  const lone: [number, number][] = [];
  let run: string[] = [];
  let runStart: [number, number] = [0, 0];
  const flush = (): void => {
    if (run.length === 1) lone.push(runStart);
    else if (run.length > 1) parts.push(`M${run.join('L')}`);
    run = [];
  };
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]) || Number.isNaN(y[i])) {
      flush();
      continue;
    }
    const X = sx(x[i]);
    const Y = sy(y[i]);
    if (run.length === 0) runStart = [X, Y];
    run.push(`${px(X)},${px(Y)}`);
  }
  flush();
  return { d: parts.join(''), lone };
}

/** A closed polygon per run of present points: along lo forward, back along hi. */
export function bandPath(x: number[], lo: number[], hi: number[], sx: Scale, sy: Scale): string {
  const parts: string[] = [];
  let run: number[] = [];
  const flush = (): void => {
    if (run.length > 0) {
      // A single point becomes a thin vertical sliver so it stays visible.
      const idx = run.length === 1 ? [run[0], run[0]] : run;
      const dx = run.length === 1 ? [-1.5, 1.5] : idx.map(() => 0);
      const fwd = idx.map((i, k) => `${px(sx(x[i]) + dx[k])},${px(sy(lo[i]))}`);
      const back = idx.map((i, k) => `${px(sx(x[i]) + dx[k])},${px(sy(hi[i]))}`).reverse();
      parts.push(`M${fwd.join('L')}L${back.join('L')}Z`);
    }
    run = [];
  };
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]) || Number.isNaN(lo[i]) || Number.isNaN(hi[i])) flush();
    else run.push(i);
  }
  flush();
  return parts.join('');
}

/** A <path> element, or nothing for empty path data. */
export function path(d: string, attrs: string): string {
  return d ? `<path d="${d}" ${attrs}/>` : '';
}

export function dots(points: [number, number][], r: number, attrs: string): string {
  return points.map(([x, y]) => `<circle cx="${px(x)}" cy="${px(y)}" r="${r}" ${attrs}/>`).join('');
}
