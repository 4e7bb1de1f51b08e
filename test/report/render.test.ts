import { renderReport, type Chart, type Report } from '../../lib/report';
import { checkXml } from './xml';

const steps = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

function oneChart(chart: Chart, extra: Partial<Report> = {}): string {
  return renderReport({ title: 'Run', sections: [{ title: 'S', charts: [chart] }], ...extra });
}

/** The <svg> element with this id, whole. */
function svgOf(html: string, id: string): string {
  const start = html.indexOf(`<svg xmlns="http://www.w3.org/2000/svg" id="${id}"`);
  expect(start).toBeGreaterThanOrEqual(0);
  return html.slice(start, html.indexOf('</svg>', start) + '</svg>'.length);
}

/** Path data of the <path> elements whose tooltip is `name`. */
function pathsTitled(svg: string, name: string): string[] {
  return [...svg.matchAll(/<path d="([^"]*)"[^>]*><title>([^<]*)<\/title><\/path>/g)].filter((m) => m[2] === name).map((m) => m[1]);
}

const subpaths = (d: string): number => (d.match(/M/g) ?? []).length;
const pointsIn = (d: string): number => d.split(/[ML]/).filter(Boolean).length;
const tickLabels = (svg: string): string[] => [...svg.matchAll(/<text class="tick"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);

const ALL_KINDS: Chart[] = [
  { kind: 'line', id: 'loss', title: 'Loss', xLabel: 'step', yLabel: 'loss', series: [{ name: 'train', x: steps(50), y: steps(50).map((i) => 1 / (i + 1)) }] },
  { kind: 'scatter', id: 'calib', title: 'Calibration', xLabel: 'thinking', yLabel: 'outcome', diagonal: true, points: [{ x: 0.1, y: 0.2 }, { x: 0.5, y: 0.4 }] },
  { kind: 'quantiles', id: 'gamma', title: 'Trust γ', xLabel: 'step', yLabel: 'γ', x: [0, 1, 2], samples: [[0.2, 0.5, 0.9], [0.3, 0.6], [0.4, 0.7, 0.8, 1]] },
  { kind: 'bar', id: 'acc', title: 'Accuracy', xLabel: 'type', yLabel: 'acc', categories: ['a', 'b'], series: [{ name: 'GRPO', values: [0.5, 0.6], err: [0.01, 0.02] }] },
  { kind: 'heatmap', id: 'conf', title: 'Confusion', xLabel: 'predicted', yLabel: 'true', xCats: ['A', 'B'], yCats: ['A', 'B'], values: [[9, 1], [2, 8]] },
];

describe('every chart kind', () => {
  test.each(ALL_KINDS.map((c) => [c.kind, c] as const))('%s renders an <svg> with its id, a <title> and a test id', (kind, chart) => {
    const html = oneChart(chart);
    const svg = svgOf(html, chart.id);
    expect(svg).toContain(`data-testid="chart-${kind}"`);
    expect(svg).toContain(`class="chart chart-${kind}"`);
    expect(svg).toMatch(new RegExp(`^<svg [^>]*><title id="${chart.id}--title">${chart.title}</title>`));
    expect(svg).toContain(`aria-labelledby="${chart.id}--title"`);
    expect(svg).toMatch(/viewBox="0 0 720 \d+(\.\d)?"/);
    expect(checkXml(svg)[0]).toBe('svg');
    expect(svg).not.toContain('No data');
  });

  test('one report with all of them is well-formed XML and mentions no NaN, undefined or Infinity', () => {
    const html = renderReport({ title: 'All', sections: [{ title: 'Charts', charts: ALL_KINDS }] });
    const elements = checkXml(html);
    expect(elements.filter((e) => e === 'svg')).toHaveLength(ALL_KINDS.length);
    expect(html).not.toMatch(/NaN|undefined|Infinity/);
  });
});

describe('missing values', () => {
  const missing = [NaN, Infinity, -Infinity, null, undefined] as unknown as number[];

  test('NaN points split a line into subpaths; nothing prints NaN, undefined or Infinity', () => {
    const y = [1, 2, NaN, 4, 5, Infinity, 7, 8, null as unknown as number, 10, 11];
    const html = oneChart({ kind: 'line', id: 'l', title: 'gaps', xLabel: 'x', yLabel: 'y', series: [{ name: 's', x: steps(y.length), y }] });
    const [d] = pathsTitled(svgOf(html, 'l'), 's');
    expect(subpaths(d)).toBe(4);
    expect(pointsIn(d)).toBe(8);
    expect(html).not.toMatch(/NaN|undefined|Infinity/);
  });

  test('a present point between two gaps, or a series of one point, is drawn as a dot', () => {
    const html = oneChart({
      kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y',
      series: [{ name: 'lonely', x: [0, 1, 2, 3, 4], y: [1, NaN, 3, NaN, 5] }, { name: 'one', x: [7], y: [2] }],
    });
    const svg = svgOf(html, 'l');
    expect(pathsTitled(svg, 'lonely')).toEqual([]);
    expect((svg.match(/<circle /g) ?? []).length).toBe(4);
    expect(tickLabels(svg)).toContain('6');
  });

  test('every chart kind survives missing values everywhere', () => {
    const charts: Chart[] = [
      { kind: 'line', id: 'a', title: 't', xLabel: 'x', yLabel: 'y', smooth: 3, series: [{ name: 's', x: [0, NaN, 2, 3, 4], y: [1, 2, ...missing.slice(0, 2), 5], band: { lo: [0, NaN, 1, 2, 3], hi: [2, 3, Infinity, 4, 5] } }] },
      { kind: 'scatter', id: 'b', title: 't', xLabel: 'x', yLabel: 'y', points: [{ x: 1, y: 1 }, { x: NaN, y: 2 }, { x: 3, y: Infinity }, { x: 2, y: 2, group: 'g' }] },
      { kind: 'quantiles', id: 'c', title: 't', xLabel: 'x', yLabel: 'y', x: [0, 1, NaN, 3], samples: [[1, NaN, 3], missing, [1, 2], [Infinity, 4, 5]] },
      { kind: 'bar', id: 'd', title: 't', xLabel: 'x', yLabel: 'y', categories: ['p', 'q', 'r'], series: [{ name: 's', values: [1, NaN, -2], err: [NaN, 1, Infinity] }] },
      { kind: 'heatmap', id: 'e', title: 't', xLabel: 'x', yLabel: 'y', xCats: ['p', 'q'], yCats: ['r', 's'], values: [[1, NaN], [Infinity, 4]] },
    ];
    const html = renderReport({
      title: 'r', sections: [{ title: 's', charts, tables: [{ header: ['v'], rows: [[NaN], [Infinity], [-Infinity]] }] }],
      config: { a: NaN, b: Infinity, c: undefined },
    });
    expect(html).not.toMatch(/NaN|undefined|Infinity/);
    checkXml(html);
    expect(svgOf(html, 'b')).toContain('2 points without finite x and y not drawn');
    expect((svgOf(html, 'd').match(/<rect x=[^>]*><title>/g) ?? []).length).toBe(2);
    expect((svgOf(html, 'e').match(/class="cell-missing"/g) ?? []).length).toBe(2);
    expect(svgOf(html, 'e')).toContain('light grey: missing value');
  });

  test('a band with a hole becomes two filled polygons', () => {
    const html = oneChart({
      kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y',
      series: [{ name: 's', x: steps(6), y: [1, 2, 3, 4, 5, 6], band: { lo: [0, 1, NaN, 3, 4, 5], hi: [2, 3, NaN, 5, 6, 7] } }],
    });
    const band = svgOf(html, 'l').match(/<path d="([^"]*)" fill="#0072B2" opacity="0.2"\/>/);
    expect(band).not.toBeNull();
    expect((band![1].match(/Z/g) ?? []).length).toBe(2);
  });
});

