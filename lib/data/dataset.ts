/**
 * Datasets in the released training set's format (method.md §5): JSON, JSONL or Parquet files, or a
 * name in a `dataset_info.json` registry. Rows are normalised and their images decoded lazily, one
 * row at a time, so a 130k-row dataset never decodes at once.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { Worker } from 'node:worker_threads';
import { SophiaError, describe } from '../errors';
import { MAX_DECODE_PIXELS, decodeImage, fitPixels, resizeImage, type RgbImage } from './images';

/** One prompt, normalised. */
export interface DatasetRow {
  id: string;
  /** The question, with multiple-choice options appended and `<image>` prepended when it has images. */
  prompt: string;
  /** The ground truth, as written (often `<answer>…</answer>`). */
  answer: string;
  problemType: string;
  options: string[];
  /** Decoded RGB images, resized into [minPixels, maxPixels]. */
  images: RgbImage[];
  dataSource: string;
}

/** The fields a source column can be mapped to. */
export type DatasetField = 'id' | 'prompt' | 'answer' | 'problemType' | 'options' | 'images' | 'dataSource';

export type BadRowReason =
  | 'bad_json' // a JSONL line that is not a JSON object
  | 'missing_field' // no prompt or no answer
  | 'bad_column_type' // a column holds the wrong type
  | 'image_missing' // an image file that does not exist
  | 'image_corrupt' // image bytes that do not decode as PNG or JPEG
  | 'image_too_large' // an image whose header declares more than maxDecodePixels pixels
  | 'image_path_escapes'; // an image path outside the image base directory

export const BAD_ROW_REASONS: readonly BadRowReason[] = [
  'bad_json', 'missing_field', 'bad_column_type', 'image_missing', 'image_corrupt', 'image_too_large', 'image_path_escapes',
];

/** The error a bad row raises (with onBadRow: 'error'), or the reason it was skipped. */
export class BadRowError extends SophiaError {
  readonly reason: BadRowReason;
  constructor(reason: BadRowReason, message: string, options?: { cause?: unknown }) {
    super(reason === 'bad_column_type' || reason === 'missing_field' ? 'E_TYPE' : 'E_IO', message, options);
    this.reason = reason;
  }
}

export interface LoadDatasetOptions {
  /** The registry: a dataset_info.json file or its folder (default ./dataset_info.json), used when nameOrPath is not a file. */
  registry?: string;
  /** Where relative image paths point (default: the registry's image_base_path, else the data file's folder). */
  imageBaseDir?: string;
  /** Source column → field, e.g. { problem: 'prompt', solution: 'answer', path: 'images' }; wins over the defaults. */
  columns?: Record<string, DatasetField>;
  /** 'json', 'jsonl' or 'parquet' (default: from the file extension). */
  format?: 'json' | 'jsonl' | 'parquet';
  /** Smallest image area after resizing (default 262144). */
  minPixels?: number;
  /** Largest image area after resizing (default 4194304). */
  maxPixels?: number;
  /**
   * Most pixels an image may declare in its header (default MAX_DECODE_PIXELS, 8192×8192): a larger
   * one is a bad row ('image_too_large'), refused before decoding, so a small file claiming a huge
   * image costs neither seconds nor gigabytes.
   */
  maxDecodePixels?: number;
  /** Decode images (default true); false leaves `images` empty, for text-only passes. */
  decodeImages?: boolean;
  /** Shuffle with `seed` (default false). Parquet shuffles its chunk order, then rows within a chunk. */
  shuffle?: boolean;
  /** Seed of the shuffle (default 0); epoch e uses seed + e. */
  seed?: number;
  /** What a bad row does: 'error' (default) throws BadRowError, 'skip' counts it in summary. */
  onBadRow?: 'skip' | 'error';
  /** Rows per Parquet read (default 256). */
  chunkRows?: number;
  /**
   * Most milliseconds one Parquet read (the metadata, or a chunk of rows) may take (default 120000).
   * Parquet decodes in a worker thread; one that overruns is stopped and the read fails with E_IO,
   * so a corrupt file that sends the decoder into a loop costs this long at most.
   */
  readTimeoutMs?: number;
}

export interface DatasetSummary {
  /** Rows read from the source (all epochs). */
  read: number;
  /** Rows handed out. */
  yielded: number;
  skipped: number;
  skippedBy: Record<BadRowReason, number>;
  /** The first few skip messages, for a report. */
  examples: string[];
}

