// Dumps one forward + backward of the embedded model (the CPU backend, through dist/index.js) as a
// JSON case for `python3 bench/gpu/torch_model.py --check CASE.json`.
//   node bench/gpu/dump_model_case.mjs OUT.json [--reward] [--config tiny|default|JSON] [--seed N] [--checkpoint DIR]
// --config: TINY_MODEL_CONFIG (the default), DEFAULT_MODEL_CONFIG, or a JSON object of fields over the
// defaults (e.g. '{"imageSize":0,"tieEmbeddings":false}').
// Weights: the seeded initialisation made larger and noisy (params·3 + N(0, 0.02²) on every entry
// but the norms' ones, as test/model/model.test.ts does) so that every path carries gradient; the
// reward model's zero score head gets N(0, 0.3²). With --checkpoint, the checkpoint's weights as
// they are (the check then also loads that folder's model.safetensors itself).
// Batch: four sequences, two images (one shared by two sequences, first and last) and a text-only
// one between them (a text-only model: four text sequences); logits at every row whose next token
// is text. Float arrays are stored as
// base64 of little-endian float32 ({ dtype: 'f32', shape, base64 }), -inf included; ints as lists.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const sophia = require('../../dist/index.js');

function usage(msg) {
  if (msg) console.error(msg);
  console.error('usage: node bench/gpu/dump_model_case.mjs OUT.json [--reward] [--config tiny|default|JSON] [--seed N] [--checkpoint DIR]');
  process.exit(2);
}

const opts = { out: null, reward: false, config: 'tiny', seed: 7, checkpoint: null };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--reward') opts.reward = true;
  else if (a === '--config') opts.config = argv[++i];
  else if (a === '--seed') opts.seed = Number(argv[++i]);
  else if (a === '--checkpoint') opts.checkpoint = argv[++i];
  else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else if (opts.out === null) opts.out = a;
  else usage(`unexpected argument ${a}`);
}
if (!opts.out) usage('OUT.json is required');
let config;
if (opts.config === 'tiny') config = sophia.TINY_MODEL_CONFIG;
else if (opts.config === 'default') config = {};
else {
  try {
    config = JSON.parse(opts.config);
  } catch {
    usage(`--config must be tiny, default or a JSON object, got ${opts.config}`);
  }
}
if (!Number.isInteger(opts.seed) || opts.seed < 0) usage(`--seed must be a non-negative integer, got ${opts.seed}`);

let s = (opts.seed * 2654435761) >>> 0;
const rand = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
const randn = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());

const f32 = (arr, shape) => ({ dtype: 'f32', shape, base64: Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength).toString('base64') });

async function main() {
  let model;
  if (opts.checkpoint) {
    model = await sophia.loadModel(opts.checkpoint);
    if (model instanceof sophia.RewardModel !== opts.reward)
      usage(`${opts.checkpoint} holds a ${model instanceof sophia.RewardModel ? 'reward model' : 'policy'}; pass --reward exactly when it is a reward model`);
  } else {
    const Ctor = opts.reward ? sophia.RewardModel : sophia.VisionLanguageModel;
    model = Ctor.create({ config, seed: opts.seed });
    const p = model.getState('params').map((v) => v * 3 + (v === 1 ? 0 : 0.02 * randn()));
    for (const t of model.tensors)
      if (t.name.startsWith('score.')) for (let i = 0; i < t.size; i++) p[t.offset + i] = 0.3 * randn();
    model.setState('params', p);
  }
  try {
    const c = model.config;
    const I = model.tokenizer.special.image;
    const text = (n) => Array.from({ length: n }, () => 8 + Math.floor(rand() * 90));
    const image = () => ({ width: c.imageSize, height: c.imageSize, data: new Uint8Array(c.imageSize * c.imageSize * 3).map(() => Math.floor(rand() * 256)) });
    const n = c.dim >= 128 ? [40, 30, 25, 12] : [9, 7, 6, 5];
    const a = c.imageSize > 0 ? image() : null;
    const b = c.imageSize > 0 ? image() : null;
    const withImage = (img, k) => (img ? { tokens: [I, ...text(k)], image: img } : { tokens: text(k + 1) });
    const batch = model.pack([withImage(a, n[0]), { tokens: text(n[1]) }, withImage(b, n[2]), withImage(a, n[3])]);
    const B = batch.seqStarts.length - 1;
    const rows = [];
    for (let q = 0; q < B; q++)
      for (let r = batch.seqStarts[q]; r < batch.seqStarts[q + 1] - 1; r++) if (batch.tokens[r + 1] !== I) rows.push(r);

    const caseJson = {
      format: 'sophia-model-case',
      version: 1,
      made: `node bench/gpu/dump_model_case.mjs ${argv.join(' ')}`,
      device: model.device,
      config: c,
      checkpoint: opts.checkpoint,
      tensors: model.tensors.map((t) => ({ name: t.name, shape: t.shape, offset: t.offset, size: t.size, decay: t.decay })),
      tokens: Array.from(batch.tokens),
      seqStarts: Array.from(batch.seqStarts),
      imageOf: batch.imageOf ? Array.from(batch.imageOf) : null,
      pixels: batch.pixels ? f32(batch.pixels, [batch.pixels.length / (c.channels * c.imageSize * c.imageSize), c.channels, c.imageSize, c.imageSize]) : null,
    };
    const params = model.getState('params');
    caseJson.params = f32(params, [params.length]);
    model.zeroGrad();
    if (opts.reward) {
      // The reward model's backward takes d loss / d score logit: L = Σ scoreLogits ⊙ R.
      const scores = new Float32Array(B);
      const logits = new Float32Array(B);
      await model.m.forward({ ...batch, out: scores, scoreLogits: logits, async: true });
      const R = Float32Array.from({ length: B }, () => randn());
      await model.backward(R);
      Object.assign(caseJson, { rows: null, scores: f32(scores, [B]), scoreLogits: f32(logits, [B]), R: f32(R, [B]) });
    } else {
      const logits = await model.forward(batch, Int32Array.from(rows));
      const R = Float32Array.from({ length: logits.length }, () => randn());
      for (let r = 0; r < rows.length; r++) R[r * c.vocab + c.imageToken] = 0;  // the masked logit is a constant
      await model.backward(R);
      Object.assign(caseJson, { rows, logits: f32(logits, [rows.length, c.vocab]), R: f32(R, [rows.length, c.vocab]) });
    }
    const grads = model.getState('grads');
    caseJson.grads = f32(grads, [grads.length]);
    writeFileSync(opts.out, JSON.stringify(caseJson) + '\n');
    console.error(`wrote ${opts.out}: ${opts.reward ? 'reward model' : 'policy'}, ${model.numParams} params, ${batch.tokens.length} tokens in ${B} sequences, ` +
      `${caseJson.pixels ? caseJson.pixels.shape[0] : 0} images, ${opts.reward ? B + ' scores' : rows.length + ' logit rows'}`);
  } finally {
    model.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
