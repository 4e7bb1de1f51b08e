import { grpoLossSync, grpoLoss } from '../lib/ops/grpoLoss';
import { Tensor } from '../lib/tensor';
import { addon } from '../lib/native';

const N = 3, V = 8;
function inputs() {
  const logits = Tensor.from(new Float32Array(N * V).map((_, i) => Math.sin(i) * 3), [N, V]);
  return {
    logits,
    labels: new Int32Array([1, 5, 7]),
    oldLogp: new Float32Array([-2, -2.5, -1.5]),
    advantages: new Float32Array([0.7, -1.2, 0.3]),
    seqStarts: new Int32Array([0, 1, 2, 3]),
  };
}

describe('grpoLoss gradOut', () => {
  test('writes into the given tensor, equal to a fresh gradient, and reuses it across calls', async () => {
    const fresh = grpoLossSync(inputs(), { entropyCoef: 0.01 }).gradLogits!.data;
    const out = Tensor.from(new Float32Array(N * V).fill(NaN), [N, V]);
    for (const run of [() => grpoLossSync({ ...inputs(), gradOut: out }, { entropyCoef: 0.01 }), () => grpoLoss({ ...inputs(), gradOut: out }, { entropyCoef: 0.01 })]) {
      out.data.fill(NaN);
      const r = await run();
      expect(r.gradLogits).toBe(out);
      expect(Array.from(out.data)).toEqual(Array.from(fresh));
    }
  });

  test('is refused where it cannot be meant', () => {
    const base = inputs();
    expect(() => grpoLossSync({ ...base, gradOut: Tensor.zeros([N, V - 1]) })).toThrow(expect.objectContaining({ code: 'E_SHAPE', message: expect.stringContaining('gradOut') }));
    expect(() => grpoLossSync({ ...base, gradOut: Tensor.zeros([N, V], 'bf16') })).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => grpoLossSync({ ...base, gradOut: Tensor.zeros([N, V]) }, { inplace: true })).toThrow(expect.objectContaining({ code: 'E_CONFIG' }));
    expect(() => grpoLossSync({ ...base, gradOut: Tensor.zeros([N, V]) }, { backward: false })).toThrow(expect.objectContaining({ code: 'E_CONFIG' }));
    // The addon itself refuses a buffer that partly overlaps the logits.
    const buf = new Float32Array(N * V + 1);
    const logits = buf.subarray(0, N * V), shifted = buf.subarray(1, N * V + 1);
    const raw = { logits, V, labels: base.labels, oldLogp: base.oldLogp, advantages: base.advantages, seqStarts: base.seqStarts };
    expect(() => addon().grpoLoss({ ...raw, gradOut: shifted })).toThrow(expect.objectContaining({ code: 'E_CONFIG', message: expect.stringContaining('overlaps') }));
    expect(() => addon().grpoLoss({ ...raw, gradOut: new Uint16Array(N * V) })).toThrow(expect.objectContaining({ code: 'E_DTYPE' }));
    // The logits buffer itself is the in-place case and is allowed.
    expect(() => addon().grpoLoss({ ...raw, gradOut: logits })).not.toThrow();
  });
});
