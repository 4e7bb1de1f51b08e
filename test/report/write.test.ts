import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SophiaError } from '../../lib/errors';
import { renderReport, writeReport, type Report } from '../../lib/report';

const report = (title: string): Report => ({
  title,
  sections: [{ title: 'Reward', charts: [{ kind: 'line', id: 'r', title: 'reward', xLabel: 'step', yLabel: 'reward', series: [{ name: 'a', x: [0, 1], y: [0, 1] }] }] }],
});

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-report-'));
});
afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('writes the rendered report, creating missing folders, leaving no temporary file', async () => {
  const file = path.join(dir, 'runs', 'a', 'report.html');
  await writeReport(file, report('one'));
  expect(fs.readFileSync(file, 'utf8')).toBe(renderReport(report('one')));
  expect(fs.readdirSync(path.dirname(file))).toEqual(['report.html']);
});

test('replaces an existing report by renaming a complete temporary file from the same folder', async () => {
  const file = path.join(dir, 'report.html');
  fs.writeFileSync(file, 'old');
  const realRename = fs.promises.rename;
  const rename = jest.spyOn(fs.promises, 'rename');
  let seenBeforeRename: { target: string; tmp: string } | undefined;
  rename.mockImplementationOnce(async (from, to) => {
    // At the moment of the rename, readers still see the old file and the new one is whole.
    seenBeforeRename = { target: fs.readFileSync(file, 'utf8'), tmp: fs.readFileSync(from, 'utf8') };
    return realRename(from, to);
  });
  await writeReport(file, report('two'));
  expect(rename).toHaveBeenCalledTimes(1);
  const [from, to] = rename.mock.calls[0];
  expect(path.dirname(String(from))).toBe(dir);
  expect(to).toBe(file);
  expect(seenBeforeRename).toEqual({ target: 'old', tmp: renderReport(report('two')) });
  expect(fs.readFileSync(file, 'utf8')).toBe(renderReport(report('two')));
  expect(fs.readdirSync(dir)).toEqual(['report.html']);
});

test('a bad report throws before anything is written', async () => {
  const file = path.join(dir, 'report.html');
  fs.writeFileSync(file, 'old');
  const bad = { title: 'x', sections: [{ title: 's', charts: [{ kind: 'pie', id: 'p', title: '', xLabel: '', yLabel: '' }] }] } as unknown as Report;
  await expect(writeReport(file, bad)).rejects.toMatchObject({ name: 'SophiaError', code: 'E_CONFIG' });
  expect(fs.readFileSync(file, 'utf8')).toBe('old');
  expect(fs.readdirSync(dir)).toEqual(['report.html']);
});

test('a failing rename throws E_IO naming the file and removes the temporary file', async () => {
  const file = path.join(dir, 'report.html');
  fs.mkdirSync(file);
  fs.writeFileSync(path.join(file, 'keep'), 'x');
  const err = await writeReport(file, report('one')).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SophiaError);
  expect((err as SophiaError).code).toBe('E_IO');
  expect((err as SophiaError).message).toContain(`writeReport: could not write ${file}`);
  expect(fs.readdirSync(dir)).toEqual(['report.html']);
});

test('a path that is not a string is refused', async () => {
  await expect(writeReport(42 as unknown as string, report('x'))).rejects.toMatchObject({ code: 'E_TYPE', message: 'writeReport: file: expected a file path, got 42' });
});

test('concurrent writes to one file leave one whole report', async () => {
  const file = path.join(dir, 'report.html');
  await Promise.all(['a', 'b', 'c', 'd'].map((t) => writeReport(file, report(t))));
  const text = fs.readFileSync(file, 'utf8');
  expect(['a', 'b', 'c', 'd'].map((t) => renderReport(report(t)))).toContain(text);
  expect(fs.readdirSync(dir)).toEqual(['report.html']);
});
