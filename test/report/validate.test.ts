import { SophiaError } from '../../lib/errors';
import { renderReport, type Chart, type Report } from '../../lib/report';

const line = (over: Record<string, unknown> = {}): Chart =>
  ({ kind: 'line', id: 'loss', title: 'Loss', xLabel: 'step', yLabel: 'loss', series: [{ name: 'a', x: [0, 1, 2], y: [1, 2, 3] }], ...over }) as Chart;

const withChart = (chart: unknown): Report => ({ title: 'r', sections: [{ title: 'Rewards', charts: [chart as Chart] }] });

function errorOf(fn: () => unknown): SophiaError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SophiaError);
    return err as SophiaError;
  }
  throw new Error('expected a SophiaError, nothing was thrown');
}

test('an unknown chart kind names the chart, the field, the kinds expected and what came', () => {
  const err = errorOf(() => renderReport(withChart({ ...line(), kind: 'pie', id: 'pie-1' })));
  expect(err.code).toBe('E_CONFIG');
  expect(err.message).toBe(`report: chart "pie-1": kind: expected one of 'line', 'scatter', 'quantiles', 'bar', 'heatmap', got "pie"`);
});

test('mismatched x and y lengths name the chart, the series field, both lengths', () => {
  const err = errorOf(() => renderReport(withChart(line({ series: [{ name: 'a', x: [0, 1], y: [1, 2] }, { name: 'b', x: [0, 1, 2], y: [1, 2] }] }))));
  expect(err.code).toBe('E_SHAPE');
  expect(err.message).toBe('report: chart "loss": series[1].y: expected an array of 3 numbers (as many as series[1].x), got an array of length 2');
});