/** Source column names that map to a field without configuration (the released format's and common ones). */
const DEFAULT_COLUMNS: Record<string, DatasetField> = {
  problem_id: 'id', id: 'id',
  problem: 'prompt', prompt: 'prompt', question: 'prompt',
  solution: 'answer', answer: 'answer',
  problem_type: 'problemType',
  options: 'options',
  path: 'images', images: 'images', image: 'images',
  data_source: 'dataSource',
};

interface RawSource {
  length: number;
  /** Rows per chunk; shuffling permutes chunks, then rows inside a chunk. */
  chunk: number;
  read(start: number, end: number): Promise<unknown[]>;
  /** Turns one raw item into a record (JSONL parses its line here, so lines parse one at a time). */
  decode?(item: unknown): unknown;
}

/** splitmix32: small, seedable, good enough for shuffling. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 2 ** 32;
  };
}

function permutation(n: number, random: () => number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

const isInside = (dir: string, p: string): boolean => {
  const rel = path.relative(dir, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

/** A lazily read, lazily decoded dataset. Iterate it, or take batches of prompts repeated for G rollouts. */
export class Dataset {
  readonly name: string;
  readonly imageBaseDir: string;
  private readonly source: RawSource;
  private readonly opts: Required<Omit<LoadDatasetOptions, 'registry' | 'imageBaseDir' | 'format' | 'columns' | 'readTimeoutMs'>>;
  private readonly columns: Record<string, DatasetField>;
  private stats: DatasetSummary = { read: 0, yielded: 0, skipped: 0, skippedBy: Object.fromEntries(BAD_ROW_REASONS.map((r) => [r, 0])) as Record<BadRowReason, number>, examples: [] };

  /** @internal use loadDataset */
  constructor(name: string, source: RawSource, imageBaseDir: string, columns: Record<string, DatasetField>, opts: Dataset['opts']) {
    this.name = name;
    this.source = source;
    this.imageBaseDir = imageBaseDir;
    this.columns = columns;
    this.opts = opts;
  }

  /** Rows in the source, bad ones included. */
  get length(): number {
    return this.source.length;
  }

  get summary(): DatasetSummary {
    return { ...this.stats, skippedBy: { ...this.stats.skippedBy }, examples: [...this.stats.examples] };
  }

  [Symbol.asyncIterator](): AsyncGenerator<DatasetRow> {
    return this.rows();
  }

  /** The rows of one epoch, in file order or shuffled with seed + epoch. */
  async *rows(opts: { epoch?: number } = {}): AsyncGenerator<DatasetRow> {
    const epoch = opts.epoch ?? 0;
    const { length, chunk } = this.source;
    const chunks = Math.ceil(length / chunk);
    const random = rng(this.opts.seed + epoch);
    const chunkOrder = this.opts.shuffle ? permutation(chunks, random) : Array.from({ length: chunks }, (_, i) => i);
    for (const c of chunkOrder) {
      const start = c * chunk;
      const raw = await this.source.read(start, Math.min(length, start + chunk));
      const order = this.opts.shuffle ? permutation(raw.length, random) : raw.map((_, i) => i);
      for (const i of order) {
        this.stats.read++;
        const row = await this.normalise(this.source.decode ? this.source.decode(raw[i]) : raw[i], start + i);
        if (row) {
          this.stats.yielded++;
          yield row;
        }
      }
    }
  }