describe('empty inputs render a "no data" note', () => {
  const empty: Chart[] = [
    { kind: 'line', id: 'l0', title: 'no series', xLabel: 'x', yLabel: 'y', series: [] },
    { kind: 'line', id: 'l1', title: 'empty series', xLabel: 'x', yLabel: 'y', series: [{ name: 'a', x: [], y: [] }] },
    { kind: 'line', id: 'l2', title: 'all missing', xLabel: 'x', yLabel: 'y', series: [{ name: 'a', x: [0, 1], y: [NaN, NaN] }] },
    { kind: 'scatter', id: 's0', title: 'no points', xLabel: 'x', yLabel: 'y', points: [] },
    { kind: 'scatter', id: 's1', title: 'missing points', xLabel: 'x', yLabel: 'y', points: [{ x: NaN, y: 1 }] },
    { kind: 'quantiles', id: 'q0', title: 'no x', xLabel: 'x', yLabel: 'y', x: [], samples: [] },
    { kind: 'quantiles', id: 'q1', title: 'no samples', xLabel: 'x', yLabel: 'y', x: [0, 1], samples: [[], [NaN]] },
    { kind: 'bar', id: 'b0', title: 'no categories', xLabel: 'x', yLabel: 'y', categories: [], series: [] },
    { kind: 'bar', id: 'b1', title: 'no series', xLabel: 'x', yLabel: 'y', categories: ['a'], series: [] },
    { kind: 'bar', id: 'b2', title: 'missing values', xLabel: 'x', yLabel: 'y', categories: ['a'], series: [{ name: 's', values: [NaN] }] },
    { kind: 'heatmap', id: 'h0', title: 'no cells', xLabel: 'x', yLabel: 'y', xCats: [], yCats: [], values: [] },
    { kind: 'heatmap', id: 'h1', title: 'missing cells', xLabel: 'x', yLabel: 'y', xCats: ['a'], yCats: ['b'], values: [[NaN]] },
  ];
  test.each(empty.map((c) => [c.id, c.title, c] as const))('%s (%s)', (id, _title, chart) => {
    const html = oneChart(chart);
    const svg = svgOf(html, id);
    expect(svg).toMatch(/<text class="no-data"[^>]*>No data: [^<]+<\/text>/);
    expect(svg).toContain(`<title id="${id}--title">`);
    checkXml(svg);
    expect(html).not.toMatch(/NaN|undefined|Infinity/);
  });

  test('a report with no sections, or empty sections, still renders', () => {
    checkXml(renderReport({ title: 'empty', sections: [] }));
    checkXml(renderReport({ title: 'empty', sections: [{ title: 'nothing', charts: [], tables: [{ header: [], rows: [] }] }] }));
  });
});

