/** Seedable randomness and argument checks shared by the synthetic task generator. */
import { SophiaError, describe } from './errors';

/** A source of uniform numbers in [0, 1). */
export type Rng = () => number;

/** 32-bit FNV-1a hash of a string. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * A deterministic generator (sfc32, seeded through a string hash so that `seed` and `stream` never
 * collide: createRng(1, 'train') and createRng(1, 'test') are unrelated streams).
 */
export function createRng(seed: number | string, stream = ''): Rng {
  const key = `${typeof seed}:${seed}/${stream}`;
  let a = hashString(key);
  let b = hashString(`b${key}`);
  let c = hashString(`c${key}`);
  let d = 1;
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t / 2 ** 32;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

/** An integer in [lo, hi], both included. */
export function randInt(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)];
}

/** A shuffled copy. */
export function shuffled<T>(rng: Rng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Checks an optional integer option; `fn` and `name` go into the message. */
export function intOption(fn: string, name: string, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw new SophiaError('E_TYPE', `${fn}: ${name} must be an integer, got ${describe(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new SophiaError('E_RANGE', `${fn}: ${name} must be an integer ${range}, got ${describe(value)}`);
  }
  return value;
}

/** Checks an optional option that must be one of `allowed`. */
export function enumOption<T extends string>(fn: string, name: string, value: unknown, fallback: T, allowed: readonly T[]): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string') throw new SophiaError('E_TYPE', `${fn}: ${name} must be a string, one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}; got ${describe(value)}`);
  if (!allowed.includes(value as T)) throw new SophiaError('E_CONFIG', `${fn}: ${name} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${describe(value)}`);
  return value as T;
}

/** Accepts a seed (a safe integer) or a generator; returns a generator. */
export function toRng(fn: string, name: string, value: unknown): Rng {
  if (typeof value === 'function') return value as Rng;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return createRng(value, fn);
  throw new SophiaError('E_TYPE', `${fn}: ${name} must be an integer seed or a () => number generator, got ${describe(value)}`);
}
