// CPU benchmark of logprobs and grpoLoss (forward, forward+backward).
//   node bench/kernels.mjs [--n 4096] [--v 32768,151936] [--dtypes f32,bf16] [--reps 3] [--json out.json]
// Reports achieved GB/s (logits bytes read once, plus the gradient written once for backward)
// against a plain streaming read measured in the same run (the roofline), and against a
// straightforward JavaScript implementation of the same maths (timed on a subset of rows).
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
const require = createRequire(import.meta.url);
const s = require('../dist/index.js');

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const N = Number(args.n ?? 4096);
const Vs = String(args.v ?? '32768,151936').split(',').map(Number);
const dtypes = String(args.dtypes ?? 'f32,bf16').split(',');
const reps = Number(args.reps ?? 3);
const baselineRows = Number(args['baseline-rows'] ?? 64);

const addon = s.native().addon;
const info = s.systemInfo();
const bw = addon.streamRead({ bytes: 1 << 30, iters: 4 }).gbps;
console.log(`sophia-rl CPU kernels: ${info.threads} threads, SIMD ${info.simd}; measured streaming read: ${bw.toFixed(2)} GB/s`);

function time(fn) {
  fn(); // warm-up (page faults, thread pool)
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return best;
}

// The same maths written plainly in JavaScript (what a user would write without the addon).
function jsRowLse(logits, V, t) {
  let m = -Infinity;
  for (let j = 0; j < V; j++) m = Math.max(m, logits[t * V + j]);
  let sum = 0;
  for (let j = 0; j < V; j++) sum += Math.exp(logits[t * V + j] - m);
  return m + Math.log(sum);
}
function jsLogprobs(logits, V, labels, rows) {
  const out = new Float64Array(rows);
  for (let t = 0; t < rows; t++) out[t] = logits[t * V + labels[t]] - jsRowLse(logits, V, t);
  return out;
}
function jsGrpoFwdBwd(logits, V, labels, old, adv, rows, grad) {
  let loss = 0;
  for (let t = 0; t < rows; t++) {
    const lse = jsRowLse(logits, V, t);
    const ratio = Math.exp(Math.min(20, Math.max(-20, logits[t * V + labels[t]] - lse - old[t])));
    const pg1 = -adv[t] * ratio, pg2 = -adv[t] * Math.min(1.2, Math.max(0.8, ratio));
    loss += Math.max(pg1, pg2) / rows;
    const g = pg1 >= pg2 ? (-adv[t] * ratio) / rows : 0;
    for (let j = 0; j < V; j++) grad[t * V + j] = -g * Math.exp(logits[t * V + j] - lse);
    grad[t * V + labels[t]] += g;
  }
  return loss;
}

const rows = [];
function randomLogits(n, seed) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    out[i] = (seed / 2 ** 32) * 16 - 8;
  }
  return out;
}
for (const V of Vs) {
  const labels = new Int32Array(N).map((_, i) => (i * 7919) % V);
  const oldLogp = new Float32Array(N).fill(-Math.log(V));
  const adv = new Float32Array(N).map((_, i) => (i % 3) - 1);
  const seqStarts = Int32Array.from({ length: 65 }, (_, b) => Math.round((b * N) / 64));
  for (const dtype of dtypes) {
    // One dtype's arrays at a time: at N=4096, V=151936 an f32 copy is 2.5 GB.
    let data = randomLogits(N * V, 12345 + V);
    if (dtype !== 'f32') data = dtype === 'bf16' ? s.float32ToBf16(data) : s.float32ToF16(data);
    const logits = s.Tensor.from(data, [N, V], dtype);
    const elem = dtype === 'f32' ? 4 : 2;
    const bytes = N * V * elem;
    const inputs = { logits, labels, oldLogp, advantages: adv, advantagesPer: 'token', seqStarts };
    const work = dtype === 'f32' ? new Float32Array(N * V) : new Uint16Array(N * V);
    const inplaceLogits = s.Tensor.from(work, [N, V], dtype);
    const gradOut = s.Tensor.zeros([N, V], dtype);
    const cases = [
      ['logprobs', () => s.logprobsSync(logits, labels), bytes],
      ['grpoLoss fwd', () => s.grpoLossSync(inputs, { backward: false }), bytes],
      ['grpoLoss fwd+bwd (new buffer)', () => s.grpoLossSync(inputs), 2 * bytes],
      ['grpoLoss fwd+bwd gradOut', () => s.grpoLossSync({ ...inputs, gradOut }), 2 * bytes],
      ['grpoLoss fwd+bwd inplace', () => s.grpoLossSync({ ...inputs, logits: inplaceLogits }, { inplace: true }), 2 * bytes],
    ];
    // Plain JS on the first rows (as f32 values), scaled to the whole batch.
    const head = s.Tensor.from(data.subarray(0, baselineRows * V), [baselineRows, V], dtype).toFloat32();
    const jsGrad = new Float32Array(baselineRows * V);
    const jsLp = time(() => jsLogprobs(head, V, labels, baselineRows)) * (N / baselineRows);
    const jsFb = time(() => jsGrpoFwdBwd(head, V, labels, oldLogp, adv, baselineRows, jsGrad)) * (N / baselineRows);
    for (const [name, fn, moved] of cases) {
      // In place overwrites its input: refill before each run and subtract the refill's time.
      const t = name.includes('inplace') ? time(() => { work.set(data); fn(); }) - time(() => work.set(data)) : time(fn);
      const gbps = moved / t / 1e9;
      const js = name === 'logprobs' ? jsLp : name.startsWith('grpoLoss fwd+bwd') ? jsFb : undefined;
      rows.push({ kernel: name, N, V, dtype, ms: t * 1e3, gbps, ofRoofline: gbps / bw, speedupVsJs: js ? js / t : undefined });
    }
  }
}

const pad = (x, n) => String(x).padStart(n);
console.log(`\n${'kernel'.padEnd(31)}${pad('N', 6)}${pad('V', 8)}${pad('dtype', 6)}${pad('ms', 10)}${pad('GB/s', 8)}${pad('% read BW', 11)}${pad('x JS', 8)}`);
for (const r of rows) {
  console.log(`${r.kernel.padEnd(31)}${pad(r.N, 6)}${pad(r.V, 8)}${pad(r.dtype, 6)}${pad(r.ms.toFixed(1), 10)}${pad(r.gbps.toFixed(2), 8)}${pad((100 * r.ofRoofline).toFixed(0) + '%', 11)}${pad(r.speedupVsJs ? r.speedupVsJs.toFixed(1) : '-', 8)}`);
}
console.log('\nGB/s counts the logits read once (and the gradient written once for fwd+bwd); "x JS" is the speed-up over plain JavaScript of the same maths.');
console.log('"new buffer" includes the first-touch page faults of a fresh N*V gradient; gradOut and inplace reuse memory.');
const out = args.json ?? 'bench/results/kernels-cpu.json';
fs.mkdirSync(new URL('.', new URL(out, `file://${process.cwd()}/`)).pathname, { recursive: true });
fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), readBandwidthGBps: bw, threads: info.threads, simd: info.simd, rows }, null, 2));
console.log(`wrote ${out}`);
