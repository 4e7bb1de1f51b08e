/**
 * Numerical-answer equivalence, following the reference grader (method.md §4): a MATH-style string
 * normalisation, then a second normalisation with element-wise comparison of tuples and intervals,
 * where the last resort is "the difference is zero" checked with mathjs (parsed, never eval'd).
 */
import type { MathNode } from 'mathjs';
import { SophiaError, describe } from '../errors';

export interface GradeOptions {
  /** Time bound for one comparison's symbolic step, in ms (default 200). Past it the answer is graded wrong. */
  timeoutMs?: number;
}

// ---------------------------------------------------------------- first normalisation (MATH style)

function fixFracs(s: string): string {
  // "\frac12" → "\frac{1}{2}", "\frac1{2}" → "\frac{1}{2}", "\frac{1}2" → "\frac{1}{2}"
  const parts = s.split('\\frac');
  let out = parts[0];
  for (const part of parts.slice(1)) {
    out += '\\frac';
    if (part.startsWith('{')) {
      const close = matchingBrace(part, 0);
      if (close < 0) return s;
      const rest = part.slice(close + 1);
      if (rest.length > 0 && rest[0] !== '{') out += part.slice(0, close + 1) + '{' + rest[0] + '}' + rest.slice(1);
      else out += part;
    } else {
      if (part.length < 2) return s;
      const [a, b] = [part[0], part[1]];
      out += b === '{' ? `{${a}}${part.slice(1)}` : `{${a}}{${b}}${part.slice(2)}`;
    }
  }
  return out;
}

