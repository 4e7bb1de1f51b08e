/**
 * The embedded model on the GPU (device 'cuda') against the same model on the CPU: initial weights,
 * forward, backward, one AdamW step and KV-cache sampling, for a policy and a reward model. Runs
 * only where loadBackend('cuda') finds a usable GPU; elsewhere it is reported as skipped with the
 * reason. Where the CUDA-enabled binary is built but no GPU is usable (CI), it checks that asking
 * for device 'cuda' gives E_DEVICE with the reason instead of a crash.
 */
import * as fs from 'node:fs';
import { SophiaError } from '../../lib/errors';
import { addonCandidates } from '../../lib/native';
import { probeCuda } from '../helpers/cuda';
import { RewardModel, TINY_MODEL_CONFIG, VisionLanguageModel, type ModelConfig, type PackedBatch } from '../../lib/model';
import type { RgbImage } from '../../lib/data/images';
import { testSeed } from '../ops/oracle';

// Models default to the process backend; probeCuda makes it the CUDA binary before the first model.
const { cuda, reason } = probeCuda('cuda-model');

const SEED = testSeed('cuda-model.test');
let s = SEED >>> 0;
const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const randn = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
const where = (what: string) => `${what} (seed ${SEED}; reproduce with SOPHIA_TEST_SEED=${SEED})`;

/** max |a - ref| / max |ref| over the finite entries of ref; equal entries (the -inf <image> column) count as 0. */
function relDiff(a: Float32Array, ref: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    if (Number.isFinite(ref[i])) m = Math.max(m, Math.abs(ref[i]));
    if (a[i] === ref[i]) continue;
    const e = Math.abs(a[i] - ref[i]);
    d = Math.max(d, Number.isNaN(e) ? Infinity : e);
  }
  return m > 0 ? d / m : d > 0 ? Infinity : 0;
}

function expectRel(what: string, a: Float32Array, ref: Float32Array, tol: number) {
  const r = relDiff(a, ref);
  if (!(r <= tol)) throw new Error(where(`${what}: relative difference ${r.toExponential(3)} over ${tol}`));
}

function image(size: number): RgbImage {
  return { width: size, height: size, data: new Uint8Array(size * size * 3).map(() => Math.floor(rand() * 256)) };
}

const text = (n: number) => Array.from({ length: n }, () => 8 + Math.floor(rand() * 90));

function batchOf(model: VisionLanguageModel): { batch: PackedBatch; rows: Int32Array } {
  const img = image(model.config.imageSize);
  const I = model.tokenizer.special.image;
  const batch = model.pack([
    { tokens: [I, ...text(20)], image: img },
    { tokens: [I, ...text(9)], image: img },
    { tokens: [I, ...text(13)], image: image(model.config.imageSize) },
    { tokens: text(31) },
  ]);
  const rows: number[] = [];
  for (let b = 0; b + 1 < batch.seqStarts.length; b++)
    for (let r = batch.seqStarts[b]; r < batch.seqStarts[b + 1] - 1; r++) if (batch.tokens[r + 1] !== I) rows.push(r);
  return { batch, rows: Int32Array.from(rows) };
}

const CONFIGS: Array<[string, Partial<ModelConfig>]> = [
  ['tiny', TINY_MODEL_CONFIG],
  ['default', {}],
];

const gpuDescribe = cuda ? describe : describe.skip;

if (!cuda) {
  test.skip(`CUDA model parity (skipped: ${reason})`, () => undefined);
  const cudaBinary = addonCandidates().cuda.find((p) => fs.existsSync(p));
  if (cudaBinary) {
    test('without a usable GPU, the CUDA-enabled binary refuses device "cuda" with E_DEVICE and the reason', () => {
      const addon = require(cudaBinary) as { Model: new (a: unknown) => unknown; setErrorClass(c: unknown): void };
      addon.setErrorClass(SophiaError);
      expect(() => new addon.Model({ config: TINY_MODEL_CONFIG, device: 'cuda' })).toThrow(
        expect.objectContaining({ code: 'E_DEVICE', message: expect.stringMatching(/no GPU is usable: .+/) }),
      );
      // and its CPU model still works
      const m = new addon.Model({ config: TINY_MODEL_CONFIG, device: 'cpu' }) as { info(): { device: string }; dispose(): void };
      expect(m.info().device).toBe('cpu');
      m.dispose();
    });
  }
}

