/** One SVG renderer per chart kind. Inputs are checked (validate.ts) before they get here. */
import { esc, formatNumber, maxWidth, px, truncate } from './format';
import {
  bucketSize, clean, downsampleBand, downsampleMinMax, ema, extent, finite, quantileRows,
} from './series';
import {
  PALETTE, WIDTH, bandPath, categoryAxis, categoryOverhang, dots, linePath, noData, openSvg, path, seriesStyle, xyFrame,
  type LegendItem,
} from './svg';
import type { BarChart, Chart, HeatmapChart, LineChart, QuantilesChart, ScatterChart } from './types';

/** Scatter plots beyond this many points are thinned to every k-th point. */
export const MAX_SCATTER_POINTS = 4000;
/** Per-point tooltips (<title>) only up to this many marks, to keep the file small. */
const MAX_TOOLTIPS = 1000;

const plural = (n: number, one: string, many = `${one}s`): string => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

function ordinal(n: number): string {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  return `${n}${teen ? 'th' : ['th', 'st', 'nd', 'rd'][n % 10] ?? 'th'}`;
}

function lineChart(c: LineChart): string {
  if (c.series.length === 0) return noData(c.id, c.kind, c.title, 'the chart has no series');
  let xLo = Infinity;
  let xHi = -Infinity;
  let xInteger = true;
  const prepared = c.series.map((s, i) => {
    const x = clean(s.x);
    const y = clean(s.y).map((v, j) => (Number.isNaN(x[j]) ? NaN : v));
    const band = s.band ? { lo: clean(s.band.lo), hi: clean(s.band.hi) } : undefined;
    // The x range covers every point drawn: with a y value or inside a band.
    x.forEach((v, j) => {
      if (Number.isNaN(v)) return;
      if (Number.isNaN(y[j]) && (!band || Number.isNaN(band.lo[j]) || Number.isNaN(band.hi[j]))) return;
      xLo = Math.min(xLo, v);
      xHi = Math.max(xHi, v);
      xInteger &&= Number.isInteger(v);
    });
    const bucket = bucketSize(x.length);
    return {
      name: s.name,
      style: seriesStyle(s.styleIndex ?? i),
      n: x.length,
      bucket,
      raw: downsampleMinMax(x, y, bucket),
      smooth: c.smooth ? downsampleMinMax(x, ema(y, c.smooth), bucket) : undefined,
      band: band ? downsampleBand(x, band.lo, band.hi, bucket) : undefined,
    };
  });
  const yData = extent(...prepared.flatMap((p) => [p.raw.y, p.band?.lo ?? [], p.band?.hi ?? []]));
  if (yData === null) {
    const empty = prepared.every((p) => p.n === 0);
    return noData(c.id, c.kind, c.title, empty ? 'every series is empty' : 'no series has a finite value');
  }

  const notesOut: string[] = [];
  if (c.smooth) notesOut.push(`bold: exponential moving average over ${formatNumber(c.smooth)} points; faint: raw values`);
  const buckets = [...new Set(prepared.filter((p) => p.bucket > 1).map((p) => p.bucket))];
  if (buckets.length > 0) {
    const longest = Math.max(...prepared.map((p) => p.n));
    notesOut.push(`downsampled for drawing (longest series ${plural(longest, 'point')}): min and max of every ${buckets.join('/')} points`);
  }
  const f = xyFrame(c.id, c.kind, c, {
    x: [xLo, xHi],
    y: c.yRange ?? yData,
    yFixed: c.yRange !== undefined && c.yRange !== null,
    xInteger,
    legend: prepared.map((p) => ({ label: p.name, color: p.style.color, mark: 'line', dash: p.style.dash || undefined, withBand: !!p.band })),
    notes: notesOut,
  });

  const out: string[] = [f.open, f.clip];
  for (const p of prepared) {
    if (p.band) out.push(path(bandPath(p.band.x, p.band.lo, p.band.hi, f.sx, f.sy), `fill="${p.style.color}" opacity="0.2"`));
  }
  const dash = (d: string): string => (d ? ` stroke-dasharray="${d}"` : '');
  for (const p of prepared) {
    const line = linePath(p.raw.x, p.raw.y, f.sx, f.sy);
    const faint = p.smooth !== undefined;
    const attrs = `fill="none" stroke="${p.style.color}" stroke-width="${faint ? 1.25 : 1.75}" stroke-linejoin="round"${dash(p.style.dash)}${faint ? ' opacity="0.3"' : ''}`;
    if (line.d) out.push(`<path d="${line.d}" ${attrs}><title>${esc(p.name)}</title></path>`);
    out.push(dots(line.lone, faint ? 2 : 2.5, `fill="${p.style.color}"${faint ? ' opacity="0.3"' : ''}`));
  }
  for (const p of prepared) {
    if (!p.smooth) continue;
    const line = linePath(p.smooth.x, p.smooth.y, f.sx, f.sy);
    if (line.d) out.push(`<path d="${line.d}" fill="none" stroke="${p.style.color}" stroke-width="2.25" stroke-linejoin="round"${dash(p.style.dash)}><title>${esc(p.name)} (smoothed)</title></path>`);
    out.push(dots(line.lone, 3, `fill="${p.style.color}"`));
  }
  out.push('</g>', f.close);
  return out.join('');
}