function fixSqrt(s: string): string {
  return s.replace(/\\sqrt([^{\[\\])/g, '\\sqrt{$1}');
}

/** MATH-style normalisation (the first comparison). */
export function normalizeMathd(answer: string): string {
  let s = answer.trim();
  const text = /^\\text\{(.+?)\}$/.exec(s);
  if (text) s = text[1].trim();
  s = s.replace(/\n/g, '').replace(/\\!/g, '').replace(/\\\\/g, '\\');
  s = s.replace(/tfrac/g, 'frac').replace(/dfrac/g, 'frac');
  s = s.replace(/\\left/g, '').replace(/\\right/g, '');
  s = s.replace(/\^\{\\circ\}/g, '').replace(/\^\\circ/g, '');
  s = s.replace(/\\\$/g, '');
  const unit = s.indexOf('\\text{ ');
  if (unit >= 0) s = s.slice(0, unit);
  s = s.replace(/\\%/g, '').replace(/%/g, '');
  s = s.replace(/ \./g, ' 0.').replace(/\{\./g, '{0.');
  if (s.length === 0) return s;
  if (s[0] === '.') s = '0' + s;
  const eq = s.split('=');
  if (eq.length === 2 && eq[0].length <= 2) s = eq[1];
  s = fixSqrt(s);
  s = s.replace(/ /g, '');
  s = fixFracs(s);
  if (s === '0.5') s = '\\frac{1}{2}';
  const slash = /^(-?\d+)\/(\d+)$/.exec(s);
  if (slash) s = `\\frac{${slash[1]}}{${slash[2]}}`;
  return s;
}

// ---------------------------------------------------------------- second normalisation

const UNIT_WORDS = [
  'degree', 'cm', 'centimeter', 'meter', 'mile', 'second', 'minute', 'hour', 'day', 'week', 'month', 'year',
  'foot', 'feet', 'inch', 'yard',
];
const UNIT_RE = UNIT_WORDS.map((u) => new RegExp(`${u}(es)?(s)? *(\\^[0-9]+)?`, 'g'));

function matchingBrace(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}' && --depth === 0) return i;
  }
  return -1;
}

/** Reads a `{group}` or a single character at i; returns its content and the index after it. */
function readArg(s: string, i: number): [string, number] | null {
  while (s[i] === ' ') i++;
  if (i >= s.length) return null;
  if (s[i] === '{') {
    const close = matchingBrace(s, i);
    return close < 0 ? null : [s.slice(i + 1, close), close + 1];
  }
  if (s[i] === '\\') {
    const m = /^\\[a-zA-Z]+/.exec(s.slice(i));
    if (m) return [m[0], i + m[0].length];
  }
  return [s[i], i + 1];
}

const ATOM = /^-?[0-9a-zA-Z.]+$/;
const wrap = (x: string): string => (ATOM.test(x) ? x : `(${x})`);

const SYMBOLS: Record<string, string> = {
  pi: 'pi', infty: 'inf', infinity: 'inf', cup: 'U', cdot: '*', times: '*', div: '/', le: '<=', leq: '<=',
  ge: '>=', geq: '>=', ne: '!=', neq: '!=', pm: '±', circ: '', '%': '%', '$': '$', '{': '{', '}': '}',
  ',': ' ', ';': ' ', ':': ' ', '!': '', ' ': ' ', quad: ' ', qquad: ' ',
};
const UNWRAP = new Set(['text', 'textbf', 'textit', 'mathrm', 'mathbf', 'mathit', 'operatorname', 'boxed', 'mbox']);

/** Converts the LaTeX found in answers to plain maths text (`\frac{a}{b}` → `a/b`, `\sqrt{x}` → `sqrt(x)`). */
export function latexToText(expr: string): string {
  let s = expr.replace(/\\[td]frac/g, '\\frac');
  let out = '';
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c !== '\\') {
      if (c === '^' && s[i + 1] === '{') {
        const arg = readArg(s, i + 1)!;
        if (arg) {
          const inner = latexToText(arg[0]);
          out += '^' + (inner.length === 1 ? inner : `(${inner})`);
          i = arg[1];
          continue;
        }
      }
      out += c;
      i++;
      continue;
    }
    const m = /^\\([a-zA-Z]+|.)/.exec(s.slice(i));
    if (!m) {
      i++;
      continue;
    }
    const name = m[1];
    i += m[0].length;
    if (name === 'frac') {
      const a = readArg(s, i);
      const b = a && readArg(s, a[1]);
      if (!a || !b) return expr;
      out += ` ${wrap(latexToText(a[0]))}/${wrap(latexToText(b[0]))}`;
      i = b[1];
    } else if (name === 'sqrt') {
      let index: string | null = null;
      if (s[i] === '[') {
        const close = s.indexOf(']', i);
        if (close < 0) return expr;
        index = latexToText(s.slice(i + 1, close));
        i = close + 1;
      }
      const a = readArg(s, i);
      if (!a) return expr;
      const inner = latexToText(a[0]);
      out += index === null ? `sqrt(${inner})` : `(${inner})^(1/${wrap(index)})`;
      i = a[1];
    } else if (UNWRAP.has(name)) {
      const a = readArg(s, i);
      if (!a) return expr;
      out += latexToText(a[0]);
      i = a[1];
    } else if (name in SYMBOLS) {
      out += SYMBOLS[name];
    } else {
      out += name; // unknown macros (\alpha, \sin) keep their name as text
    }
  }
  return out.replace(/√/g, 'sqrt').replace(/π/g, 'pi').replace(/∞/g, 'inf').replace(/[·×]/g, '*').trim();
}

const THOUSANDS = /(\d)(,)(\d\d\d)($|\D)/;
function stripThousands(s: string): string {
  let prev: string;
  do {
    prev = s;
    s = s.replace(new RegExp(THOUSANDS.source, 'g'), '$1$3$4');
  } while (s !== prev);
  return s;
}

function isFloatString(s: string): boolean {
  return /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(s);
}

function strIsInt(s: string): boolean {
  const t = stripThousands(s);
  if (!isFloatString(t)) return false;
  const x = Number(t);
  return Math.abs(x - Math.round(x)) <= 1e-7;
}

function strToInt(s: string): string {
  const x = Number(s.replace(/,/g, ''));
  return BigInt(Math.trunc(x)).toString();
}

/** The second normalisation (units, words, LaTeX to plain text, lower case, thousands separators). */
export function normalizeAnswer(answer: string): string {
  let s = answer;
  const text = /^\\text\{(.+?)\}$/.exec(s);
  if (text) s = text[1];
  s = s.replace(/\\%/g, '%').replace(/\\\$/g, '$').replace(/\$/g, '').replace(/%/g, '');
  s = s.replace(/ or /g, ' , ').replace(/ and /g, ' , ');
  s = s.replace(/million/g, '*10^6').replace(/billion/g, '*10^9').replace(/trillion/g, '*10^12');
  for (const re of UNIT_RE) s = s.replace(re, '');
  s = s.replace(/\^ *\\circ/g, '');
  if (s.length > 0 && s[0] === '{' && s[s.length - 1] === '}') s = s.slice(1, -1);
  s = s.replace(/,\\! */g, '');
  if (isFloatString(s) && strIsInt(s)) s = String(Math.round(Number(s)));
  if (s.includes('\\')) s = latexToText(s);
  s = s.replace(/- */g, '-');
  s = s.replace(/([0-9]) +([0-9])/g, '$1+$2'); // a mixed number "7 3/4" means 7+3/4
  s = s.replace(/ /g, '').replace(/[{}]/g, '').toLowerCase();
  if (strIsInt(s)) s = strToInt(s);
  return s;
}

