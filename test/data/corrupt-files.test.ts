/**
 * Corrupted files, as a careless or hostile user would pass them: Snappy Parquet, JSONL, PNG and
 * JPEG with random bytes flipped. Every case ends in rows or a SophiaError within a bounded time;
 * none crashes, hangs or leaves an unhandled rejection behind. (Flipped Snappy pages once sent the
 * Parquet decoder into an endless loop on the event loop and into unhandled rejections.)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import * as jpeg from 'jpeg-js';
import { loadDataset } from '../../lib/data/dataset';
import { decodeImage } from '../../lib/data/images';
import { SophiaError } from '../../lib/errors';

const seed = Number(process.env.SOPHIA_TEST_SEED ?? Date.now() % 1e9);
console.log(`corrupt-files seed ${seed} (set SOPHIA_TEST_SEED to replay)`);
let s = seed >>> 0;
const rand = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);

let dir: string;
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => void unhandled.push(e);
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-corrupt-'));
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A copy with `flips` random bytes changed (the first `keep` bytes left alone, so the format is still recognised). */
function corrupt(bytes: Uint8Array, flips: number, keep = 4): Buffer {
  const b = Buffer.from(bytes);
  for (let k = 0; k < flips; k++) b[keep + Math.floor(rand() * (b.length - keep))] ^= 1 + Math.floor(rand() * 255);
  return b;
}

/** Reads every row; a SophiaError is a clean end; anything else fails the test. */
async function drain(file: string, opts: Parameters<typeof loadDataset>[1]): Promise<'rows' | string> {
  try {
    const ds = await loadDataset(file, opts);
    for await (const _ of ds) void _;
    return 'rows';
  } catch (err) {
    if (!(err instanceof SophiaError)) throw new Error(`${file}: not a SophiaError: ${String(err)}`);
    return err.code;
  }
}

const TIMEOUT = 1500;

test('250 corrupted Parquet and JSONL files: rows or a SophiaError, each within its time limit, no unhandled rejection', async () => {
  const { parquetWriteBuffer } = await import('hyparquet-writer');
  const n = 300;
  const parquet = parquetWriteBuffer({
    columnData: [
      { name: 'problem', data: Array.from({ length: n }, (_, i) => `question number ${i} `.repeat(5)), type: 'STRING' },
      { name: 'solution', data: Array.from({ length: n }, (_, i) => `<answer>${i}</answer>`), type: 'STRING' },
    ] as never,
  });
  const jsonl = Buffer.from(Array.from({ length: 40 }, (_, i) => JSON.stringify({ problem: `q${i}`, solution: String(i), problem_type: 'numerical' })).join('\n') + '\n');
  const outcomes: Record<string, number> = {};
  for (let t = 0; t < 250; t++) {
    const isParquet = t < 150;
    const file = path.join(dir, isParquet ? `c${t}.parquet` : `c${t}.jsonl`);
    fs.writeFileSync(file, corrupt(isParquet ? new Uint8Array(parquet) : jsonl, 1 + Math.floor(rand() * 8)));
    const t0 = Date.now();
    const r = await drain(file, { onBadRow: 'skip', chunkRows: 64, readTimeoutMs: TIMEOUT });
    // metadata and 5 chunks, each within the limit, plus the start of a worker
    expect(Date.now() - t0).toBeLessThan(6 * TIMEOUT + 5000);
    outcomes[r] = (outcomes[r] ?? 0) + 1;
  }
  await new Promise((r) => setTimeout(r, 100));
  expect(unhandled).toEqual([]);
  console.log('outcomes', outcomes);
  expect(Object.keys(outcomes).every((k) => k === 'rows' || k.startsWith('E_'))).toBe(true);
}, 600_000);

test('300 corrupted PNG and JPEG images: an image or a SophiaError, fast, through decodeImage and a dataset row', async () => {
  const w = 24, h = 16;
  const png = new PNG({ width: w, height: h });
  const jpg = { width: w, height: h, data: Buffer.alloc(w * h * 4) };
  for (let i = 0; i < w * h * 4; i++) png.data[i] = jpg.data[i] = Math.floor(rand() * 256);
  const sources = [PNG.sync.write(png), jpeg.encode(jpg, 80).data];
  const outcomes: Record<string, number> = {};
  for (let t = 0; t < 300; t++) {
    const bytes = corrupt(sources[t % 2], 1 + Math.floor(rand() * 6), 3);
    const t0 = Date.now();
    let r: string;
    try {
      const img = decodeImage(bytes, `case ${t}`);
      expect(img.data.length).toBe(img.width * img.height * 3);
      r = 'image';
    } catch (err) {
      if (!(err instanceof SophiaError)) throw new Error(`case ${t}: not a SophiaError: ${String(err)}`);
      r = err.code;
    }
    expect(Date.now() - t0).toBeLessThan(2000);
    outcomes[r] = (outcomes[r] ?? 0) + 1;
    if (t % 10 === 0) {
      // the same bytes as a dataset's image: a row, or a bad row skipped
      fs.writeFileSync(path.join(dir, 'img.bin'), bytes);
      const file = path.join(dir, 'rows.json');
      fs.writeFileSync(file, JSON.stringify([{ problem: 'q', solution: 'a', path: 'img.bin' }]));
      expect(['rows']).toContain(await drain(file, { onBadRow: 'skip', minPixels: 16, maxPixels: 4096 }));
    }
  }
  console.log('outcomes', outcomes);
  expect(unhandled).toEqual([]);
});
