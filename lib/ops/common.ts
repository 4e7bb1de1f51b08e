import { SophiaError, describe } from '../errors';
import { Tensor, typedArrayKind } from '../tensor';

/** Checks a [N, V] float logits tensor and returns N and V. */
export function logitsShape(fn: string, logits: unknown): { N: number; V: number; tensor: Tensor } {
  if (!(logits instanceof Tensor))
    throw new SophiaError('E_TYPE', `${fn}: logits must be a Tensor of shape [N, V] (wrap a typed array with Tensor.from(data, [N, V])), got ${describe(logits)}`);
  if (logits.shape.length !== 2)
    throw new SophiaError('E_SHAPE', `${fn}: logits must have shape [N, V], got [${logits.shape.join(', ')}]`);
  if (logits.dtype !== 'f32' && logits.dtype !== 'bf16' && logits.dtype !== 'f16')
    throw new SophiaError('E_DTYPE', `${fn}: logits must be f32, bf16 or f16, got ${logits.dtype}`);
  return { N: logits.shape[0], V: logits.shape[1], tensor: logits };
}

/** Host Int32Array from an Int32Array or an i32 host Tensor. */
export function int32Host(fn: string, name: string, value: unknown): Int32Array {
  if (typedArrayKind(value) === 'Int32Array') return value as Int32Array;
  if (value instanceof Tensor) {
    if (value.dtype !== 'i32') throw new SophiaError('E_DTYPE', `${fn}: ${name} must be i32, got ${value.dtype}`);
    return value.toHost().data as Int32Array;
  }
  throw new SophiaError('E_TYPE', `${fn}: ${name} must be an Int32Array, got ${describe(value)}`);
}

export function options<T extends object>(fn: string, name: string, value: T | undefined): Partial<T> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value))
    throw new SophiaError('E_TYPE', `${fn}: ${name} must be an options object, got ${describe(value)}`);
  return value;
}

/** Grouping of responses: `groupSize` consecutive responses, or equal `groupIds`. */
export interface Grouping {
  groupSize?: number;
  groupIds?: Int32Array;
}
