import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SophiaError } from '../../lib/errors';
import {
  asFloat32,
  checkTensorSpec,
  parseSafetensors,
  readSafetensors,
  writeSafetensors,
  type SafeTensor,
  type SafeTensorInput,
} from '../../lib/model/safetensors';

/** mulberry32: a small seeded generator so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const bytesOf = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
const f32FromBits = (bits: number[]): Float32Array => new Float32Array(Uint32Array.from(bits).buffer);

/** A safetensors file from a header string (not padded) and data bytes, as the published format describes. */
function handBuilt(header: string, data: ArrayLike<number> = []): Uint8Array {
  const h = Buffer.from(header, 'utf8');
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** The error's code, or undefined when nothing was thrown; anything that is not a SophiaError fails the test. */
async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof SophiaError)) throw err;
    return err.code;
  }
  return undefined;
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-st-'));
});
afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

function sample(): SafeTensorInput[] {
  const special = f32FromBits([
    0x7fc00001, // quiet NaN with a payload
    0xffc12345, // negative quiet NaN with a payload
    0x7f800001, // signalling NaN
    0x80000000, // -0
    0x7f800000, // +Inf
    0xff800000, // -Inf
    0x00000001, // smallest subnormal
    0x3f800000, // 1
  ]);
  return [
    { name: 'w.f32', dtype: 'F32', shape: [2, 4], data: special },
    { name: 'w.bf16', dtype: 'BF16', shape: [3], data: Uint16Array.from([0x7fc1, 0x8000, 0x3f80]) },
    { name: 'w.f16', dtype: 'F16', shape: [2], data: Uint16Array.from([0x7e01, 0x0001]) },
    { name: 'idx.i32', dtype: 'I32', shape: [3], data: Int32Array.from([-1, 0x7fffffff, -0x80000000]) },
    { name: 'idx.i64', dtype: 'I64', shape: [1, 2], data: BigInt64Array.from([-2n, 2n ** 62n]) },
    { name: 'mask.u8', dtype: 'U8', shape: [5], data: Uint8Array.from([0, 1, 2, 254, 255]) }, // odd length
    { name: 'ref.f64', dtype: 'F64', shape: [2], data: Float64Array.from([Math.PI, -0]) },
    { name: 'empty', dtype: 'F32', shape: [0], data: new Float32Array(0) },
    { name: 'empty2d', dtype: 'BF16', shape: [3, 0], data: new Uint16Array(0) },
    { name: 'scalar', dtype: 'F32', shape: [], data: Float32Array.of(2.5) },
  ];
}