describe.each<[string, unknown, string, RegExp]>([
  ['band shorter than x', line({ series: [{ name: 'a', x: [0, 1], y: [1, 2], band: { lo: [0], hi: [2, 3] } }] }), 'E_SHAPE', /chart "loss": series\[0\]\.band\.lo: expected an array of 2 numbers .*got an array of length 1/],
  ['a string among the numbers', line({ series: [{ name: 'a', x: [0, 1], y: [1, '2'] }] }), 'E_TYPE', /chart "loss": series\[0\]\.y\[1\]: expected a number \(NaN, null or undefined for a missing value\), got "2"/],
  ['x not an array', line({ series: [{ name: 'a', x: 5, y: [] }] }), 'E_TYPE', /chart "loss": series\[0\]\.x: expected an array of numbers, got 5/],
  ['series not an array', line({ series: {} }), 'E_TYPE', /chart "loss": series: expected an array of series objects, got an object/],
  ['a series without a name', line({ series: [{ x: [], y: [] }] }), 'E_TYPE', /chart "loss": series\[0\]\.name: expected a string, got undefined/],
  ['yRange lo >= hi', line({ yRange: [1, 1] }), 'E_RANGE', /chart "loss": yRange: expected lo < hi, got \[1, 1\]/],
  ['yRange not two numbers', line({ yRange: [0, NaN] }), 'E_TYPE', /chart "loss": yRange: expected two finite numbers \[lo, hi\], got \[0, NaN\]/],
  ['smooth below 1', line({ smooth: 0 }), 'E_RANGE', /chart "loss": smooth: expected an EMA window of at least 1 point, got 0/],
  ['a missing title', line({ title: undefined }), 'E_TYPE', /chart "loss": title: expected a string, got undefined/],
  ['an id that is not a string', line({ id: 7 }), 'E_TYPE', /section 1 \("Rewards"\), a chart with id 7: id: expected a string, got 7/],
  ['an id with markup', line({ id: 'a"><b' }), 'E_CONFIG', /chart "a\\"><b": id: expected a string of letters, digits/],
  ['an id with "--"', line({ id: 'a--clip' }), 'E_CONFIG', /chart "a--clip": id: .*without "--"/],
  ['scatter point not an object', { kind: 'scatter', id: 'sc', title: '', xLabel: '', yLabel: '', points: [1] }, 'E_TYPE', /chart "sc": points\[0\]: expected an object \{x, y, group\?\}, got 1/],
  ['scatter group not a string', { kind: 'scatter', id: 'sc', title: '', xLabel: '', yLabel: '', points: [{ x: 1, y: 1, group: 3 }] }, 'E_TYPE', /chart "sc": points\[0\]\.group: expected a string, got 3/],
  ['quantiles samples length', { kind: 'quantiles', id: 'q', title: '', xLabel: '', yLabel: '', x: [0, 1], samples: [[1]] }, 'E_SHAPE', /chart "q": samples: expected an array of 2 sample arrays \(as many as x\), got an array of length 1/],
  ['bar values length', { kind: 'bar', id: 'b', title: '', xLabel: '', yLabel: '', categories: ['a', 'b'], series: [{ name: 's', values: [1] }] }, 'E_SHAPE', /chart "b": series\[0\]\.values: expected an array of 2 numbers \(as many as categories\), got an array of length 1/],
  ['bar negative error', { kind: 'bar', id: 'b', title: '', xLabel: '', yLabel: '', categories: ['a'], series: [{ name: 's', values: [1], err: [-1] }] }, 'E_RANGE', /chart "b": series\[0\]\.err\[0\]: expected an error of at least 0, got -1/],
  ['heatmap rows', { kind: 'heatmap', id: 'h', title: '', xLabel: '', yLabel: '', xCats: ['a'], yCats: ['a', 'b'], values: [[1]] }, 'E_SHAPE', /chart "h": values: expected 2 rows \(as many as yCats\), got an array of length 1/],
  ['heatmap row length', { kind: 'heatmap', id: 'h', title: '', xLabel: '', yLabel: '', xCats: ['a', 'b'], yCats: ['a'], values: [[1]] }, 'E_SHAPE', /chart "h": values\[0\]: expected an array of 2 numbers \(as many as xCats\), got an array of length 1/],
  ['heatmap too large', { kind: 'heatmap', id: 'h', title: '', xLabel: '', yLabel: '', xCats: Array(300).fill('x'), yCats: Array(200).fill('y'), values: Array.from({ length: 200 }, () => Array(300).fill(0)) }, 'E_RANGE', /chart "h": values: expected at most 40000 cells, got 200 × 300 = 60000/],
  ['a chart that is not an object', 'line', 'E_TYPE', /section 1 \("Rewards"\): chart: expected a chart object \{kind, id, title, \.\.\.\}, got "line"/],
])('%s', (_name, chart, code, message) => {
  test('throws a SophiaError naming the chart, the field, what was expected and what came', () => {
    const err = errorOf(() => renderReport(withChart(chart)));
    expect(err.code).toBe(code);
    expect(err.message).toMatch(message);
  });
});

test('two charts with one id are refused, naming where the first one is', () => {
  const err = errorOf(() => renderReport({ title: 'r', sections: [{ title: 'A', charts: [line()] }, { title: 'B', charts: [line()] }] }));
  expect(err.code).toBe('E_CONFIG');
  expect(err.message).toBe('report: chart "loss": id: expected an id unique in the report (section 1 ("A") uses it already), got "loss"');
});

test.each<[string, unknown, string, RegExp]>([
  ['not an object', null, 'E_TYPE', /report: report: expected an object \{title, sections, \.\.\.\}, got null/],
  ['no title', { sections: [] }, 'E_TYPE', /report: title: expected a string, got undefined/],
  ['sections not an array', { title: 't', sections: 'x' }, 'E_TYPE', /report: sections: expected an array of sections, got "x"/],
  ['a section without a title', { title: 't', sections: [{}] }, 'E_TYPE', /section 1: title: expected a string, got undefined/],
  ['a table row of the wrong width', { title: 't', sections: [{ title: 'S', tables: [{ header: ['a', 'b'], rows: [[1]] }] }] }, 'E_SHAPE', /section 1 \("S"\), table 1: rows\[0\]: expected 2 cells \(as many as header\), got 1 cells/],
  ['a table cell that is an object', { title: 't', sections: [{ title: 'S', tables: [{ header: ['a'], rows: [[{}]] }] }] }, 'E_TYPE', /section 1 \("S"\), table 1: rows\[0\]\[0\]: expected a string or a number, got an object/],
])('a report with %s is refused', (_name, report, code, message) => {
  const err = errorOf(() => renderReport(report as Report));
  expect(err.code).toBe(code);
  expect(err.message).toMatch(message);
});

test('typed arrays and null for missing points are accepted', () => {
  const html = renderReport(withChart(line({ series: [{ name: 'a', x: new Float64Array([0, 1, 2]), y: [1, null, 3] }] })));
  expect(html).toContain('<svg');
});