  /**
   * Batches of `batchSize` prompts, each repeated `groupSize` times in a row (the G rollouts of one
   * prompt share an object). The last, smaller batch is kept unless dropLast.
   */
  async *batches(opts: { batchSize: number; groupSize?: number; epoch?: number; dropLast?: boolean }): AsyncGenerator<DatasetRow[]> {
    const groupSize = opts.groupSize ?? 1;
    for (const [name, v] of [['batchSize', opts.batchSize], ['groupSize', groupSize]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new SophiaError('E_CONFIG', `batches: ${name} must be an integer >= 1, got ${describe(v)}`);
    }
    let batch: DatasetRow[] = [];
    for await (const row of this.rows({ epoch: opts.epoch })) {
      for (let g = 0; g < groupSize; g++) batch.push(row);
      if (batch.length === opts.batchSize * groupSize) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0 && !opts.dropLast) yield batch;
  }

  private async normalise(raw: unknown, index: number): Promise<DatasetRow | null> {
    try {
      return await this.toRow(raw, index);
    } catch (err) {
      if (!(err instanceof BadRowError) || this.opts.onBadRow === 'error') throw err;
      this.stats.skipped++;
      this.stats.skippedBy[err.reason]++;
      if (this.stats.examples.length < 10) this.stats.examples.push(err.message);
      return null;
    }
  }

  private async toRow(raw: unknown, index: number): Promise<DatasetRow> {
    let where = `${this.name} row ${index}`;
    if (raw instanceof UnparsedLine) throw new BadRowError('bad_json', `${where}: the line is not JSON (${raw.error})`);
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new BadRowError('bad_json', `${where}: expected an object, got ${describe(raw)}`);
    }
    const record = raw as Record<string, unknown>;
    const fields: Partial<Record<DatasetField, { column: string; value: unknown }>> = {};
    // user mappings first, so they win over a default column of the same field
    for (const [column, field] of Object.entries(this.columns)) {
      if (fields[field] === undefined && column in record && record[column] !== undefined) fields[field] = { column, value: record[column] };
    }
    const text = (field: DatasetField, required: boolean, numbersToo = false): string => {
      const f = fields[field];
      if (f === undefined || f.value === null) {
        if (required) throw new BadRowError('missing_field', `${where}: no ${field} (looked for columns ${this.columnsOf(field)})`);
        return '';
      }
      if (typeof f.value === 'string') return f.value;
      if (numbersToo && typeof f.value === 'number' && Number.isFinite(f.value)) return String(f.value);
      if (numbersToo && typeof f.value === 'bigint') return String(f.value);
      throw new BadRowError('bad_column_type', `${where}: column ${JSON.stringify(f.column)} must be a string, got ${describe(f.value)}`);
    };

    const id = text('id', false, true) || `${this.name}:${index}`;
    where = `${this.name} row ${index} (id ${JSON.stringify(id)})`;
    let prompt = text('prompt', true);
    const answer = text('answer', true, true);
    const problemType = text('problemType', false) || 'numerical';
    const dataSource = text('dataSource', false);
    const options = this.optionsOf(fields.options, where);
    const images = this.opts.decodeImages ? await this.imagesOf(fields.images, record.data_type, where) : [];

    if (problemType.toLowerCase() === 'multiple choice' && options.length > 0) {
      prompt = `${prompt}${/\s$/.test(prompt) || prompt === '' ? '' : '\n'}Options:\n${options.join('\n')}`;
    }
    if (images.length > 0 && !prompt.includes('<image>')) prompt = `<image>${prompt}`;
    return { id, prompt, answer, problemType, options, images, dataSource };
  }

  private columnsOf(field: DatasetField): string {
    return Object.entries(this.columns).filter(([, f]) => f === field).map(([c]) => JSON.stringify(c)).join(', ');
  }

  private optionsOf(f: { column: string; value: unknown } | undefined, where: string): string[] {
    if (f === undefined || f.value === null) return [];
    const list = f.value;
    if (!Array.isArray(list) || !list.every((o) => typeof o === 'string')) {
      throw new BadRowError('bad_column_type', `${where}: column ${JSON.stringify(f.column)} must be a list of strings, got ${describe(list)}`);
    }
    return list as string[];
  }

  private async imagesOf(f: { column: string; value: unknown } | undefined, dataType: unknown, where: string): Promise<RgbImage[]> {
    if (f === undefined || f.value === null || f.value === '' || dataType === 'text') return [];
    const refs = Array.isArray(f.value) ? f.value : [f.value];
    const out: RgbImage[] = [];
    for (const [k, ref] of refs.entries()) {
      const what = `${where}: image ${k}`;
      let bytes: Uint8Array;
      if (typeof ref === 'string') {
        if (ref === '') continue;
        bytes = await this.readImageFile(ref, what);
      } else if (ref !== null && typeof ref === 'object' && ('bytes' in ref || 'path' in ref)) {
        const { bytes: b, path: p } = ref as { bytes?: unknown; path?: unknown };
        if (b instanceof Uint8Array) bytes = b;
        else if (Array.isArray(b) && b.every((x) => Number.isInteger(x) && x >= 0 && x < 256)) bytes = Uint8Array.from(b as number[]);
        else if (typeof p === 'string' && p !== '' && (b === null || b === undefined)) bytes = await this.readImageFile(p, what);
        else throw new BadRowError('bad_column_type', `${what}: expected {bytes, path} with bytes or a path, got bytes ${describe(b)} and path ${describe(p)}`);
      } else {
        throw new BadRowError('bad_column_type', `${where}: column ${JSON.stringify(f.column)} must hold image paths or {bytes, path} structs, got ${describe(ref)}`);
      }
      let img: RgbImage;
      try {
        img = decodeImage(bytes, what, { maxPixels: this.opts.maxDecodePixels });
      } catch (err) {
        throw new BadRowError((err as SophiaError).code === 'E_RANGE' ? 'image_too_large' : 'image_corrupt', (err as Error).message, { cause: err });
      }
      const [w, h] = fitPixels(img.width, img.height, this.opts.minPixels, this.opts.maxPixels);
      out.push(resizeImage(img, w, h));
    }
    return out;
  }

