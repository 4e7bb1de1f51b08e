/**
 * The report page: one self-contained HTML file (inline CSS, inline SVG, no scripts, no external
 * resources) that opens offline and renders with JavaScript disabled. The markup is also
 * well-formed XML: void elements self-closed, attributes quoted, text escaped.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SophiaError, describe } from '../errors';
import { renderChart } from './charts';
import { esc, formatCell } from './format';
import type { Report, ReportSection, ReportTable } from './types';
import { checkReport } from './validate';

// No ">" or "&" in here, so the <style> body stays well-formed XML too.
const CSS = `
:root{color-scheme:light}
body{margin:0;background:#f5f6f8;color:#1f2328;font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.page{max-width:800px;margin:0 auto;padding:28px 16px 56px}
header h1{font-size:26px;line-height:1.25;margin:0 0 6px}
header p{margin:0;color:#57606a}
header .generated{font-size:13px;color:#6e7781;margin-top:4px}
nav.toc{margin:18px 0 0;font-size:14px}
nav.toc ol{margin:4px 0 0;padding-left:22px}
nav.toc a,nav.toc a:visited{color:#0969da;text-decoration:none}
nav.toc a:hover{text-decoration:underline}
section{background:#fff;border:1px solid #e1e4e8;border-radius:10px;padding:18px 22px;margin:22px 0;box-shadow:0 1px 2px rgba(31,35,40,.05)}
section h2{font-size:19px;line-height:1.3;margin:0 0 8px}
section p{margin:0 0 10px}
figure{margin:18px 0}
svg.chart{display:block;width:100%;max-width:720px;height:auto;margin:0 auto;font-family:inherit}
svg.chart text{fill:#24292f;font-size:12px}
svg.chart .chart-title{font-size:15px;font-weight:600}
svg.chart .tick{font-size:11px;fill:#57606a}
svg.chart .legend{font-size:12px}
svg.chart .note{font-size:10.5px;fill:#6e7781;font-style:italic}
svg.chart .grid{stroke:#eceef1;stroke-width:1}
svg.chart .axis{stroke:#8c959f;stroke-width:1}
svg.chart .frame{fill:none;stroke:#d0d7de;stroke-width:1}
svg.chart .baseline{stroke:#57606a;stroke-width:1}
svg.chart .err{fill:none;stroke:#24292f;stroke-width:1.25}
svg.chart .bar-value{font-size:10px;fill:#24292f}
svg.chart .cell-value{font-size:11px;fill:#1f2328}
svg.chart .cell-value-dark{font-size:11px;fill:#ffffff}
svg.chart .cell-missing{fill:#f0f1f3;stroke:#ffffff}
svg.chart .no-data-box{fill:#fafbfc;stroke:#d0d7de;stroke-dasharray:4 3}
svg.chart .no-data{font-size:14px;fill:#6e7781}
.table-wrap{overflow-x:auto;margin:14px 0}
table{border-collapse:collapse;font-size:14px;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding:0 0 6px}
th,td{padding:5px 12px;border-bottom:1px solid #e1e4e8;text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #d0d7de;background:#f6f8fa}
td.num,th.num{text-align:right}
tbody tr:nth-child(even){background:#fafbfc}
details.config{margin:22px 0;background:#fff;border:1px solid #e1e4e8;border-radius:10px;padding:12px 22px}
details.config summary{cursor:pointer;font-weight:600}
details.config pre{margin:10px 0 0;padding:12px;background:#f6f8fa;border-radius:6px;overflow:auto;max-height:520px;font-size:12.5px;line-height:1.45}
@media print{body{background:#fff}section,details.config{box-shadow:none;break-inside:avoid}figure{break-inside:avoid}}
`.trim();

function paragraphs(text: string): string {
  return text
    .split(/\n[ \t]*\n/)
    .map((p) => p.trim())
    .filter((p) => p.length > 0)
    .map((p) => `<p>${p.split('\n').map(esc).join('<br/>')}</p>`)
    .join('\n');
}

function table(t: ReportTable): string {
  // A column is right-aligned when every cell in it is a number.
  const numeric = t.header.map((_, j) => t.rows.length > 0 && t.rows.every((r) => typeof r[j] === 'number'));
  const cls = (j: number): string => (numeric[j] ? ' class="num"' : '');
  const cell = (v: string | number, j: number): string => {
    if (typeof v === 'string') return `<td${cls(j)}>${esc(v)}</td>`;
    const shown = formatCell(v);
    const full = Number.isFinite(v) && shown !== String(v) ? ` title="${esc(String(v))}"` : '';
    return `<td${cls(j)}${full}>${esc(shown)}</td>`;
  };
  return (
    '<div class="table-wrap"><table>' +
    (t.caption ? `<caption>${esc(t.caption)}</caption>` : '') +
    `<thead><tr>${t.header.map((h, j) => `<th${cls(j)}>${esc(h)}</th>`).join('')}</tr></thead>` +
    `<tbody>${t.rows.map((r) => `<tr>${r.map(cell).join('')}</tr>`).join('\n')}</tbody>` +
    '</table></div>'
  );
}

function section(s: ReportSection, i: number): string {
  const parts = [`<section id="section--${i + 1}">`, `<h2>${esc(s.title)}</h2>`];
  if (s.text) parts.push(paragraphs(s.text));
  for (const c of s.charts ?? []) parts.push(`<figure>${renderChart(c)}</figure>`);
  for (const t of s.tables ?? []) parts.push(table(t));
  parts.push('</section>');
  return parts.join('\n');
}

/** Pretty JSON of any value: circular references and BigInts shown as strings, typed arrays as arrays. */
function prettyJson(value: unknown): string | undefined {
  const ancestors: unknown[] = [];
  try {
    return JSON.stringify(
      value,
      function (this: unknown, _key: string, v: unknown) {
        if (typeof v === 'bigint') return v.toString();
        if (typeof v !== 'object' || v === null) return v;
        if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number | bigint>, (e) => (typeof e === 'bigint' ? e.toString() : e));
        while (ancestors.length > 0 && ancestors[ancestors.length - 1] !== this) ancestors.pop();
        if (ancestors.includes(v)) return '[circular]';
        ancestors.push(v);
        return v;
      },
      2,
    );
  } catch (err) {
    throw new SophiaError('E_TYPE', `report: config: expected a value that JSON can show, got ${describe(value)} (${(err as Error).message})`, { cause: err });
  }
}

