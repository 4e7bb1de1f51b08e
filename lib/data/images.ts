/** Image decoding (PNG, JPEG), resizing into a pixel budget, and PNG encoding, in pure JS. */
import { Worker } from 'node:worker_threads';
import * as jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { SophiaError, describe } from '../errors';

/** An 8-bit RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export type ImageFormat = 'png' | 'jpeg';

/** The format told by the first bytes, or null when neither PNG nor JPEG. */
export function imageFormat(bytes: Uint8Array): ImageFormat | null {
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return null;
}

function rgbaToRgb(rgba: Uint8Array, width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; q < out.length; p += 4, q += 3) {
    out[q] = rgba[p];
    out[q + 1] = rgba[p + 1];
    out[q + 2] = rgba[p + 2];
  }
  return out;
}

/** The most pixels decodeImage decodes by default (a 8192×8192 image): more is refused before decoding. */
export const MAX_DECODE_PIXELS = 67_108_864;

/**
 * The width and height an image declares in its header (PNG IHDR, JPEG SOFn), read without decoding;
 * null when the header is not there or not whole.
 */
export function declaredSize(bytes: Uint8Array): { width: number; height: number } | null {
  const format = imageFormat(bytes);
  const u16 = (i: number): number => (bytes[i] << 8) | bytes[i + 1];
  if (format === 'png') {
    if (bytes.length < 24) return null;
    const u32 = (i: number): number => ((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]) >>> 0;
    return { width: u32(16), height: u32(20) };
  }
  if (format === 'jpeg') {
    // Walk the marker segments up to the first start-of-frame.
    let i = 2;
    while (i + 9 < bytes.length) {
      if (bytes[i] !== 0xff) return null;
      const marker = bytes[i + 1];
      if (marker === 0xff) { i++; continue; }
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue; }
      const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
      if (isSof) return { width: u16(i + 7), height: u16(i + 5) };
      i += 2 + u16(i + 2);
    }
  }
  return null;
}

/**
 * What every decoder checks before it decodes: image bytes of a known format, a valid pixel limit,
 * and a header that declares no more pixels than that. Returns the format and the declared pixels.
 */
function checkHeader(bytes: Uint8Array, what: string, maxPixels: number): { format: ImageFormat; pixels: number } {
  if (!(bytes instanceof Uint8Array)) throw new SophiaError('E_TYPE', `${what}: expected image bytes (a Buffer or Uint8Array), got ${describe(bytes)}`);
  const format = imageFormat(bytes);
  if (format === null) throw new SophiaError('E_IO', `${what}: expected PNG or JPEG bytes, got ${bytes.length} bytes of another or no format`);
  if (!(Number.isInteger(maxPixels) && maxPixels >= 1)) throw new SophiaError('E_CONFIG', `decodeImage: maxPixels must be an integer >= 1, got ${describe(maxPixels)}`);
  const size = declaredSize(bytes);
  if (size && size.width * size.height > maxPixels) {
    throw new SophiaError('E_RANGE', `${what}: the ${format.toUpperCase()} declares ${size.width}×${size.height} pixels, over the limit of ${maxPixels} (raise maxDecodePixels to read it)`);
  }
  return { format, pixels: size ? size.width * size.height : Infinity };
}

/**
 * Decodes a PNG or JPEG into RGB (alpha dropped). Throws E_IO naming `what` when the bytes do not
 * decode, and E_RANGE, before decoding, when the header declares more than `maxPixels` pixels
 * (default MAX_DECODE_PIXELS): a small file that claims a huge image must not take seconds and GBs.
 */
export function decodeImage(bytes: Uint8Array, what = 'image', opts: { maxPixels?: number } = {}): RgbImage {
  const maxPixels = opts.maxPixels ?? MAX_DECODE_PIXELS;
  const { format } = checkHeader(bytes, what, maxPixels);
  try {
    if (format === 'png') {
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      return { width: png.width, height: png.height, data: rgbaToRgb(png.data, png.width, png.height) };
    }
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false, maxMemoryUsageInMB: 1024, maxResolutionInMP: Math.max(1, Math.ceil(maxPixels / 1e6)) });
    if (img.data.length !== img.width * img.height * 3) throw new Error('not an RGB JPEG');
    return { width: img.width, height: img.height, data: img.data };
  } catch (err) {
    throw new SophiaError('E_IO', `${what}: the ${format.toUpperCase()} data is corrupt (${(err as Error).message})`, { cause: err });
  }
}

