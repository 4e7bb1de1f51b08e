/**
 * The whole embedded model: gradients against finite differences, an overfit run, KV-cache
 * sampling against the uncached forward pass, determinism, checkpoints, and argument errors.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SophiaError } from '../../lib/errors';
import {
  RewardModel,
  TINY_MODEL_CONFIG,
  VisionLanguageModel,
  loadModel,
  loadPolicy,
  loadRewardModel,
  saveModel,
  rewardModelFromPolicy,
  type PackedBatch,
} from '../../lib/model';
import type { RgbImage } from '../../lib/data/images';
import { native as backend } from '../../lib/native';

const seed = Number(process.env.SOPHIA_TEST_SEED ?? Date.now() % 1e9);
console.log(`model.test: seed ${seed} (reproduce with SOPHIA_TEST_SEED=${seed})`);
let s = seed >>> 0;
const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const randn = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());

function image(size: number): RgbImage {
  const data = new Uint8Array(size * size * 3).map(() => Math.floor(rand() * 256));
  return { width: size, height: size, data };
}

function textTokens(model: VisionLanguageModel, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(8 + Math.floor(rand() * 90));
  return out;
}

/** Two image sequences sharing one image, one text-only sequence; rows: every position but each sequence's last. */
function batchOf(model: VisionLanguageModel): { batch: PackedBatch; rows: Int32Array } {
  const img = image(model.config.imageSize);
  const I = model.tokenizer.special.image;
  const batch = model.pack([
    { tokens: [I, ...textTokens(model, 9)], image: img },
    { tokens: [I, ...textTokens(model, 5)], image: img },
    { tokens: textTokens(model, 7) },
  ]);
  // Rows whose next token is text (the LM head never predicts <image>: its logit is -inf).
  const rows: number[] = [];
  for (let b = 0; b + 1 < batch.seqStarts.length; b++)
    for (let r = batch.seqStarts[b]; r < batch.seqStarts[b + 1] - 1; r++) if (batch.tokens[r + 1] !== I) rows.push(r);
  return { batch, rows: Int32Array.from(rows) };
}