gpuDescribe.each(CONFIGS)('CUDA model vs CPU model (%s config)', (_name, config) => {
  test('policy: same initial weights; forward, backward and one AdamW step agree', async () => {
    const c = VisionLanguageModel.create({ config, seed: 21, device: 'cpu' });
    const g = VisionLanguageModel.create({ config, seed: 21, device: 'cuda' });
    try {
      expect(c.device).toBe('cpu');
      expect(g.device).toBe('cuda');
      expect(Buffer.from(g.getState('params').buffer).equals(Buffer.from(c.getState('params').buffer))).toBe(true);
      const { batch, rows } = batchOf(c);
      const lc = await c.forward(batch, rows);
      const lg = await g.forward(batch, rows);
      expectRel('logits', lg, lc, 1e-3);
      const dl = new Float32Array(lc.length).map(() => randn() * 1e-2);
      c.zeroGrad();
      g.zeroGrad();
      await c.backward(dl);
      await g.backward(dl);
      const gc = c.getState('grads');
      const gg = g.getState('grads');
      for (const t of c.tensors) expectRel(`grad ${t.name}`, gg.subarray(t.offset, t.offset + t.size), gc.subarray(t.offset, t.offset + t.size), 1e-2);
      const opts = { lr: 1e-3, weightDecay: 0.1, clipNorm: 1 };
      const sc = await c.step(opts);
      // The AdamW update itself, on identical gradients: the GPU's own (slightly different) gradients
      // would make sign(m)/sqrt(v) of tiny entries differ by up to 2·lr.
      g.setState('grads', gc);
      const sg = await g.step(opts);
      expect(Math.abs(sg.gradNorm - sc.gradNorm) / sc.gradNorm).toBeLessThan(1e-5);
      expect(sg.step).toBe(sc.step);
      for (const which of ['params', 'adamM', 'adamV'] as const) expectRel(`step: ${which}`, g.getState(which), c.getState(which), 1e-5);
    } finally {
      c.dispose();
      g.dispose();
    }
  });

  test('reward model: scores and the gradient of the score logit agree', async () => {
    const c = RewardModel.create({ config, seed: 5, device: 'cpu' });
    const g = RewardModel.create({ config, seed: 5, device: 'cuda' });
    try {
      // A non-zero head (the init leaves it at 0, where every score is 0.5).
      const p = c.getState('params').map((v) => v + 0.05 * randn());
      c.setState('params', p);
      g.setState('params', p);
      const { batch } = batchOf(c);
      const B = batch.seqStarts.length - 1;
      const run = async (m: RewardModel) => {
        const scores = new Float32Array(B);
        const logits = new Float32Array(B);
        await (m as unknown as { m: { forward(a: unknown): Promise<unknown> } }).m.forward({ ...batch, out: scores, scoreLogits: logits, async: true });
        m.zeroGrad();
        await m.backward(Float32Array.from({ length: B }, (_v, i) => (i % 2 ? 1 : -1)));
        return { scores, logits, grads: m.getState('grads') };
      };
      const rc = await run(c);
      const rg = await run(g);
      expectRel('scores', rg.scores, rc.scores, 1e-4);
      expectRel('score logits', rg.logits, rc.logits, 1e-3);
      for (const t of c.tensors) expectRel(`grad ${t.name}`, rg.grads.subarray(t.offset, t.offset + t.size), rc.grads.subarray(t.offset, t.offset + t.size), 1e-2);
    } finally {
      c.dispose();
      g.dispose();
    }
  });

  test('sampling: the GPU KV cache gives the log-probs of the CPU uncached forward pass, deterministic by seed', async () => {
    const c = VisionLanguageModel.create({ config, seed: 8, device: 'cpu' });
    const g = VisionLanguageModel.create({ config, seed: 8, device: 'cuda' });
    try {
      const img = image(c.config.imageSize);
      const prompts = [
        { tokens: c.encode('how many red shapes?', true), image: img },
        { tokens: c.encode('count the circles', false) },
      ];
      for (const [temperature, topK, topP] of [[1, 0, 1], [0.7, 20, 0.9]]) {
        const opts = { samples: 4, maxNew: 48, temperature, topK, topP, seed: 3 };
        const a = await g.generate(prompts, opts);
        const b = await g.generate(prompts, opts);
        expect(a.map((x) => Array.from(x.tokens))).toEqual(b.map((x) => Array.from(x.tokens)));
        const onCpu = await c.generate(prompts, opts);
        let same = 0;
        for (const [i, sample] of a.entries()) {
          if (Buffer.from(sample.tokens.buffer).equals(Buffer.from(onCpu[i].tokens.buffer))) same++;
          const prompt = prompts[sample.prompt];
          const packed = c.pack([{ tokens: [...prompt.tokens, ...sample.tokens], image: prompt.image }]);
          const start = packed.tokens.length - sample.tokens.length;
          const rows = Int32Array.from(sample.tokens, (_t, k) => start - 1 + k);
          const { logp } = await c.logprobs(packed, rows, { temperature });
          for (let k = 0; k < logp.length; k++)
            if (!(Math.abs(logp[k] - sample.logp[k]) < 1e-3)) throw new Error(where(`sample ${i} token ${k}: GPU logp ${sample.logp[k]}, CPU forward ${logp[k]}`));
        }
        // Same generator and draw on both: only a logit within float noise of a sampling boundary can
        // make a stream differ.
        expect(same).toBeGreaterThanOrEqual(a.length - 1);
      }
    } finally {
      c.dispose();
      g.dispose();
    }
  });
});