/** Encodes RGB as PNG. */
export function encodePng(img: RgbImage): Buffer {
  const png = new PNG({ width: img.width, height: img.height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/** PNG bytes for any PNG or JPEG input (PNG passes through untouched). */
export function toPng(bytes: Uint8Array, what = 'image'): Buffer {
  if (imageFormat(bytes) === 'png') return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return encodePng(decodeImage(bytes, what));
}

/**
 * The size that brings width×height into [minPixels, maxPixels] keeping the aspect ratio (as the
 * reference: scale by sqrt(budget / area), then truncate); the input size when already inside.
 */
export function fitPixels(width: number, height: number, minPixels: number, maxPixels: number): [number, number] {
  let [w, h] = [width, height];
  if (w * h > maxPixels) {
    const f = Math.sqrt(maxPixels / (w * h));
    [w, h] = [Math.max(1, Math.floor(w * f)), Math.max(1, Math.floor(h * f))];
  }
  if (w * h < minPixels) {
    const f = Math.sqrt(minPixels / (w * h));
    [w, h] = [Math.max(1, Math.floor(w * f)), Math.max(1, Math.floor(h * f))];
  }
  return [w, h];
}

/** Resizes: an area average when shrinking both axes (no aliasing), bilinear otherwise. */
export function resizeImage(img: RgbImage, width: number, height: number): RgbImage {
  if (width === img.width && height === img.height) return img;
  const out = new Uint8Array(width * height * 3);
  const sx = img.width / width;
  const sy = img.height / height;
  const src = img.data;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      if (sx >= 1 && sy >= 1) {
        const x0 = Math.floor(x * sx), x1 = Math.max(x0 + 1, Math.floor((x + 1) * sx));
        const y0 = Math.floor(y * sy), y1 = Math.max(y0 + 1, Math.floor((y + 1) * sy));
        let r = 0, g = 0, b = 0;
        for (let yy = y0; yy < y1; yy++) {
          for (let xx = x0; xx < x1; xx++) {
            const i = (yy * img.width + xx) * 3;
            r += src[i];
            g += src[i + 1];
            b += src[i + 2];
          }
        }
        const n = (x1 - x0) * (y1 - y0);
        out[o] = Math.round(r / n);
        out[o + 1] = Math.round(g / n);
        out[o + 2] = Math.round(b / n);
      } else {
        const fx = Math.min(img.width - 1, Math.max(0, (x + 0.5) * sx - 0.5));
        const fy = Math.min(img.height - 1, Math.max(0, (y + 0.5) * sy - 0.5));
        const xa = Math.floor(fx), ya = Math.floor(fy);
        const xb = Math.min(img.width - 1, xa + 1), yb = Math.min(img.height - 1, ya + 1);
        const tx = fx - xa, ty = fy - ya;
        for (let c = 0; c < 3; c++) {
          const top = src[(ya * img.width + xa) * 3 + c] * (1 - tx) + src[(ya * img.width + xb) * 3 + c] * tx;
          const bottom = src[(yb * img.width + xa) * 3 + c] * (1 - tx) + src[(yb * img.width + xb) * 3 + c] * tx;
          out[o + c] = Math.round(top * (1 - ty) + bottom * ty);
        }
      }
    }
  }
  return { width, height, data: out };
}

// ---------------------------------------------------------------- off the event loop

/** Images up to this many pixels decode inline: a worker round trip costs more than they do. */
const INLINE_DECODE_PIXELS = 262_144;

/** The decoder thread: the same libraries and options as decodeImage, and a PNG encoder. */
const DECODE_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { PNG } = require(workerData.pngjs);
const jpeg = require(workerData.jpeg);
parentPort.on('message', ({ id, op, bytes, maxPixels }) => {
  try {
    let width, height, rgb;
    if (bytes[0] === 0x89) {
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      width = png.width; height = png.height;
      rgb = new Uint8Array(width * height * 3);
      for (let p = 0, q = 0; q < rgb.length; p += 4, q += 3) { rgb[q] = png.data[p]; rgb[q + 1] = png.data[p + 1]; rgb[q + 2] = png.data[p + 2]; }
    } else {
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false, maxMemoryUsageInMB: 1024, maxResolutionInMP: Math.max(1, Math.ceil(maxPixels / 1e6)) });
      if (img.data.length !== img.width * img.height * 3) throw new Error('not an RGB JPEG');
      width = img.width; height = img.height; rgb = img.data;
    }
    if (op === 'png') {
      const out = new PNG({ width, height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
      out.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
      const png = new Uint8Array(PNG.sync.write(out, { colorType: 2, inputColorType: 2, inputHasAlpha: false }));
      parentPort.postMessage({ id, data: png }, [png.buffer]);
    } else {
      const data = new Uint8Array(rgb);
      parentPort.postMessage({ id, width, height, data }, [data.buffer]);
    }
  } catch (e) {
    parentPort.postMessage({ id, error: String((e && e.message) || e) });
  }
});
`;

type DecodeReply = { width?: number; height?: number; data?: Uint8Array; error?: string };
type DecoderState = { worker: Worker; next: number; waiting: Map<number, (m: DecodeReply) => void> };
let decoder: DecoderState | null = null;

function decodeOffThread(op: 'decode' | 'png', bytes: Uint8Array, maxPixels: number): Promise<DecodeReply> {
  if (!decoder) {
    const worker = new Worker(DECODE_WORKER, { eval: true, workerData: { pngjs: require.resolve('pngjs'), jpeg: require.resolve('jpeg-js') } });
    worker.unref();
    const d: DecoderState = { worker, next: 1, waiting: new Map() };
    const failAll = (error: string): void => {
      if (decoder === d) decoder = null;
      for (const done of d.waiting.values()) done({ error });
      d.waiting.clear();
    };
    worker.on('message', (m: DecodeReply & { id: number }) => {
      const done = d.waiting.get(m.id);
      d.waiting.delete(m.id);
      if (d.waiting.size === 0) worker.unref();
      done?.(m);
    });
    worker.on('error', (err) => failAll(`the decoder thread failed (${err.message})`));
    worker.on('exit', (code) => failAll(`the decoder thread exited (code ${code})`));
    decoder = d;
  }
  const d = decoder;
  const id = d.next++;
  return new Promise((resolve) => {
    d.waiting.set(id, resolve);
    d.worker.ref();
    d.worker.postMessage({ id, op, bytes, maxPixels });
  });
}

/**
 * decodeImage off the event loop: a large image decodes in a worker thread, so a server stays
 * responsive while it decodes; small ones (up to 512² pixels) decode inline. Same checks and errors.
 */
export async function decodeImageAsync(bytes: Uint8Array, what = 'image', opts: { maxPixels?: number } = {}): Promise<RgbImage> {
  const maxPixels = opts.maxPixels ?? MAX_DECODE_PIXELS;
  const { format, pixels } = checkHeader(bytes, what, maxPixels);
  if (pixels <= INLINE_DECODE_PIXELS) return decodeImage(bytes, what, { maxPixels });
  const r = await decodeOffThread('decode', Uint8Array.from(bytes), maxPixels);
  if (r.error !== undefined) throw new SophiaError('E_IO', `${what}: the ${format.toUpperCase()} data is corrupt (${r.error})`);
  return { width: r.width!, height: r.height!, data: r.data! };
}

/** toPng off the event loop (PNG passes through untouched; a large JPEG converts in the worker). */
export async function toPngAsync(bytes: Uint8Array, what = 'image', opts: { maxPixels?: number } = {}): Promise<Buffer> {
  const maxPixels = opts.maxPixels ?? MAX_DECODE_PIXELS;
  const { format, pixels } = checkHeader(bytes, what, maxPixels);
  if (format === 'png') return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (pixels <= INLINE_DECODE_PIXELS) return toPng(bytes, what);
  const r = await decodeOffThread('png', Uint8Array.from(bytes), maxPixels);
  if (r.error !== undefined) throw new SophiaError('E_IO', `${what}: the ${format.toUpperCase()} data is corrupt (${r.error})`);
  return Buffer.from(r.data!.buffer, r.data!.byteOffset, r.data!.byteLength);
}