describe('VisionLanguageModel', () => {
  test('the default configuration has 2–5 M parameters and a memory plan', () => {
    const m = VisionLanguageModel.create({ seed: 1 });
    try {
      expect(m.numParams).toBeGreaterThan(2e6);
      expect(m.numParams).toBeLessThan(5e6);
      const plan = m.memoryPlan({ tokens: 4096, rows: 2048, images: 16 });
      expect(plan.params).toBe(4 * m.numParams);
      expect(plan.total).toBeGreaterThan(plan.params + plan.grads + plan.optimizer);
    } finally {
      m.dispose();
    }
  });

  test.each([
    ['policy', false],
    ['reward model', true],
  ])('%s: every parameter tensor matches central finite differences of L = Σ out ⊙ R', async (_name, reward) => {
    const model = reward ? RewardModel.create({ config: TINY_MODEL_CONFIG, seed: 7 }) : VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 7 });
    try {
      // Larger weights than the init make every path's gradient visible above float32 noise.
      const p0 = model.getState('params').map((v) => v * 3 + (v === 1 ? 0 : 0.02 * randn()));
      model.setState('params', p0);
      const { batch, rows } = batchOf(model);
      const outLen = reward ? batch.seqStarts.length - 1 : rows.length * model.config.vocab;
      const R = new Float32Array(outLen).map(() => randn());
      // The reward model's backward takes d loss / d score logit, so its L is over the logits.
      const loss = async (p: Float32Array): Promise<number> => {
        model.setState('params', p);
        const out = new Float32Array(outLen);
        if (reward) {
          const scores = new Float32Array(outLen);
          await (model as unknown as { m: { forward(a: unknown): Promise<unknown> } }).m.forward({ ...batch, out: scores, scoreLogits: out, async: true });
        } else {
          await model.forward(batch, rows, out);
        }
        let L = 0;
        for (let i = 0; i < outLen; i++) if (R[i] !== 0) L += out[i] * R[i];
        return L;
      };
      if (!reward) for (let r = 0; r < rows.length; r++) R[r * model.config.vocab + model.config.imageToken] = 0;
      await loss(p0);
      model.zeroGrad();
      await model.backward(R);
      const g = model.getState('grads');
      // Steps large enough that float32 rounding of L (about 1e-7 · |L| / h) stays well under the gradients.
      const h = 8e-3;
      let checked = 0;
      let clean = 0;
      for (const t of model.tensors) {
        // The largest gradient entry of each tensor and two random ones.
        let arg = 0;
        for (let i = 1; i < t.size; i++) if (Math.abs(g[t.offset + i]) > Math.abs(g[t.offset + arg])) arg = i;
        for (const i of new Set([arg, Math.floor(rand() * t.size), Math.floor(rand() * t.size)])) {
          const k = t.offset + i;
          const p = Float32Array.from(p0);
          const central = async (step: number) => {
            p[k] = p0[k] + step;
            const up = await loss(p);
            p[k] = p0[k] - step;
            const down = await loss(p);
            return (up - down) / (2 * step);
          };
          // Richardson extrapolation cancels the h² term of the central difference; the gap between
          // the two step sizes measures the float32 noise of this entry, which widens its tolerance.
          const a = await central(h);
          const b = await central(h / 2);
          const fd = (4 * b - a) / 3;
          const noise = Math.abs(a - b);
          const tol = 2e-3 + 3e-2 * Math.max(Math.abs(fd), Math.abs(g[k])) + 4 * noise;
          if (!(Math.abs(fd - g[k]) <= tol)) throw new Error(`${t.name}[${i}]: analytic ${g[k]}, finite difference ${fd} ± ${noise} (seed ${seed})`);
          checked++;
          if (noise < 0.05 * Math.abs(g[k])) clean++;
        }
      }
      expect(checked).toBeGreaterThan(model.tensors.length);
      // The check has teeth only where the noise is small: most entries must be such.
      expect(clean / checked).toBeGreaterThan(0.7);
    } finally {
      model.dispose();
    }
  });

  test('overfits a tiny batch: next-token loss falls below 0.3 nats within 150 AdamW steps', async () => {
    const model = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 3 });
    try {
      const { batch, rows } = batchOf(model);
      const V = model.config.vocab;
      let loss = Infinity;
      let first = 0;
      let steps = 0;
      for (; steps < 150 && loss > 0.3; steps++) {
        const logits = await model.forward(batch, rows);
        loss = 0;
        for (let i = 0; i < rows.length; i++) {
          const row = logits.subarray(i * V, (i + 1) * V);
          const label = batch.tokens[rows[i] + 1];
          let mx = -Infinity;
          for (const v of row) mx = Math.max(mx, v);
          let sum = 0;
          for (const v of row) sum += Math.exp(v - mx);
          const lse = mx + Math.log(sum);
          loss += (lse - row[label]) / rows.length;
          for (let v = 0; v < V; v++) row[v] = Math.exp(row[v] - lse) / rows.length;
          row[label] -= 1 / rows.length;
        }
        if (steps === 0) first = loss;
        model.zeroGrad();
        await model.backward(logits);
        await model.step({ lr: 1e-2, clipNorm: 1 });
      }
      console.log(`overfit: loss ${first.toFixed(3)} -> ${loss.toFixed(3)} in ${steps} steps`);
      expect(first).toBeGreaterThan(4);
      expect(loss).toBeLessThan(0.3);
    } finally {
      model.dispose();
    }
  });

  test('KV-cache sampling gives the log-probs of the uncached forward pass, and is deterministic by seed', async () => {
    const model = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 11 });
    try {
      const img = image(model.config.imageSize);
      const prompts = [
        { tokens: model.encode('how many red shapes?', true), image: img },
        { tokens: model.encode('count the circles', false) },
      ];
      for (const [temperature, topK, topP] of [[1, 0, 1], [0.7, 20, 0.9], [0, 0, 1]]) {
        const opts = { samples: 3, maxNew: 40, temperature, topK, topP, seed: 5 };
        const a = await model.generate(prompts, opts);
        const b = await model.generate(prompts, opts);
        expect(a.map((x) => Array.from(x.tokens))).toEqual(b.map((x) => Array.from(x.tokens)));
        expect(a).toHaveLength(6);
        for (const sample of a) {
          const prompt = prompts[sample.prompt];
          const packed = model.pack([{ tokens: [...prompt.tokens, ...sample.tokens], image: prompt.image }]);
          const start = packed.tokens.length - sample.tokens.length;
          const rows = Int32Array.from(sample.tokens, (_t, i) => start - 1 + i);
          const { logp } = await model.logprobs(packed, rows, { temperature: temperature || 1 });
          for (let i = 0; i < logp.length; i++) expect(Math.abs(logp[i] - sample.logp[i])).toBeLessThan(2e-4);
        }
        if (temperature > 0) {
          const c = await model.generate(prompts, { ...opts, seed: 6 });
          expect(c.map((x) => Array.from(x.tokens))).not.toEqual(a.map((x) => Array.from(x.tokens)));
        } else {
          // Greedy: every sample of one prompt is the same.
          expect(Array.from(a[0].tokens)).toEqual(Array.from(a[1].tokens));
        }
      }
    } finally {
      model.dispose();
    }
  });

  test('training is deterministic for a given seed', async () => {
    const run = async () => {
      s = 12345;
      const model = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 2 });
      const { batch, rows } = batchOf(model);
      for (let i = 0; i < 3; i++) {
        const logits = await model.forward(batch, rows);
        model.zeroGrad();
        await model.backward(logits.map((v) => v * 1e-3));
        await model.step({ lr: 1e-3, weightDecay: 0.1 });
      }
      const p = model.getState('params');
      model.dispose();
      return p;
    };
    const saved = s;
    const a = await run();
    const b = await run();
    s = saved;
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });
});

