import { SophiaError } from '../../lib/errors';
import { CharTokenizer, expandImageTokens, tokenizerFromJSON, type Tokenizer } from '../../lib/model/tokenizer';

/** mulberry32: a small seeded generator so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const tok = CharTokenizer.default();
const S = tok.special;
const ids = (text: string): number[] => Array.from(tok.encode(text));
const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(SophiaError);
    return (err as SophiaError).code;
  }
  return undefined;
};

describe('CharTokenizer.default', () => {
  test('vocabulary layout: specials first, then printable ASCII and newline', () => {
    expect(tok.kind).toBe('char');
    expect(tok.vocabSize).toBe(104);
    expect(S).toEqual({ pad: 0, eos: 1, unk: 2, image: 3, thinkOpen: 4, thinkClose: 5, answerOpen: 6, answerClose: 7 });
    expect(ids(' ~\n')).toEqual([8, 102, 103]);
    expect(ids('A')).toEqual([8 + 65 - 32]);
  });

  test('round trip of random printable strings', () => {
    const r = rng(20240601);
    const alphabet = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).concat('\n');
    for (let trial = 0; trial < 300; trial++) {
      const len = Math.floor(r() * 200);
      let s = '';
      for (let i = 0; i < len; i++) s += alphabet[Math.floor(r() * alphabet.length)];
      const enc = tok.encode(s);
      expect(enc).toBeInstanceOf(Int32Array);
      expect(tok.decode(enc)).toBe(s);
      // no unk in printable text; all ids in range
      for (const id of enc) expect(id >= 0 && id < tok.vocabSize && id !== S.unk).toBe(true);
    }
  });

  test('round trip of random strings mixing special tokens and the characters they are made of', () => {
    const r = rng(7);
    const pieces = ['<image>', '<think>', '</think>', '<answer>', '</answer>', '<eos>', '<pad>', '<', '>', '/', 'think', 'a', ' ', '\n'];
    for (let trial = 0; trial < 200; trial++) {
      let s = '';
      for (let i = 0; i < 30; i++) s += pieces[Math.floor(r() * pieces.length)];
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
  });

  test('special-token strings map to their single ids', () => {
    expect(ids('<image><think>a</think><answer>b</answer><eos><pad>')).toEqual([
      S.image, S.thinkOpen, ids('a')[0], S.thinkClose, S.answerOpen, ids('b')[0], S.answerClose, S.eos, S.pad,
    ]);
  });

  test('special tokens are recognised only as exact strings', () => {
    for (const s of ['<thinkx', '<think', '<Think>', '< think>', '</think', '<answer >', '<imag>', '<>', '<<think']) {
      const enc = ids(s);
      if (s === '<<think') {
        expect(enc).toEqual([...ids('<'), ...ids('<think')]);
        expect(enc.length).toBe(7);
      } else {
        expect(enc.length).toBe(s.length);
      }
      expect(enc.some((id) => id < 8)).toBe(false);
    }
    expect(ids('<<think>')).toEqual([...ids('<'), S.thinkOpen]);
    expect(ids('</think>>')).toEqual([S.thinkClose, ...ids('>')]);
  });

  test("'<unk>' in text is plain characters: unk comes only from unknown content", () => {
    expect(ids('<unk>')).toEqual(ids('<').concat(ids('unk'), ids('>')));
    expect(tok.decode([S.unk])).toBe('<unk>');
  });

  test('characters outside the vocabulary map to unk, one per code point', () => {
    expect(ids('é')).toEqual([S.unk]);
    expect(ids('a😀b')).toEqual([ids('a')[0], S.unk, ids('b')[0]]); // 😀 is two UTF-16 units, one code point
    expect(ids('👍🏽')).toEqual([S.unk, S.unk]); // emoji + skin-tone modifier: two code points
    expect(ids('\t\r\u0000\u007f')).toEqual([S.unk, S.unk, S.unk, S.unk]);
    expect(ids('\ud800x')).toEqual([S.unk, ids('x')[0]]); // lone surrogate
    expect(ids('日本語')).toEqual([S.unk, S.unk, S.unk]);
    expect(ids('')).toEqual([]);
  });

  test('encode rejects non-strings with E_TYPE', () => {
    for (const bad of [undefined, null, 42, ['a'], { text: 'a' }, Buffer.from('a')]) {
      expect(code(() => tok.encode(bad as never))).toBe('E_TYPE');
    }
  });

  test('decode skipSpecial drops every special token', () => {
    const enc = tok.encode('<image>Q?<think>hm</think><answer>42</answer><eos><pad><pad>');
    const withUnk = Int32Array.from([...enc, S.unk]);
    expect(tok.decode(withUnk, { skipSpecial: true })).toBe('Q?hm42');
    expect(tok.decode(enc, { skipSpecial: false })).toBe('<image>Q?<think>hm</think><answer>42</answer><eos><pad><pad>');
    expect(tok.decode(enc)).toBe(tok.decode(enc, {}));
  });

  test('decode accepts arrays and typed arrays', () => {
    expect(tok.decode([40, 41])).toBe('@A');
    expect(tok.decode(new Uint8Array([40, 41]))).toBe('@A');
    expect(tok.decode(new Float64Array([40, 41]))).toBe('@A');
    expect(tok.decode([])).toBe('');
  });

  test('out-of-range ids: E_RANGE naming the position', () => {
    for (const [bad, pos] of [[[8, 104], 1], [[-1], 0], [[8, 9, 1.5], 2], [[NaN], 0], [[8, Infinity], 1], [[1e10], 0]] as [number[], number][]) {
      expect(() => tok.decode(bad)).toThrow(expect.objectContaining({ code: 'E_RANGE', message: expect.stringContaining(`ids[${pos}]`) }));
    }
    expect(() => tok.decode([8, 104])).toThrow(/ids\[1\] = 104 .*\[0, 104\)/);
    expect(code(() => tok.decode(null as never))).toBe('E_TYPE');
    expect(code(() => tok.decode(5 as never))).toBe('E_TYPE');
  });
});

describe('tokenizer JSON', () => {
  test('round trip through JSON text gives an identical tokenizer', () => {
    const json = JSON.parse(JSON.stringify(tok.toJSON()));
    expect(json.kind).toBe('char');
    expect(json.version).toBe(1);
    expect(json.vocab.length).toBe(104);
    const back: Tokenizer = tokenizerFromJSON(json);
    expect(back.kind).toBe('char');
    expect(back.vocabSize).toBe(tok.vocabSize);
    expect(back.special).toEqual(tok.special);
    expect(back.toJSON()).toEqual(tok.toJSON());
    const text = '<image>What is 2+2?\n<think>easy</think><answer>4</answer><eos>é';
    expect(Array.from(back.encode(text))).toEqual(ids(text));
    expect(back.decode(back.encode(text))).toBe(tok.decode(tok.encode(text)));
  });

  test('toJSON returns a copy: mutating it does not change the tokenizer', () => {
    const json = tok.toJSON();
    json.vocab[8] = 'Z';
    json.special.pad = 5;
    expect(tok.toJSON().vocab[8]).toBe(' ');
    expect(tok.special.pad).toBe(0);
  });

  test('a custom vocabulary (other ids, extra characters) works', () => {
    const json = tok.toJSON();
    json.vocab.push('é', '😀');
    [json.special.pad, json.special.eos] = [json.special.eos, json.special.pad];
    const t = tokenizerFromJSON(json);
    expect(t.vocabSize).toBe(106);
    // roles follow the ids; the strings stay with their ids
    expect(t.special.pad).toBe(1);
    expect(t.special.eos).toBe(0);
    expect(Array.from(t.encode('é😀<eos><pad>'))).toEqual([104, 105, 1, 0]);
    expect(t.decode([104, 105, 0])).toBe('é😀<pad>');
    expect(t.decode([104, 0, 1, 105], { skipSpecial: true })).toBe('é😀');
  });

  const base = (): any => JSON.parse(JSON.stringify(tok.toJSON()));
  const cases: [string, (j: any) => unknown, RegExp][] = [
    ['not an object', () => 'char', /expected an object, got "char"/],
    ['null', () => null, /expected an object, got null/],
    ['an array', () => [], /expected an object/],
    ['unknown kind', (j) => ({ ...j, kind: 'bpe' }), /kind "bpe" is not supported/],
    ['missing kind', (j) => ({ ...j, kind: undefined }), /kind must be "char"/],
    ['bad version', (j) => ({ ...j, version: 2 }), /version must be 1, got 2/],
    ['unknown field', (j) => ({ ...j, merges: [] }), /unknown field "merges"/],
    ['vocab not an array', (j) => ({ ...j, vocab: 'abc' }), /vocab must be an array/],
    ['empty vocab', (j) => ({ ...j, vocab: [] }), /vocab is empty/],
    ['vocab entry not a string', (j) => { j.vocab[10] = 7; return j; }, /vocab\[10\] must be a non-empty string, got 7/],
    ['empty vocab entry', (j) => { j.vocab[10] = ''; return j; }, /vocab\[10\] must be a non-empty string/],
    ['multi-character entry', (j) => { j.vocab[10] = 'ab'; return j; }, /vocab\[10\] = "ab" must be a single character/],
    ['duplicate entry', (j) => { j.vocab[11] = j.vocab[10]; return j; }, /vocab\[11\] = "\\"" repeats vocab\[10\]/],
    ['special missing', (j) => { delete j.special.image; return j; }, /special\.image is missing/],
    ['special not an object', (j) => ({ ...j, special: [0, 1] }), /special must be an object/],
    ['special unknown role', (j) => { j.special.bos = 9; return j; }, /special\.bos is not a special role/],
    ['special id out of range', (j) => { j.special.eos = 104; return j; }, /special\.eos must be an integer id in \[0, 104\), got 104/],
    ['special id not an integer', (j) => { j.special.eos = '1'; return j; }, /special\.eos must be an integer id .*got "1"/],
    ['two roles on one id', (j) => { j.special.eos = 0; return j; }, /special\.eos and special\.pad are both id 0/],
  ];
  test.each(cases)('bad JSON (%s) → E_CONFIG naming the field', (_name, make, message) => {
    const json = make(base());
    expect(() => tokenizerFromJSON(json)).toThrow(expect.objectContaining({ code: 'E_CONFIG' }));
    expect(() => tokenizerFromJSON(json)).toThrow(message);
    expect(() => tokenizerFromJSON(json)).toThrow(/^tokenizer\.json: /);
  });
});

describe('expandImageTokens', () => {
  test('replaces each <image> by nVisual copies', () => {
    const enc = tok.encode('a<image>b<image><image>');
    const out = expandImageTokens(enc, 3);
    expect(out).toBeInstanceOf(Int32Array);
    const a = ids('a')[0];
    const b = ids('b')[0];
    const I = S.image;
    expect(Array.from(out)).toEqual([a, I, I, I, b, I, I, I, I, I, I]);
    expect(Array.from(expandImageTokens(enc, 1))).toEqual(Array.from(enc));
    expect(Array.from(expandImageTokens([a, b], 5))).toEqual([a, b]);
    expect(Array.from(expandImageTokens([], 5))).toEqual([]);
    expect(Array.from(expandImageTokens([9, 50, 9], 2, 9))).toEqual([9, 9, 50, 9, 9]);
  });

  test('does not change its input', () => {
    const enc = tok.encode('<image>x');
    const copy = Int32Array.from(enc);
    expandImageTokens(enc, 4);
    expect(enc).toEqual(copy);
  });

  test('bad arguments', () => {
    expect(code(() => expandImageTokens([3], 0))).toBe('E_RANGE');
    expect(code(() => expandImageTokens([3], 1.5))).toBe('E_RANGE');
    expect(code(() => expandImageTokens([3], NaN))).toBe('E_RANGE');
    expect(code(() => expandImageTokens([3, 2.5], 2))).toBe('E_RANGE');
    expect(() => expandImageTokens([3, 2.5], 2)).toThrow(/ids\[1\]/);
    expect(code(() => expandImageTokens(null as never, 2))).toBe('E_TYPE');
    expect(code(() => expandImageTokens(new Int32Array(1000).fill(3), 3_000_000))).toBe('E_RANGE');
  });
});
