/** Option parsers shared by every command: each says what it expected and what came. */
import { InvalidArgumentError } from 'commander';

/** A whole number in [min, max]. */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*[+-]?\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
}

/** Any finite number. */
export function numberArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got ${JSON.stringify(value)}`);
  return n;
}

/** A finite number > 0. */
export function positiveArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number, got ${JSON.stringify(value)}`);
  return n;
}

/** A number in [0, 1]. */
export function fractionArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !(n >= 0 && n <= 1)) throw new InvalidArgumentError(`expected a number in [0, 1], got ${JSON.stringify(value)}`);
  return n;
}

/** The embedded task's difficulty. */
export function difficultyArg(value: string): 'easy' | 'normal' {
  if (value !== 'easy' && value !== 'normal') throw new InvalidArgumentError(`expected "easy" or "normal", got ${JSON.stringify(value)}`);
  return value;
}