describe('round trip', () => {
  test('bit-exact for every dtype, empty tensors and scalars, with metadata', async () => {
    const file = path.join(dir, 'model.safetensors');
    const tensors = sample();
    const metadata = { format: 'pt', note: 'ünïcödé ✓ "quoted"', empty: '' };
    await writeSafetensors(file, tensors, metadata);
    const back = await readSafetensors(file);
    expect(back.metadata).toEqual(metadata);
    expect([...back.tensors.keys()]).toEqual(tensors.map((t) => t.name).sort());
    for (const t of tensors) {
      const got = back.tensors.get(t.name)!;
      expect(got.name).toBe(t.name);
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      expect(Buffer.from(got.data).equals(Buffer.from(bytesOf(t.data)))).toBe(true);
    }
    // NaN payloads survive as bits, not just as "some NaN"
    expect(Array.from(new Uint32Array(asFloat32(back.tensors.get('w.f32')!).slice().buffer))).toEqual(Array.from(new Uint32Array(tensors[0].data.buffer)));
  });

  test('no metadata gives {} and writes no __metadata__ entry', async () => {
    const file = path.join(dir, 'a.safetensors');
    await writeSafetensors(file, [{ name: 'x', dtype: 'U8', shape: [1], data: Uint8Array.of(7) }]);
    const back = await readSafetensors(file);
    expect(back.metadata).toEqual({});
    expect(fs.readFileSync(file).toString('latin1')).not.toContain('__metadata__');
  });

  test('no tensors at all', async () => {
    const file = path.join(dir, 'none.safetensors');
    await writeSafetensors(file, [], { a: 'b' });
    const back = await readSafetensors(file);
    expect(back.tensors.size).toBe(0);
    expect(back.metadata).toEqual({ a: 'b' });
  });

  test('random tensors of random dtypes and shapes', async () => {
    const r = rng(99);
    const dtypes = ['F32', 'F16', 'BF16', 'I32', 'I64', 'U8', 'F64'] as const;
    const size = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1, F64: 8 };
    for (let trial = 0; trial < 10; trial++) {
      const tensors: SafeTensorInput[] = [];
      const count = Math.floor(r() * 12);
      for (let i = 0; i < count; i++) {
        const dtype = dtypes[Math.floor(r() * dtypes.length)];
        const shape = Array.from({ length: Math.floor(r() * 4) }, () => Math.floor(r() * 5));
        const n = shape.reduce((a, b) => a * b, 1);
        const data = new Uint8Array(n * size[dtype]).map(() => Math.floor(r() * 256));
        tensors.push({ name: `layer${Math.floor(r() * 1000)}.t${i}`, dtype, shape, data });
      }
      const file = path.join(dir, `r${trial}.safetensors`);
      await writeSafetensors(file, tensors);
      const back = await readSafetensors(file);
      expect(back.tensors.size).toBe(tensors.length);
      for (const t of tensors) {
        const got = back.tensors.get(t.name)!;
        expect([got.dtype, got.shape]).toEqual([t.dtype, t.shape]);
        expect(Buffer.from(got.data).equals(Buffer.from(bytesOf(t.data)))).toBe(true);
        // the writer lays data out so every tensor is aligned to its element size
        expect(got.data.byteOffset % size[t.dtype]).toBe(0);
      }
    }
  });

  test('file layout: header padded with spaces to a multiple of 8, names in order, data contiguous', async () => {
    const file = path.join(dir, 'layout.safetensors');
    await writeSafetensors(file, sample(), { k: 'v' });
    const buf = fs.readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const headerText = buf.subarray(8, 8 + n).toString('utf8');
    expect(headerText.trimEnd().length).toBeGreaterThan(n - 8);
    expect(headerText.slice(headerText.trimEnd().length)).toMatch(/^ *$/);
    const header = JSON.parse(headerText);
    const names = Object.keys(header);
    expect(names[0]).toBe('__metadata__');
    expect(names.slice(1)).toEqual([...names.slice(1)].sort());
    const spans = names.slice(1).map((k) => header[k].data_offsets as [number, number]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let at = 0;
    for (const [b, e] of spans) {
      expect(b).toBe(at);
      at = e;
    }
    expect(at).toBe(buf.length - 8 - n);
  });
});

