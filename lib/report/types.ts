/**
 * The data a report is made of. Every chart is plain data (no callbacks), so a report can be built
 * from `metrics.jsonl` alone and rendered the same way every time.
 *
 * Missing values: a NaN, ±Infinity, null or undefined where a number is expected is drawn as
 * missing (a gap in a line, no marker, no bar, an empty heatmap cell), never as "NaN".
 */

/** One curve of a line chart. `x`, `y` and the band's `lo` and `hi` all have the same length. */
export interface LineSeries {
  name: string;
  x: number[];
  y: number[];
  /** A shaded band around the curve, e.g. mean ± std over seeds. */
  band?: { lo: number[]; hi: number[] };
  /** Palette entry (default: the series' position), so a series keeps its colour across charts. */
  styleIndex?: number;
}

/** Several curves overlaid, with a legend. Series longer than 2000 points are downsampled (min and max per bucket). */
export interface LineChart {
  kind: 'line';
  /** Unique in the report; letters, digits, `_`, `-` and `.`, starting with a letter or `_`, without `--`. */
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  /** A fixed y range [lo, hi] (lo < hi); values outside it are clipped. Default: fitted to the data. */
  yRange?: [number, number];
  /** Window (in points, >= 1) of an exponential moving average drawn over each series; the raw series is then drawn faint. */
  smooth?: number;
}

/** Points coloured by group; with `diagonal`, both axes share one range and the line y = x is drawn. */
export interface ScatterChart {
  kind: 'scatter';
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  points: { x: number; y: number; group?: string }[];
  diagonal?: boolean;
}

/** A distribution per x (e.g. γ of every group at each step): median line, 25–75% and 10–90% bands. */
export interface QuantilesChart {
  kind: 'quantiles';
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  x: number[];
  /** `samples[i]` is the distribution at `x[i]`; missing samples are ignored. */
  samples: number[][];
}

/** Grouped bars: one group per category, one bar per series, optional symmetric error bars (± err). */
export interface BarChart {
  kind: 'bar';
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  categories: string[];
  series: { name: string; values: number[]; err?: number[] }[];
}

/** A matrix of values (e.g. a confusion matrix): `values[row][col]`, rows are `yCats` (top to bottom), columns `xCats`. */
export interface HeatmapChart {
  kind: 'heatmap';
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  xCats: string[];
  yCats: string[];
  values: number[][];
}

export type Chart = LineChart | ScatterChart | QuantilesChart | BarChart | HeatmapChart;
export type ChartKind = Chart['kind'];

export interface ReportTable {
  caption?: string;
  header: string[];
  /** Every row has as many cells as `header`. */
  rows: (string | number)[][];
}

export interface ReportSection {
  title: string;
  /** Plain text; a blank line starts a new paragraph. */
  text?: string;
  charts?: Chart[];
  tables?: ReportTable[];
}

export interface Report {
  title: string;
  subtitle?: string;
  /** Shown under the title as given (e.g. an ISO time); the renderer never reads the clock, so output is reproducible. */
  generated?: string;
  sections: ReportSection[];
  /** Shown as pretty-printed JSON in a collapsed <details> at the end. */
  config?: unknown;
}