describe('rewardModelFromPolicy', () => {
  test("copies the policy's trunk; a zero head scores 0.5, a random head (headStd) varies by input and is seeded", async () => {
    const policy = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 9 });
    const items = Array.from({ length: 6 }, (_v, i) => ({ question: `how many? ${i}`, reasoning: `<think>${'abc'.repeat(i + 1)}</think>`, image: image(policy.config.imageSize) }));
    const zero = rewardModelFromPolicy(policy, { seed: 1 });
    const a = rewardModelFromPolicy(policy, { seed: 1, headStd: 1 / Math.sqrt(policy.config.dim) });
    const b = rewardModelFromPolicy(policy, { seed: 1, headStd: 1 / Math.sqrt(policy.config.dim) });
    const c = rewardModelFromPolicy(policy, { seed: 2, headStd: 1 / Math.sqrt(policy.config.dim) });
    try {
      const pp = policy.getState('params');
      const pa = a.getState('params');
      const byName = new Map(policy.tensors.map((t) => [t.name, t]));
      let shared = 0;
      for (const t of a.tensors) {
        const src = byName.get(t.name);
        if (!src) continue;
        shared++;
        expect(Array.from(pa.subarray(t.offset, t.offset + t.size))).toEqual(Array.from(pp.subarray(src.offset, src.offset + src.size)));
      }
      expect(shared).toBe(a.tensors.length - 2); // all but score.w and score.b
      expect(Array.from(await zero.scoreTexts(items))).toEqual(items.map(() => 0.5));
      const sa = await a.scoreTexts(items);
      expect(Array.from(await b.scoreTexts(items))).toEqual(Array.from(sa));
      expect(Array.from(await c.scoreTexts(items))).not.toEqual(Array.from(sa));
      expect(Math.max(...sa) - Math.min(...sa)).toBeGreaterThan(1e-3);
      const head = a.tensors.find((t) => t.name === 'score.w')!;
      const w = pa.subarray(head.offset, head.offset + head.size);
      const sd = Math.sqrt(w.reduce((q, v) => q + v * v, 0) / w.length);
      expect(sd).toBeGreaterThan(0.6 / Math.sqrt(policy.config.dim));
      expect(sd).toBeLessThan(1.4 / Math.sqrt(policy.config.dim));
      for (const bad of [-1, NaN, Infinity, '0.1'])
        expect(() => rewardModelFromPolicy(policy, { seed: 1, headStd: bad as number })).toThrow(/headStd must be a finite number >= 0/);
    } finally {
      for (const m of [policy, zero, a, b, c]) m.dispose();
    }
  });
});

