import { addon } from '../native';
import { SophiaError, describe } from '../errors';
import { options, type Grouping } from './common';

export interface AdvantageInputs extends Grouping {
  rewards: Float32Array;
}

export interface AdvantageOptions {
  /** 'group': per-group std (GRPO, default); 'batch': std over the batch; 'none': no division (Dr. GRPO). */
  scale?: 'group' | 'batch' | 'none';
  /** Added to the std. Default 1e-6. */
  eps?: number;
}

/** A = (R − mean_group) / (std + eps), std unbiased; a group of one has mean 0 and std 1. */
export function groupAdvantages(inputs: AdvantageInputs, opts?: AdvantageOptions): Float32Array {
  if (typeof inputs !== 'object' || inputs === null)
    throw new SophiaError('E_TYPE', `groupAdvantages: inputs must be an object, got ${describe(inputs)}`);
  return addon().groupAdvantages({ ...options('groupAdvantages', 'opts', opts), ...inputs }) as Float32Array;
}
