// CPU benchmark of the embedded vision-language model (DEFAULT_MODEL_CONFIG, ~2.56 M parameters).
//   node bench/model.mjs [--iters 5] [--threads 1,2] [--isas base,avx2,avx512] [--json bench/results/model-cpu.json]
//
// 1. Training: one GRPO-like batch (32 sequences of ~64 tokens, 4 images each shared by a group of
//    8 sequences, loss rows = the ~24 response positions of each sequence), timed as forward,
//    cross-entropy gradient (plain JS), backward, zeroGrad + AdamW step. Tokens/s counts the packed
//    decoder tokens (visual tokens included).
// 2. Sampling: 8 prompts x 8 samples x up to 48 new tokens at temperature 1 (streams stop at EOS, so
//    the tokens actually generated are counted); the prompt pass is timed alone with maxNew = 1.
// 3. Memory: RSS and peak RSS of this process, the native bytes of the model, its memoryPlan.
// 4. Roofline and baselines: our GEMM (nnOp gemm) on 1024^3 and on every GEMM shape of the
//    training step, per instruction set; the model at each instruction set; attention alone
//    (nnOp attention); thread scaling with SOPHIA_NUM_THREADS in a child process per setting.
//
// Model FLOPs (multiply-add = 2 FLOPs; norms, rotary, SwiGLU, softmax and AdamW not counted):
//   per decoder token   P_dec = layers * (2 d^2 + 2 d kvd + 3 d ffn)          (q, o; k, v; gate, up, down)
//   per visual token    P_vis = visionLayers * (4 d^2 + 3 d visionFfn) + d^2   (blocks; projection)
//   per visual token    P_patch = d * C p^2                                    (patch embedding)
//   per loss row        P_head = vocab * d                                     (tied LM head)
//   forward  = 2 (N P_dec + NV (P_vis + P_patch) + R P_head) + A
//   backward = 4 (N P_dec + NV P_vis + R P_head) + 2 NV P_patch + 2 A         (no input gradient for the patches)
//   A (attention forward) = layers * heads * sum_seq 2 hd len (len + 1)        (causal QK^T and PV over the triangle)
//                         + visionLayers * visionHeads * images * 4 hd np^2     (bidirectional, np visual tokens)
// N = packed tokens, NV = images * np, R = loss rows. The rule of thumb 6 * non-embedding params *
// tokens would overcount here: the vision tower runs once per image (64 tokens, not N) and the LM
// head only on the loss rows; it is printed for reference.
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const s = require('../dist/index.js');

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const child = args.child !== undefined; // internal: one thread setting, JSON on the last line of stdout
const iters = Number(args.iters ?? 5);
const quiet = child;
const log = (...a) => { if (!quiet) console.log(...a); };

if (typeof s.VisionLanguageModel !== 'function') {
  console.error('bench/model.mjs: dist/index.js does not export VisionLanguageModel: lib/index.ts must export ./model; run `npm run build:ts`.');
  process.exit(1);
}
const addon = s.native().addon;
const info = s.systemInfo();
const now = () => performance.now();