describe('checkpoints', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sophia-ckpt-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('round trip is bit-exact, optimizer state included', async () => {
    const model = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 4 });
    const { batch, rows } = batchOf(model);
    const logits = await model.forward(batch, rows);
    await model.backward(logits);
    await model.step({ lr: 1e-3 });
    await saveModel(model, dir, { optimizer: true });
    const back = await loadPolicy(dir, { optimizer: true });
    for (const which of ['params', 'adamM', 'adamV'] as const)
      expect(Buffer.from(back.getState(which).buffer).equals(Buffer.from(model.getState(which).buffer))).toBe(true);
    expect(back.adamStep).toBe(1);
    expect(back.config).toEqual(model.config);
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'optimizer.safetensors', 'tokenizer.json']);
    model.dispose();
    back.dispose();
  });

  test('a reward model round-trips as a reward model and is refused as a policy', async () => {
    const rm = RewardModel.create({ config: TINY_MODEL_CONFIG, seed: 9 });
    await saveModel(rm, dir);
    const back = await loadModel(dir);
    expect(back).toBeInstanceOf(RewardModel);
    const items = [{ question: 'how many?', reasoning: 'red 2. blue 1. 2+1=3.' }];
    expect(Array.from(await (back as RewardModel).scoreTexts(items))).toEqual(Array.from(await rm.scoreTexts(items)));
    await expect(loadPolicy(dir)).rejects.toMatchObject({ code: 'E_CONFIG' });
    await expect(loadRewardModel(dir)).resolves.toBeInstanceOf(RewardModel);
    rm.dispose();
    back.dispose();
  });

  test('corrupt and mismatched checkpoints give errors that say what differs', async () => {
    const model = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 4 });
    await saveModel(model, dir);
    model.dispose();
    const weights = path.join(dir, 'model.safetensors');
    const good = fs.readFileSync(weights);

    fs.writeFileSync(weights, good.subarray(0, good.length - 100));
    await expect(loadModel(dir)).rejects.toMatchObject({ code: 'E_IO' });

    fs.writeFileSync(weights, good);
    const cfgFile = path.join(dir, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, model: { ...cfg.model, ffn: 48 } }));
    const err = await loadModel(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).code).toBe('E_SHAPE');
    expect((err as Error).message).toMatch(/"blocks\.0\.mlp\.w_gate": shape expected \[48, 32\], got \[64, 32\]/);

    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, model: { ...cfg.model, dim: 'wide' } }));
    await expect(loadModel(dir)).rejects.toThrow(/dim must be a number/);
    fs.writeFileSync(cfgFile, '{ not json');
    await expect(loadModel(dir)).rejects.toMatchObject({ code: 'E_IO' });
    await expect(loadModel(path.join(dir, 'missing'))).rejects.toMatchObject({ code: 'E_IO' });
    await expect(loadModel(dir, { optimizer: true })).rejects.toBeInstanceOf(SophiaError);
  });
});

