/**
 * The safetensors checkpoint format (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON header, then the raw little-endian tensor data.
 * Files written here load in the HuggingFace libraries and the other way round. Tensor bytes are
 * taken and given as host memory, so this assumes a little-endian host (x64 and arm64 are).
 *
 * A corrupt file is an E_IO error (sophia-rl has no separate format code): the message says
 * "not a valid safetensors file", names the file and what is wrong.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SophiaError, describe } from '../errors';

export type SafeDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8' | 'F64';

export const SAFE_DTYPE_BYTES: Readonly<Record<SafeDType, number>> = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, U8: 1 };

export interface SafeTensor {
  name: string;
  dtype: SafeDType;
  shape: number[];
  /** The raw little-endian bytes (a view into the file's bytes, not a copy). */
  data: Uint8Array;
}

export interface SafeTensorInput {
  name: string;
  dtype: SafeDType;
  shape: number[];
  /** Exactly product(shape) × bytes(dtype) bytes, in host (little-endian) order. */
  data: ArrayBufferView;
}

/** Headers larger than this are refused: real ones are kilobytes, and a garbage length must not allocate gigabytes. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const METADATA_KEY = '__metadata__';

function isDType(v: unknown): v is SafeDType {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(SAFE_DTYPE_BYTES, v);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** product(shape), or undefined when the shape is not a list of non-negative integers with a safe product. */
function elementCount(shape: unknown): number | undefined {
  if (!Array.isArray(shape)) return undefined;
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return undefined;
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

const shapeText = (shape: readonly unknown[]): string => `[${shape.join(', ')}]`;

/**
 * Writes tensors and optional string metadata as a safetensors file, atomically: a uniquely named
 * temp file in the target's folder, fsync, rename over the target, fsync of the folder. A failure
 * at any point leaves the previous file as it was and removes the temp file.
 *
 * The header lists tensors by name; the data is laid out by element size (largest first), then
 * name (the HuggingFace writer also orders by dtype), so every tensor starts aligned to its element size.
 */
export async function writeSafetensors(file: string, tensors: SafeTensorInput[], metadata?: Record<string, string>): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) throw new SophiaError('E_TYPE', `writeSafetensors: file must be a path, got ${describe(file)}`);
  const { header, blobs } = buildFile(file, tensors, metadata);

  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(tmp, 'wx', 0o644);
    let position = 0;
    for (const blob of [header, ...blobs]) {
      let done = 0;
      while (done < blob.byteLength) {
        const { bytesWritten } = await handle.write(blob, done, blob.byteLength - done, position);
        done += bytesWritten;
        position += bytesWritten;
      }
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.promises.rename(tmp, file);
  } catch (err) {
    if (handle) await handle.close().catch(() => undefined);
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw new SophiaError('E_IO', `writeSafetensors: cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
  await syncDirectory(dir);
}

/** Makes a rename durable; some platforms (Windows) and file systems cannot open or sync a folder, which is fine. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(dir, 'r');
    await handle.sync();
  } catch {
    // best effort: the data itself is already synced
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function buildFile(file: string, tensors: SafeTensorInput[], metadata: Record<string, string> | undefined): { header: Uint8Array; blobs: Uint8Array[] } {
  const where = `writeSafetensors(${file})`;
  if (!Array.isArray(tensors)) throw new SophiaError('E_TYPE', `${where}: tensors must be an array, got ${describe(tensors)}`);
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw new SophiaError('E_TYPE', `${where}: metadata must be an object of strings, got ${describe(metadata)}`);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SophiaError('E_TYPE', `${where}: metadata[${JSON.stringify(k)}] must be a string, got ${describe(v)}`);
    }
  }
  const seen = new Set<string>();
  const items = tensors.map((t, i) => {
    if (!isPlainObject(t)) throw new SophiaError('E_TYPE', `${where}: tensors[${i}] must be an object, got ${describe(t)}`);
    const { name, dtype, shape, data } = t;
    if (typeof name !== 'string' || name.length === 0) throw new SophiaError('E_TYPE', `${where}: tensors[${i}].name must be a non-empty string, got ${describe(name)}`);
    if (name === METADATA_KEY) throw new SophiaError('E_CONFIG', `${where}: tensors[${i}] is named ${METADATA_KEY}, which the format reserves`);
    if (seen.has(name)) throw new SophiaError('E_CONFIG', `${where}: two tensors are named ${JSON.stringify(name)}`);
    seen.add(name);
    if (!isDType(dtype)) throw new SophiaError('E_DTYPE', `${where}: tensor ${JSON.stringify(name)} has dtype ${describe(dtype)}; expected one of ${Object.keys(SAFE_DTYPE_BYTES).join(', ')}`);
    const count = elementCount(shape);
    if (count === undefined) throw new SophiaError('E_SHAPE', `${where}: tensor ${JSON.stringify(name)} has shape ${describe(shape)}; expected an array of non-negative integers`);
    if (!ArrayBuffer.isView(data)) throw new SophiaError('E_TYPE', `${where}: tensor ${JSON.stringify(name)} data must be a typed array or DataView, got ${describe(data)}`);
    const bytes = count * SAFE_DTYPE_BYTES[dtype];
    if (data.byteLength !== bytes) {
      throw new SophiaError('E_SHAPE', `${where}: tensor ${JSON.stringify(name)} (${dtype} ${shapeText(shape)}) needs ${bytes} bytes of data, got ${data.byteLength}`);
    }
    return { name, dtype, shape: [...shape], bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  });

  const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const layout = [...items].sort((a, b) => SAFE_DTYPE_BYTES[b.dtype] - SAFE_DTYPE_BYTES[a.dtype] || byName(a, b));
  const offsets = new Map<string, [number, number]>();
  let offset = 0;
  for (const t of layout) {
    offsets.set(t.name, [offset, offset + t.bytes.byteLength]);
    offset += t.bytes.byteLength;
  }
  // fromEntries defines own properties, so a tensor named "__proto__" is written like any other
  const json = Object.fromEntries([
    ...(metadata !== undefined && Object.keys(metadata).length > 0 ? [[METADATA_KEY, { ...metadata }]] : []),
    ...[...items].sort(byName).map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data_offsets: offsets.get(t.name) }]),
  ]);

  const text = Buffer.from(JSON.stringify(json), 'utf8');
  const padded = Math.ceil(text.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) throw new SophiaError('E_RANGE', `${where}: the header would be ${padded} bytes, more than the ${MAX_HEADER_BYTES} readers accept`);
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(text, 8);
  return { header, blobs: layout.map((t) => t.bytes) };
}

/**
 * Reads a whole safetensors file and checks it completely: E_IO when the file cannot be read or
 * is not a valid safetensors file. Tensors come in name order; their data are views into one
 * buffer holding the file.
 */
export async function readSafetensors(file: string): Promise<{ tensors: Map<string, SafeTensor>; metadata: Record<string, string> }> {
  if (typeof file !== 'string' || file.length === 0) throw new SophiaError('E_TYPE', `readSafetensors: file must be a path, got ${describe(file)}`);
  const bytes = await readWholeFile(file);
  return parseSafetensors(bytes, file);
}

async function readWholeFile(file: string): Promise<Uint8Array> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(file, 'r');
    const { size } = await handle.stat();
    // a fresh buffer at offset 0, so tensors the writer aligned stay aligned in memory
    const bytes = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await handle.read(bytes, done, size - done, done);
      if (bytesRead === 0) throw new Error(`the file shrank to ${done} bytes while it was read (expected ${size})`);
      done += bytesRead;
    }
    return bytes;
  } catch (err) {
    throw new SophiaError('E_IO', `readSafetensors: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** Parses and validates safetensors bytes; `file` only names the source in errors. */
export function parseSafetensors(bytes: Uint8Array, file = '<buffer>'): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  const corrupt = (what: string): SophiaError => new SophiaError('E_IO', `${file} is not a valid safetensors file: ${what}`);
  if (bytes.byteLength < 8) throw corrupt(`it is ${bytes.byteLength} bytes long, shorter than the 8-byte header length`);
  const headerLen = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) throw corrupt(`the header length ${headerLen} is larger than the ${MAX_HEADER_BYTES}-byte limit`);
  if (headerLen > BigInt(bytes.byteLength - 8)) throw corrupt(`the header length ${headerLen} runs past the end of the file (${bytes.byteLength - 8} bytes after the length)`);
  const n = Number(headerLen);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw corrupt('the header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw corrupt(`the header is not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(header)) throw corrupt(`the header is ${describe(header)}, not a JSON object`);
  const duplicate = findDuplicateKey(text);
  if (duplicate !== undefined) throw corrupt(`the header has the key ${duplicate} twice`);

  const meta = header[METADATA_KEY] ?? {};
  if (!isPlainObject(meta)) throw corrupt(`${METADATA_KEY} is ${describe(meta)}, not an object of strings`);
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== 'string') throw corrupt(`${METADATA_KEY}[${JSON.stringify(k)}] is ${describe(v)}, not a string`);
  }
  const metadata = Object.fromEntries(Object.entries(meta)) as Record<string, string>;

  const dataStart = 8 + n;
  const dataLen = bytes.byteLength - dataStart;
  const entries: { name: string; dtype: SafeDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === METADATA_KEY) continue;
    const t = `tensor ${JSON.stringify(name)}`;
    if (!isPlainObject(entry)) throw corrupt(`${t} is ${describe(entry)}, not an object`);
    for (const key of Object.keys(entry)) {
      if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets') throw corrupt(`${t} has an unknown field ${JSON.stringify(key)}`);
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isDType(dtype)) throw corrupt(`${t} has dtype ${describe(dtype)}; supported: ${Object.keys(SAFE_DTYPE_BYTES).join(', ')}`);
    const count = elementCount(shape);
    if (count === undefined) throw corrupt(`${t} has shape ${Array.isArray(shape) ? JSON.stringify(shape) : describe(shape)}; expected non-negative integers`);
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      throw corrupt(`${t} has data_offsets ${Array.isArray(offsets) ? JSON.stringify(offsets) : describe(offsets)}; expected [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const size = count * SAFE_DTYPE_BYTES[dtype];
    if (end - begin !== size) throw corrupt(`${t} (${dtype} ${shapeText(shape as number[])}) needs ${size} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
    if (end > dataLen) throw corrupt(`${t} data_offsets [${begin}, ${end}] run past the end of the data (${dataLen} bytes)`);
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }

  // the data must be covered exactly once: no overlap, no gap, nothing after the last tensor
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let last: string | undefined;
  for (const e of byOffset) {
    if (e.begin < covered) throw corrupt(`tensor ${JSON.stringify(e.name)} [${e.begin}, ${e.end}] overlaps tensor ${JSON.stringify(last)} (ends at ${covered})`);
    if (e.begin > covered) throw corrupt(`bytes [${covered}, ${e.begin}) of the data belong to no tensor`);
    covered = e.end;
    last = e.name;
  }
  if (covered !== dataLen) throw corrupt(`${dataLen - covered} bytes after the last tensor's data belong to no tensor`);

  const tensors = new Map<string, SafeTensor>();
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    tensors.set(e.name, { name: e.name, dtype: e.dtype, shape: e.shape, data: bytes.subarray(dataStart + e.begin, dataStart + e.end) });
  }
  return { tensors, metadata };
}