describe('line charts', () => {
  test('several series, a legend entry each, colours from the palette', () => {
    const html = oneChart({
      kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y',
      series: ['a', 'b', 'c'].map((name, k) => ({ name, x: steps(10), y: steps(10).map((i) => i * k) })),
    });
    const svg = svgOf(html, 'l');
    for (const name of ['a', 'b', 'c']) {
      expect(svg).toContain(`<text class="legend"`);
      expect(pathsTitled(svg, name)).toHaveLength(1);
    }
    expect(svg).toContain('stroke="#0072B2"');
    expect(svg).toContain('stroke="#E69F00"');
    expect(svg).toContain('stroke="#009E73"');
  });

  test('series past the palette get dash patterns', () => {
    const html = oneChart({
      kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y',
      series: steps(9).map((k) => ({ name: `s${k}`, x: [0, 1], y: [k, k + 1] })),
    });
    expect(svgOf(html, 'l')).toContain('stroke-dasharray="6 3"');
  });

  test('constant y gets a visible range around the value', () => {
    const svg = svgOf(oneChart({ kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', x: [0, 1, 2], y: [3, 3, 3] }] }), 'l');
    const ticks = tickLabels(svg);
    expect(ticks).toContain('3');
    expect(ticks.length).toBeGreaterThanOrEqual(5);
  });

  test.each([
    [[0, 1200, 2400], '1.5k'],
    [[0, 3e6, 6e6], '2M'],
    [[1e-5, 3e-5, 4e-5], '3e-5'],
    [[0, 2e12, 4e12], '2T'],
    [[-1e20, 1e20, 0], '-1e20'],
  ])('ticks for %p are compact (%s)', (y, label) => {
    const svg = svgOf(oneChart({ kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', x: steps(y.length), y }] }), 'l');
    expect(tickLabels(svg)).toContain(label);
    for (const t of tickLabels(svg)) expect(t.length).toBeLessThanOrEqual(7);
  });

  test('a 2.5 step keeps its decimal (no 7.5 shown as 8)', () => {
    const svg = svgOf(oneChart({ kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', x: [0, 1], y: [0, 11] }] }), 'l');
    expect(tickLabels(svg)).toEqual(expect.arrayContaining(['0', '2.5', '5', '7.5', '10', '12.5']));
  });

  test('integer x (steps) gets integer ticks', () => {
    const svg = svgOf(oneChart({ kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', x: [0, 1, 2], y: [5, 6, 7] }] }), 'l');
    expect(tickLabels(svg).filter((t) => t.includes('.'))).toEqual(tickLabels(svg).filter((t) => ['5.5', '6.5'].includes(t)));
    expect(tickLabels(svg)).not.toContain('0.5');
  });

  test('yRange fixes the axis and the data is clipped to the plot', () => {
    const svg = svgOf(oneChart({ kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y', yRange: [0, 1], series: [{ name: 's', x: [0, 1, 2], y: [0.5, 5, -3] }] }), 'l');
    const ticks = tickLabels(svg);
    expect(ticks).toContain('0');
    expect(ticks).toContain('1');
    expect(ticks).not.toContain('5');
    expect(svg).toContain('<clipPath id="l--clip">');
    expect(svg).toContain('clip-path="url(#l--clip)"');
  });

  test('smooth draws an EMA line over the faint raw line and says so', () => {
    const svg = svgOf(oneChart({ kind: 'line', id: 'l', title: 't', xLabel: 'x', yLabel: 'y', smooth: 10, series: [{ name: 's', x: steps(100), y: steps(100).map((i) => i % 7) }] }), 'l');
    expect(pathsTitled(svg, 's (smoothed)')).toHaveLength(1);
    expect(svg).toMatch(/<path d="[^"]*"[^>]*opacity="0.3"><title>s<\/title>/);
    expect(svg).toContain('exponential moving average over 10 points');
  });

  test('a 100k-point series is downsampled (min/max per bucket) to a bounded size, keeping spikes', () => {
    const n = 100_000;
    const y = steps(n).map((i) => Math.sin(i / 3000) + 0.1 * Math.sin(i * 1.7));
    y[54_321] = 1000;
    const chart: Chart = { kind: 'line', id: 'big', title: 'big', xLabel: 'step', yLabel: 'v', series: [{ name: 's', x: steps(n), y, band: { lo: y.map((v) => v - 1), hi: y.map((v) => v + 1) } }], smooth: 50 };
    const html = oneChart(chart);
    expect(html.length).toBeLessThan(250_000);
    const svg = svgOf(html, 'big');
    const [d] = pathsTitled(svg, 's');
    expect(pointsIn(d)).toBeLessThanOrEqual(2002);
    expect(pointsIn(d)).toBeGreaterThan(1000);
    expect(tickLabels(svg)).toContain('1k');
    expect(svg).toContain('min and max of every 100 points');
    expect(html).not.toMatch(/NaN|undefined|Infinity/);

    const small = oneChart({ ...chart, series: [{ name: 's', x: steps(n), y }], smooth: undefined });
    expect(small.length).toBeLessThan(60_000);
  });
});

describe('scatter, quantiles, bar and heatmap', () => {
  test('scatter: a colour and legend entry per group, and the y = x diagonal', () => {
    const svg = svgOf(oneChart({
      kind: 'scatter', id: 's', title: 't', xLabel: 'x', yLabel: 'y', diagonal: true,
      points: [{ x: 0, y: 0.1, group: 'math' }, { x: 0.5, y: 0.7, group: 'ocr' }, { x: 1, y: 0.9, group: 'math' }],
    }), 's');
    expect(svg).toContain('<line class="diagonal"');
    expect(svg).toMatch(/<text class="legend"[^>]*>math<\/text>/);
    expect(svg).toMatch(/<text class="legend"[^>]*>ocr<\/text>/);
    expect((svg.match(/<circle [^>]*fill="#0072B2" fill-opacity/g) ?? []).length).toBe(2);
    expect((svg.match(/<circle [^>]*fill="#E69F00" fill-opacity/g) ?? []).length).toBe(1);
    expect(svg).toContain('<title>ocr: (0.5, 0.7)</title>');
  });

  test('scatter: 100k points are thinned to a bounded number, and the note says so', () => {
    const html = oneChart({ kind: 'scatter', id: 's', title: 't', xLabel: 'x', yLabel: 'y', points: steps(100_000).map((i) => ({ x: i, y: Math.sin(i) })) });
    expect((html.match(/<circle /g) ?? []).length).toBe(4000);
    expect(html).toContain('showing every 25th of 100,000 points');
    expect(html.length).toBeLessThan(300_000);
    const some = oneChart({ kind: 'scatter', id: 's', title: 't', xLabel: 'x', yLabel: 'y', points: steps(8001).map((i) => ({ x: i, y: i })) });
    expect(some).toContain('showing every 3rd of 8,001 points');
  });

  test('quantiles: median line, 25–75% and 10–90% bands', () => {
    const svg = svgOf(oneChart({
      kind: 'quantiles', id: 'q', title: 't', xLabel: 'x', yLabel: 'y', x: steps(20), samples: steps(20).map((i) => steps(11).map((k) => i + k)),
    }), 'q');
    expect(pathsTitled(svg, 'median')).toHaveLength(1);
    expect(svg).toMatch(/<path d="[^"]*Z" fill="#0072B2" opacity="0.18"\/>/);
    expect(svg).toMatch(/<path d="[^"]*Z" fill="#0072B2" opacity="0.4"\/>/);
    for (const l of ['median', '25–75%', '10–90%']) expect(svg).toContain(`>${l}</text>`);
  });

  test('bar: grouped bars, error bars, negative values below the zero line, values printed', () => {
    const svg = svgOf(oneChart({
      kind: 'bar', id: 'b', title: 't', xLabel: 'x', yLabel: 'y', categories: ['a', 'b', 'c'],
      series: [{ name: 'one', values: [1, -2, 3], err: [0.5, 0.5, 0] }, { name: 'two', values: [2, 1, 0.5] }],
    }), 'b');
    expect((svg.match(/<rect x=[^>]*fill="#0072B2"><title>/g) ?? []).length).toBe(3);
    expect((svg.match(/<rect x=[^>]*fill="#E69F00"><title>/g) ?? []).length).toBe(3);
    expect((svg.match(/<path class="err"/g) ?? []).length).toBe(2);
    expect(svg).toContain('<title>a · one: 1 ± 0.5</title>');
    expect(svg).toContain('>-2</text>');
    expect(svg).toContain('<line class="baseline"');
    expect(tickLabels(svg)).toContain('-2');
  });

  test('bar: many long category names are rotated and shortened, the full name kept as a tooltip', () => {
    const categories = steps(30).map((i) => `a rather long category name number ${i}`);
    const svg = svgOf(oneChart({ kind: 'bar', id: 'b', title: 't', xLabel: 'x', yLabel: 'y', categories, series: [{ name: 's', values: categories.map((_, i) => i) }] }), 'b');
    expect(svg).toContain('transform="rotate(-40');
    expect(svg).toContain('<title>a rather long category name number 0</title>');
    checkXml(svg);
    // The first label, rotated, ends inside the chart (about 0.6 em per character at 11 px).
    const first = svg.match(/<text class="tick" x="([\d.]+)"[^>]*transform="rotate\(-40[^>]*><title>[^<]*<\/title>([^<]*)<\/text>/);
    expect(first).not.toBeNull();
    expect(Number(first![1]) - Math.cos((40 * Math.PI) / 180) * Array.from(first![2]).length * 6.6).toBeGreaterThanOrEqual(0);
  });

  test('heatmap: values are printed in every cell or in none', () => {
    const cols = steps(40).map(String);
    const svg = svgOf(oneChart({ kind: 'heatmap', id: 'h', title: 't', xLabel: 'x', yLabel: 'y', xCats: cols, yCats: ['a', 'b'], values: [cols.map(() => 0), cols.map((_, i) => -0.123 * i)] }), 'h');
    expect(svg).not.toMatch(/class="cell-value/);
    expect(svg).toContain('<title>b / 3: -0.369</title>');
  });

  test('heatmap: a coloured cell per value with the value printed, and a colour scale', () => {
    const svg = svgOf(oneChart({
      kind: 'heatmap', id: 'h', title: 't', xLabel: 'predicted', yLabel: 'true', xCats: ['A', 'B', 'C'], yCats: ['A', 'B'], values: [[50, 3, 0], [4, 1234, 6]],
    }), 'h');
    expect((svg.match(/<rect x=[^>]*fill="#[0-9a-f]{6}"/g) ?? []).length).toBe(6);
    for (const v of ['50', '3', '0', '4', '1.23k', '6']) expect(svg).toMatch(new RegExp(`<text class="cell-value(-dark)?"[^>]*>${v}</text>`));
    expect(svg).toContain('<linearGradient id="h--grad"');
    expect(svg).toContain('<title>B / B: 1.23k</title>');
  });
});

describe('escaping and self-containment', () => {
  const evil = `<script>alert("x")</script>&'"`;
  const report: Report = {
    title: evil, subtitle: evil, generated: evil,
    sections: [{
      title: evil, text: `${evil}\n\n${evil}`,
      charts: [
        { kind: 'line', id: 'l', title: evil, xLabel: evil, yLabel: evil, series: [{ name: evil, x: [0, 1], y: [0, 1] }] },
        { kind: 'scatter', id: 's', title: evil, xLabel: evil, yLabel: evil, points: [{ x: 0, y: 0, group: evil }] },
        { kind: 'quantiles', id: 'q', title: evil, xLabel: evil, yLabel: evil, x: [], samples: [] },
        { kind: 'bar', id: 'b', title: evil, xLabel: evil, yLabel: evil, categories: [evil], series: [{ name: evil, values: [1] }] },
        { kind: 'heatmap', id: 'h', title: evil, xLabel: evil, yLabel: evil, xCats: [evil], yCats: [evil], values: [[1]] },
      ],
      tables: [{ caption: evil, header: [evil], rows: [[evil], [1.5]] }],
    }],
    config: { evil, nested: { list: [evil] } },
  };

  test('no text can inject markup: titles, labels, names, categories, table cells, config', () => {
    const html = renderReport(report);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toContain('alert("x")');
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;&quot;');
    const elements = checkXml(html);
    expect(elements).not.toContain('script');
  });

  test('nothing is fetched: no scripts, no external src or href, no @import or external url()', () => {
    const html = renderReport(report);
    expect(html).not.toMatch(/<script|<link|<iframe|<img|<object|<embed/i);
    expect(html).not.toMatch(/\b(src|href|xlink:href)\s*=\s*["']?\s*(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|@font-face/i);
    for (const m of html.matchAll(/url\(([^)]*)\)/g)) expect(m[1]).toMatch(/^#[\w.-]+$/);
    for (const m of html.matchAll(/href="([^"]*)"/g)) expect(m[1]).toMatch(/^#/);
    // The only URL is the SVG namespace name, which is never fetched.
    expect([...new Set(html.match(/https?:\/\/[^"\s]*/g))]).toEqual(['http://www.w3.org/2000/svg']);
  });

  test('the config is pretty JSON in a closed <details>; circular references and BigInts do not throw', () => {
    const config: Record<string, unknown> = { lr: 1e-6, groupSize: 8, big: 12n, arr: new Float32Array([0.5, 1]) };
    config.self = config;
    const html = renderReport({ title: 't', sections: [], config });
    expect(html).toMatch(/<details class="config"><summary>Configuration<\/summary><pre>\{\n {2}&quot;lr&quot;: 0.000001,/);
    expect(html).toContain('&quot;self&quot;: &quot;[circular]&quot;');
    expect(html).toContain('&quot;big&quot;: &quot;12&quot;');
    expect(html).not.toMatch(/<details open/);
  });

  test('output is deterministic', () => {
    expect(renderReport(report)).toBe(renderReport(report));
  });
});

describe('page', () => {
  test('title, subtitle, generated time, a table of contents and tables with numbers right-aligned', () => {
    const html = renderReport({
      title: 'Trust-GRPO run', subtitle: 'seed 0', generated: '2025-01-01',
      sections: [
        { title: 'One', text: 'first\nline\n\nsecond' },
        { title: 'Two', tables: [{ caption: 'Final', header: ['metric', 'value'], rows: [['reward', 0.831254], ['kl', 2]] }] },
      ],
    });
    expect(html.startsWith('<!DOCTYPE html>\n<html lang="en">')).toBe(true);
    expect(html).toContain('<meta charset="utf-8"/>');
    expect(html).toContain('<title>Trust-GRPO run</title>');
    expect(html).toContain('<p class="subtitle">seed 0</p>');
    expect(html).toContain('Generated 2025-01-01');
    expect(html).toContain('<a href="#section--2">Two</a>');
    expect(html).toContain('<section id="section--2">');
    expect(html).toContain('<p>first<br/>line</p>\n<p>second</p>');
    expect(html).toContain('<td class="num" title="0.831254">0.8313</td>');
    expect(html).toContain('<th class="num">value</th>');
    expect(html).toMatch(/<style>[^<]*svg\.chart\{[^}]*width:100%/);
    checkXml(html);
  });
});

describe('the XML checker used here', () => {
  test.each([
    ['<a><b></a></b>', /closes/],
    ['<a>x & y</a>', /bare "&"/],
    ['<a><script>alert(1)</a>', /closes/],
    ['<a x="1" x="2"/>', /twice/],
    ['<a x=1/>', /malformed/],
    ['<a>1 < 2</a>', /starts no tag/],
    ['<a/><b/>', /second root/],
    ['<a>', /never closed/],
  ])('rejects %p', (doc, why) => {
    expect(() => checkXml(doc)).toThrow(why);
  });

  test('accepts what it should', () => {
    expect(checkXml('<!DOCTYPE html>\n<a k="v&amp;&#39;" j=\'w\'><b/>text &lt; &#x3c;<c></c></a>')).toEqual(['a', 'b', 'c']);
  });
});
