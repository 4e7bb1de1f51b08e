import { PNG } from 'pngjs';
import * as jpeg from 'jpeg-js';
import { decodeImage, decodeImageAsync, encodePng, fitPixels, imageFormat, resizeImage, toPng, toPngAsync } from '../../lib/data/images';

function png(width: number, height: number, rgba: (x: number, y: number) => [number, number, number, number]): Buffer {
  const img = new PNG({ width, height });
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) img.data.set(rgba(x, y), (y * width + x) * 4);
  return PNG.sync.write(img);
}

test('decodes PNG to RGB, dropping alpha', () => {
  const img = decodeImage(png(3, 2, (x, y) => [x * 10, y * 20, 7, 128]));
  expect([img.width, img.height]).toEqual([3, 2]);
  expect(Array.from(img.data.slice(0, 6))).toEqual([0, 0, 7, 10, 0, 7]);
  expect(Array.from(img.data.slice(9, 12))).toEqual([0, 20, 7]);
});

test('decodes JPEG (lossy, so within a tolerance)', () => {
  const data = Buffer.alloc(8 * 8 * 4);
  for (let p = 0; p < 64; p++) data.set([200, 100, 50, 255], p * 4);
  const img = decodeImage(jpeg.encode({ width: 8, height: 8, data }, 95).data);
  expect([img.width, img.height, img.data.length]).toEqual([8, 8, 192]);
  for (const [c, v] of [[0, 200], [1, 100], [2, 50]]) expect(Math.abs(img.data[c] - v)).toBeLessThanOrEqual(3);
});

test('corrupt and unknown bytes are E_IO errors naming the image', () => {
  const good = png(4, 4, () => [1, 2, 3, 255]);
  expect(() => decodeImage(good.subarray(0, 40), 'row 3 image 0')).toThrow(/^row 3 image 0: the PNG data is corrupt/);
  expect(() => decodeImage(Buffer.from([0xff, 0xd8, 0xff, 0, 1, 2]), 'x')).toThrow(expect.objectContaining({ code: 'E_IO' }));
  expect(() => decodeImage(Buffer.from('GIF89a'), 'y')).toThrow(/y: expected PNG or JPEG bytes/);
  expect(imageFormat(Buffer.from('hello world'))).toBeNull();
});

test('fitPixels keeps the aspect ratio within [min, max] (truncating as the reference)', () => {
  expect(fitPixels(20, 10, 1, 50)).toEqual([10, 5]); // factor sqrt(50/200) = 0.5
  expect(fitPixels(4, 2, 32, 1000)).toEqual([8, 4]); // factor sqrt(32/8) = 2
  expect(fitPixels(30, 20, 100, 1000)).toEqual([30, 20]);
  expect(fitPixels(1000, 10, 1, 100)).toEqual([100, 1]);
});

test('resize: area average when shrinking, bilinear when growing', () => {
  const img = { width: 2, height: 2, data: Uint8Array.from([0, 0, 0, 100, 100, 100, 200, 200, 200, 40, 40, 40]) };
  expect(Array.from(resizeImage(img, 1, 1).data)).toEqual([85, 85, 85]); // (0+100+200+40)/4
  const row = { width: 2, height: 1, data: Uint8Array.from([0, 0, 0, 100, 100, 100]) };
  // 4 output pixels at source x = -0.25→0, 0.25, 0.75, 1.25→1
  expect(Array.from(resizeImage(row, 4, 1).data.filter((_, i) => i % 3 === 0))).toEqual([0, 25, 75, 100]);
});

test('encodePng round-trips exactly; toPng passes PNG through and converts JPEG', () => {
  const img = { width: 3, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]) };
  const bytes = encodePng(img);
  expect(decodeImage(bytes)).toEqual({ width: 3, height: 1, data: img.data });
  expect(toPng(bytes)).toEqual(bytes);
  const jpg = Buffer.from(jpeg.encode({ width: 2, height: 2, data: Buffer.alloc(16, 90) }, 90).data);
  expect(imageFormat(toPng(jpg))).toBe('png');
});

describe('decoding off the event loop', () => {
  const big = (w: number, h: number): Buffer => {
    const png = new PNG({ width: w, height: h });
    for (let i = 0; i < png.data.length; i++) png.data[i] = (i * 7 + (i >> 12)) & 255;
    return PNG.sync.write(png);
  };

  test('decodeImageAsync and toPngAsync give what the sync versions give, small and large', async () => {
    for (const [w, h] of [[8, 6], [700, 500]]) {
      const bytes = big(w, h);
      const want = decodeImage(bytes);
      const got = await decodeImageAsync(bytes);
      expect([got.width, got.height]).toEqual([w, h]);
      expect(Buffer.from(got.data).equals(Buffer.from(want.data))).toBe(true);
      const jpg = Buffer.from(jpeg.encode({ width: w, height: h, data: Buffer.alloc(w * h * 4, 200) }, 90).data);
      expect(decodeImage(await toPngAsync(jpg)).data).toEqual(decodeImage(toPng(jpg)).data);
    }
  });

  test('a large image decodes while timers keep firing; corrupt or oversized ones give the same errors', async () => {
    const bytes = big(2048, 2048);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 2);
    try {
      const img = await decodeImageAsync(bytes);
      expect(img.width * img.height).toBe(2048 * 2048);
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThanOrEqual(2);
    const corrupt = Buffer.from(bytes.subarray(0, 5000));
    await expect(decodeImageAsync(corrupt, 'row 3')).rejects.toMatchObject({ code: 'E_IO', message: expect.stringMatching(/^row 3: the PNG data is corrupt/) });
    await expect(decodeImageAsync(bytes, 'row 4', { maxPixels: 1000 })).rejects.toMatchObject({ code: 'E_RANGE' });
    await expect(decodeImageAsync(Buffer.from('not an image'))).rejects.toMatchObject({ code: 'E_IO' });
  });
});
