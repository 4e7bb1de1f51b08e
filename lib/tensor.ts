/**
 * Tensor: a typed array plus dtype and shape, on the host (zero-copy over the caller's array) or on
 * the GPU (a DeviceBuffer that `dispose()` frees; a FinalizationRegistry frees it if you forget).
 */
import { markAsUntransferable } from 'node:worker_threads';
import { SophiaError, describe } from './errors';
import { native, type DeviceBuffer } from './native';

export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'u8';
export type Device = 'cpu' | 'cuda';
export type HostArray = Float32Array | Uint16Array | Int32Array | Uint8Array;

const BYTES: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4, u8: 1 };

/** The typed array's class name, from any realm (instanceof fails across vm contexts). */
export function typedArrayKind(data: unknown): string | undefined {
  return ArrayBuffer.isView(data) ? Object.prototype.toString.call(data).slice(8, -1) : undefined;
}

function arrayDTypes(data: unknown): DType[] | undefined {
  switch (typedArrayKind(data)) {
    case 'Float32Array': return ['f32'];
    case 'Uint16Array': return ['bf16', 'f16'];
    case 'Int32Array': return ['i32'];
    case 'Uint8Array': return ['u8'];
    default: return undefined;
  }
}

function newHostArray(dtype: DType, length: number): HostArray {
  switch (dtype) {
    case 'f32': return new Float32Array(length);
    case 'bf16':
    case 'f16': return new Uint16Array(length);
    case 'i32': return new Int32Array(length);
    case 'u8': return new Uint8Array(length);
  }
}

