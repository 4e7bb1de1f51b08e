import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadDataset, type DatasetRow } from '../../lib/data/dataset';
import { decodeImage } from '../../lib/data/images';
import {
  SYNTHETIC_DATA_SOURCE, goldResponse, problemFromRow, problemsById, readSyntheticProblems, writeSyntheticDataset,
} from '../../lib/task';
import { judgeThinking } from '../../lib/task';
import { outcomeReward } from '../../lib/rewards/outcome';
import { expectSophiaError, expectSophiaErrorAsync } from './helpers';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-synthetic-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function rowsOf(file: string): Promise<DatasetRow[]> {
  const ds = await loadDataset(file, { minPixels: 1 });
  const out: DatasetRow[] = [];
  for await (const r of ds) out.push(r);
  return out;
}

test('a written dataset loads with loadDataset, and the gold answers score 1 with outcomeReward', async () => {
  const written = await writeSyntheticDataset(dir, { seed: 11, count: 60 });
  expect(written.file).toBe(path.join(dir, 'train.json'));
  const rows = await rowsOf(written.file);
  expect(rows).toHaveLength(60);
  for (const [i, row] of rows.entries()) {
    const p = written.problems[i];
    expect(row.id).toBe(p.id);
    expect(row.problemType).toBe(p.problemType);
    expect(row.answer).toBe(`<answer>${p.answer}</answer>`);
    expect(row.dataSource).toBe(SYNTHETIC_DATA_SOURCE);
    expect(row.options).toEqual(p.options);
    expect(row.prompt).toBe(p.options.length > 0 ? `<image>${p.question}\nOptions:\n${p.options.join('\n')}` : `<image>${p.question}`);
    expect(row.images).toHaveLength(1);
    expect(row.images[0]).toEqual({ width: 32, height: 32, data: p.image.data });
    expect(await outcomeReward({ response: goldResponse(p), groundTruth: row.answer, problemType: row.problemType })).toBe(1);
    const wrong = p.problemType === 'numerical' ? String(Number(p.answer) + 1) : p.answer === 'A' ? 'B' : 'A';
    expect(await outcomeReward({ response: `<think>${p.think}</think><answer>${wrong}</answer>`, groundTruth: row.answer, problemType: row.problemType })).toBe(0);
  }
  expect(new Set(rows.map((r) => r.problemType))).toEqual(new Set(['numerical', 'multiple choice']));
});

test('rows keep the released columns and the scene; problems read back by id, images re-rendered', async () => {
  const written = await writeSyntheticDataset(dir, { seed: 12, count: 30, split: 'test', background: 'mixed' });
  expect(written.file).toBe(path.join(dir, 'test.json'));
  const raw = JSON.parse(fs.readFileSync(written.file, 'utf8'));
  expect(Object.keys(raw[0])).toEqual(expect.arrayContaining(['problem_id', 'problem', 'data_type', 'problem_type', 'options', 'solution', 'path', 'data_source', 'scene', 'task', 'think']));
  expect(raw[0].path).toBe(`images/${written.problems[0].id}.png`);
  const back = await readSyntheticProblems(written.file);
  expect(back).toEqual(written.problems);
  for (const p of back) {
    const png = decodeImage(fs.readFileSync(path.join(dir, 'images', `${p.id}.png`)));
    expect(Buffer.from(png.data).equals(Buffer.from(p.image.data))).toBe(true);
  }
  // the judge finds a dataset row's problem by the row's id
  const byId = problemsById(back);
  for (const row of await rowsOf(written.file)) {
    const p = byId.get(row.id)!;
    expect(judgeThinking(p, goldResponse(p)).score).toBe(1);
  }
});

test('a custom name and an easy subset', async () => {
  const written = await writeSyntheticDataset(path.join(dir, 'easy'), { seed: 1, count: 10, difficulty: 'easy', name: 'easy-train' });
  expect(path.basename(written.file)).toBe('easy-train.json');
  expect((await rowsOf(written.file)).every((r) => /^<image>how many (red|green|blue|yellow) shapes are there\?$/.test(r.prompt))).toBe(true);
});

describe('bad input', () => {
  test('writeSyntheticDataset', async () => {
    await expectSophiaErrorAsync(() => writeSyntheticDataset(42 as never, { seed: 1, count: 1 }), 'E_TYPE', /writeSyntheticDataset: dir must be a non-empty string, got 42/);
    await expectSophiaErrorAsync(() => writeSyntheticDataset(dir, { seed: 1, count: 1, name: '../x' }), 'E_CONFIG', /name must be a plain file name/);
    await expectSophiaErrorAsync(() => writeSyntheticDataset(dir, { seed: 1, count: -2 }), 'E_RANGE', /count/);
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, '');
    await expectSophiaErrorAsync(() => writeSyntheticDataset(path.join(file, 'sub'), { seed: 1, count: 1 }), 'E_IO', /cannot write the dataset/);
  });

  test('readSyntheticProblems and problemFromRow', async () => {
    await expectSophiaErrorAsync(() => readSyntheticProblems(path.join(dir, 'missing.json')), 'E_IO', /cannot read .*missing.json/);
    fs.writeFileSync(path.join(dir, 'obj.json'), '{}');
    await expectSophiaErrorAsync(() => readSyntheticProblems(path.join(dir, 'obj.json')), 'E_IO', /must hold a JSON list of rows, got an object/);
    const good = { problem_id: 'x', width: 32, height: 32, task: { kind: 'sum', targets: ['red', 'blue'] }, scene: [{ shape: 'circle', color: 'red', x: 1, y: 1, size: 6 }] };
    expect(problemFromRow(good).answer).toBe('1');
    expectSophiaError(() => problemFromRow({ ...good, problem_id: 3 }), 'E_TYPE', /problem_id must be a non-empty string, got 3/);
    expectSophiaError(() => problemFromRow({ ...good, width: 0 }), 'E_CONFIG', /width must be an integer/);
    expectSophiaError(() => problemFromRow({ ...good, task: { kind: 'sum', targets: ['red', 'circle'] } }), 'E_CONFIG', /two different colours or two different shapes/);
    expectSophiaError(() => problemFromRow({ ...good, task: { kind: 'count_color', targets: ['circle'] } }), 'E_CONFIG', /targets of a count_color task must be 1 kind\(s\) of the form colour/);
    expectSophiaError(() => problemFromRow({ ...good, scene: [{ shape: 'circle', color: 'pink', x: 1, y: 1, size: 6 }] }), 'E_CONFIG', /scene\[0\]\.color must be one of red, green, blue, yellow, got "pink"/);
    expectSophiaError(() => problemFromRow({ ...good, scene: [{ shape: 'circle', color: 'red', x: -1, y: 1, size: 6 }] }), 'E_RANGE', /scene\[0\]\.x must be an integer >= 0, got -1/);
    expectSophiaError(() => problemFromRow({ ...good, scene: 'none' }), 'E_TYPE', /scene must be a list/);
  });
});
