/** Error codes a caller can switch on. */
export type SophiaErrorCode =
  | 'E_SHAPE' // lengths or shapes disagree
  | 'E_DTYPE' // wrong element type
  | 'E_RANGE' // a value outside its allowed range
  | 'E_TYPE' // wrong JS type for an argument
  | 'E_DEVICE' // device missing, unusable, or tensors on different devices
  | 'E_IO' // file system or decoding failure
  | 'E_REMOTE' // a remote server failed or answered badly
  | 'E_CONFIG' // an option or option combination is invalid
  | 'E_DISPOSED' // a disposed tensor or model was used
  | 'E_STATE' // a call out of order (backward before forward, resume of a finished run, …)
  | 'E_BUSY' // a model is running another call: await it first
  | 'E_NUMERIC' // non-finite values where finite ones are needed (diverged weights)
  | 'E_INTERNAL'; // a bug in sophia-rl: please report it

export const ERROR_CODES: readonly SophiaErrorCode[] = [
  'E_SHAPE', 'E_DTYPE', 'E_RANGE', 'E_TYPE', 'E_DEVICE', 'E_IO', 'E_REMOTE', 'E_CONFIG', 'E_DISPOSED', 'E_STATE', 'E_BUSY', 'E_NUMERIC',
  'E_INTERNAL',
];

/**
 * The one error type sophia-rl throws. `code` says what kind of problem it is; the message names
 * the argument, what was expected and what came.
 */
export class SophiaError extends Error {
  readonly code: SophiaErrorCode;
  constructor(code: SophiaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SophiaError';
    this.code = code;
  }
}

/** Short description of a value for error messages (never prints large arrays or secrets). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : String(value);
  if (typeof value === 'string') return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor?.name ?? 'TypedArray';
    const len = (value as unknown as { length?: number }).length;
    return len === undefined ? name : `${name}(${len})`;
  }
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'function') return 'a function';
  const ctor = (value as object).constructor?.name;
  return ctor && ctor !== 'Object' ? `a ${ctor}` : 'an object';
}

export function fail(code: SophiaErrorCode, message: string): never {
  throw new SophiaError(code, message);
}
