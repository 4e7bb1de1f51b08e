import {
  Tensor,
  bf16BitsToFloat,
  bf16ToFloat32,
  f16BitsToFloat,
  f16ToFloat32,
  float32ToBf16,
  float32ToF16,
  floatToBf16Bits,
  floatToF16Bits,
  tensorOf,
} from '../lib/tensor';
import { native } from '../lib/native';

const f32 = (x: number) => Math.fround(x);

describe('Tensor', () => {
  test('from() is zero-copy and checks shape and dtype', () => {
    const data = new Float32Array(6);
    const t = Tensor.from(data, [2, 3]);
    data[4] = 7;
    expect(t.data[4]).toBe(7);
    expect(t.dtype).toBe('f32');
    expect(t.size).toBe(6);
    expect(t.bytes).toBe(24);
    expect(() => Tensor.from(data, [4, 2])).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => Tensor.from(data, [2, -3])).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => Tensor.from(data, [2, 3], 'bf16')).toThrow(expect.objectContaining({ code: 'E_DTYPE' }));
    expect(() => Tensor.from(new Uint16Array(2), [2])).toThrow(expect.objectContaining({ code: 'E_DTYPE', message: expect.stringContaining("'bf16' or 'f16'") }));
    expect(() => Tensor.from(new Float64Array(2) as never, [2])).toThrow(expect.objectContaining({ code: 'E_TYPE' }));
    expect(Tensor.from(new Int32Array(3), [3]).dtype).toBe('i32');
    expect(Tensor.from(new Uint8Array(3), [3]).dtype).toBe('u8');
  });

  test('toFloat32 widens bf16 and f16 exactly', () => {
    const values = [0, -0, 1, -2.5, 65504, 1e-7, 3.140625];
    expect(Array.from(tensorOf(values, [7], 'bf16').toFloat32())).toEqual(values.map((v) => bf16BitsToFloat(floatToBf16Bits(v))));
    expect(Array.from(tensorOf(values, [7], 'f16').toFloat32())).toEqual(values.map((v) => f16BitsToFloat(floatToF16Bits(v))));
  });

  test('dispose() makes later use an E_DISPOSED error and is idempotent', () => {
    const t = Tensor.from(new Float32Array(2), [2]);
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.data).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
  });

  test('toDevice() on the CPU backend is an E_DEVICE error naming the backend', () => {
    if (native().backend === 'cuda') return console.log('a GPU is usable here: device tensors are covered by cuda-parity');
    expect(() => Tensor.from(new Float32Array(2), [2]).toDevice()).toThrow(expect.objectContaining({ code: 'E_DEVICE', message: expect.stringContaining('cpu') }));
  });
});

describe('bf16 / f16 conversions', () => {
  test('every non-NaN bf16 value round-trips exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = bf16BitsToFloat(h);
      if (Number.isNaN(x)) {
        expect(Number.isNaN(bf16BitsToFloat(floatToBf16Bits(x)))).toBe(true);
        continue;
      }
      if (floatToBf16Bits(x) !== h) throw new Error(`bf16 0x${h.toString(16)} -> ${x} -> 0x${floatToBf16Bits(x).toString(16)}`);
    }
  });

  test('every non-NaN f16 value round-trips exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = f16BitsToFloat(h);
      if (Number.isNaN(x)) continue;
      if (floatToF16Bits(x) !== h) throw new Error(`f16 0x${h.toString(16)} -> ${x} -> 0x${floatToF16Bits(x).toString(16)}`);
    }
  });

  test('bf16 rounds to nearest, ties to even', () => {
    // 1 + 2^-8 lies halfway between 1 (even mantissa) and 1 + 2^-7: it goes to 1.
    expect(bf16BitsToFloat(floatToBf16Bits(1 + 2 ** -8))).toBe(1);
    // 1 + 3*2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): it goes up.
    expect(bf16BitsToFloat(floatToBf16Bits(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6);
    expect(bf16BitsToFloat(floatToBf16Bits(f32(1 + 2 ** -8 + 2 ** -20)))).toBe(1 + 2 ** -7);
    expect(bf16BitsToFloat(floatToBf16Bits(3.4e38))).toBe(Infinity);
    expect(floatToBf16Bits(-0)).toBe(0x8000);
  });

  test('f16 rounds to nearest, ties to even, with subnormals and overflow', () => {
    expect(f16BitsToFloat(floatToF16Bits(1 + 2 ** -11))).toBe(1);
    expect(f16BitsToFloat(floatToF16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(f16BitsToFloat(floatToF16Bits(2 ** -25))).toBe(0); // half the smallest subnormal: tie to even (0)
    expect(f16BitsToFloat(floatToF16Bits(3 * 2 ** -25))).toBe(2 * 2 ** -24); // tie between 1 and 2 units: even
    expect(f16BitsToFloat(floatToF16Bits(65519))).toBe(65504);
    expect(f16BitsToFloat(floatToF16Bits(65520))).toBe(Infinity);
    expect(Number.isNaN(f16BitsToFloat(floatToF16Bits(NaN)))).toBe(true);
  });

  test('array helpers match the scalar ones', () => {
    const xs = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 10 ** ((i % 12) - 6));
    const b = float32ToBf16(xs);
    const h = float32ToF16(xs);
    const wb = bf16ToFloat32(b);
    const wh = f16ToFloat32(h);
    for (let i = 0; i < xs.length; i++) {
      expect(b[i]).toBe(floatToBf16Bits(xs[i]));
      expect(h[i]).toBe(floatToF16Bits(xs[i]));
      expect(wb[i]).toBe(f32(bf16BitsToFloat(b[i])));
      expect(wh[i]).toBe(f32(f16BitsToFloat(h[i])));
    }
  });
});
