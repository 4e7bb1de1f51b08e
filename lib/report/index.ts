/**
 * HTML run reports: one self-contained file (inline CSS and SVG, no scripts, nothing fetched) with
 * line, scatter, quantile, bar and heatmap charts, tables and the run's config.
 */
export { renderReport, writeReport } from './html';
export { formatNumber } from './format';
export { MAX_LINE_POINTS } from './series';
export { MAX_SCATTER_POINTS } from './charts';
export { MAX_HEATMAP_CELLS, CHART_KINDS } from './validate';
export type {
  Chart, ChartKind, LineChart, LineSeries, ScatterChart, QuantilesChart, BarChart, HeatmapChart,
  Report, ReportSection, ReportTable,
} from './types';