describe('interoperability with the published format', () => {
  // the bytes HuggingFace's safetensors writes for {"test": torch.zeros((2, 2), dtype=torch.int32)}
  const hf = Buffer.concat([
    Buffer.from([0x40, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from('{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}    ', 'latin1'),
    Buffer.alloc(16),
  ]);

  test('our writer produces byte-identical output', async () => {
    const file = path.join(dir, 'hf.safetensors');
    await writeSafetensors(file, [{ name: 'test', dtype: 'I32', shape: [2, 2], data: new Int32Array(4) }]);
    expect(fs.readFileSync(file).equals(hf)).toBe(true);
  });

  test('we read it', () => {
    const { tensors, metadata } = parseSafetensors(new Uint8Array(hf));
    expect(metadata).toEqual({});
    expect(tensors.get('test')).toMatchObject({ dtype: 'I32', shape: [2, 2] });
    expect(Array.from(tensors.get('test')!.data)).toEqual(new Array(16).fill(0));
  });

  test('a hand-built file: unpadded header, metadata last, data not in name order, unaligned F32', async () => {
    const b = Float32Array.of(1.5, -2);
    const a = Uint8Array.of(9, 8, 7);
    const header = JSON.stringify({
      b: { dtype: 'F32', shape: [2], data_offsets: [3, 11] },
      a: { dtype: 'U8', shape: [3], data_offsets: [0, 3] },
      __metadata__: { format: 'pt' },
    });
    const file = path.join(dir, 'hand.safetensors');
    fs.writeFileSync(file, handBuilt(header, [...a, ...bytesOf(b)]));
    const { tensors, metadata } = await readSafetensors(file);
    expect(metadata).toEqual({ format: 'pt' });
    expect([...tensors.keys()]).toEqual(['a', 'b']);
    expect(Array.from(tensors.get('a')!.data)).toEqual([9, 8, 7]);
    const bt = tensors.get('b')!;
    expect(bt.data.byteOffset % 4).not.toBe(0);
    expect(Array.from(asFloat32(bt))).toEqual([1.5, -2]);
  });

  test('null __metadata__ is accepted as none (as HuggingFace does)', () => {
    expect(parseSafetensors(handBuilt('{"__metadata__":null}')).metadata).toEqual({});
  });
});

describe('corrupt files: E_IO naming the file and the problem', () => {
  const F32x2 = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const cases: [string, Uint8Array, RegExp][] = [
    ['empty file', new Uint8Array(0), /0 bytes long, shorter than the 8-byte header length/],
    ['7 bytes', new Uint8Array(7), /7 bytes long/],
    ['header length past the end', (() => { const b = handBuilt('{}'); b[0] = 3; return b; })(), /header length 3 runs past the end of the file \(2 bytes/],
    ['absurd header length', (() => { const b = handBuilt('{}'); new DataView(b.buffer).setBigUint64(0, 2n ** 63n, true); return b; })(), /header length 9223372036854775808 is larger than the 104857600-byte limit/],
    ['header length 0', handBuilt(''), /not valid JSON/],
    ['header not JSON', handBuilt('{"a": '), /not valid JSON/],
    ['header invalid UTF-8', (() => { const b = handBuilt('{"\u00e9":1}'); b[11] = 0xff; return b; })(), /not valid UTF-8/],
    ['header with a byte-order mark', handBuilt('\ufeff{}'), /not valid JSON/],
    ['header an array', handBuilt('[]'), /header is an array of length 0, not a JSON object/],
    ['header a string', handBuilt('"x"'), /header is "x", not a JSON object/],
    ['header null', handBuilt('null'), /header is null, not a JSON object/],
    ['trailing garbage after the JSON', handBuilt('{}  x'), /not valid JSON/],
    ['duplicate tensor names', handBuilt(`{"a":${JSON.stringify(F32x2)},"a":${JSON.stringify(F32x2)}}`, new Uint8Array(8)), /the key "a" twice/],
    ['duplicate field in a tensor', handBuilt('{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8)), /the key "a"\."dtype" twice/],
    ['duplicate metadata key', handBuilt('{"__metadata__":{"k":"1","k":"2"}}'), /the key "__metadata__"\."k" twice/],
    ['duplicate key spelled with an escape', handBuilt('{"__metadata__":{"k\\u0031":"1","k1":"2"}}'), /the key "__metadata__"\."k1" twice/],
    ['duplicate key after strings holding brackets and quotes', handBuilt('{"__metadata__":{"{[\\"":"}]\\",","k":"1","k":"2"}}'), /the key "__metadata__"\."k" twice/],
    ['metadata not an object', handBuilt('{"__metadata__":["x"]}'), /__metadata__ is an array of length 1, not an object of strings/],
    ['metadata value not a string', handBuilt('{"__metadata__":{"step":3}}'), /__metadata__\["step"\] is 3, not a string/],
    ['tensor entry not an object', handBuilt('{"a":5}'), /tensor "a" is 5, not an object/],
    ['unknown field in a tensor', handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', new Uint8Array(8)), /tensor "a" has an unknown field "x"/],
    ['unknown dtype', handBuilt('{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8)), /tensor "a" has dtype "F33"; supported: /],
    ['lower-case dtype', handBuilt('{"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8)), /dtype "f32"/],
    ['missing dtype', handBuilt('{"a":{"shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8)), /tensor "a" has dtype undefined/],
    ['negative dimension', handBuilt('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', new Uint8Array(8)), /tensor "a" has shape \[-2\]; expected non-negative integers/],
    ['fractional dimension', handBuilt('{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,10]}}', new Uint8Array(10)), /shape \[2\.5\]/],
    ['string dimension', handBuilt('{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}', new Uint8Array(8)), /shape \["2"\]/],
    ['shape not an array', handBuilt('{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}', new Uint8Array(8)), /shape 2;/],
    ['huge shape product', handBuilt('{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', new Uint8Array(8)), /shape \[4294967296,4294967296\]/],
    ['offsets of the wrong size', handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', new Uint8Array(4)), /tensor "a" \(F32 \[2\]\) needs 8 bytes but data_offsets \[0, 4\] hold 4/],
    ['offsets reversed', handBuilt('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', new Uint8Array(8)), /data_offsets \[8,0\]; expected \[begin, end\]/],
    ['negative offset', handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}'), /data_offsets \[-8,0\]/],
    ['three offsets', handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}', new Uint8Array(8)), /data_offsets \[0,8,8\]/],
    ['missing offsets', handBuilt('{"a":{"dtype":"F32","shape":[2]}}', new Uint8Array(8)), /data_offsets undefined/],
    ['offsets past the end', handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', new Uint8Array(8)), /tensor "a" data_offsets \[4, 12\] run past the end of the data \(8 bytes\)/],
    ['overlapping tensors', handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', new Uint8Array(12)), /tensor "b" \[4, 12\] overlaps tensor "a"/],
    ['two tensors on the same bytes', handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8)), /overlaps/],
    ['gap between tensors', handBuilt('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', new Uint8Array(12)), /bytes \[4, 8\) of the data belong to no tensor/],
    ['gap at the start', handBuilt('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8)), /bytes \[0, 4\) of the data belong to no tensor/],
    ['trailing bytes', handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(9)), /1 bytes after the last tensor's data belong to no tensor/],
    ['data but no tensors', handBuilt('{}', new Uint8Array(3)), /3 bytes after the last tensor/],
  ];

  test.each(cases)('%s', async (_name, bytes, message) => {
    const file = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(file, bytes);
    const err = await readSafetensors(file).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).code).toBe('E_IO');
    expect((err as SophiaError).message).toContain(`${file} is not a valid safetensors file: `);
    expect((err as SophiaError).message).toMatch(message);
  });

  test('truncating a valid file anywhere gives E_IO', async () => {
    const file = path.join(dir, 'good.safetensors');
    await writeSafetensors(file, sample(), { a: 'b' });
    const full = fs.readFileSync(file);
    const r = rng(5);
    const cuts = new Set<number>([0, 1, 7, 8, 9, full.length - 1]);
    while (cuts.size < 80) cuts.add(Math.floor(r() * full.length));
    const cut = path.join(dir, 'cut.safetensors');
    for (const n of cuts) {
      fs.writeFileSync(cut, full.subarray(0, n));
      expect([n, await codeOf(readSafetensors(cut))]).toEqual([n, 'E_IO']);
    }
  });

  test('appending bytes to a valid file gives E_IO', async () => {
    const file = path.join(dir, 'good.safetensors');
    await writeSafetensors(file, sample());
    fs.appendFileSync(file, Buffer.from([0]));
    expect(await codeOf(readSafetensors(file))).toBe('E_IO');
  });

  test('flipping header bytes gives E_IO or a file that still checks out, never another error', async () => {
    const file = path.join(dir, 'good.safetensors');
    await writeSafetensors(file, sample(), { a: 'b' });
    const full = new Uint8Array(fs.readFileSync(file));
    const n = Number(new DataView(full.buffer).getBigUint64(0, true));
    let rejected = 0;
    let accepted = 0;
    for (let pos = 0; pos < 8 + n; pos++) {
      for (const mask of [0x01, 0x20, 0x80]) {
        const bad = full.slice();
        bad[pos] ^= mask;
        try {
          const { tensors } = parseSafetensors(bad, 'flipped');
          // a flip inside a name or a metadata string can leave a valid file; it still covers all data
          let total = 0;
          for (const t of tensors.values()) total += t.data.byteLength;
          expect(total).toBe(full.length - 8 - n);
          accepted++;
        } catch (err) {
          expect(err).toBeInstanceOf(SophiaError);
          expect((err as SophiaError).code).toBe('E_IO');
          expect((err as SophiaError).message).toMatch(/^flipped is not a valid safetensors file: /);
          rejected++;
        }
      }
    }
    // flips in the length, the JSON syntax, dtypes, shapes, offsets and padding are all caught
    expect(rejected).toBeGreaterThan(accepted);
    // every flip in the 8 length bytes is caught
    for (let pos = 0; pos < 8; pos++) {
      const bad = full.slice();
      bad[pos] ^= 0x01;
      expect(() => parseSafetensors(bad)).toThrow(expect.objectContaining({ code: 'E_IO' }));
    }
  });

  test('unreadable files: E_IO naming the file', async () => {
    const missing = path.join(dir, 'nope.safetensors');
    await expect(readSafetensors(missing)).rejects.toThrow(expect.objectContaining({ code: 'E_IO', message: expect.stringContaining(`cannot read ${missing}`) }));
    await expect(readSafetensors(dir)).rejects.toThrow(expect.objectContaining({ code: 'E_IO', message: expect.stringContaining(dir) }));
    expect(await codeOf(readSafetensors(42 as never))).toBe('E_TYPE');
  });
});

describe('writeSafetensors argument checks', () => {
  const file = (): string => path.join(dir, 'out.safetensors');
  const ok = { name: 'x', dtype: 'F32' as const, shape: [2], data: new Float32Array(2) };
  const cases: [string, unknown, unknown, string, RegExp][] = [
    ['tensors not an array', {}, undefined, 'E_TYPE', /tensors must be an array/],
    ['data size mismatch', [{ ...ok, shape: [3] }], undefined, 'E_SHAPE', /tensor "x" \(F32 \[3\]\) needs 12 bytes of data, got 8/],
    ['bad dtype', [{ ...ok, dtype: 'f32' }], undefined, 'E_DTYPE', /tensor "x" has dtype "f32"/],
    ['negative dim', [{ ...ok, shape: [-2] }], undefined, 'E_SHAPE', /has shape/],
    ['fractional dim', [{ ...ok, shape: [1.5] }], undefined, 'E_SHAPE', /has shape/],
    ['data not a view', [{ ...ok, data: [0, 0] }], undefined, 'E_TYPE', /data must be a typed array/],
    ['duplicate names', [ok, ok], undefined, 'E_CONFIG', /two tensors are named "x"/],
    ['reserved name', [{ ...ok, name: '__metadata__' }], undefined, 'E_CONFIG', /reserves/],
    ['empty name', [{ ...ok, name: '' }], undefined, 'E_TYPE', /name must be a non-empty string/],
    ['metadata value not a string', [ok], { step: 3 }, 'E_TYPE', /metadata\["step"\] must be a string, got 3/],
  ];
  test.each(cases)('%s', async (_name, tensors, metadata, code, message) => {
    await expect(writeSafetensors(file(), tensors as never, metadata as never)).rejects.toThrow(expect.objectContaining({ code }));
    await expect(writeSafetensors(file(), tensors as never, metadata as never)).rejects.toThrow(message);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test('a tensor named __proto__ round-trips like any other name', async () => {
    const metadata = Object.fromEntries([['__proto__', 'm']]) as Record<string, string>;
    await writeSafetensors(file(), [{ ...ok, name: '__proto__' }], metadata);
    const back = await readSafetensors(file());
    expect([...back.tensors.keys()]).toEqual(['__proto__']);
    expect(Object.getOwnPropertyDescriptor(back.metadata, '__proto__')?.value).toBe('m');
    expect(Object.getPrototypeOf(back.metadata)).toBe(Object.prototype);
  });
});

describe('atomic writes', () => {
  const good = (v: number): SafeTensorInput[] => [{ name: 'w', dtype: 'F32', shape: [4], data: new Float32Array(4).fill(v) }];

  async function expectOldFileIntact(file: string, before: Buffer): Promise<void> {
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual([path.basename(file)]);
    expect(Array.from(asFloat32((await readSafetensors(file)).tensors.get('w')!))).toEqual([1, 1, 1, 1]);
  }

  test('a failing rename leaves the old file and no temp file', async () => {
    const file = path.join(dir, 'ckpt.safetensors');
    await writeSafetensors(file, good(1));
    const before = fs.readFileSync(file);
    jest.spyOn(fs.promises, 'rename').mockRejectedValueOnce(Object.assign(new Error('EXDEV: simulated'), { code: 'EXDEV' }));
    await expect(writeSafetensors(file, good(2))).rejects.toThrow(expect.objectContaining({ code: 'E_IO', message: expect.stringContaining(`cannot write ${file}: EXDEV`) }));
    await expectOldFileIntact(file, before);
  });

  test('a write failing half-way (disk full) leaves the old file and no temp file', async () => {
    const file = path.join(dir, 'ckpt.safetensors');
    await writeSafetensors(file, good(1));
    const before = fs.readFileSync(file);
    const realOpen = fs.promises.open;
    let tmpPath = '';
    jest.spyOn(fs.promises, 'open').mockImplementationOnce(async (p, flags, mode) => {
      tmpPath = String(p);
      const handle = await realOpen(p, flags, mode);
      let calls = 0;
      const realWrite = handle.write.bind(handle) as (...args: unknown[]) => Promise<unknown>;
      (handle as unknown as { write: unknown }).write = (...args: unknown[]) => {
        if (++calls === 2) return Promise.reject(Object.assign(new Error('ENOSPC: simulated'), { code: 'ENOSPC' }));
        return realWrite(...args);
      };
      return handle;
    });
    await expect(writeSafetensors(file, good(2))).rejects.toThrow(expect.objectContaining({ code: 'E_IO', message: expect.stringContaining('ENOSPC') }));
    // the temp file sat beside the target, under a hidden unique name
    expect(path.dirname(tmpPath)).toBe(dir);
    expect(path.basename(tmpPath)).toMatch(/^\.ckpt\.safetensors\.\d+\.[0-9a-f]{12}\.tmp$/);
    await expectOldFileIntact(file, before);
  });

  test('a failing fsync leaves the old file and no temp file', async () => {
    const file = path.join(dir, 'ckpt.safetensors');
    await writeSafetensors(file, good(1));
    const before = fs.readFileSync(file);
    const realOpen = fs.promises.open;
    jest.spyOn(fs.promises, 'open').mockImplementationOnce(async (p, flags, mode) => {
      const handle = await realOpen(p, flags, mode);
      (handle as unknown as { sync: unknown }).sync = () => Promise.reject(new Error('EIO: simulated'));
      return handle;
    });
    await expect(writeSafetensors(file, good(2))).rejects.toThrow(/EIO: simulated/);
    await expectOldFileIntact(file, before);
  });

  test('invalid input never touches the old file', async () => {
    const file = path.join(dir, 'ckpt.safetensors');
    await writeSafetensors(file, good(1));
    const before = fs.readFileSync(file);
    await expect(writeSafetensors(file, [{ name: 'w', dtype: 'F32', shape: [5], data: new Float32Array(4) }])).rejects.toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    await expectOldFileIntact(file, before);
  });

  test('a missing folder is E_IO and creates nothing', async () => {
    const file = path.join(dir, 'no', 'such', 'ckpt.safetensors');
    await expect(writeSafetensors(file, good(1))).rejects.toThrow(expect.objectContaining({ code: 'E_IO', message: expect.stringContaining(file) }));
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test('a successful write replaces the old file and leaves nothing else', async () => {
    const file = path.join(dir, 'ckpt.safetensors');
    await writeSafetensors(file, good(1));
    await writeSafetensors(file, good(3));
    expect(fs.readdirSync(dir)).toEqual(['ckpt.safetensors']);
    expect(Array.from(asFloat32((await readSafetensors(file)).tensors.get('w')!))).toEqual([3, 3, 3, 3]);
  });

  test('concurrent writes to one file: the last rename wins, the file is always whole', async () => {
    const file = path.join(dir, 'ckpt.safetensors');
    await Promise.all([1, 2, 3, 4, 5, 6].map((v) => writeSafetensors(file, good(v))));
    expect(fs.readdirSync(dir)).toEqual(['ckpt.safetensors']);
    const v = asFloat32((await readSafetensors(file)).tensors.get('w')!);
    expect(new Set(v).size).toBe(1);
  });
});

describe('asFloat32', () => {
  const tensor = (dtype: SafeTensor['dtype'], data: Uint8Array, shape = [data.byteLength]): SafeTensor => ({ name: 't', dtype, shape, data });

  test('F32: zero-copy when aligned, a copy when not', () => {
    const values = Float32Array.of(1, -2, 3.5);
    const aligned = new Uint8Array(16);
    aligned.set(bytesOf(values), 4);
    const t = tensor('F32', aligned.subarray(4, 16), [3]);
    const view = asFloat32(t);
    expect(Array.from(view)).toEqual([1, -2, 3.5]);
    expect(view.buffer).toBe(aligned.buffer);
    view[0] = 9;
    expect(asFloat32(t)[0]).toBe(9);

    const unaligned = new Uint8Array(16);
    unaligned.set(bytesOf(values), 1);
    const u = tensor('F32', unaligned.subarray(1, 13), [3]);
    const copy = asFloat32(u);
    expect(Array.from(copy)).toEqual([1, -2, 3.5]);
    expect(copy.buffer).not.toBe(unaligned.buffer);
  });

  test('F32 read from a file we wrote is zero-copy even after an odd-sized U8 tensor', async () => {
    const file = path.join(dir, 'mix.safetensors');
    await writeSafetensors(file, [
      { name: 'a', dtype: 'U8', shape: [3], data: Uint8Array.of(1, 2, 3) },
      { name: 'b', dtype: 'F32', shape: [2], data: Float32Array.of(4, 5) },
    ]);
    const t = (await readSafetensors(file)).tensors.get('b')!;
    expect(asFloat32(t).buffer).toBe(t.data.buffer);
  });

  test('BF16 widens exactly, NaN payloads kept, aligned or not', () => {
    const bits = [0x0000, 0x8000, 0x3f80, 0xc020, 0x7f80, 0xff80, 0x7fc1, 0xff81, 0x0001, 0x7f7f];
    const raw = new Uint8Array(1 + bits.length * 2);
    raw.set(bytesOf(Uint16Array.from(bits)), 1);
    const out = asFloat32(tensor('BF16', raw.subarray(1), [bits.length]));
    expect(Array.from(new Uint32Array(out.buffer))).toEqual(bits.map((b) => (b << 16) >>> 0));
    expect(out[2]).toBe(1);
    expect(out[3]).toBe(-2.5);
  });

  test('F16 widens exactly for all 65536 values (NaN payloads kept)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const out = asFloat32(tensor('F16', bytesOf(all), [65536]));
    const outBits = new Uint32Array(out.buffer);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >>> 10) & 0x1f;
      const mant = h & 0x3ff;
      if (exp === 31 && mant !== 0) {
        // NaN: same sign, quiet bit and payload moved up by 13 bits
        if (outBits[h] !== (((h & 0x8000) << 16) | 0x7f800000 | (mant << 13)) >>> 0) throw new Error(`f16 ${h.toString(16)}`);
        continue;
      }
      const expected = exp === 0 ? sign * mant * 2 ** -24 : exp === 31 ? sign * Infinity : sign * (1 + mant / 1024) * 2 ** (exp - 15);
      if (!Object.is(out[h], expected)) throw new Error(`f16 ${h.toString(16)}: got ${out[h]}, expected ${expected}`);
    }
  });

  test('other dtypes: E_DTYPE', () => {
    for (const dtype of ['I32', 'I64', 'U8', 'F64'] as const) {
      expect(() => asFloat32(tensor(dtype, new Uint8Array(8), [1]))).toThrow(expect.objectContaining({ code: 'E_DTYPE', message: expect.stringContaining(dtype) }));
    }
  });
});

describe('checkTensorSpec', () => {
  const t = (name: string, dtype: SafeTensor['dtype'], shape: number[]): [string, SafeTensor] => [name, { name, dtype, shape, data: new Uint8Array(0) }];

  test('passes when names, shapes and dtypes all match', () => {
    const got = new Map([t('a', 'F32', [2, 3]), t('b', 'BF16', [])]);
    expect(() => checkTensorSpec('m.safetensors', [{ name: 'b', dtype: 'BF16', shape: [] }, { name: 'a', dtype: 'F32', shape: [2, 3] }], got)).not.toThrow();
  });

  test('one error listing every difference', () => {
    const got = new Map([
      t('ok', 'F32', [4]),
      t('wrongShape', 'F32', [3, 2]),
      t('wrongRank', 'F32', [6]),
      t('wrongDtype', 'BF16', [4]),
      t('wrongBoth', 'F16', [1]),
      t('extra1', 'U8', [7]),
      t('extra2', 'I32', []),
    ]);
    const expected = [
      { name: 'ok', dtype: 'F32' as const, shape: [4] },
      { name: 'wrongShape', dtype: 'F32' as const, shape: [2, 3] },
      { name: 'wrongRank', dtype: 'F32' as const, shape: [2, 3] },
      { name: 'wrongDtype', dtype: 'F32' as const, shape: [4] },
      { name: 'wrongBoth', dtype: 'F32' as const, shape: [2] },
      { name: 'missing1', dtype: 'F32' as const, shape: [8, 8] },
      { name: 'missing2', dtype: 'I64', shape: [] } as const,
    ];
    let err: unknown;
    try {
      checkTensorSpec('/runs/a/ckpt.safetensors', expected as never, got);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SophiaError);
    const { code, message } = err as SophiaError;
    expect(code).toBe('E_SHAPE');
    expect(message.split('\n')).toEqual([
      '/runs/a/ckpt.safetensors does not hold the expected tensors (9 differences):',
      '  tensor "wrongShape": shape expected [2, 3], got [3, 2]',
      '  tensor "wrongRank": shape expected [2, 3], got [6]',
      '  tensor "wrongDtype": dtype expected F32, got BF16',
      '  tensor "wrongBoth": shape expected [2], got [1]',
      '  tensor "wrongBoth": dtype expected F32, got F16',
      '  missing tensor "missing1" (expected F32 [8, 8])',
      '  missing tensor "missing2" (expected I64 [])',
      '  unexpected tensor "extra1" (U8 [7])',
      '  unexpected tensor "extra2" (I32 [])',
    ]);
  });

  test('works on what readSafetensors returns', async () => {
    const file = path.join(dir, 'm.safetensors');
    await writeSafetensors(file, [{ name: 'w', dtype: 'F32', shape: [2], data: new Float32Array(2) }]);
    const { tensors } = await readSafetensors(file);
    expect(() => checkTensorSpec(file, [{ name: 'w', dtype: 'F32', shape: [2] }], tensors)).not.toThrow();
    expect(() => checkTensorSpec(file, [{ name: 'w', dtype: 'F32', shape: [1, 2] }], tensors)).toThrow(/1 difference\):\n {2}tensor "w": shape expected \[1, 2\], got \[2\]/);
  });
});