function scatterChart(c: ScatterChart): string {
  if (c.points.length === 0) return noData(c.id, c.kind, c.title, 'the chart has no points');
  const present = c.points.filter((p) => finite(p.x) && finite(p.y));
  if (present.length === 0) return noData(c.id, c.kind, c.title, `none of the ${plural(c.points.length, 'point')} has finite x and y`);
  const stride = Math.ceil(present.length / MAX_SCATTER_POINTS);
  const drawn = stride > 1 ? present.filter((_, i) => i % stride === 0) : present;

  const groups = new Map<string, number>();
  for (const p of present) if (!groups.has(p.group ?? '')) groups.set(p.group ?? '', groups.size);
  const grouped = groups.size > 1 || !groups.has('');
  const color = (p: { group?: string }): string => PALETTE[groups.get(p.group ?? '')! % PALETTE.length];

  const xs = present.map((p) => p.x);
  const ys = present.map((p) => p.y);
  let xr = extent(xs)!;
  let yr = extent(ys)!;
  if (c.diagonal) xr = yr = [Math.min(xr[0], yr[0]), Math.max(xr[1], yr[1])];

  const notesOut: string[] = [];
  const skipped = c.points.length - present.length;
  if (skipped > 0) notesOut.push(`${plural(skipped, 'point')} without finite x and y not drawn`);
  if (stride > 1) notesOut.push(`showing every ${ordinal(stride)} of ${plural(present.length, 'point')}`);
  const legendItems: LegendItem[] = grouped
    ? [...groups.keys()].map((g) => ({ label: g || '(no group)', color: PALETTE[groups.get(g)! % PALETTE.length], mark: 'dot' }))
    : [];
  if (c.diagonal) legendItems.push({ label: 'y = x', color: '#888888', mark: 'line', dash: '5 4' });
  const f = xyFrame(c.id, c.kind, c, { x: xr, y: yr, xExtend: true, legend: legendItems, notes: notesOut });

  const out: string[] = [f.open, f.clip];
  if (c.diagonal) {
    const lo = Math.min(f.x[0], f.y[0]);
    const hi = Math.max(f.x[1], f.y[1]);
    out.push(`<line class="diagonal" x1="${px(f.sx(lo))}" y1="${px(f.sy(lo))}" x2="${px(f.sx(hi))}" y2="${px(f.sy(hi))}" stroke="#888888" stroke-width="1.25" stroke-dasharray="5 4"/>`);
  }
  const tips = drawn.length <= MAX_TOOLTIPS;
  for (const p of drawn) {
    const open = `<circle cx="${px(f.sx(p.x))}" cy="${px(f.sy(p.y))}" r="3" fill="${color(p)}" fill-opacity="0.75"`;
    if (!tips) out.push(`${open}/>`);
    else {
      const g = grouped ? `${p.group ?? '(no group)'}: ` : '';
      out.push(`${open}><title>${esc(`${g}(${formatNumber(p.x)}, ${formatNumber(p.y)})`)}</title></circle>`);
    }
  }
  out.push('</g>', f.close);
  return out.join('');
}