/**
 * JSON.parse keeps the last of two equal keys silently; a header with duplicates is ambiguous, so
 * this finds them. `text` must already be valid JSON. Returns the duplicate key with its path.
 */
function findDuplicateKey(text: string): string | undefined {
  const stack: { keys: Set<string> | null; path: string }[] = [];
  let expectKey = false;
  let lastKey = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        const top = stack[stack.length - 1];
        const full = top.path ? `${top.path}.${JSON.stringify(key)}` : JSON.stringify(key);
        if (top.keys!.has(key)) return full;
        top.keys!.add(key);
        lastKey = full;
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const top = stack[stack.length - 1];
      // a value's path: the key before it, or inside an array the array's own path
      const where = top && top.keys === null ? top.path : lastKey;
      stack.push({ keys: c === 0x7b ? new Set() : null, path: where });
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1]?.keys != null;
    }
  }
  return undefined;
}

/**
 * The tensor's values as float32: F32 without a copy when its bytes are 4-byte aligned (a view
 * into the file buffer: writing to it changes the tensor), else a copy; BF16 and F16 widened
 * exactly (NaN payloads kept). Other dtypes: E_DTYPE.
 */
export function asFloat32(t: SafeTensor): Float32Array {
  const { data } = t;
  switch (t.dtype) {
    case 'F32': {
      const n = data.byteLength / 4;
      if (data.byteOffset % 4 === 0) return new Float32Array(data.buffer, data.byteOffset, n);
      const copy = new Float32Array(n);
      new Uint8Array(copy.buffer).set(data);
      return copy;
    }
    case 'BF16': {
      const n = data.byteLength / 2;
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = ((data[2 * i] | (data[2 * i + 1] << 8)) << 16) >>> 0;
      return out;
    }
    case 'F16': {
      const n = data.byteLength / 2;
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = f16BitsToF32Bits(data[2 * i] | (data[2 * i + 1] << 8));
      return out;
    }
    default:
      throw new SophiaError('E_DTYPE', `asFloat32: tensor ${JSON.stringify(t.name)} is ${describe(t.dtype)}; only F32, BF16 and F16 convert to float32`);
  }
}

