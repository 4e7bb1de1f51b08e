import { native } from '../native';
import { grpoLoss } from '../ops/grpoLoss';
import { Tensor } from '../tensor';

/**
 * Runs the fused GRPO loss on a small random batch and compares its gradient with a float64
 * computation of the same formula: proof that the installed binary works on this machine.
 */
export async function smokeKernel(N = 64, V = 512, seed = 1) {
  let s = seed >>> 0;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const logits = new Float32Array(N * V).map(() => (rand() - 0.5) * 8);
  const labels = new Int32Array(N).map(() => Math.floor(rand() * V));
  const oldLogp = new Float32Array(N).map(() => -Math.log(V) + (rand() - 0.5));
  const advantages = new Float32Array(N).map(() => rand() * 2 - 1);
  const seqStarts = Int32Array.from({ length: N + 1 }, (_, i) => i);
  const r = await grpoLoss({ logits: Tensor.from(logits, [N, V]), labels, oldLogp, advantages, seqStarts });
  const grad = r.gradLogits!.data as Float32Array;
  let maxErr = 0;
  let loss = 0;
  for (let t = 0; t < N; t++) {
    const row = logits.subarray(t * V, (t + 1) * V);
    let m = -Infinity;
    for (const z of row) m = Math.max(m, z);
    let sum = 0;
    for (const z of row) sum += Math.exp(z - m);
    const lse = m + Math.log(sum);
    const logp = row[labels[t]] - lse;
    const ratio = Math.exp(Math.min(20, Math.max(-20, logp - oldLogp[t])));
    const A = advantages[t];
    const pg1 = -A * ratio;
    const pg2 = -A * Math.min(1.2, Math.max(0.8, ratio));
    loss += Math.max(pg1, pg2) / N;
    const g = pg1 >= pg2 ? (-A * ratio) / N : 0;
    for (let j = 0; j < V; j++) {
      const expect = g * ((j === labels[t] ? 1 : 0) - Math.exp(row[j] - lse));
      maxErr = Math.max(maxErr, Math.abs(expect - grad[t * V + j]));
    }
  }
  const ok = maxErr < 1e-6 && Math.abs(loss - r.loss) < 1e-5;
  return { N, V, backend: native().backend, loss: r.loss, oracleLoss: loss, maxGradError: maxErr, ok };
}