  private readImageFile(rel: string, what: string): Promise<Uint8Array> {
    return readImageUnder(this.imageBaseDir, rel, what);
  }
}

const realBases = new Map<string, string>();

/**
 * Reads an image file under `baseDir`. A path that is absolute, climbs out with `..`, or is a link
 * that leads out is refused with BadRowError 'image_path_escapes' (E_IO); `what` names the row.
 */
export async function readImageUnder(baseDir: string, rel: string, what: string): Promise<Buffer> {
  const shown = JSON.stringify(rel);
  if (path.isAbsolute(rel) || rel.includes('\0')) {
    throw new BadRowError('image_path_escapes', `${what}: path ${shown} must be relative to the image base directory ${baseDir}`);
  }
  const full = path.resolve(baseDir, rel);
  if (!isInside(baseDir, full)) {
    throw new BadRowError('image_path_escapes', `${what}: path ${shown} escapes the image base directory ${baseDir}`);
  }
  let base: string;
  let real: string;
  try {
    base = realBases.get(baseDir) ?? (await fs.promises.realpath(baseDir));
    realBases.set(baseDir, base);
    real = await fs.promises.realpath(full);
  } catch (err) {
    throw new BadRowError('image_missing', `${what}: image file ${shown} not found under ${baseDir}`, { cause: err });
  }
  if (!isInside(base, real)) {
    throw new BadRowError('image_path_escapes', `${what}: path ${shown} is a link that leads out of the image base directory ${baseDir}`);
  }
  try {
    // Not a FIFO, socket or device: reading one would block forever.
    if (!(await fs.promises.stat(real)).isFile()) throw new BadRowError('image_missing', `${what}: ${shown} is not a regular file`);
    return await fs.promises.readFile(real);
  } catch (err) {
    if (err instanceof BadRowError) throw err;
    throw new BadRowError('image_missing', `${what}: image file ${shown} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
}

// ---------------------------------------------------------------- sources

async function jsonSource(file: string): Promise<RawSource> {
  const text = await readText(file);
  let rows: unknown;
  try {
    rows = JSON.parse(text);
  } catch (err) {
    throw new SophiaError('E_IO', `loadDataset: ${file} is not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (!Array.isArray(rows)) throw new SophiaError('E_IO', `loadDataset: ${file} must hold a JSON list of rows, got ${describe(rows)}`);
  return { length: rows.length, chunk: Math.max(1, rows.length), read: async (s, e) => rows.slice(s, e) };
}

/** A JSONL line that did not parse; it becomes a bad row when read. */
class UnparsedLine {
  constructor(readonly error: string) {}
}

async function jsonlSource(file: string): Promise<RawSource> {
  // Streamed line by line (a file of any size; no one string holds it all); lines stay strings until
  // their row is read.
  await regularFile(file);
  const lines: string[] = [];
  try {
    const rl = readline.createInterface({ input: fs.createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of rl) {
      const l = lines.length === 0 ? stripBom(line) : line;
      if (l.trim().length > 0) lines.push(l);
    }
  } catch (err) {
    throw new SophiaError('E_IO', `loadDataset: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  const decode = (line: unknown): unknown => {
    try {
      return JSON.parse(line as string);
    } catch (err) {
      return new UnparsedLine((err as Error).message);
    }
  };
  return { length: lines.length, chunk: Math.max(1, lines.length), read: async (s, e) => lines.slice(s, e), decode };
}

/**
 * Parquet is decoded in a worker thread: a corrupt file can send the decoder into an endless loop or
 * an unhandled rejection (seen with flipped bytes in Snappy pages), which must cost neither the
 * process nor its event loop. Each read has a time limit; a worker that overruns it, runs out of its
 * memory limit or dies is terminated and the read fails with E_IO; the next read starts a new worker.
 */
const PARQUET_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const zlib = require('node:zlib');
const { pathToFileURL } = require('node:url');
const fail = (id, e) => parentPort.postMessage({ id, error: String((e && e.message) || e) });
process.on('unhandledRejection', (e) => fail(-1, e));
(async () => {
  const hp = await import(pathToFileURL(workerData.module).href);
  const file = await hp.asyncBufferFromFile(workerData.file);
  const metadata = await hp.parquetMetadataAsync(file);
  // hyparquet reads Snappy itself; these two come from Node's zlib (ZSTD and LZ4 are not read)
  const compressors = {
    GZIP: (input) => new Uint8Array(zlib.gunzipSync(input)),
    BROTLI: (input) => new Uint8Array(zlib.brotliDecompressSync(input)),
  };
  parentPort.on('message', async ({ id, rowStart, rowEnd }) => {
    try {
      parentPort.postMessage({ id, rows: await hp.parquetReadObjects({ file, metadata, rowStart, rowEnd, utf8: false, compressors }) });
    } catch (e) {
      fail(id, e);
    }
  });
  parentPort.postMessage({ id: 0, rows: Number(metadata.num_rows) });
})().catch((e) => fail(0, e));
`;

/** Most time one Parquet read (a chunk of rows, or the metadata) may take. */
const PARQUET_READ_MS = 120_000;
/** Heap of the Parquet worker (MiB): a chunk that needs more fails instead of growing the process. */
const PARQUET_WORKER_HEAP_MB = 4096;

class ParquetWorker {
  private worker: Worker | null = null;
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private ready: Promise<number> | null = null;

  constructor(private readonly file: string, private readonly module: string, private readonly timeoutMs: number) {}

  /** Rows in the file (starts the worker). */
  rows(): Promise<number> {
    this.start();
    return this.ready!;
  }

  async read(rowStart: number, rowEnd: number): Promise<unknown[]> {
    this.start();
    await this.ready;
    const id = this.next++;
    return (await this.request(id, `rows ${rowStart}..${rowEnd - 1}`, () => this.worker!.postMessage({ id, rowStart, rowEnd }))) as unknown[];
  }

  private start(): void {
    if (this.worker) return;
    const w = new Worker(PARQUET_WORKER, { eval: true, workerData: { file: this.file, module: this.module }, resourceLimits: { maxOldGenerationSizeMb: PARQUET_WORKER_HEAP_MB } });
    this.worker = w;
    w.unref();
    w.on('message', (m: { id: number; rows?: unknown; error?: string }) => {
      if (m.id === -1) return this.stop(new Error(m.error ?? 'the decoder failed'));
      const p = this.waiting.get(m.id);
      if (!p) return;
      this.waiting.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.rows);
    });
    w.on('error', (err) => this.stop(err));
    w.on('exit', (code) => this.stop(new Error(`the decoder exited (code ${code})`)));
    this.ready = this.request(0, 'metadata', () => undefined) as Promise<number>;
    this.ready.catch(() => undefined);
  }

  private request(id: number, what: string, send: () => void): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.stop(new Error(`${what} did not decode within ${this.timeoutMs / 1000} s`)), this.timeoutMs);
      this.worker!.ref();
      const settle = (): void => {
        clearTimeout(timer);
        if (this.waiting.size === 0) this.worker?.unref();
      };
      this.waiting.set(id, {
        resolve: (v) => (this.waiting.delete(id), settle(), resolve(v)),
        reject: (e) => (this.waiting.delete(id), settle(), reject(e)),
      });
      send();
    });
  }

  /** Fails every read in flight and ends the worker; the next read starts a new one. */
  private stop(err: Error): void {
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const p of waiting) p.reject(err);
    void w.terminate();
  }
}