describe('argument errors', () => {
  const model = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 1 });
  afterAll(() => model.dispose());
  const native = () => (model as unknown as { m: Record<string, (a: unknown) => unknown> }).m;

  test.each([
    ['a token out of range', { tokens: Int32Array.from([1, 500]), seqStarts: Int32Array.from([0, 2]), rows: Int32Array.from([0]), out: new Float32Array(104) }, 'E_RANGE', /tokens\[1\]/],
    ['starts not ending at N', { tokens: Int32Array.from([1, 2]), seqStarts: Int32Array.from([0, 1]), rows: Int32Array.from([0]), out: new Float32Array(104) }, 'E_SHAPE', /seqStarts/],
    ['a sequence over the context', { tokens: new Int32Array(97).fill(9), seqStarts: Int32Array.from([0, 97]), rows: Int32Array.from([0]), out: new Float32Array(104) }, 'E_RANGE', /context/],
    ['rows not increasing', { tokens: Int32Array.from([9, 9, 9]), seqStarts: Int32Array.from([0, 3]), rows: Int32Array.from([1, 1]), out: new Float32Array(208) }, 'E_RANGE', /strictly increasing/],
    ['out too short', { tokens: Int32Array.from([9, 9]), seqStarts: Int32Array.from([0, 2]), rows: Int32Array.from([0]), out: new Float32Array(10) }, 'E_SHAPE', /out must have 104/],
    ['an image token without an image', { tokens: Int32Array.from([3, 9]), seqStarts: Int32Array.from([0, 2]), rows: Int32Array.from([0]), out: new Float32Array(104) }, 'E_SHAPE', /no image/],
    ['pixels out of [0, 1]', { tokens: new Int32Array(5).fill(3), seqStarts: Int32Array.from([0, 5]), rows: Int32Array.from([0]), out: new Float32Array(104), pixels: new Float32Array(768).fill(2), imageOf: Int32Array.from([0]) }, 'E_RANGE', /pixels/],
  ])('forward: %s', (_what, args, code, msg) => {
    let err: unknown;
    try {
      native().forward(args);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).code).toBe(code);
    expect((err as Error).message).toMatch(msg);
  });

  test('backward before any forward, bad step options, unknown config fields, use after dispose', async () => {
    const fresh = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG });
    await expect(fresh.backward(new Float32Array(1))).rejects.toMatchObject({ code: 'E_STATE' });
    await expect(fresh.step({ lr: -1 })).rejects.toMatchObject({ code: 'E_RANGE' });
    await expect(fresh.step({ lr: 1e-3, beta1: 1 })).rejects.toMatchObject({ code: 'E_RANGE' });
    fresh.dispose();
    expect(() => fresh.getState()).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    expect(() => VisionLanguageModel.create({ config: { dims: 3 } as never })).toThrow(/unknown field 'dims'/);
    expect(() => VisionLanguageModel.create({ config: { dim: 30, heads: 4 } })).toThrow(/multiple of heads/);
    expect(() => VisionLanguageModel.create({ config: { imageSize: 30, patch: 8 } })).toThrow(/multiple of patch/);
  });

  test('device: the process backend by default; a wrong device or a backward of the wrong size is refused', async () => {
    const m = VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, seed: 3 });
    try {
      expect(m.device).toBe(backend().backend);
      expect(() => VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, device: 'gpu' as never })).toThrow(
        expect.objectContaining({ code: 'E_CONFIG', message: expect.stringMatching(/device must be 'cpu' or 'cuda', got "gpu"/) }),
      );
      if (backend().backend === 'cpu')
        expect(() => VisionLanguageModel.create({ config: TINY_MODEL_CONFIG, device: 'cuda' })).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
      const Raw = (backend().addon as unknown as { Model: new (a: unknown) => unknown }).Model;
      expect(() => new Raw({ config: TINY_MODEL_CONFIG, device: 'tpu' })).toThrow(/device/);
      const { batch, rows } = batchOf(m);
      const logits = await m.forward(batch, rows);
      await expect(m.backward(logits.subarray(1))).rejects.toMatchObject({ code: 'E_SHAPE', message: expect.stringMatching(/dout must have as many elements as the last forward's out \(\d+\), got \d+/) });
      await expect(m.backward(logits)).resolves.toBeUndefined();
    } finally {
      m.dispose();
    }
  });

  test('a second call while one runs is refused with E_BUSY', async () => {
    const { batch, rows } = batchOf(model);
    const first = model.forward(batch, rows);
    await expect(model.forward(batch, rows)).rejects.toMatchObject({ code: 'E_BUSY' });
    await first;
    await expect(model.forward(batch, rows)).resolves.toBeInstanceOf(Float32Array);
  });
});
