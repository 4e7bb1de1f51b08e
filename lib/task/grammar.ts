/**
 * The think grammar of the synthetic task: a few short steps, each ended by a full stop.
 *
 *   think   := step ". " step ". " … step "."
 *   step    := count | arith | compare
 *   count   := kind " " n              "red 2"  "circle 3"  "red circle 1"  "all 5"
 *   arith   := n ("+" | "-") n "=" n   "2+1=3"  "5-2=3"
 *   compare := n (">" | "<" | "=") n   "3>1"    "2=2"
 *   kind    := "all" | colour | shape | colour " " shape      (singular; lower case)
 *
 * A count claims how many shapes of a kind the image holds; arith and compare work on numbers
 * stated by earlier steps. The parser is lenient where it costs nothing (case, extra spaces,
 * plural kinds, ";" or new lines between steps) and reports everything else as unparsed text.
 */
import { COLORS, SHAPES, type Color, type SceneObject, type Shape } from './scene';

export type Kind = 'all' | Color | Shape | `${Color} ${Shape}`;

export type Step =
  | { type: 'count'; kind: Kind; n: number }
  | { type: 'arith'; a: number; op: '+' | '-'; b: number; c: number }
  | { type: 'compare'; a: number; rel: '<' | '>' | '='; b: number }
  /** A bare number: a conclusion stated without a step that derives it. */
  | { type: 'number'; n: number };

/** Every word a question, an option or a gold think may use; anything else in a think is off-task. */
export const TASK_VOCABULARY: ReadonlySet<string> = new Set([
  ...COLORS, ...SHAPES, ...SHAPES.map((s) => `${s}s`),
  'all', 'shape', 'shapes', 'how', 'many', 'are', 'there', 'remove', 'left', 'more', 'or', 'same',
]);

export const plural = (shape: Shape): string => `${shape}s`;

/** The parts of a kind; 'all' has neither. */
export function kindParts(kind: Kind): { color?: Color; shape?: Shape } {
  if (kind === 'all') return {};
  const [first, second] = kind.split(' ');
  if (second !== undefined) return { color: first as Color, shape: second as Shape };
  return COLORS.includes(first as Color) ? { color: first as Color } : { shape: first as Shape };
}

/** The canonical kind of a phrase such as "red", "circles", "red circle", "blue shapes", "all"; null if none. */
export function parseKind(text: string): Kind | null {
  const words = text.trim().toLowerCase().split(/\s+/);
  if (words.length === 1 && (words[0] === 'all' || words[0] === 'shapes')) return 'all';
  const single = (w: string): Shape | null => {
    const s = w.endsWith('s') && SHAPES.includes(w.slice(0, -1) as Shape) ? w.slice(0, -1) : w;
    return SHAPES.includes(s as Shape) ? (s as Shape) : null;
  };
  if (words.length === 1) {
    if (COLORS.includes(words[0] as Color)) return words[0] as Color;
    return single(words[0]);
  }
  if (words.length === 2 && COLORS.includes(words[0] as Color)) {
    if (words[1] === 'shape' || words[1] === 'shapes') return words[0] as Color;
    const s = single(words[1]);
    return s === null ? null : `${words[0] as Color} ${s}`;
  }
  return null;
}

export function isKind(value: unknown): value is Kind {
  return typeof value === 'string' && parseKind(value) === value;
}

/** How many objects of a scene are of a kind. */
export function countKind(objects: readonly SceneObject[], kind: Kind): number {
  const { color, shape } = kindParts(kind);
  return objects.filter((o) => (color === undefined || o.color === color) && (shape === undefined || o.shape === shape)).length;
}

export function formatStep(step: Step): string {
  switch (step.type) {
    case 'count': return `${step.kind} ${step.n}`;
    case 'arith': return `${step.a}${step.op}${step.b}=${step.c}`;
    case 'compare': return `${step.a}${step.rel}${step.b}`;
    case 'number': return `${step.n}`;
  }
}

export function formatThink(steps: readonly Step[]): string {
  return steps.map((s) => `${formatStep(s)}.`).join(' ');
}

export interface ParsedStep {
  /** The step's text, lower-cased, spaces collapsed. */
  text: string;
  /** The step, or undefined when the text does not follow the grammar. */
  step?: Step;
  /** Alphabetic words of an unparsed step that are not in TASK_VOCABULARY. */
  offTask: string[];
  /** Words of an unparsed step that repeat the word right before them ("red red 2"). */
  stutters: number;
}

const NUM = '(-?\\d{1,6})';
const COUNT = new RegExp(`^([a-z ]+?) ${NUM}$`);
const ARITH = new RegExp(`^${NUM} ?([+-]) ?${NUM} ?= ?${NUM}$`);
const COMPARE = new RegExp(`^${NUM} ?([<>=]) ?${NUM}$`);
const NUMBER = new RegExp(`^${NUM}$`);

export function parseStep(raw: string): ParsedStep {
  const text = raw.toLowerCase().replace(/\s+/g, ' ').trim();
  let m: RegExpExecArray | null;
  let step: Step | undefined;
  if ((m = ARITH.exec(text))) step = { type: 'arith', a: Number(m[1]), op: m[2] as '+' | '-', b: Number(m[3]), c: Number(m[4]) };
  else if ((m = COMPARE.exec(text))) step = { type: 'compare', a: Number(m[1]), rel: m[2] as '<' | '>' | '=', b: Number(m[3]) };
  else if ((m = NUMBER.exec(text))) step = { type: 'number', n: Number(m[1]) };
  else if ((m = COUNT.exec(text))) {
    const kind = parseKind(m[1]);
    if (kind !== null && Number(m[2]) >= 0) step = { type: 'count', kind, n: Number(m[2]) };
  }
  if (step) return { text, step, offTask: [], stutters: 0 };
  const words = text.split(/[^a-z0-9]+/).filter((w) => w.length > 0);
  const offTask = words.filter((w) => /[a-z]/.test(w) && !TASK_VOCABULARY.has(w));
  const stutters = words.filter((w, i) => i > 0 && w === words[i - 1]).length;
  return { text, offTask, stutters };
}

/** Splits a think into steps at full stops, semicolons and line breaks; empty pieces are dropped. */
export function parseThink(think: string): ParsedStep[] {
  return think.split(/[.;\n]+/).map((s) => s.trim()).filter((s) => s.length > 0).map(parseStep);
}
