/**
 * Renders an HTML report in headless Chromium and measures its charts: for each <svg class="chart">
 * its laid-out size, how many shapes have a non-empty bounding box, and how many paths have a
 * non-zero length. The page gets a measuring script appended and Chromium prints the DOM after it
 * ran (--dump-dom), so no driver library is needed. Chromium comes from the system
 * (`apt-get install chromium-headless-shell`, or SOPHIA_CHROMIUM=/path/to/binary).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface ChartRender {
  id: string;
  width: number;
  height: number;
  /** Shapes (path, circle, rect, line, polyline) with a non-empty bounding box. */
  drawn: number;
  /** Paths with a non-zero length (data lines, error bars, axes drawn as paths). */
  lines: number;
  /** Circles with a non-empty bounding box (scatter points). */
  dots: number;
}

const CANDIDATES = ['chromium-headless-shell', 'chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];

/** The Chromium binary to use, or null (with why) when none is installed. */
export function findChromium(): { bin: string | null; why: string } {
  const env = process.env.SOPHIA_CHROMIUM;
  if (env) return fs.existsSync(env) ? { bin: env, why: '' } : { bin: null, why: `SOPHIA_CHROMIUM=${env} does not exist` };
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const name of CANDIDATES) {
      const p = path.join(dir, name);
      if (fs.existsSync(p)) return { bin: p, why: '' };
    }
  }
  return { bin: null, why: `none of ${CANDIDATES.join(', ')} is on PATH (apt-get install chromium-headless-shell, or set SOPHIA_CHROMIUM)` };
}

const MEASURE = `
<script>
(() => {
  const charts = [...document.querySelectorAll('svg.chart')].map((svg) => {
    const r = svg.getBoundingClientRect();
    const shapes = [...svg.querySelectorAll('path, circle, rect, line, polyline')];
    const drawn = shapes.filter((s) => { const b = s.getBBox(); return b.width > 0 || b.height > 0; }).length;
    const lines = [...svg.querySelectorAll('path[d]')].filter((p) => p.getTotalLength() > 0).length;
    const dots = [...svg.querySelectorAll('circle')].filter((c) => c.getBBox().width > 0).length;
    return { id: svg.id, width: r.width, height: r.height, drawn, lines, dots };
  });
  const pre = document.createElement('pre');
  pre.id = 'sophia-render-check';
  pre.textContent = 'BEGIN' + JSON.stringify(charts) + 'END';
  document.body.appendChild(pre);
})();
</script>`;

export function renderCharts(bin: string, htmlFile: string): ChartRender[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-render-'));
  try {
    const page = path.join(dir, 'page.html');
    fs.writeFileSync(page, fs.readFileSync(htmlFile, 'utf8') + MEASURE);
    const dom = execFileSync(
      bin,
      ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', `--user-data-dir=${path.join(dir, 'profile')}`, '--dump-dom', `file://${page}`],
      { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const m = /BEGIN(\[.*?\])END/s.exec(dom);
    if (!m) throw new Error(`Chromium printed no measurements for ${htmlFile} (the measuring script did not run)`);
    return JSON.parse(m[1]) as ChartRender[];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
