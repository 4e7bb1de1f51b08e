import { addon } from '../native';
import { SophiaError, describe } from '../errors';
import { options, type Grouping } from './common';

export type TrustMode = 'paper' | 'reference';

export interface TrustInputs extends Grouping {
  /** Outcome reward Ro per response. */
  outcome: Float32Array;
  /** Thinking reward Rt per response; NaN = missing (excluded from the means, adds 0). */
  thinking: Float32Array;
}

export interface SameGroupOptions {
  /** 'paper' (default) or 'reference' (the public code's behaviour, method.md §2). */
  mode?: TrustMode;
  /** Reference mode: responses with Ro below this are not sent to the reward model. Default 0.2. */
  gate?: number;
  /** Reference mode: a group whose every Ro ≥ this skips the reward model. Default 0.9. */
  allSameHigh?: number;
  /** Reference mode: a group whose every Ro ≤ this skips the reward model. Default 0.1. */
  allSameLow?: number;
}

export interface TrustOptions extends SameGroupOptions {
  /** Thinking-reward weight α. Default 0.3. */
  alpha?: number;
  /** Training step (the reference preset counts from 1). */
  step: number;
  /** Total training steps: the annealing horizon T in paper mode. */
  totalSteps?: number;
  /** Annealing horizon; overrides totalSteps. Default: totalSteps (paper), 500 (reference). */
  T?: number;
  /** Ro ≥ threshold counts as correct. Default 0.5. */
  threshold?: number;
}

export interface TrustResult {
  /** R = Ro + γ·α·exp(−step/T)·Rt per response. */
  rewards: Float32Array;
  /** γ per group: 1, or exp(μc − μw) when wrong answers out-think right ones. */
  gamma: Float32Array;
  /** The weight applied to Rt per group: γ·α·exp(−step/T) (0 where the reference preset skips). */
  thinkingWeight: Float32Array;
  /** Mean Rt of correct responses per group (NaN when none in paper mode, 0 in reference mode). */
  muCorrect: Float32Array;
  /** Mean Rt of wrong responses per group. */
  muWrong: Float32Array;
  /** exp(−step/T). */
  anneal: number;
}

function annealHorizon(o: Partial<TrustOptions>): number {
  if (o.T !== undefined) return o.T;
  if ((o.mode ?? 'paper') === 'reference') return 500;
  if (o.totalSteps === undefined)
    throw new SophiaError('E_CONFIG', 'trustRewards: paper mode anneals over the whole run; pass opts.totalSteps (or opts.T), got neither');
  return o.totalSteps;
}

/** Trust-weighted, annealed rewards per group (method.md §1.4–1.6; `mode: 'reference'` for §2). */
export function trustRewards(inputs: TrustInputs, opts: TrustOptions): TrustResult {
  const o = options('trustRewards', 'opts', opts);
  if (typeof inputs !== 'object' || inputs === null)
    throw new SophiaError('E_TYPE', `trustRewards: inputs must be an object, got ${describe(inputs)}`);
  const T = annealHorizon(o);
  return addon().trustRewards({ ...o, ...inputs, T }) as TrustResult;
}

/**
 * Which responses need a thinking score: all of them in paper mode; in reference mode only those
 * the public code would send to the reward model (so callers can skip the others).
 */
export function thinkingNeeded(outcome: Float32Array, grouping: Grouping, opts?: SameGroupOptions): Uint8Array {
  const o = options('thinkingNeeded', 'opts', opts);
  const g = options('thinkingNeeded', 'grouping', grouping);
  return addon().thinkingNeeded({ ...o, groupSize: g.groupSize, groupIds: g.groupIds, outcome }) as Uint8Array;
}
