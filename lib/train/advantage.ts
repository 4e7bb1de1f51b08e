/**
 * How the thinking reward enters the advantages (issue: keep Rt from dominating groups whose G
 * outcomes are all equal). With the paper's formula, A = norm_g(Ro + w·Rt): in such a group Ro is a
 * constant, so the group std normalisation blows the small differences of w·Rt up to unit
 * advantages, whatever γ, α and the annealing say. The modes:
 *
 * - 'paper': A = (R − mean_g R) / (std_g R + ε), R = Ro + w·Rt (SophiaVL-R1, method.md §1.7).
 * - 'centred': A = norm_g(Ro) + w·(Rt − mean_g Rt): the outcome part is normalised per group, the
 *   trust-weighted, annealed thinking part is only centred, never rescaled, so it moves an
 *   all-same-outcome group by at most w.
 * - 'skip-uniform': the paper's formula, but a group whose outcomes are all equal gets no thinking
 *   reward (advantage 0), as the reference code skips the reward model there (method.md §2).
 *
 * w is the per-group weight γ·α·exp(−step/T); a missing (NaN) Rt adds 0.
 */
import { SophiaError, describe } from '../errors';
import { groupAdvantages } from '../ops/advantages';
import { pearson } from '../stats';

export type AdvantageMode = 'paper' | 'centred' | 'skip-uniform';
export const ADVANTAGE_MODES: readonly AdvantageMode[] = ['paper', 'centred', 'skip-uniform'];

export interface AdvantageParts {
  /** Ro per response, [n]. */
  outcome: Float32Array;
  /** Rt per response, NaN = missing, [n]. */
  thinking: Float32Array;
  /** Weight applied to Rt per group (γ·α·anneal), [n / G]. */
  weight: Float32Array;
  groupSize: number;
}

export interface ComposedAdvantages {
  /** The scalar reward each response is credited with (R = Ro + w·Rt; Ro alone where Rt is left out). */
  rewards: Float32Array;
  advantages: Float32Array;
  /** Per group: all outcomes equal. */
  uniform: Uint8Array;
}

/** Whether every outcome of group g is the same. */
function uniformGroups(outcome: Float32Array, G: number): Uint8Array {
  const groups = outcome.length / G;
  const u = new Uint8Array(groups);
  for (let g = 0; g < groups; g++) {
    let same = 1;
    for (let j = 1; j < G; j++) if (outcome[g * G + j] !== outcome[g * G]) same = 0;
    u[g] = same;
  }
  return u;
}

export function composeAdvantages(p: AdvantageParts, mode: AdvantageMode, opts: { scale?: 'group' | 'batch' | 'none'; eps?: number } = {}): ComposedAdvantages {
  const fn = 'composeAdvantages';
  if (!ADVANTAGE_MODES.includes(mode)) throw new SophiaError('E_CONFIG', `${fn}: mode must be one of ${ADVANTAGE_MODES.join(', ')}, got ${describe(mode)}`);
  const G = p.groupSize;
  const n = p.outcome.length;
  if (!Number.isInteger(G) || G < 1 || n % G !== 0) throw new SophiaError('E_SHAPE', `${fn}: groupSize must divide the ${n} outcomes, got ${describe(G)}`);
  if (p.thinking.length !== n) throw new SophiaError('E_SHAPE', `${fn}: thinking must have ${n} entries (one per outcome), got ${p.thinking.length}`);
  if (p.weight.length !== n / G) throw new SophiaError('E_SHAPE', `${fn}: weight must have ${n / G} entries (one per group), got ${p.weight.length}`);
  const scale = opts.scale ?? 'group';
  const eps = opts.eps ?? 1e-6;
  const uniform = uniformGroups(p.outcome, G);
  const rt = (i: number): number => (Number.isNaN(p.thinking[i]) ? 0 : p.thinking[i]);
  const rewards = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = Math.floor(i / G);
    rewards[i] = mode === 'skip-uniform' && uniform[g] ? p.outcome[i] : p.outcome[i] + p.weight[g] * rt(i);
  }
  if (mode !== 'centred') return { rewards, advantages: groupAdvantages({ rewards, groupSize: G }, { scale, eps }), uniform };
  const advantages = groupAdvantages({ rewards: p.outcome, groupSize: G }, { scale, eps });
  for (let g = 0; g < n / G; g++) {
    let s = 0, k = 0;
    for (let j = 0; j < G; j++) {
      const v = p.thinking[g * G + j];
      if (!Number.isNaN(v)) (s += v), k++;
    }
    if (k === 0) continue;
    const m = s / k;
    for (let j = 0; j < G; j++) {
      const i = g * G + j;
      if (!Number.isNaN(p.thinking[i])) advantages[i] += p.weight[g] * (p.thinking[i] - m);
    }
  }
  return { rewards, advantages, uniform };
}

/** Share of groups whose outcomes are all equal, and their share of the total |advantage|. */
export function uniformShares(c: ComposedAdvantages, G: number): { groups: number; absAdvantage: number } {
  let all = 0, inUniform = 0;
  for (let i = 0; i < c.advantages.length; i++) {
    const a = Math.abs(c.advantages[i]);
    all += a;
    if (c.uniform[Math.floor(i / G)]) inUniform += a;
  }
  const u = c.uniform.reduce((a, b) => a + b, 0);
  return { groups: c.uniform.length ? u / c.uniform.length : 0, absAdvantage: all > 0 ? inUniform / all : 0 };
}

/**
 * Mean over groups of the Pearson correlation between Rt and a reference score (the judge) inside
 * the group; groups where either is constant or Rt is missing are left out. NaN when no group counts.
 */
export function withinGroupCorrelation(thinking: ArrayLike<number>, reference: ArrayLike<number>, G: number): number {
  let sum = 0, groups = 0;
  for (let g = 0; g * G < thinking.length; g++) {
    const x: number[] = [], y: number[] = [];
    for (let j = 0; j < G; j++) {
      const i = g * G + j;
      if (!Number.isNaN(thinking[i])) (x.push(thinking[i]), y.push(reference[i]));
    }
    const r = pearson(x, y);
    if (Number.isNaN(r)) continue;
    sum += r;
    groups++;
  }
  return groups ? sum / groups : NaN;
}
