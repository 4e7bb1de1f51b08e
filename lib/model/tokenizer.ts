/**
 * Tokenizers for the embedded model. The `Tokenizer` interface is all the model, the trainer and
 * the checkpoints rely on, so a BPE tokenizer read from a HuggingFace tokenizer.json can implement
 * it later (a new `kind`, a new arm of `TokenizerJSON`, a new case in `tokenizerFromJSON`) without
 * changes elsewhere. Only the character-level tokenizer exists today.
 */
import { SophiaError, describe } from '../errors';

/** The ids of the tokens the model and the trainer treat specially. */
export interface SpecialTokens {
  pad: number;
  eos: number;
  image: number;
  thinkOpen: number;
  thinkClose: number;
  answerOpen: number;
  answerClose: number;
  unk: number;
}

export type SpecialRole = keyof SpecialTokens;

export interface Tokenizer {
  /** Which implementation: 'char' (a BPE tokenizer would say 'bpe'). */
  readonly kind: string;
  /** Number of ids: every id is in [0, vocabSize). */
  readonly vocabSize: number;
  readonly special: SpecialTokens;
  /**
   * Text → ids. The strings of the special tokens (all but unk) map to their single ids; content
   * outside the vocabulary maps to unk. Throws only for a non-string (E_TYPE).
   */
  encode(text: string): Int32Array;
  /** Ids → text. skipSpecial drops every special token (default false). Throws E_RANGE for an id outside the vocabulary. */
  decode(ids: ArrayLike<number>, opts?: { skipSpecial?: boolean }): string;
  /** A serialisable description, saved beside checkpoints as tokenizer.json; tokenizerFromJSON reads it back. */
  toJSON(): TokenizerJSON;
}

/** The saved form of a CharTokenizer. */
export interface CharTokenizerJSON {
  kind: 'char';
  version: 1;
  /** The string of every id, in id order: special tokens' strings and single characters (one code point each). */
  vocab: string[];
  /** The id of each special role; each must be an id in vocab. */
  special: SpecialTokens;
}

/** The saved form of any tokenizer (a union as soon as a second kind exists). */
export type TokenizerJSON = CharTokenizerJSON;

export const SPECIAL_ROLES: readonly SpecialRole[] = ['pad', 'eos', 'unk', 'image', 'thinkOpen', 'thinkClose', 'answerOpen', 'answerClose'];

const DEFAULT_SPECIAL_STRINGS: Record<SpecialRole, string> = {
  pad: '<pad>',
  eos: '<eos>',
  unk: '<unk>',
  image: '<image>',
  thinkOpen: '<think>',
  thinkClose: '</think>',
  answerOpen: '<answer>',
  answerClose: '</answer>',
};

const DEFAULT_IMAGE_ID = SPECIAL_ROLES.indexOf('image');

/**
 * One id per character, special tokens first. The default vocabulary is printable ASCII (32..126)
 * and '\n' after the eight special tokens: pad=0, eos=1, unk=2, image=3, think=4, /think=5,
 * answer=6, /answer=7, then ' ' = 8 … '~' = 102, '\n' = 103 (vocabSize 104).
 */
export class CharTokenizer implements Tokenizer {
  readonly kind = 'char';
  readonly vocabSize: number;
  readonly special: SpecialTokens;
  private readonly vocab: readonly string[];
  private readonly charIds: Map<number, number>;
  private readonly isSpecial: Uint8Array;
  /** Special tokens recognised in text, longest first, so one that is a prefix of another never wins. */
  private readonly matchable: { text: string; id: number }[];
  /** First code units of the matchable strings, for a cheap test before trying them. */
  private readonly matchStarts: Set<number>;

