import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { PNG } from 'pngjs';
import { BadRowError, loadDataset, type DatasetRow } from '../../lib/data/dataset';

let dir: string;
let imgDir: string;
const solid = (w: number, h: number, rgb: [number, number, number]): Buffer => {
  const img = new PNG({ width: w, height: h });
  for (let p = 0; p < w * h; p++) img.data.set([...rgb, 255], p * 4);
  return PNG.sync.write(img);
};
const RED = solid(20, 10, [255, 0, 0]);
const BLUE = solid(4, 4, [0, 0, 255]);
const small = { minPixels: 16, maxPixels: 50 };

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-data-'));
  imgDir = path.join(dir, 'images');
  fs.mkdirSync(path.join(imgDir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(imgDir, 'red.png'), RED);
  fs.writeFileSync(path.join(imgDir, 'sub', 'blue.png'), BLUE);
  fs.writeFileSync(path.join(imgDir, 'corrupt.png'), RED.subarray(0, 60));
  fs.writeFileSync(path.join(dir, 'secret.png'), BLUE);
  fs.symlinkSync(path.join(dir, 'secret.png'), path.join(imgDir, 'link-out.png'));
  fs.symlinkSync(path.join(imgDir, 'red.png'), path.join(imgDir, 'link-in.png'));
  // 389 bytes of PNG header that claim 20000×20000 pixels, and a JPEG header that claims 9000×9000
  const huge = Buffer.from(RED);
  huge.writeUInt32BE(20000, 16);
  huge.writeUInt32BE(20000, 20);
  fs.writeFileSync(path.join(imgDir, 'huge.png'), huge);
  fs.writeFileSync(path.join(imgDir, 'huge.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 11, 8, 0x23, 0x28, 0x23, 0x28, 1, 1, 0x11, 0, 0xff, 0xd9]));
  execFileSync('mkfifo', [path.join(imgDir, 'fifo.png')]);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const write = (name: string, content: string | Buffer): string => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
};
async function all(ds: AsyncIterable<DatasetRow>): Promise<DatasetRow[]> {
  const out: DatasetRow[] = [];
  for await (const r of ds) out.push(r);
  return out;
}

const released = [
  { problem_id: 1, problem: 'What is the area?', data_type: 'image', problem_type: 'numerical', options: [], solution: '<answer>3</answer>', path: 'red.png', data_source: 'geo' },
  { problem_id: 2, problem: 'Which colour is it?', data_type: 'image', problem_type: 'multiple choice', options: ['A. red', 'B. blue'], solution: '<answer>B</answer>', path: 'sub/blue.png', data_source: 'colours' },
  { problem_id: 3, problem: '<image>\nRead the text.', data_type: 'image', problem_type: 'OCR', options: [], solution: '<answer>hi</answer>', path: 'red.png', data_source: 'ocr' },
  { problem_id: 4, problem: 'Compute 1+1.', data_type: 'text', problem_type: 'numerical', options: [], solution: '<answer>2</answer>', path: '', data_source: 'math' },
];

test('JSON in the released format: rows normalised, images decoded and resized', async () => {
  const ds = await loadDataset(write('train.json', JSON.stringify(released)), { imageBaseDir: imgDir, ...small });
  expect(ds.length).toBe(4);
  const rows = await all(ds);
  expect(rows.map((r) => r.id)).toEqual(['1', '2', '3', '4']);
  expect(rows[0]).toMatchObject({ prompt: '<image>What is the area?', answer: '<answer>3</answer>', problemType: 'numerical', dataSource: 'geo' });
  expect(rows[1].prompt).toBe('<image>Which colour is it?\nOptions:\nA. red\nB. blue');
  expect(rows[1].options).toEqual(['A. red', 'B. blue']);
  expect(rows[2].prompt).toBe('<image>\nRead the text.'); // already has <image>
  expect(rows[3]).toMatchObject({ prompt: 'Compute 1+1.', images: [] });
  // 20×10 red scaled by sqrt(50/200) to 10×5; 4×4 blue is inside [16, 50] and stays
  const [red] = rows[0].images;
  expect([red.width, red.height]).toEqual([10, 5]);
  expect(Array.from(red.data.slice(0, 3))).toEqual([255, 0, 0]);
  expect([rows[1].images[0].width, rows[1].images[0].height]).toEqual([4, 4]);
  expect(ds.summary).toMatchObject({ read: 4, yielded: 4, skipped: 0 });
});

test('JSONL: a bad line is skipped and counted, or raised naming the row', async () => {
  const lines = [JSON.stringify(released[3]), '{"problem": "broken', JSON.stringify({ ...released[3], problem_id: 9 })];
  const file = write('train.jsonl', lines.join('\n') + '\n\n');
  const skipping = await loadDataset(file, { onBadRow: 'skip' });
  expect((await all(skipping)).map((r) => r.id)).toEqual(['4', '9']);
  expect(skipping.summary).toMatchObject({ read: 3, yielded: 2, skipped: 1, skippedBy: expect.objectContaining({ bad_json: 1 }) });
  expect(skipping.summary.examples[0]).toMatch(/^train\.jsonl row 1: the line is not JSON/);
  const strict = await loadDataset(file);
  await expect(all(strict)).rejects.toThrow(BadRowError);
  await expect(all(await loadDataset(file))).rejects.toMatchObject({ code: 'E_IO', reason: 'bad_json' });
});

test('Parquet with embedded {bytes, path} images, read in chunks', async () => {
  const { parquetWriteBuffer } = await import('hyparquet-writer');
  const schema = [
    { name: 'root', num_children: 5 },
    { name: 'problem_id', type: 'INT32', repetition_type: 'REQUIRED' },
    { name: 'problem', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
    { name: 'solution', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
    { name: 'problem_type', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
    { name: 'image', repetition_type: 'OPTIONAL', num_children: 2 },
    { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
    { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
  ];
  const n = 7;
  const buf = parquetWriteBuffer({
    schema: schema as never,
    rowGroupSize: 3,
    columnData: [
      { name: 'problem_id', data: Array.from({ length: n }, (_, i) => i) },
      { name: 'problem', data: Array.from({ length: n }, (_, i) => `q${i}`) },
      { name: 'solution', data: Array.from({ length: n }, (_, i) => `<answer>${i}</answer>`) },
      { name: 'problem_type', data: Array(n).fill('numerical') },
      { name: 'image', data: Array.from({ length: n }, (_, i) => (i === 5 ? { bytes: null, path: 'sub/blue.png' } : i === 6 ? null : { bytes: new Uint8Array(i % 2 ? BLUE : RED), path: `img${i}.png` })) },
    ],
  });
  const file = write('train.parquet', Buffer.from(buf));
  const ds = await loadDataset(file, { imageBaseDir: imgDir, chunkRows: 2, ...small });
  expect(ds.length).toBe(n);
  const rows = await all(ds);
  expect(rows.map((r) => r.prompt)).toEqual(['<image>q0', '<image>q1', '<image>q2', '<image>q3', '<image>q4', '<image>q5', 'q6']);
  expect(rows.map((r) => r.images.map((i) => `${i.width}x${i.height}`).join())).toEqual(['10x5', '4x4', '10x5', '4x4', '10x5', '4x4', '']);
  expect(rows[4].answer).toBe('<answer>4</answer>');
  // gzip-compressed pages decode through Node's zlib
  const gz = parquetWriteBuffer({
    schema: schema.slice(0, 5).map((e, i) => (i === 0 ? { ...e, num_children: 4 } : e)) as never,
    codec: 'GZIP',
    compressors: { GZIP: (input: Uint8Array) => new Uint8Array(zlib.gzipSync(input)) },
    columnData: [
      { name: 'problem_id', data: [10, 11] }, { name: 'problem', data: ['a', 'b'] },
      { name: 'solution', data: ['1', '2'] }, { name: 'problem_type', data: ['numerical', 'OCR'] },
    ],
  });
  const gzRows = await all(await loadDataset(write('gz.parquet', Buffer.from(gz))));
  expect(gzRows.map((r) => [r.id, r.prompt, r.answer, r.problemType])).toEqual([['10', 'a', '1', 'numerical'], ['11', 'b', '2', 'OCR']]);
  fs.writeFileSync(path.join(dir, 'bad.parquet'), Buffer.from(buf).subarray(0, 100));
  await expect(loadDataset(path.join(dir, 'bad.parquet'))).rejects.toMatchObject({ code: 'E_IO' });
});

test('the dataset_info.json registry: relative paths and column mapping', async () => {
  fs.mkdirSync(path.join(dir, 'reg', 'data'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'reg', 'data', 'custom.jsonl'), JSON.stringify({ qid: 'a7', question_text: 'Colour?', gt: 'red', img: 'red.png', problem_type: 'free-form' }));
  fs.writeFileSync(path.join(dir, 'reg', 'dataset_info.json'), JSON.stringify({
    custom: { file_path: 'data/custom.jsonl', image_base_path: '../images', columns: { question_text: 'prompt', gt: 'answer', img: 'images', qid: 'id' } },
  }));
  const ds = await loadDataset('custom', { registry: path.join(dir, 'reg'), ...small });
  expect(ds.imageBaseDir).toBe(imgDir);
  const [row] = await all(ds);
  expect(row).toMatchObject({ id: 'a7', prompt: '<image>Colour?', answer: 'red', problemType: 'free-form' });
  expect(row.images).toHaveLength(1);
  await expect(loadDataset('nope', { registry: path.join(dir, 'reg') })).rejects.toThrow(/no dataset "nope" in .*dataset_info\.json; it has "custom"/);
  await expect(loadDataset('nope', { registry: path.join(dir, 'missing') })).rejects.toMatchObject({ code: 'E_IO' });
  await expect(loadDataset(path.join(dir, 'reg', 'data', 'custom.jsonl'), { columns: { gt: 'solution' as never } })).rejects.toMatchObject({ code: 'E_CONFIG' });
});

describe('bad rows', () => {
  const base = { problem: 'q', solution: 'a', problem_type: 'numerical' };
  const cases: [string, Record<string, unknown>, string, string, RegExp][] = [
    ['a .. path', { path: '../secret.png' }, 'image_path_escapes', 'E_IO', /row 0 \(id "x"\): image 0: path "\.\.\/secret\.png" escapes the image base directory/],
    ['an absolute path', { path: '/etc/hostname' }, 'image_path_escapes', 'E_IO', /must be relative to the image base directory/],
    ['a symlink out', { path: 'link-out.png' }, 'image_path_escapes', 'E_IO', /is a link that leads out of the image base directory/],
    ['a missing image', { path: 'nope.png' }, 'image_missing', 'E_IO', /image file "nope\.png" not found/],
    ['a corrupt image', { path: 'corrupt.png' }, 'image_corrupt', 'E_IO', /the PNG data is corrupt/],
    ['a corrupt embedded image', { path: { bytes: [1, 2, 3], path: 'x.png' } }, 'image_corrupt', 'E_IO', /expected PNG or JPEG bytes/],
    ['a PNG that claims 20000×20000', { path: 'huge.png' }, 'image_too_large', 'E_IO', /declares 20000×20000 pixels, over the limit of 67108864/],
    ['a JPEG that claims 9000×9000', { path: 'huge.jpg' }, 'image_too_large', 'E_IO', /the JPEG declares 9000×9000 pixels/],
    ['a FIFO where an image belongs', { path: 'fifo.png' }, 'image_missing', 'E_IO', /"fifo\.png" is not a regular file/],
    ['a numeric prompt', { problem: 42 }, 'bad_column_type', 'E_TYPE', /column "problem" must be a string, got 42/],
    ['options not a list', { options: 'A. x' }, 'bad_column_type', 'E_TYPE', /column "options" must be a list of strings/],
    ['an image that is a number', { path: 7 }, 'bad_column_type', 'E_TYPE', /must hold image paths or \{bytes, path\} structs, got 7/],
    ['no answer', { solution: undefined }, 'missing_field', 'E_TYPE', /no answer \(looked for columns "solution", "answer"\)/],
  ];
  test.each(cases)('%s → %s (%s)', async (_name, patch, reason, code, message) => {
    const file = write('bad.json', JSON.stringify([{ ...base, problem_id: 'x', ...patch }, { ...base, problem_id: 'ok', path: 'link-in.png' }]));
    await expect(all(await loadDataset(file, { imageBaseDir: imgDir, ...small }))).rejects.toMatchObject({ code, reason, message: expect.stringMatching(message) });
    const ds = await loadDataset(file, { imageBaseDir: imgDir, onBadRow: 'skip', ...small });
    expect((await all(ds)).map((r) => r.id)).toEqual(['ok']); // a symlink inside the base is fine
    expect(ds.summary.skippedBy[reason as keyof typeof ds.summary.skippedBy]).toBe(1);
    expect(ds.summary.skipped).toBe(1);
  });
});

test('maxDecodePixels is the documented limit: raising it lets a large image through, a bad value is refused', async () => {
  const file = write('big.json', JSON.stringify([{ problem: 'q', solution: 'a', path: 'red.png' }]));
  await expect(all(await loadDataset(file, { imageBaseDir: imgDir, ...small, maxDecodePixels: 199 }))).rejects.toMatchObject({ reason: 'image_too_large', message: expect.stringMatching(/20×10 pixels, over the limit of 199/) });
  expect(await all(await loadDataset(file, { imageBaseDir: imgDir, ...small, maxDecodePixels: 200 }))).toHaveLength(1);
  await expect(loadDataset(file, { maxDecodePixels: 0 })).rejects.toThrow(/maxDecodePixels must be an integer >= 1, got 0/);
});

test('a UTF-8 byte-order mark is not part of row 0 (JSON and JSONL); a FIFO or folder as the data file is an E_IO error, not a hang', async () => {
  const rows = [{ problem: 'q0', solution: 'a' }, { problem: 'q1', solution: 'b' }];
  const bom = '\ufeff';
  expect((await all(await loadDataset(write('bom.json', bom + JSON.stringify(rows))))).map((r) => r.prompt)).toEqual(['q0', 'q1']);
  const jsonl = write('bom.jsonl', bom + rows.map((r) => JSON.stringify(r)).join('\r\n') + '\r\n');
  expect((await all(await loadDataset(jsonl))).map((r) => r.answer)).toEqual(['a', 'b']);
  const fifo = path.join(dir, 'rows-fifo.jsonl');
  execFileSync('mkfifo', [fifo]);
  await expect(loadDataset(fifo, { format: 'jsonl' })).rejects.toBeTruthy();
  fs.mkdirSync(path.join(dir, 'folder.json'));
  await expect(loadDataset(path.join(dir, 'folder.json'), { format: 'json' })).rejects.toBeTruthy();
});

test('lazy: a bad image further on does not stop the first rows', async () => {
  const rows = [...Array.from({ length: 5 }, (_, i) => ({ problem: `q${i}`, solution: 'a', path: 'red.png' })), { problem: 'bad', solution: 'a', path: 'corrupt.png' }];
  const ds = await loadDataset(write('lazy.json', JSON.stringify(rows)), { imageBaseDir: imgDir, ...small });
  let n = 0;
  for await (const _row of ds) if (++n === 5) break;
  expect(ds.summary).toMatchObject({ read: 5, yielded: 5 });
});

test('seeded shuffling and grouping for G rollouts', async () => {
  const rows = Array.from({ length: 30 }, (_, i) => ({ problem: `q${i}`, solution: String(i) }));
  const file = write('many.jsonl', rows.map((r) => JSON.stringify(r)).join('\n'));
  const order = async (opts: object, epoch = 0): Promise<string[]> => {
    const ds = await loadDataset(file, opts);
    return (await all(ds.rows({ epoch }))).map((r) => r.answer);
  };
  const plain = await order({});
  expect(plain).toEqual(rows.map((r) => r.solution));
  const a = await order({ shuffle: true, seed: 7 });
  expect(await order({ shuffle: true, seed: 7 })).toEqual(a);
  expect(a).not.toEqual(plain);
  expect([...a].sort()).toEqual([...plain].sort());
  expect(await order({ shuffle: true, seed: 8 })).not.toEqual(a);
  expect(await order({ shuffle: true, seed: 7 }, 1)).not.toEqual(a);

  const ds = await loadDataset(file);
  const batches: DatasetRow[][] = [];
  for await (const b of ds.batches({ batchSize: 4, groupSize: 3 })) batches.push(b);
  expect(batches.map((b) => b.length)).toEqual([12, 12, 12, 12, 12, 12, 12, 6]);
  expect(batches[0].map((r) => r.answer)).toEqual(['0', '0', '0', '1', '1', '1', '2', '2', '2', '3', '3', '3']);
  expect(batches[0][0]).toBe(batches[0][2]);
  const dropped: number[] = [];
  for await (const b of ds.batches({ batchSize: 4, groupSize: 3, dropLast: true })) dropped.push(b.length);
  expect(dropped).toHaveLength(7);
  await expect(ds.batches({ batchSize: 0 }).next()).rejects.toMatchObject({ code: 'E_CONFIG' });
});

test('option and file errors', async () => {
  await expect(loadDataset(write('x.csv', 'a,b'))).rejects.toThrow(/cannot tell the format/);
  await expect(loadDataset(write('obj.json', '{"a": 1}'))).rejects.toThrow(/must hold a JSON list of rows, got an object/);
  await expect(loadDataset(write('broken.json', '[{'))).rejects.toMatchObject({ code: 'E_IO' });
  await expect(loadDataset(write('ok.json', '[]'), { minPixels: 10, maxPixels: 5 })).rejects.toMatchObject({ code: 'E_CONFIG' });
  await expect(loadDataset(write('ok.json', '[]'), { onBadRow: 'ignore' as never })).rejects.toThrow(/onBadRow must be 'skip' or 'error', got "ignore"/);
});