const registry = new FinalizationRegistry<DeviceBuffer>((buffer) => {
  if (!buffer.disposed) buffer.free();
});

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly device: Device;
  #host: HostArray | undefined;
  #buffer: DeviceBuffer | undefined;
  #disposed = false;

  private constructor(dtype: DType, shape: readonly number[], host?: HostArray, buffer?: DeviceBuffer) {
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.#host = host;
    this.#buffer = buffer;
    this.device = buffer ? 'cuda' : 'cpu';
    if (buffer) registry.register(this, buffer, this);
  }

  /**
   * Wraps `data` without copying. `dtype` is required for Uint16Array ('bf16' or 'f16') and
   * otherwise follows the array type (Float32Array: f32, Int32Array: i32, Uint8Array: u8).
   */
  static from(data: HostArray, shape: readonly number[], dtype?: DType): Tensor {
    const allowed = arrayDTypes(data);
    if (!allowed)
      throw new SophiaError('E_TYPE', `Tensor.from: data must be a Float32Array, Uint16Array, Int32Array or Uint8Array, got ${describe(data)}`);
    if (dtype === undefined) {
      if (allowed.length > 1)
        throw new SophiaError('E_DTYPE', `Tensor.from: a Uint16Array needs dtype 'bf16' or 'f16', got undefined`);
      dtype = allowed[0];
    } else if (!allowed.includes(dtype)) {
      throw new SophiaError('E_DTYPE', `Tensor.from: dtype must be ${allowed.map((d) => `'${d}'`).join(' or ')} for ${describe(data)}, got ${describe(dtype)}`);
    }
    const size = checkShape('Tensor.from', shape);
    if (size !== data.length)
      throw new SophiaError('E_SHAPE', `Tensor.from: shape [${shape.join(', ')}] holds ${size} elements, but data has ${data.length}`);
    return new Tensor(dtype, shape, data);
  }

  /** A zero-filled host tensor. */
  static zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    return new Tensor(dtype, shape, newHostArray(dtype, checkShape('Tensor.zeros', shape)));
  }

  /** @internal Wraps device memory the addon returned. */
  static fromDeviceBuffer(buffer: DeviceBuffer, shape: readonly number[], dtype: DType): Tensor {
    return new Tensor(dtype, shape, undefined, buffer);
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get bytes(): number {
    return this.size * BYTES[this.dtype];
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The host array (shared, not copied). Device tensors must be brought back with toHost() first. */
  get data(): HostArray {
    this.#alive('data');
    if (!this.#host)
      throw new SophiaError('E_DEVICE', 'Tensor.data: this tensor lives on the GPU; call toHost() first');
    return this.#host;
  }

  /** @internal What the addon takes: the host array or the DeviceBuffer. */
  get nativeData(): HostArray | DeviceBuffer {
    this.#alive('use');
    return (this.#host ?? this.#buffer)!;
  }

  /** A new Float32Array with the values (bf16/f16 widened exactly; device tensors copied back). */
  toFloat32(): Float32Array {
    const host = this.device === 'cpu' ? this.data : this.toHost().data;
    switch (this.dtype) {
      case 'bf16': return bf16ToFloat32(host as Uint16Array);
      case 'f16': return f16ToFloat32(host as Uint16Array);
      default: return Float32Array.from(host as Float32Array | Int32Array | Uint8Array);
    }
  }

  /** A copy on the GPU. Needs the CUDA backend (SOPHIA_DEVICE=cuda, or auto with a usable GPU). */
  toDevice(): Tensor {
    this.#alive('toDevice');
    if (this.device === 'cuda') return this;
    const b = native();
    if (b.backend !== 'cuda')
      throw new SophiaError('E_DEVICE', `Tensor.toDevice: the active backend is cpu (${b.line.replace(/^sophia-rl: /, '')})`);
    const buffer = new b.addon.DeviceBuffer(this.bytes);
    try {
      buffer.copyFrom(this.#host!);
    } catch (err) {
      buffer.free();
      throw err;
    }
    return new Tensor(this.dtype, this.shape, undefined, buffer);
  }

  /** A host copy of a device tensor (a host tensor returns itself). */
  toHost(): Tensor {
    this.#alive('toHost');
    if (this.device === 'cpu') return this;
    const host = newHostArray(this.dtype, this.size);
    this.#buffer!.copyTo(host);
    return new Tensor(this.dtype, this.shape, host);
  }

  /** Frees device memory now (host tensors just drop their array). Safe to call twice. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#buffer) {
      registry.unregister(this);
      this.#buffer.free();
      this.#buffer = undefined;
    }
    this.#host = undefined;
  }

  #alive(what: string): void {
    if (this.#disposed) throw new SophiaError('E_DISPOSED', `Tensor.${what}: the tensor was disposed`);
  }
}

function checkShape(fn: string, shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw new SophiaError('E_TYPE', `${fn}: shape must be an array of integers, got ${describe(shape)}`);
  let size = 1;
  shape.forEach((d, i) => {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new SophiaError('E_SHAPE', `${fn}: shape[${i}] must be a non-negative integer, got ${describe(d)}`);
    size *= d;
  });
  if (!Number.isSafeInteger(size)) throw new SophiaError('E_RANGE', `${fn}: shape [${shape.join(', ')}] is too large`);
  return size;
}

// ---- bf16 / f16 conversions, round to nearest even (the same rules as native/include/sophia/common.h)

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function floatToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  const u = u32Scratch[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToFloat(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0];
}

export function floatToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const u = u32Scratch[0];
  const sign = (u >>> 16) & 0x8000;
  let a = u & 0x7fffffff;
  if (a >= 0x47800000) return sign | (a > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (a < 0x38800000) {
    // Below the smallest normal: adding 0.5 lets the f32 rounding place the f16 subnormal grid.
    u32Scratch[0] = a;
    f32Scratch[0] = f32Scratch[0] + 0.5;
    return sign | (u32Scratch[0] - 0x3f000000);
  }
  const odd = (a >>> 13) & 1;
  a = (a + 0xc8000fff + odd) >>> 0;
  return sign | (a >>> 13);
}

export function f16BitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function float32ToBf16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = floatToBf16Bits(src[i]);
  return out;
}

export function bf16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

export function float32ToF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = floatToF16Bits(src[i]);
  return out;
}

export function f16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16BitsToFloat(src[i]);
  return out;
}

/** Converts host values to a tensor of the given float dtype (a copy). */
export function tensorOf(values: ArrayLike<number>, shape: readonly number[], dtype: 'f32' | 'bf16' | 'f16' = 'f32'): Tensor {
  const data = dtype === 'f32' ? Float32Array.from(values) : dtype === 'bf16' ? float32ToBf16(values) : float32ToF16(values);
  return Tensor.from(data, shape, dtype);
}


/**
 * Keeps the memory of buffers an async kernel reads or writes in place valid while it runs: marks
 * their ArrayBuffers untransferable (worker_threads.markAsUntransferable), so a transfer
 * (structuredClone, postMessage) copies them instead of detaching them and freeing the memory
 * under the kernel. The mark stays on the buffer. The small inputs (labels, offsets, masks, token
 * ids) are copied by the addon instead. Other values are ignored.
 */
export function holdForAsync(...values: unknown[]): void {
  for (const v of values) {
    if (!ArrayBuffer.isView(v)) continue;
    // By tag, not instanceof: a buffer made in another realm (a vm context, a test runner) counts too.
    const buf = v.buffer;
    if (Object.prototype.toString.call(buf) === '[object ArrayBuffer]') markAsUntransferable(buf);
  }
}