const TUPLE_CHARS = '()[]';
function splitTuple(expr: string): string[] {
  const s = stripThousands(expr);
  if (s.length === 0) return [];
  const inner = s.slice(1, -1);
  if (s.length > 2 && TUPLE_CHARS.includes(s[0]) && TUPLE_CHARS.includes(s[s.length - 1]) && ![...TUPLE_CHARS].some((c) => inner.includes(c))) {
    return inner.split(',').map((e) => e.trim());
  }
  return [s];
}

function isFrac(s: string): boolean {
  return /^-?[0-9]+.?\/0*[1-9][0-9]*.?$/.test(s);
}

// ---------------------------------------------------------------- "the difference is zero" with mathjs

/** Mirrors the reference's guard: at most two unknown letters and no large or compound powers. */
function shouldAllowSymbolic(expr: string): boolean {
  const letters = new Set(expr.replace(/sqrt/g, '').replace(/frac/g, '').replace(/[^a-z]/gi, ''));
  if (letters.size > 2) return false;
  if (expr.includes('^{') || expr.includes('^(')) return false;
  return !/\^[0-9]+\^/.test(expr) && !/\^[0-9][0-9]+/.test(expr);
}

const FUNCTIONS = new Set(['sqrt', 'sin', 'cos', 'tan', 'log', 'exp', 'abs']);
const CONSTANTS = new Set(['pi', 'Infinity']);