/**
 * The report as one self-contained HTML page. Throws a SophiaError naming the chart (or section)
 * and the field when something cannot be drawn; the same input always gives the same output.
 */
export function renderReport(r: Report): string {
  checkReport(r);
  const head = [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8"/>',
    '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
    '<meta name="generator" content="sophia-rl report"/>',
    `<title>${esc(r.title)}</title>`,
    `<style>\n${CSS}\n</style>`,
    '</head>',
  ];
  const header = [`<header><h1>${esc(r.title)}</h1>`];
  if (r.subtitle) header.push(`<p class="subtitle">${esc(r.subtitle)}</p>`);
  if (r.generated) header.push(`<p class="generated">Generated ${esc(r.generated)}</p>`);
  header.push('</header>');
  const toc =
    r.sections.length > 1
      ? `<nav class="toc"><strong>Contents</strong><ol>${r.sections.map((s, i) => `<li><a href="#section--${i + 1}">${esc(s.title)}</a></li>`).join('')}</ol></nav>`
      : '';
  const json = r.config === undefined ? undefined : prettyJson(r.config);
  const config = json === undefined ? '' : `<details class="config"><summary>Configuration</summary><pre>${esc(json)}</pre></details>`;
  return [
    ...head,
    '<body>',
    '<div class="page">',
    header.join('\n'),
    toc,
    '<main>',
    ...r.sections.map(section),
    '</main>',
    config,
    '</div>',
    '</body>',
    '</html>',
    '',
  ].filter((line, i, all) => line !== '' || i === all.length - 1).join('\n');
}

/**
 * Renders `r` and writes it to `file` atomically: to a temporary file in the same folder (created
 * if missing), flushed to disk, then renamed over `file`, so a reader sees the old report or the
 * new one, never half of one. Argument errors throw before anything is written; file system
 * errors throw E_IO and leave no temporary file behind.
 */
export async function writeReport(file: string, r: Report): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) throw new SophiaError('E_TYPE', `writeReport: file: expected a file path, got ${describe(file)}`);
  const html = renderReport(r);
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: fs.promises.FileHandle | undefined;
  try {
    await fs.promises.mkdir(dir, { recursive: true });
    handle = await fs.promises.open(tmp, 'wx');
    await handle.writeFile(html, 'utf8');
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw new SophiaError('E_IO', `writeReport: could not write ${file}: ${(err as Error).message}`, { cause: err });
  }
}