function quantilesChart(c: QuantilesChart): string {
  if (c.x.length === 0) return noData(c.id, c.kind, c.title, 'the chart has no x values');
  const rows = quantileRows(clean(c.x), c.samples);
  const [q10, q25, q50, q75, q90] = rows.q;
  const yr = extent(q10, q90);
  if (yr === null) return noData(c.id, c.kind, c.title, 'no x has a finite sample');
  const drawnX = rows.x.filter((_, i) => !Number.isNaN(q50[i]));
  const color = PALETTE[0];
  const f = xyFrame(c.id, c.kind, c, {
    x: extent(drawnX)!,
    y: yr,
    xInteger: drawnX.every((v) => Number.isInteger(v)),
    legend: [
      { label: 'median', color, mark: 'line' },
      { label: '25–75%', color, mark: 'band', opacity: 0.4 },
      { label: '10–90%', color, mark: 'band', opacity: 0.18 },
    ],
    notes: rows.bucket > 1 ? [`samples pooled over every ${rows.bucket} consecutive x values (${plural(c.x.length, 'x value')})`] : [],
  });
  const median = linePath(rows.x, q50, f.sx, f.sy);
  const out = [
    f.open, f.clip,
    path(bandPath(rows.x, q10, q90, f.sx, f.sy), `fill="${color}" opacity="0.18"`),
    path(bandPath(rows.x, q25, q75, f.sx, f.sy), `fill="${color}" opacity="0.4"`),
    median.d ? `<path d="${median.d}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"><title>median</title></path>` : '',
    dots(median.lone, 2.5, `fill="${color}"`),
    '</g>',
    f.close,
  ];
  return out.join('');
}

function barChart(c: BarChart): string {
  if (c.categories.length === 0) return noData(c.id, c.kind, c.title, 'the chart has no categories');
  if (c.series.length === 0) return noData(c.id, c.kind, c.title, 'the chart has no series');
  const series = c.series.map((s) => {
    const values = clean(s.values);
    const err = s.err ? clean(s.err).map((e, i) => (Number.isNaN(values[i]) ? NaN : e)) : undefined;
    return { name: s.name, values, err };
  });
  const ends = series.flatMap((s) => [s.values, s.err ? s.values.map((v, i) => v - s.err![i]) : [], s.err ? s.values.map((v, i) => v + s.err![i]) : []]);
  const data = extent(...ends);
  if (data === null) return noData(c.id, c.kind, c.title, 'no bar has a finite value');
  // Headroom beyond the longest bar for its value label.
  const pad = 0.06 * (Math.max(0, data[1]) - Math.min(0, data[0]));
  const f = xyFrame(c.id, c.kind, c, {
    x: [0, 1],
    y: [data[0] < 0 ? data[0] - pad : 0, data[1] > 0 ? data[1] + pad : 0],
    categories: c.categories,
    legend: series.map((s, i) => ({ label: s.name, color: seriesStyle(i).color, mark: 'box' })),
    notes: [],
  });
  const k = series.length;
  const barW = (f.band * 0.8) / k;
  const zero = f.sy(0);
  const labelled = barW >= 26 && c.categories.length * k <= 48;
  const out: string[] = [f.open, f.clip];
  const labels: string[] = [];
  series.forEach((s, j) => {
    const { color } = seriesStyle(j);
    s.values.forEach((v, i) => {
      if (Number.isNaN(v)) return;
      const x = f.sx(i) - f.band * 0.4 + j * barW;
      const y = f.sy(v);
      const e = s.err?.[i];
      const tip = `${c.categories[i]} · ${s.name}: ${formatNumber(v)}${e !== undefined && !Number.isNaN(e) ? ` ± ${formatNumber(e)}` : ''}`;
      out.push(
        `<rect x="${px(x + 0.5)}" y="${px(Math.min(y, zero))}" width="${px(Math.max(1, barW - 1))}" height="${px(Math.abs(zero - y))}" fill="${color}"><title>${esc(tip)}</title></rect>`,
      );
      let top = Math.min(y, zero);
      let bottom = Math.max(y, zero);
      if (e !== undefined && !Number.isNaN(e) && e > 0) {
        const cx = x + barW / 2;
        const hi = f.sy(v + e);
        const lo = f.sy(v - e);
        const cap = Math.min(6, barW / 3);
        out.push(
          `<path class="err" d="M${px(cx)},${px(lo)}L${px(cx)},${px(hi)}M${px(cx - cap)},${px(lo)}L${px(cx + cap)},${px(lo)}M${px(cx - cap)},${px(hi)}L${px(cx + cap)},${px(hi)}"/>`,
        );
        top = Math.min(top, hi);
        bottom = Math.max(bottom, lo);
      }
      if (labelled) {
        const ly = v >= 0 ? top - 4 : bottom + 11;
        labels.push(`<text class="bar-value" x="${px(x + barW / 2)}" y="${px(ly)}" text-anchor="middle">${esc(formatNumber(v))}</text>`);
      }
    });
  });
  out.push(`<line class="baseline" x1="${px(f.box.left)}" y1="${px(zero)}" x2="${px(f.box.left + f.box.width)}" y2="${px(zero)}"/>`);
  out.push('</g>', labels.join(''), f.close);
  return out.join('');
}

