/**
 * An async call owns what it reads and writes until it settles: a caller that changes its small
 * inputs right after the call, transfers a large buffer away, drops its references and forces GC,
 * or passes SharedArrayBuffer-backed arrays, gets the answer of the inputs as they were at the call
 * (or a clean SophiaError), never a crash. Each case ran the process into SIGSEGV before the fix.
 */
import { Tensor, grpoLoss, grpoLossSync, logprobs, logprobsSync } from '../lib';
import { TINY_MODEL_CONFIG, VisionLanguageModel } from '../lib/model';
import { SophiaError } from '../lib/errors';

const gc = (globalThis as { gc?: () => void }).gc;
const collect = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) {
    gc?.();
    // garbage to make a collection likely without --expose-gc
    if (!gc) for (let k = 0; k < 20; k++) new Float32Array(1 << 20).fill(k);
    await new Promise((r) => setImmediate(r));
  }
};

let s = 12345;
const rand = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const N = 256, V = 2048;
const logitsData = (): Float32Array => new Float32Array(N * V).map(() => rand() * 6 - 3);
const labelsOf = (): Int32Array => new Int32Array(N).map(() => Math.floor(rand() * V));

describe('async calls own their inputs until they settle', () => {
  test('logprobs: labels overwritten with out-of-range values right after the call', async () => {
    for (let round = 0; round < 8; round++) {
      const x = logitsData();
      const labels = labelsOf();
      const want = logprobsSync(Tensor.from(x.slice(), [N, V]), labels.slice()).logp;
      const p = logprobs(Tensor.from(x, [N, V]), labels);
      labels.fill(2 ** 30);
      const got = (await p).logp;
      expect(Array.from(got)).toEqual(Array.from(want));
    }
  });

  test('grpoLoss: small inputs changed after the call; the in-place logits transferred away and collected', async () => {
    for (let round = 0; round < 6; round++) {
      const x = logitsData();
      const labels = labelsOf();
      const oldLogp = new Float32Array(N).map(() => -rand() * 8);
      const adv = new Float32Array(N).map(() => rand() * 2 - 1);
      const seqStarts = Int32Array.of(0, N / 2, N);
      const mask = new Uint8Array(N).fill(1);
      const want = grpoLossSync({ logits: Tensor.from(x.slice(), [N, V]), labels: labels.slice(), oldLogp: oldLogp.slice(), advantages: adv.slice(), seqStarts: seqStarts.slice(), mask: mask.slice() });
      const p = grpoLoss({ logits: Tensor.from(x, [N, V]), labels, oldLogp, advantages: adv, seqStarts, mask }, { inplace: true });
      labels.fill(-7);
      oldLogp.fill(NaN);
      adv.fill(1e30);
      seqStarts.set([N, 0, 5]);
      mask.fill(0);
      // Either the transfer copies (the buffer is held) or it would have detached and freed it under the kernel.
      let clone: Float32Array | null = structuredClone(x, { transfer: [x.buffer as ArrayBuffer] });
      expect(x.length).toBe(N * V); // not detached
      clone = null;
      void clone;
      await collect();
      const got = await p;
      expect(got.loss).toBeCloseTo(want.loss, 6);
    }
  });

  test('model forward, backward and generate: inputs changed after the call, the backward dout transferred away and collected', async () => {
    const m = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 9 });
    try {
      const img = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3).map(() => Math.floor(rand() * 256)) };
      const seqs = [0, 1, 2].map((i) => ({ tokens: m.tokenizer.encode(`<image>how many ${i}? red ${i}.`), image: img }));
      const batch = m.pack(seqs);
      const rows = Int32Array.from({ length: batch.tokens.length - 1 }, (_, i) => i);
      const want = await m.forward({ ...batch, tokens: batch.tokens.slice(), seqStarts: batch.seqStarts.slice() }, rows.slice());
      const tokens = batch.tokens.slice();
      const starts = batch.seqStarts.slice();
      const r = rows.slice();
      const p = m.forward({ ...batch, tokens, seqStarts: starts }, r);
      tokens.fill(1e9);
      starts.fill(-1);
      r.fill(1e9);
      if (batch.imageOf) batch.imageOf.fill(99);
      expect(Array.from(await p)).toEqual(Array.from(want));

      // backward: its dout (the logits buffer, read in place) transferred away and collected mid-call
      const dout = Float32Array.from(want, (v, i) => Math.sin(v + i) * 1e-3);
      const fresh = m.pack(seqs); // the batch above had its imageOf overwritten on purpose
      await m.forward(fresh, rows.slice());
      m.zeroGrad();
      await m.backward(dout.slice());
      const wantGrads = m.getState('grads');
      await m.forward(fresh, rows.slice());
      m.zeroGrad();
      const mine = dout.slice();
      const pb = m.backward(mine);
      let moved: Float32Array | null = structuredClone(mine, { transfer: [mine.buffer as ArrayBuffer] });
      expect(mine.length).toBe(dout.length); // held: the transfer copied
      moved = null;
      void moved;
      await collect();
      await pb;
      expect(Array.from(m.getState('grads'))).toEqual(Array.from(wantGrads));

      const prompt = m.tokenizer.encode('<image>how many?');
      const g1 = await m.generate([{ tokens: prompt, image: img }], { samples: 2, maxNew: 8, temperature: 1, seed: 3 });
      const g2p = m.generate([{ tokens: prompt, image: img }], { samples: 2, maxNew: 8, temperature: 1, seed: 3 });
      prompt.fill(1e9);
      const g2 = await g2p;
      expect(g2.map((x) => Array.from(x.tokens))).toEqual(g1.map((x) => Array.from(x.tokens)));
    } finally {
      m.dispose();
    }
  });

  test('SharedArrayBuffer-backed arrays are refused with E_TYPE naming the argument', async () => {
    const x = new Float32Array(new SharedArrayBuffer(4 * 2 * 3)).fill(0.5);
    const labels = new Int32Array(new SharedArrayBuffer(8));
    await expect(logprobs(Tensor.from(new Float32Array(6), [2, 3]), labels)).rejects.toMatchObject({ code: 'E_TYPE', message: expect.stringMatching(/labels is backed by a SharedArrayBuffer/) });
    expect(() => logprobsSync(Tensor.from(x, [2, 3]), new Int32Array(2))).toThrow(SophiaError);
    const m = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 1 });
    try {
      const shared = new Float32Array(new SharedArrayBuffer(4 * m.numParams));
      expect(() => m.setState('params', shared)).toThrow(expect.objectContaining({ code: 'E_TYPE' }));
    } finally {
      m.dispose();
    }
  });

  test('setState refuses NaN or infinite weights, and negative second moments', () => {
    const m = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 1 });
    try {
      const p = m.getState('params');
      const before = p.slice();
      p[17] = NaN;
      expect(() => m.setState('params', p)).toThrow(/data\[17\] must be a finite number \(params\), got NaN/);
      p[17] = Infinity;
      expect(() => m.setState('params', p)).toThrow(expect.objectContaining({ code: 'E_RANGE' }));
      const v = new Float32Array(m.numParams);
      v[3] = -1;
      expect(() => m.setState('adamV', v)).toThrow(/data\[3\] must be a finite number >= 0 \(adamV\)/);
      expect(Array.from(m.getState('params').subarray(0, 40))).toEqual(Array.from(before.subarray(0, 40)));
    } finally {
      m.dispose();
    }
  });
});