  /** Prefer CharTokenizer.default() or tokenizerFromJSON(), which validate their input. */
  private constructor(vocab: readonly string[], special: SpecialTokens) {
    this.vocab = vocab;
    this.vocabSize = vocab.length;
    this.special = Object.freeze({ ...special });
    this.isSpecial = new Uint8Array(vocab.length);
    for (const role of SPECIAL_ROLES) this.isSpecial[special[role]] = 1;
    this.charIds = new Map();
    vocab.forEach((s, id) => {
      if (!this.isSpecial[id]) this.charIds.set(s.codePointAt(0)!, id);
    });
    // unk is produced only for content outside the vocabulary, never by writing '<unk>'.
    this.matchable = SPECIAL_ROLES.filter((r) => r !== 'unk')
      .map((r) => ({ text: vocab[special[r]], id: special[r] }))
      .sort((a, b) => b.text.length - a.text.length);
    this.matchStarts = new Set(this.matchable.map((m) => m.text.charCodeAt(0)));
  }

  static default(): CharTokenizer {
    const vocab = SPECIAL_ROLES.map((r) => DEFAULT_SPECIAL_STRINGS[r]);
    for (let c = 32; c <= 126; c++) vocab.push(String.fromCharCode(c));
    vocab.push('\n');
    const special = Object.fromEntries(SPECIAL_ROLES.map((r, i) => [r, i])) as unknown as SpecialTokens;
    return new CharTokenizer(vocab, special);
  }

  /** Builds one from a validated CharTokenizerJSON (see tokenizerFromJSON). */
  static fromJSON(json: unknown): CharTokenizer {
    const { vocab, special } = validateCharJSON(json);
    return new CharTokenizer(vocab, special);
  }

  encode(text: string): Int32Array {
    if (typeof text !== 'string') throw new SophiaError('E_TYPE', `encode: text must be a string, got ${describe(text)}`);
    // every token consumes at least one UTF-16 unit
    const out = new Int32Array(text.length);
    let n = 0;
    let i = 0;
    outer: while (i < text.length) {
      if (this.matchStarts.has(text.charCodeAt(i))) {
        for (const m of this.matchable) {
          if (text.startsWith(m.text, i)) {
            out[n++] = m.id;
            i += m.text.length;
            continue outer;
          }
        }
      }
      const cp = text.codePointAt(i)!;
      out[n++] = this.charIds.get(cp) ?? this.special.unk;
      i += cp > 0xffff ? 2 : 1;
    }
    return out.slice(0, n);
  }

  decode(ids: ArrayLike<number>, opts: { skipSpecial?: boolean } = {}): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
      throw new SophiaError('E_TYPE', `decode: ids must be an array or typed array of token ids, got ${describe(ids)}`);
    }
    const skipSpecial = opts?.skipSpecial ?? false;
    const parts: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new SophiaError('E_RANGE', `decode: ids[${i}] = ${describe(id)} is not a token id (expected an integer in [0, ${this.vocabSize}))`);
      }
      if (skipSpecial && this.isSpecial[id]) continue;
      parts.push(this.vocab[id]);
    }
    return parts.join('');
  }

  toJSON(): CharTokenizerJSON {
    return { kind: 'char', version: 1, vocab: [...this.vocab], special: { ...this.special } };
  }
}