// ---------- inputs ----------
let rs = 20240611;
const rand = () => ((rs = (Math.imul(rs, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const image = (size) => ({ width: size, height: size, data: new Uint8Array(size * size * 3).map(() => Math.floor(rand() * 256)) });
const text = (n) => Array.from({ length: n }, () => 8 + Math.floor(rand() * 90)); // no special tokens

function trainBatch(model) {
  const I = model.tokenizer.special.image;
  const seqs = [], resp = [];
  for (let g = 0; g < 4; g++) {
    const img = image(model.config.imageSize);
    const prompt = [I, ...text([20, 24, 28, 24][g])];
    for (let i = 0; i < 8; i++) {
      const n = 24 + 2 * ((i % 5) - 2);
      seqs.push({ tokens: [...prompt, ...text(n)], image: img });
      resp.push(n);
    }
  }
  const batch = model.pack(seqs);
  const rows = [];
  for (let b = 0; b < seqs.length; b++) {
    const end = batch.seqStarts[b + 1];
    for (let r = end - 1 - resp[b]; r <= end - 2; r++) rows.push(r); // row r predicts the response token at r + 1
  }
  const lens = Array.from({ length: seqs.length }, (_, b) => batch.seqStarts[b + 1] - batch.seqStarts[b]);
  return { batch, rows: Int32Array.from(rows), labels: Int32Array.from(rows, (r) => batch.tokens[r + 1]), lens, images: 4 };
}

function genPrompts(model) {
  const I = model.tokenizer.special.image;
  return Array.from({ length: 8 }, (_, p) => ({ tokens: [I, ...text(20 + (p % 3) * 4)], image: image(model.config.imageSize) }));
}

// ---------- FLOPs ----------
function modelFlops(c, shape) {
  const d = c.dim, hd = d / c.heads, kvd = c.kvHeads * hd, np = (c.imageSize / c.patch) ** 2, pd = c.channels * c.patch ** 2;
  const NV = shape.images * np;
  const Pdec = c.layers * (2 * d * d + 2 * d * kvd + 3 * d * c.ffn);
  const Pvis = c.visionLayers * (4 * d * d + 3 * d * c.visionFfn) + d * d;
  const Ppatch = d * pd, Phead = c.vocab * d;
  let A = 0;
  for (const len of shape.lens) A += c.layers * c.heads * 2 * hd * len * (len + 1);
  A += c.visionLayers * c.visionHeads * shape.images * 4 * (d / c.visionHeads) * np * np;
  const fwd = 2 * (shape.N * Pdec + NV * (Pvis + Ppatch) + shape.R * Phead) + A;
  const bwd = 4 * (shape.N * Pdec + NV * Pvis + shape.R * Phead) + 2 * NV * Ppatch + 2 * A;
  return { fwd, bwd, total: fwd + bwd, attention: 3 * A };
}

// Every GEMM of one training step: [M, N, K, tA, tB, count] (nn.cpp matmul_forward / matmul_backward).
function stepGemms(c, N, R, NV) {
  const d = c.dim, hd = d / c.heads, kvd = c.kvHeads * hd, pd = c.channels * c.patch ** 2;
  const out = [];
  const lin = (rows, I, O, times, noDinp = false) => {
    out.push([rows, O, I, false, true, times]); // forward  out = inp W^T
    if (!noDinp) out.push([rows, I, O, false, false, times]); // backward dinp = dout W
    out.push([O, I, rows, true, false, times]); // backward dW += dout^T inp
  };
  const block = (rows, kv, F, L) => {
    lin(rows, d, d, 2 * L); // q, o
    lin(rows, d, kv, 2 * L); // k, v
    lin(rows, d, F, 2 * L); // gate, up
    lin(rows, F, d, L); // down
  };
  block(N, kvd, c.ffn, c.layers);
  lin(R, d, c.vocab, 1); // LM head
  if (NV > 0) {
    block(NV, d, c.visionFfn, c.visionLayers);
    lin(NV, d, d, 1); // projection
    lin(NV, pd, d, 1, true); // patch embedding
  }
  const merged = new Map();
  for (const g of out) {
    const k = g.slice(0, 5).join(',');
    merged.set(k, (merged.get(k) ?? 0) + g[5]);
  }
  return [...merged].map(([k, n]) => {
    const [M, Nn, K, tA, tB] = k.split(',');
    return { M: +M, N: +Nn, K: +K, tA: tA === 'true', tB: tB === 'true', count: n };
  });
}

// ---------- GEMM and attention alone ----------
// Best wall time of fn; lastCpuMs gets its mean CPU time (all threads), which other load inflates less.
let lastCpuMs = 0;
function bestOf(fn, minMs = 150, maxReps = 50) {
  fn();
  let best = Infinity, total = 0, reps = 0;
  const c0 = process.cpuUsage();
  while ((total < minMs || reps < 3) && reps < maxReps) {
    const t0 = now();
    fn();
    const t = now() - t0;
    best = Math.min(best, t);
    total += t;
    reps++;
  }
  const cu = process.cpuUsage(c0);
  lastCpuMs = (cu.user + cu.system) / 1e3 / reps;
  return best;
}
const gemmBufs = new Map();
function gemmMs(g) {
  const key = `${g.M},${g.N},${g.K}`;
  if (!gemmBufs.has(key)) {
    const fill = (n) => new Float32Array(n).map(() => rand() - 0.5);
    gemmBufs.set(key, { A: fill(g.M * g.K), B: fill(g.K * g.N), C: new Float32Array(g.M * g.N) });
  }
  const { A, B, C } = gemmBufs.get(key);
  return bestOf(() => addon.nnOp({ op: 'gemm', M: g.M, N: g.N, K: g.K, A, B, C, tA: g.tA, tB: g.tB, accumulate: false }));
}
const gflops = (flop, ms) => flop / ms / 1e6;

function attentionMs(lens, H, Hkv, hd, causal, backward) {
  const seq = new Int32Array(lens.length + 1);
  lens.forEach((l, i) => (seq[i + 1] = seq[i] + l));
  const N = seq[lens.length];
  const f = (n) => new Float32Array(n).map(() => rand() - 0.5);
  const a = { op: 'attention', H, Hkv, hd, seq, causal, q: f(N * H * hd), k: f(N * Hkv * hd), v: f(N * Hkv * hd), out: new Float32Array(N * H * hd) };
  if (backward) Object.assign(a, { dout: f(N * H * hd), dq: new Float32Array(N * H * hd), dk: new Float32Array(N * Hkv * hd), dv: new Float32Array(N * Hkv * hd) });
  return bestOf(() => addon.nnOp(a));
}

// ---------- the model ----------
function ceGrad(logits, labels, R, V) {
  // d mean cross-entropy / d logits, in place (the masked <image> logit is -inf: its gradient is 0).
  let loss = 0;
  for (let r = 0; r < R; r++) {
    const o = r * V;
    let m = -Infinity;
    for (let j = 0; j < V; j++) m = Math.max(m, logits[o + j]);
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(logits[o + j] - m);
    const lse = m + Math.log(sum);
    loss += (lse - logits[o + labels[r]]) / R;
    for (let j = 0; j < V; j++) logits[o + j] = Math.exp(logits[o + j] - lse) / R;
    logits[o + labels[r]] -= 1 / R;
  }
  return loss;
}

async function trainBench(model, tb, timed, warm = 2) {
  const R = tb.rows.length, V = model.config.vocab;
  const logits = new Float32Array(R * V);
  const runs = [];
  for (let i = 0; i < warm + timed; i++) {
    const c0 = process.cpuUsage();
    const t0 = now();
    await model.forward(tb.batch, tb.rows, logits);
    const t1 = now();
    const loss = ceGrad(logits, tb.labels, R, V);
    const t2 = now();
    await model.backward(logits);
    const t3 = now();
    // AdamW on this step's gradients, then zeroing for the next (both the optimizer's share). Zeroing
    // first, as this bench once did, left AdamW nothing to move the weights with.
    const st = await model.step({ lr: 1e-4 });
    model.zeroGrad();
    const t4 = now();
    const cu = process.cpuUsage(c0);
    if (st.skipped || !Number.isFinite(loss)) throw new Error(`train step ${i}: non-finite loss or gradient`);
    if (i >= warm) runs.push({ forward: t1 - t0, loss: t2 - t1, backward: t3 - t2, step: t4 - t3, total: t4 - t0, cpu: (cu.user + cu.system) / 1e3, lossValue: loss });
  }
  const totals = runs.map((r) => r.total).sort((a, b) => a - b);
  const best = runs.reduce((a, b) => (b.total < a.total ? b : a));
  return { best, medianMs: totals[Math.floor(totals.length / 2)], runs: runs.length };
}

async function genBench(model, prompts) {
  const opts = { samples: 8, maxNew: 48, temperature: 1, seed: 1 };
  await model.generate(prompts, { ...opts, maxNew: 2 }); // warm-up
  let promptMs = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = now();
    await model.generate(prompts, { ...opts, maxNew: 1 });
    promptMs = Math.min(promptMs, now() - t0);
  }
  let best = null;
  for (let i = 0; i < 2; i++) {
    const c0 = process.cpuUsage();
    const t0 = now();
    const out = await model.generate(prompts, opts);
    const ms = now() - t0;
    const cu = process.cpuUsage(c0);
    const tokens = out.reduce((n, x) => n + x.tokens.length, 0);
    if (!best || ms < best.ms) best = { ms, cpuMs: (cu.user + cu.system) / 1e3, tokens, samples: out.length };
  }
  const promptTokens = model.pack(prompts).tokens.length;
  const decodeTokens = best.tokens - best.samples; // the first token of each stream comes from the prompt pass
  return {
    prompts: prompts.length, samples: best.samples, maxNew: opts.maxNew, promptTokens, generated: best.tokens, ms: best.ms, cpuMs: best.cpuMs, promptMs,
    tokensPerS: (best.tokens / best.ms) * 1e3, decodeTokensPerS: (decodeTokens / (best.ms - promptMs)) * 1e3,
  };
}

// Per generated token: the decoder and LM head matmuls plus attention over the cache (~ prompt + maxNew / 2).
function decodeFlopsPerToken(c, avgCtx) {
  const d = c.dim, hd = d / c.heads, kvd = c.kvHeads * hd;
  return 2 * c.layers * (2 * d * d + 2 * d * kvd + 3 * d * c.ffn) + 2 * c.vocab * d + c.layers * c.heads * 4 * hd * avgCtx;
}

// ---------- the CPU's theoretical peak ----------
function cpuPeak() {
  const txt = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const field = (k) => (txt.match(new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm')) ?? [])[1];
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  const vendor = field('vendor_id') ?? '?', family = Number(field('cpu family')), model = Number(field('model'));
  let mhz = null, mhzSource = 'unknown';
  try {
    mhz = Number(fs.readFileSync('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq', 'utf8')) / 1e3;
    mhzSource = 'cpufreq max';
  } catch {
    const m = Number(field('cpu MHz'));
    if (m > 0) (mhz = m), (mhzSource = flags.has('hypervisor') ? '/proc/cpuinfo under a hypervisor (nominal; boost clock unknown)' : '/proc/cpuinfo (current)');
  }
  // FP32 FLOP per cycle per core = FMA pipes x lanes x 2. Two FMA pipes is the norm for AVX2 cores;
  // AMD Zen 4 (family 0x19, AVX-512) runs 512-bit FMAs as two 256-bit halves, so it peaks at the AVX2 rate.
  const zen4 = vendor === 'AuthenticAMD' && family === 0x19 && flags.has('avx512f');
  const lanes = flags.has('avx512f') && !zen4 ? 16 : flags.has('avx2') && flags.has('fma') ? 8 : 4;
  const perCycle = flags.has('fma') ? 2 * lanes * 2 : 2 * lanes; // without FMA: one add + one mul per cycle
  const cores = os.cpus().length;
  return {
    vendor, family, model, cores, mhz, mhzSource, flopPerCyclePerCore: perCycle,
    note: `${zen4 ? 'Zen 4: 2 x 256-bit FMA pipes (AVX-512 double-pumped)' : `assumed 2 FMA pipes x ${lanes} lanes`}`,
    gflops: mhz ? (cores * mhz * perCycle) / 1e3 : null,
  };
}

// ---------- one thread setting ----------
async function childRun() {
  const model = s.VisionLanguageModel.create({ seed: 1 });
  const tb = trainBatch(model);
  const shape = { N: tb.batch.tokens.length, R: tb.rows.length, images: tb.images, lens: tb.lens };
  const fl = modelFlops(model.config, shape);
  const train = await trainBench(model, tb, Math.max(2, iters - 2), 1);
  const gen = await genBench(model, genPrompts(model));
  const g1024 = gemmMs({ M: 1024, N: 1024, K: 1024, tA: false, tB: false });
  const c = model.config;
  const attn = attentionMs(tb.lens, c.heads, c.kvHeads, c.dim / c.heads, true, true);
  model.dispose();
  return {
    threads: info.threads, simd: info.simd, trainMs: train.best.total, trainMedianMs: train.medianMs, tokensPerS: (shape.N / train.best.total) * 1e3,
    trainGflops: gflops(fl.total, train.best.total), cpuMsPerStep: train.best.cpu, phases: train.best, genTokensPerS: gen.tokensPerS, genDecodeTokensPerS: gen.decodeTokensPerS,
    promptMs: gen.promptMs, gemm1024Gflops: gflops(2 * 1024 ** 3, g1024), attentionFwdBwdMsPerLayer: attn,
  };
}

if (child) {
  const r = await childRun();
  console.log(JSON.stringify(r));
  process.exit(0);
}

// ---------- main run ----------
const t00 = now();
const load0 = os.loadavg();
const peak = cpuPeak();
const isaAvail = [];
for (const isa of String(args.isas ?? 'base,avx2,avx512').split(',')) {
  try {
    addon.setCpuIsa({ isa });
    isaAvail.push(isa);
  } catch {}
}
const bestIsa = info.simd;
addon.setCpuIsa({ isa: bestIsa });
log(`sophia-rl model bench: ${info.threads} threads, SIMD ${info.simd} (available: ${isaAvail.join(', ')}); load average ${load0.map((x) => x.toFixed(2)).join(' ')}`);
log(`CPU: ${peak.vendor} family ${peak.family} model ${peak.model}, ${peak.cores} cores, ${peak.mhz ? peak.mhz.toFixed(0) + ' MHz' : 'frequency unknown'} (${peak.mhzSource}); ${peak.flopPerCyclePerCore} FP32 FLOP/cycle/core (${peak.note}) -> theoretical peak ${peak.gflops ? peak.gflops.toFixed(0) + ' GFLOP/s' : 'unknown'}`);

const rss0 = process.memoryUsage().rss;
const model = s.VisionLanguageModel.create({ seed: 1 });
const rssModel = process.memoryUsage().rss;
const c = model.config;
const tb = trainBatch(model);
const shape = { N: tb.batch.tokens.length, R: tb.rows.length, images: tb.images, lens: tb.lens };
const fl = modelFlops(c, shape);
const nonEmb = model.numParams - c.vocab * c.dim;
const naive6 = 6 * nonEmb * shape.N + fl.attention;
const seqSquares = tb.lens.reduce((a, l) => a + l * l, 0);
const plan = model.memoryPlan({ tokens: shape.N, rows: shape.R, images: shape.images, seqSquares });
log(`model: ${model.numParams.toLocaleString('en')} parameters; batch: ${tb.lens.length} sequences, ${shape.N} tokens (${shape.images} images x ${c.imageSize}x${c.imageSize}, ${(c.imageSize / c.patch) ** 2} visual tokens each), ${shape.R} loss rows`);
log(`model FLOPs per training step: ${(fl.total / 1e9).toFixed(2)} GFLOP (forward ${(fl.fwd / 1e9).toFixed(2)}, attention ${(fl.attention / 1e9).toFixed(3)}); 6 x non-embedding params x tokens would say ${(naive6 / 1e9).toFixed(2)}`);

// 1. training at the best ISA
const train = await trainBench(model, tb, iters);
const rssTrain = process.memoryUsage().rss;
const nativeBytes = model.bytes;
// 2. sampling
const gen = await genBench(model, genPrompts(model));
const rssGen = process.memoryUsage().rss;
const maxRss = process.resourceUsage().maxRSS * 1024;

// 4a. GEMM roofline and the step's GEMMs, per ISA; the model at each ISA
const NV = shape.images * (c.imageSize / c.patch) ** 2;
const gemms = stepGemms(c, shape.N, shape.R, NV);
const extra = [
  { label: 'square 1024^3', M: 1024, N: 1024, K: 1024, tA: false, tB: false },
  { label: 'decode gate/up [64x192].[512x192]T', M: 64, N: c.ffn, K: c.dim, tA: false, tB: true },
];
const isaRows = [];
for (const isa of isaAvail) {
  addon.setCpuIsa({ isa });
  const roof = extra.map((g) => ({ ...g, gflops: gflops(2 * g.M * g.N * g.K, gemmMs(g)) }));
  let gemmStepMs = 0, gemmStepCpuMs = 0, gemmFlops = 0, bestShape = 0;
  const shapes = gemms.map((g) => {
    const ms = gemmMs(g);
    gemmStepMs += ms * g.count;
    gemmStepCpuMs += lastCpuMs * g.count;
    gemmFlops += 2 * g.M * g.N * g.K * g.count;
    const gf = gflops(2 * g.M * g.N * g.K, ms);
    bestShape = Math.max(bestShape, gf);
    return { ...g, ms, gflops: gf };
  });
  const tr = isa === bestIsa ? train : await trainBench(model, tb, Math.max(2, iters - 2), 1);
  isaRows.push({
    isa, gemm1024Gflops: roof[0].gflops, decodeGemmGflops: roof[1].gflops, roofline: Math.max(roof[0].gflops, bestShape), shapes,
    gemmStepMs, gemmStepCpuMs, gemmStepGflops: gflops(gemmFlops, gemmStepMs), trainMs: tr.best.total, trainMedianMs: tr.medianMs, trainCpuMs: tr.best.cpu,
    tokensPerS: (shape.N / tr.best.total) * 1e3, trainGflops: gflops(fl.total, tr.best.total),
  });
}
addon.setCpuIsa({ isa: bestIsa });
const best = isaRows.find((r) => r.isa === bestIsa);
// 4b. attention alone (the same sequences, fwd + bwd), decoder and vision tower
const hd = c.dim / c.heads, np = (c.imageSize / c.patch) ** 2;
const attnDecFwd = attentionMs(tb.lens, c.heads, c.kvHeads, hd, true, false);
const attnDecFb = attentionMs(tb.lens, c.heads, c.kvHeads, hd, true, true);
const attnDecFbCpu = lastCpuMs;
const attnVisFb = attentionMs(Array(shape.images).fill(np), c.visionHeads, c.visionHeads, c.dim / c.visionHeads, false, true);
const attnStepMs = c.layers * attnDecFb + c.visionLayers * attnVisFb;
const attnStepCpuMs = c.layers * attnDecFbCpu + c.visionLayers * lastCpuMs;
let attnDecFlop = 0;
for (const len of tb.lens) attnDecFlop += c.heads * 2 * hd * len * (len + 1);

// 4c. threads: a child process per setting
const threadRows = [];
for (const t of String(args.threads ?? '1,2').split(',').filter(Boolean)) {
  const outp = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', '1', '--iters', String(iters)], {
    env: { ...process.env, SOPHIA_NUM_THREADS: t, SOPHIA_QUIET: '1' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
  });
  threadRows.push({ requested: Number(t), ...JSON.parse(outp.trim().split('\n').pop()) });
}
model.dispose();
const load1 = os.loadavg();

// ---------- report ----------
const pad = (x, n) => String(x).padStart(n);
const f1 = (x) => x.toFixed(1), f0 = (x) => x.toFixed(0);
const mb = (b) => (b / 2 ** 20).toFixed(1);
const bt = train.best;
const trainGf = gflops(fl.total, bt.total);
console.log(`\nTraining step (${bestIsa}, ${info.threads} threads; best of ${train.runs}, median total ${f1(train.medianMs)} ms)`);
console.log(`${'phase'.padEnd(28)}${pad('ms', 9)}${pad('share', 8)}${pad('GFLOP/s', 9)}`);
for (const [k, flop] of [['forward', fl.fwd], ['loss gradient (JS)', 0], ['backward', fl.bwd], ['zeroGrad + AdamW step', 0], ['total', fl.total]]) {
  const key = { forward: 'forward', 'loss gradient (JS)': 'loss', backward: 'backward', 'zeroGrad + AdamW step': 'step', total: 'total' }[k];
  console.log(`${k.padEnd(28)}${pad(f1(bt[key]), 9)}${pad(f0((100 * bt[key]) / bt.total) + '%', 8)}${pad(flop ? f1(gflops(flop, bt[key])) : '-', 9)}`);
}
console.log(`throughput: ${f0((shape.N / bt.total) * 1e3)} tokens/s (${f1((tb.lens.length / bt.total) * 1e3)} sequences/s, ${f0((shape.R / bt.total) * 1e3)} loss rows/s); ` +
  `CPU time ${f1(bt.cpu)} ms per step (all threads): ${f0((shape.N / bt.cpu) * 1e3)} tokens and ${f1(gflops(fl.total, bt.cpu))} GFLOP per core-second`);
console.log(`MFU: ${f1((100 * trainGf) / best.roofline)}% of our best GEMM (${f1(best.roofline)} GFLOP/s)` +
  (peak.gflops ? `, ${f1((100 * trainGf) / peak.gflops)}% of the CPU's theoretical peak (${f0(peak.gflops)} GFLOP/s)` : ', theoretical peak unknown'));
const restCpuMs = bt.cpu - best.gemmStepCpuMs - attnStepCpuMs;
console.log(`where the CPU time goes (the step's GEMMs and attention timed alone): GEMMs ${f1(best.gemmStepCpuMs)} ms (${f0((100 * best.gemmStepCpuMs) / bt.cpu)}%), ` +
  `attention ${f1(attnStepCpuMs)} ms (${f0((100 * attnStepCpuMs) / bt.cpu)}%), ` +
  (restCpuMs > 0 ? `the rest ${f1(restCpuMs)} ms (${f0((100 * restCpuMs) / bt.cpu)}%: norms, rotary, SwiGLU, copies, AdamW, JS loss)` : 'the rest: not measurable in this run (the parts timed alone add up to more than the step)'));
console.log(`decoder attention alone: forward ${f1(attnDecFwd)} ms/layer (${f1(gflops(attnDecFlop, attnDecFwd))} GFLOP/s), forward+backward ${f1(attnDecFb)} ms/layer (${f1(gflops(3 * attnDecFlop, attnDecFb))} GFLOP/s)`);

console.log(`\nSampling: ${gen.prompts} prompts x ${gen.samples / gen.prompts} samples x up to ${gen.maxNew} new tokens, temperature 1 (${gen.promptTokens} prompt tokens)`);
const avgCtx = gen.promptTokens / gen.prompts + gen.maxNew / 2;
console.log(`generated ${gen.generated} tokens in ${f1(gen.ms)} ms (CPU ${f0(gen.cpuMs)} ms): ${f0(gen.tokensPerS)} tokens/s; prompt pass (with the KV-cache allocation) ${f1(gen.promptMs)} ms; decode alone ${f0(gen.decodeTokensPerS)} tokens/s (~${f1((gen.decodeTokensPerS * decodeFlopsPerToken(c, avgCtx)) / 1e9)} GFLOP/s)`);

console.log(`\nMemory: RSS ${mb(rss0)} MiB at start, ${mb(rssModel)} MiB with the model, ${mb(rssTrain)} MiB after training, ${mb(rssGen)} MiB after sampling; peak RSS ${mb(maxRss)} MiB`);
console.log(`native bytes after training: ${mb(nativeBytes)} MiB; memoryPlan for the batch: params ${mb(plan.params)}, grads ${mb(plan.grads)}, AdamW ${mb(plan.optimizer)}, activations ${mb(plan.activations)}, attention ${mb(plan.attention)}, scratch ${mb(plan.scratch)}, total ${mb(plan.total)} MiB`);

console.log(`\nInstruction sets (${info.threads} threads): GEMM GFLOP/s and the training step`);
console.log(`${'isa'.padEnd(8)}${pad('1024^3', 9)}${pad('best shape', 11)}${pad('step GEMMs', 11)}${pad('decode GEMM', 12)}${pad('train ms', 10)}${pad('CPU ms', 8)}${pad('tokens/s', 10)}${pad('GFLOP/s', 9)}${pad('MFU', 7)}`);
for (const r of isaRows)
  console.log(`${r.isa.padEnd(8)}${pad(f1(r.gemm1024Gflops), 9)}${pad(f1(Math.max(...r.shapes.map((x) => x.gflops))), 11)}${pad(f1(r.gemmStepGflops), 11)}${pad(f1(r.decodeGemmGflops), 12)}${pad(f1(r.trainMs), 10)}${pad(f0(r.trainCpuMs), 8)}${pad(f0(r.tokensPerS), 10)}${pad(f1(r.trainGflops), 9)}${pad(f0((100 * r.trainGflops) / r.roofline) + '%', 7)}`);
console.log('"best shape": the fastest GEMM shape of the step; "step GEMMs": all the step\'s GEMMs timed alone; MFU against that ISA\'s best GEMM.');

console.log(`\nGEMM shapes of the training step (${bestIsa})`);
console.log(`${'M x N x K'.padEnd(20)}${pad('op', 5)}${pad('calls', 7)}${pad('ms', 8)}${pad('GFLOP/s', 9)}`);
for (const g of best.shapes) console.log(`${`${g.M} x ${g.N} x ${g.K}`.padEnd(20)}${pad(g.tA ? 'TN' : g.tB ? 'NT' : 'NN', 5)}${pad(g.count, 7)}${pad(g.ms.toFixed(2), 8)}${pad(f1(g.gflops), 9)}`);

console.log(`\nThreads (SOPHIA_NUM_THREADS, ${bestIsa}; one child process each)`);
console.log(`${'threads'.padEnd(9)}${pad('train ms', 10)}${pad('CPU ms', 8)}${pad('tokens/s', 10)}${pad('GFLOP/s', 9)}${pad('fwd', 8)}${pad('bwd', 8)}${pad('step', 7)}${pad('gen tok/s', 11)}${pad('prompt ms', 11)}${pad('GEMM 1024', 11)}${pad('attn ms', 9)}`);
for (const r of threadRows)
  console.log(`${String(r.threads).padEnd(9)}${pad(f1(r.trainMs), 10)}${pad(f0(r.cpuMsPerStep), 8)}${pad(f0(r.tokensPerS), 10)}${pad(f1(r.trainGflops), 9)}${pad(f1(r.phases.forward), 8)}${pad(f1(r.phases.backward), 8)}${pad(f1(r.phases.step), 7)}${pad(f0(r.genTokensPerS), 11)}${pad(f1(r.promptMs), 11)}${pad(f1(r.gemm1024Gflops), 11)}${pad(f1(r.attentionFwdBwdMsPerLayer), 9)}`);
console.log(`"CPU ms": CPU time of the step over all threads; "attn ms": decoder attention forward+backward per layer. Load average ${load0.map((x) => x.toFixed(2)).join(' ')} at start, ${load1.map((x) => x.toFixed(2)).join(' ')} at the end (other work on these cores slows every number).`);

const out = args.json ?? 'bench/results/model-cpu.json';
fs.mkdirSync(new URL('.', new URL(out, `file://${process.cwd()}/`)).pathname, { recursive: true });
fs.writeFileSync(out, JSON.stringify({
  date: new Date().toISOString(), threads: info.threads, simd: info.simd, loadAverage: { start: load0, end: load1 }, cpu: peak,
  config: c, numParams: model.numParams,
  batch: { sequences: tb.lens.length, tokens: shape.N, lossRows: shape.R, images: shape.images, visualTokens: NV, lengths: tb.lens },
  flops: { ...fl, naive6NT: naive6, formula: 'see the header of bench/model.mjs' },
  train: { bestMs: bt, medianTotalMs: train.medianMs, tokensPerS: (shape.N / bt.total) * 1e3, gflops: trainGf, mfuVsGemm: trainGf / best.roofline, mfuVsPeak: peak.gflops ? trainGf / peak.gflops : null },
  breakdown: { gemmMs: best.gemmStepMs, gemmCpuMs: best.gemmStepCpuMs, attentionMs: attnStepMs, attentionCpuMs: attnStepCpuMs, stepCpuMs: bt.cpu, restCpuMs, attnDecFwdMsPerLayer: attnDecFwd, attnDecFwdBwdMsPerLayer: attnDecFb, attnVisFwdBwdMsPerLayer: attnVisFb },
  generate: gen,
  memory: { rssStart: rss0, rssModel, rssTrain, rssGen, maxRss, nativeBytes, plan },
  isas: isaRows, threadScaling: threadRows, wallSeconds: (now() - t00) / 1e3,
}, null, 2));
console.log(`wrote ${out} (${f0((now() - t00) / 1e3)} s)`);