/** Rewrites normalised text into mathjs syntax: `**`, implicit products between letters, `ln`, `inf`. */
function toMathjs(s: string): string {
  let out = s.replace(/\*\*/g, '^').replace(/\binf\b/g, 'Infinity');
  out = out.replace(/[a-zA-Z]+/g, (word) => {
    if (word === 'ln') return 'log';
    if (FUNCTIONS.has(word) || CONSTANTS.has(word)) return word;
    return word.split('').join('*'); // as sympy's implicit parsing: "xy" is x*y
  });
  // a single letter before "(" multiplies: "x(x+1)" is x*(x+1), not a call of x
  return out.replace(/(^|[^a-zA-Z])([a-zA-Z])\(/g, '$1$2*(');
}

interface MathjsLite {
  parse(expr: string): MathNode;
}
let mathjs: MathjsLite | null = null;
function loadMathjs(): MathjsLite {
  // the number-only build loads in half the time of the full one and is all the grader needs
  mathjs ??= require('mathjs/number') as MathjsLite;
  return mathjs;
}

/** Parses and checks that only arithmetic, whitelisted functions, constants and single letters occur. */
function parseSafe(expr: string, letters: Set<string>): MathNode | null {
  let node: MathNode;
  try {
    node = loadMathjs().parse(expr);
  } catch {
    return null;
  }
  let ok = true;
  node.traverse((n: MathNode, _path: string, parent: MathNode | null) => {
    switch (n.type) {
      case 'ConstantNode':
        if (typeof (n as unknown as { value: unknown }).value !== 'number') ok = false;
        break;
      case 'ParenthesisNode':
        break;
      case 'OperatorNode':
        if (!['add', 'subtract', 'multiply', 'divide', 'pow', 'unaryMinus', 'unaryPlus'].includes((n as unknown as { fn: string }).fn)) ok = false;
        break;
      case 'FunctionNode':
        if (!FUNCTIONS.has((n as unknown as { fn: { name: string } }).fn.name)) ok = false;
        break;
      case 'SymbolNode': {
        const name = (n as unknown as { name: string }).name;
        const isCallee = parent?.type === 'FunctionNode' && (parent as unknown as { fn: MathNode }).fn === n;
        if (isCallee) break;
        if (CONSTANTS.has(name)) break;
        if (/^[a-z]$/.test(name)) letters.add(name);
        else ok = false;
        break;
      }
      default:
        ok = false;
    }
  });
  return ok ? node : null;
}

/** Deterministic sample points, so a grade never changes between runs. */
function* samplePoints(count: number): Generator<number> {
  let state = 0x9e3779b9;
  for (let k = 0; k < count; k++) {
    state = (Math.imul(state ^ (state >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    yield -2.5 + (5 * state) / 2 ** 32;
  }
}

function nearlyEqual(a: number, b: number): boolean {
  if (a === b) return true;
  return Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(a), Math.abs(b));
}

/** True when gt − given is identically zero: exactly for constants, at many points for one or two letters. */
function equalUnderMaths(gt: string, given: string, deadline: number): boolean {
  const expr = `(${gt})-(${given})`;
  if (expr.length > 240 || !shouldAllowSymbolic(expr)) return false;
  const letters = new Set<string>();
  const a = parseSafe(toMathjs(gt), letters);
  const b = parseSafe(toMathjs(given), letters);
  if (!a || !b || letters.size > 2) return false;
  const fa = a.compile();
  const fb = b.compile();
  const names = [...letters];
  const points = samplePoints(names.length === 0 ? 1 : 12 * names.length);
  let agreed = 0;
  while (true) {
    if (performance.now() > deadline) return false;
    const scope: Record<string, number> = {};
    let done = false;
    for (const name of names) {
      const next = points.next();
      if (next.done) done = true;
      else scope[name] = next.value;
    }
    if (done) break;
    let va: unknown, vb: unknown;
    try {
      va = fa.evaluate({ ...scope });
      vb = fb.evaluate({ ...scope });
    } catch {
      return false;
    }
    if (typeof va !== 'number' || typeof vb !== 'number') return false;
    if (!Number.isFinite(va) || !Number.isFinite(vb)) continue; // a pole or a root of a negative: not evidence
    if (!nearlyEqual(va, vb)) return false;
    agreed++;
    if (names.length === 0) break;
  }
  return agreed >= (names.length === 0 ? 1 : 3);
}

const MAX_ANSWER_CHARS = 2000;

/**
 * True when `pred` is mathematically equivalent to `groundTruth` under the reference grader's rules:
 * both normalisations, tuples and intervals element-wise, unreduced fractions must match exactly, an
 * integer never equals a non-integer, otherwise the difference must be zero.
 */
export function gradeAnswer(pred: string, groundTruth: string, opts: GradeOptions = {}): boolean {
  if (typeof pred !== 'string') throw new SophiaError('E_TYPE', `gradeAnswer: pred must be a string, got ${describe(pred)}`);
  if (typeof groundTruth !== 'string') {
    throw new SophiaError('E_TYPE', `gradeAnswer: groundTruth must be a string, got ${describe(groundTruth)}`);
  }
  const timeoutMs = opts.timeoutMs ?? 200;
  if (!(timeoutMs > 0)) throw new SophiaError('E_RANGE', `gradeAnswer: timeoutMs must be > 0, got ${describe(timeoutMs)}`);

  if (normalizeMathd(groundTruth) === normalizeMathd(pred)) return true;
  // no real answer is this long; the LaTeX rewrite is not worth its cost on a runaway response
  if (pred.length > MAX_ANSWER_CHARS || groundTruth.length > MAX_ANSWER_CHARS) return false;
  const gt = normalizeAnswer(groundTruth);
  const given = normalizeAnswer(pred);
  if (gt === given) return true;
  if (given.length === 0) return false;

  const gtElems = splitTuple(gt);
  const givenElems = splitTuple(given);
  if (gtElems.length > 1 && (gt[0] !== given[0] || gt[gt.length - 1] !== given[given.length - 1])) return false;
  if (gtElems.length !== givenElems.length) return false;
  let deadline = 0;
  for (let k = 0; k < gtElems.length; k++) {
    const [g, p] = [gtElems[k], givenElems[k]];
    if (g === p) continue;
    if (isFrac(g) && isFrac(p)) return false; // an unreduced fraction must match exactly
    if (strIsInt(g) !== strIsInt(p)) return false;
    if (deadline === 0) {
      loadMathjs(); // the one-time load must not eat into the first comparison's time
      deadline = performance.now() + timeoutMs;
    }
    if (!equalUnderMaths(g, p, deadline)) return false;
  }
  return true;
}