function configError(message: string): SophiaError {
  return new SophiaError('E_CONFIG', `tokenizer.json: ${message}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function validateCharJSON(json: unknown): { vocab: string[]; special: SpecialTokens } {
  if (!isPlainObject(json)) throw configError(`expected an object, got ${describe(json)}`);
  for (const key of Object.keys(json)) {
    if (!['kind', 'version', 'vocab', 'special'].includes(key)) throw configError(`unknown field ${JSON.stringify(key)} (expected kind, version, vocab, special)`);
  }
  if (json.kind !== 'char') throw configError(`kind must be "char", got ${describe(json.kind)}`);
  if (json.version !== 1) throw configError(`version must be 1, got ${describe(json.version)}`);
  const vocab = json.vocab;
  if (!Array.isArray(vocab)) throw configError(`vocab must be an array of strings, got ${describe(vocab)}`);
  if (vocab.length === 0) throw configError('vocab is empty');
  vocab.forEach((s, id) => {
    if (typeof s !== 'string' || s.length === 0) throw configError(`vocab[${id}] must be a non-empty string, got ${describe(s)}`);
  });

  const special = json.special;
  if (!isPlainObject(special)) throw configError(`special must be an object of token ids, got ${describe(special)}`);
  for (const key of Object.keys(special)) {
    if (!(SPECIAL_ROLES as readonly string[]).includes(key)) throw configError(`special.${key} is not a special role (expected ${SPECIAL_ROLES.join(', ')})`);
  }
  const roleOf = new Map<number, SpecialRole>();
  for (const role of SPECIAL_ROLES) {
    const id = special[role];
    if (id === undefined) throw configError(`special.${role} is missing`);
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocab.length) {
      throw configError(`special.${role} must be an integer id in [0, ${vocab.length}), got ${describe(id)}`);
    }
    const other = roleOf.get(id);
    if (other !== undefined) throw configError(`special.${role} and special.${other} are both id ${id}`);
    roleOf.set(id, role);
  }

  const firstId = new Map<string, number>();
  (vocab as string[]).forEach((s, id) => {
    if (!roleOf.has(id) && [...s].length !== 1) {
      throw configError(`vocab[${id}] = ${describe(s)} must be a single character (one code point) unless it is a special token`);
    }
    const prev = firstId.get(s);
    if (prev !== undefined) throw configError(`vocab[${id}] = ${describe(s)} repeats vocab[${prev}]`);
    firstId.set(s, id);
  });
  return { vocab: [...(vocab as string[])], special: Object.fromEntries(SPECIAL_ROLES.map((r) => [r, special[r]])) as unknown as SpecialTokens };
}

/** Reads a tokenizer back from its toJSON() form (e.g. a parsed tokenizer.json); E_CONFIG naming the field when it is invalid. */
export function tokenizerFromJSON(json: unknown): Tokenizer {
  if (isPlainObject(json) && json.kind !== undefined && json.kind !== 'char') {
    throw configError(`kind ${describe(json.kind)} is not supported (supported: "char")`);
  }
  return CharTokenizer.fromJSON(json);
}

/**
 * Replaces every `imageId` (default: the default tokenizer's <image>) by nVisual copies of it: the
 * model writes its visual tokens at these positions.
 */
export function expandImageTokens(ids: ArrayLike<number>, nVisual: number, imageId: number = DEFAULT_IMAGE_ID): Int32Array {
  if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
    throw new SophiaError('E_TYPE', `expandImageTokens: ids must be an array or typed array of token ids, got ${describe(ids)}`);
  }
  if (!Number.isInteger(nVisual) || nVisual < 1) {
    throw new SophiaError('E_RANGE', `expandImageTokens: nVisual must be a positive integer, got ${describe(nVisual)}`);
  }
  if (!Number.isInteger(imageId) || imageId < 0) {
    throw new SophiaError('E_RANGE', `expandImageTokens: imageId must be a non-negative integer, got ${describe(imageId)}`);
  }
  let images = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < -0x80000000 || id > 0x7fffffff) {
      throw new SophiaError('E_RANGE', `expandImageTokens: ids[${i}] = ${describe(id)} is not a 32-bit integer token id`);
    }
    if (id === imageId) images++;
  }
  const total = ids.length + images * (nVisual - 1);
  if (total > 0x7fffffff) {
    throw new SophiaError('E_RANGE', `expandImageTokens: ${images} image tokens × nVisual ${nVisual} would give ${total} tokens`);
  }
  const out = new Int32Array(total);
  let n = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id === imageId) {
      out.fill(imageId, n, n + nVisual);
      n += nVisual;
    } else {
      out[n++] = id;
    }
  }
  return out;
}