/** IEEE half → single bits, exact: subnormals normalised, Inf and NaN (with payload) kept. */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // subnormal: shift the leading 1 into the implicit bit
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/**
 * Checks that a checkpoint holds exactly the expected tensors. Throws one E_SHAPE error listing
 * every difference (missing and unexpected names, shape and dtype mismatches), naming the file.
 */
export function checkTensorSpec(file: string, expected: { name: string; shape: number[]; dtype: SafeDType }[], got: Map<string, SafeTensor>): void {
  const problems: string[] = [];
  const wanted = new Set<string>();
  for (const e of expected) {
    wanted.add(e.name);
    const t = got.get(e.name);
    if (!t) {
      problems.push(`missing tensor ${JSON.stringify(e.name)} (expected ${e.dtype} ${shapeText(e.shape)})`);
      continue;
    }
    if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      problems.push(`tensor ${JSON.stringify(e.name)}: shape expected ${shapeText(e.shape)}, got ${shapeText(t.shape)}`);
    }
    if (t.dtype !== e.dtype) problems.push(`tensor ${JSON.stringify(e.name)}: dtype expected ${e.dtype}, got ${t.dtype}`);
  }
  for (const [name, t] of got) {
    if (!wanted.has(name)) problems.push(`unexpected tensor ${JSON.stringify(name)} (${t.dtype} ${shapeText(t.shape)})`);
  }
  if (problems.length > 0) {
    const n = problems.length;
    throw new SophiaError('E_SHAPE', `${file} does not hold the expected tensors (${n} difference${n === 1 ? '' : 's'}):\n  ${problems.join('\n  ')}`);
  }
}