// Viridis, sampled at 9 evenly spaced stops: perceptually uniform and readable with colour-vision deficiencies.
const VIRIDIS = ['#440154', '#472d7b', '#3b528b', '#2c728e', '#21918c', '#28ae80', '#5ec962', '#addc30', '#fde725'];
const rgb = (hex: string): number[] => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));

function viridis(t: number): { fill: string; dark: boolean } {
  const pos = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(pos));
  const a = rgb(VIRIDIS[i]);
  const b = rgb(VIRIDIS[i + 1]);
  const c = a.map((v, k) => Math.round(v + (pos - i) * (b[k] - v)));
  const luminance = (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;
  return { fill: `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`, dark: luminance < 0.45 };
}

function heatmapChart(c: HeatmapChart): string {
  const rows = c.yCats.length;
  const cols = c.xCats.length;
  if (rows === 0 || cols === 0) return noData(c.id, c.kind, c.title, `the matrix is ${rows} × ${cols}`);
  const values = c.values.map((r) => clean(r));
  const range = extent(...values);
  if (range === null) return noData(c.id, c.kind, c.title, 'no cell has a finite value');
  const [lo, hi] = range;

  const yLabels = c.yCats.map((l) => truncate(l, 24));
  let left = 34 + maxWidth(yLabels, 11);
  left = Math.max(left, categoryOverhang(c.xCats, Math.min(90, (WIDTH - left - 84) / cols)));
  const top = 44;
  // Cells at most 90 px wide and about square, so a small confusion matrix does not stretch.
  const cellW = Math.min(90, (WIDTH - left - 84) / cols);
  const cellH = Math.min(cellW, 44, Math.max(3, 480 / rows));
  const plotW = cellW * cols;
  const plotH = cellH * rows;
  const bottom = top + plotH;
  const xAxis = categoryAxis(c.xCats, left, cellW, bottom);
  const labelY = bottom + xAxis.height + 20;
  const barH = Math.max(plotH, 100);
  const missing = values.some((r) => r.some((v) => Number.isNaN(v)));
  const height = Math.max(labelY, top + barH + 12) + (missing ? 30 : 14);

  const out: string[] = [openSvg(c.id, c.kind, c.title, height)];
  const gradId = `${c.id}--grad`;
  out.push(
    `<defs><linearGradient id="${esc(gradId)}" x1="0" y1="1" x2="0" y2="0">` +
      VIRIDIS.map((col, i) => `<stop offset="${px((i / (VIRIDIS.length - 1)) * 100)}%" stop-color="${col}"/>`).join('') +
      '</linearGradient></defs>',
  );
  // Values are printed in every cell or in none: some cells with and some without would read as missing.
  const texts = values.map((r) => r.map((v) => (Number.isNaN(v) ? '' : formatNumber(v))));
  const showValues = cellH >= 14 && maxWidth(texts.flat(), 11) <= cellW - 4;
  const cells: string[] = [];
  for (let r = 0; r < rows; r++) {
    const y = top + r * cellH;
    for (let k = 0; k < cols; k++) {
      const v = values[r][k];
      const x = left + k * cellW;
      const tip = `<title>${esc(`${c.yCats[r]} / ${c.xCats[k]}: ${Number.isNaN(v) ? 'missing' : formatNumber(v)}`)}</title>`;
      const rect = `x="${px(x)}" y="${px(y)}" width="${px(cellW)}" height="${px(cellH)}"`;
      if (Number.isNaN(v)) {
        cells.push(`<rect class="cell-missing" ${rect}>${tip}</rect>`);
        continue;
      }
      const col = viridis(hi > lo ? (v - lo) / (hi - lo) : 0.5);
      cells.push(`<rect ${rect} fill="${col.fill}">${tip}</rect>`);
      if (showValues) {
        cells.push(`<text class="${col.dark ? 'cell-value-dark' : 'cell-value'}" x="${px(x + cellW / 2)}" y="${px(y + cellH / 2 + 4)}" text-anchor="middle">${esc(texts[r][k])}</text>`);
      }
    }
  }
  out.push(`<g class="cells">${cells.join('')}</g>`);
  const yl = yLabels
    .map((l, r) => {
      if (cellH < 10 && r % Math.ceil(10 / cellH) !== 0) return '';
      const full = l === c.yCats[r] ? '' : `<title>${esc(c.yCats[r])}</title>`;
      return `<text class="tick" x="${px(left - 6)}" y="${px(top + (r + 0.5) * cellH + 4)}" text-anchor="end">${full}${esc(l)}</text>`;
    })
    .join('');
  const cy = px(top + plotH / 2);
  out.push(
    `<g class="axes">${yl}${xAxis.svg}` +
      `<text class="axis-label" x="16" y="${cy}" transform="rotate(-90 16 ${cy})" text-anchor="middle">${esc(truncate(c.yLabel, 60))}</text>` +
      `<text class="axis-label" x="${px(left + plotW / 2)}" y="${px(labelY)}" text-anchor="middle">${esc(truncate(c.xLabel, 100))}</text></g>`,
  );
  const bx = left + plotW + 18;
  out.push(
    `<g class="colour-scale"><rect x="${px(bx)}" y="${px(top)}" width="14" height="${px(barH)}" fill="url(#${esc(gradId)})"/>` +
      `<text class="tick" x="${px(bx + 20)}" y="${px(top + 8)}">${esc(formatNumber(hi))}</text>` +
      `<text class="tick" x="${px(bx + 20)}" y="${px(top + barH)}">${esc(formatNumber(lo))}</text></g>`,
  );
  if (missing) out.push(`<text class="note" x="${px(left)}" y="${px(height - 10)}">light grey: missing value</text>`);
  out.push('</svg>');
  return out.join('');
}

/** The <svg> of one chart (checked beforehand by checkReport). */
export function renderChart(c: Chart): string {
  switch (c.kind) {
    case 'line':
      return lineChart(c);
    case 'scatter':
      return scatterChart(c);
    case 'quantiles':
      return quantilesChart(c);
    case 'bar':
      return barChart(c);
    case 'heatmap':
      return heatmapChart(c);
  }
}