async function parquetSource(file: string, chunkRows: number, timeoutMs = PARQUET_READ_MS): Promise<RawSource> {
  await regularFile(file);
  let module: string;
  try {
    module = require.resolve('hyparquet');
  } catch (err) {
    throw new SophiaError('E_CONFIG', `loadDataset: reading Parquet needs the hyparquet package, which was not found (${(err as Error).message})`, { cause: err });
  }
  const worker = new ParquetWorker(file, module, timeoutMs);
  let length: number;
  try {
    length = await worker.rows();
  } catch (err) {
    throw new SophiaError('E_IO', `loadDataset: ${file} is not a readable Parquet file (${(err as Error).message})`, { cause: err });
  }
  return {
    length,
    chunk: chunkRows,
    read: async (rowStart, rowEnd) => {
      try {
        return await worker.read(rowStart, rowEnd);
      } catch (err) {
        throw new SophiaError('E_IO', `loadDataset: ${file} rows ${rowStart}..${rowEnd - 1} do not decode (${(err as Error).message})`, { cause: err });
      }
    },
  };
}

const stripBom = (text: string): string => (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);

/** A JSON text read whole is limited by the longest string V8 makes (about 512 MB). */
const MAX_JSON_BYTES = 500 * 1024 * 1024;

/** Refuses what is not a regular file (a FIFO or a device would block the read forever); returns its size. */
async function regularFile(file: string): Promise<number> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (err) {
    throw new SophiaError('E_IO', `loadDataset: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  if (!st.isFile()) throw new SophiaError('E_IO', `loadDataset: ${file} is not a regular file (a FIFO, socket, device or folder)`);
  return st.size;
}

/** A whole text file without its UTF-8 byte-order mark. */
async function readText(file: string): Promise<string> {
  const size = await regularFile(file);
  if (size > MAX_JSON_BYTES) {
    throw new SophiaError('E_IO', `loadDataset: ${file} is ${(size / 2 ** 20).toFixed(0)} MiB; a JSON file is read whole and cannot exceed ${MAX_JSON_BYTES / 2 ** 20} MiB: write the rows as JSONL (one per line, streamed) or Parquet`);
  }
  try {
    return stripBom(await fs.promises.readFile(file, 'utf8'));
  } catch (err) {
    throw new SophiaError('E_IO', `loadDataset: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
}

interface RegistryEntry {
  file: string;
  imageBaseDir?: string;
  columns?: Record<string, DatasetField>;
}

async function lookUp(name: string, registry: string | undefined): Promise<RegistryEntry> {
  let file = path.resolve(registry ?? 'dataset_info.json');
  try {
    if ((await fs.promises.stat(file)).isDirectory()) file = path.join(file, 'dataset_info.json');
  } catch {
    throw new SophiaError('E_IO', `loadDataset: ${JSON.stringify(name)} is not a file, and there is no registry at ${file} to look it up in`);
  }
  const text = await readText(file);
  let info: unknown;
  try {
    info = JSON.parse(text);
  } catch (err) {
    throw new SophiaError('E_IO', `loadDataset: registry ${file} is not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (info === null || typeof info !== 'object' || Array.isArray(info)) throw new SophiaError('E_IO', `loadDataset: registry ${file} must map names to entries, got ${describe(info)}`);
  const entries = info as Record<string, unknown>;
  const entry = entries[name] as Record<string, unknown> | undefined;
  if (entry === undefined) {
    throw new SophiaError('E_CONFIG', `loadDataset: no dataset ${JSON.stringify(name)} in ${file}; it has ${Object.keys(entries).map((k) => JSON.stringify(k)).join(', ') || 'none'}`);
  }
  const dataFile = entry?.file_path ?? entry?.file_name;
  if (typeof dataFile !== 'string') throw new SophiaError('E_CONFIG', `loadDataset: ${file} entry ${JSON.stringify(name)} needs a file_path string, got ${describe(dataFile)}`);
  const base = entry.image_base_path;
  if (base !== undefined && typeof base !== 'string') throw new SophiaError('E_CONFIG', `loadDataset: ${file} entry ${JSON.stringify(name)}: image_base_path must be a string, got ${describe(base)}`);
  const columns = entry.columns;
  if (columns !== undefined) checkColumns(columns, `${file} entry ${JSON.stringify(name)}: columns`);
  const dir = path.dirname(file);
  return { file: path.resolve(dir, dataFile), imageBaseDir: base === undefined ? undefined : path.resolve(dir, base), columns: columns as RegistryEntry['columns'] };
}

const FIELDS: readonly DatasetField[] = ['id', 'prompt', 'answer', 'problemType', 'options', 'images', 'dataSource'];
// the registry's own spelling of fields, as in the released dataset_info.json
const FIELD_ALIASES: Record<string, DatasetField> = { problem_type: 'problemType', data_source: 'dataSource', problem_id: 'id' };

function checkColumns(columns: unknown, what: string): asserts columns is Record<string, string> {
  if (columns === null || typeof columns !== 'object' || Array.isArray(columns)) throw new SophiaError('E_CONFIG', `loadDataset: ${what} must map source columns to fields, got ${describe(columns)}`);
  for (const [column, field] of Object.entries(columns)) {
    const f = typeof field === 'string' ? (FIELD_ALIASES[field] ?? field) : field;
    if (!FIELDS.includes(f as DatasetField)) {
      throw new SophiaError('E_CONFIG', `loadDataset: ${what}.${column} must be one of ${FIELDS.join(', ')}, got ${describe(field)}`);
    }
  }
}

function positive(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw new SophiaError('E_CONFIG', `loadDataset: ${name} must be an integer >= 1, got ${describe(value)}`);
  return value;
}

/**
 * Opens a dataset: a JSON (list of rows), JSONL or Parquet file, or a name in the dataset_info.json
 * registry. Nothing is decoded until the rows are iterated.
 */
export async function loadDataset(nameOrPath: string, opts: LoadDatasetOptions = {}): Promise<Dataset> {
  if (typeof nameOrPath !== 'string' || nameOrPath.length === 0) throw new SophiaError('E_TYPE', `loadDataset: nameOrPath must be a non-empty string, got ${describe(nameOrPath)}`);
  const onBadRow = opts.onBadRow ?? 'error';
  if (onBadRow !== 'skip' && onBadRow !== 'error') throw new SophiaError('E_CONFIG', `loadDataset: onBadRow must be 'skip' or 'error', got ${describe(onBadRow)}`);
  const minPixels = positive('minPixels', opts.minPixels, 262_144);
  const maxPixels = positive('maxPixels', opts.maxPixels, 4_194_304);
  const maxDecodePixels = positive('maxDecodePixels', opts.maxDecodePixels, MAX_DECODE_PIXELS);
  if (minPixels > maxPixels) throw new SophiaError('E_CONFIG', `loadDataset: minPixels (${minPixels}) must not exceed maxPixels (${maxPixels})`);
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed)) throw new SophiaError('E_CONFIG', `loadDataset: seed must be an integer, got ${describe(seed)}`);

  let entry: RegistryEntry;
  const asFile = path.resolve(nameOrPath);
  if (fs.existsSync(asFile) && fs.statSync(asFile).isFile()) entry = { file: asFile };
  else entry = await lookUp(nameOrPath, opts.registry);

  const columns: Record<string, DatasetField> = {};
  for (const src of [opts.columns, entry.columns]) {
    if (src === undefined) continue;
    checkColumns(src, 'columns');
    for (const [c, f] of Object.entries(src)) if (!(c in columns)) columns[c] = FIELD_ALIASES[f] ?? f;
  }
  for (const [c, f] of Object.entries(DEFAULT_COLUMNS)) if (!(c in columns)) columns[c] = f;

  const format = opts.format ?? ({ '.json': 'json', '.jsonl': 'jsonl', '.parquet': 'parquet' } as const)[path.extname(entry.file).toLowerCase() as '.json'];
  if (format === undefined) throw new SophiaError('E_CONFIG', `loadDataset: cannot tell the format of ${entry.file}; expected .json, .jsonl or .parquet, or pass format`);
  const chunkRows = positive('chunkRows', opts.chunkRows, 256);
  const readTimeoutMs = positive('readTimeoutMs', opts.readTimeoutMs, PARQUET_READ_MS);
  const source = format === 'json' ? await jsonSource(entry.file) : format === 'jsonl' ? await jsonlSource(entry.file) : await parquetSource(entry.file, chunkRows, readTimeoutMs);

  const imageBaseDir = path.resolve(opts.imageBaseDir ?? entry.imageBaseDir ?? path.dirname(entry.file));
  return new Dataset(path.basename(entry.file), source, imageBaseDir, columns, {
    minPixels, maxPixels, maxDecodePixels, seed, onBadRow, chunkRows,
    decodeImages: opts.decodeImages ?? true,
    shuffle: opts.shuffle ?? false,
  });
}
