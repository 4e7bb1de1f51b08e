/**
 * CLEVR-Math-like problems over scenes of coloured shapes: counting, removing, adding and comparing
 * kinds. Every problem carries its scene, a gold think in the grammar of ./grammar and a gold answer,
 * and turns into a row of the released training set's format (method.md §5).
 */
import { SophiaError, describe } from '../errors';
import type { RgbImage } from '../data/images';
import { countKind, formatThink, isKind, plural, kindParts, type Kind, type Step } from './grammar';
import { createRng, enumOption, hashString, intOption, pick, shuffled, type Rng } from '../random';
import { COLORS, SHAPES, checkScene, gridCells, mayFit, maxGridSize, renderScene, sampleScene, type Background, type Color, type SceneLayout, type SceneObject, type Shape } from './scene';

export type QuestionKind = 'count_color' | 'count_shape' | 'count_both' | 'remove' | 'sum' | 'compare';
export const QUESTION_KINDS: readonly QuestionKind[] = ['count_color', 'count_shape', 'count_both', 'remove', 'sum', 'compare'];
export type Split = 'train' | 'test';
export type Difficulty = 'easy' | 'normal';
export type ProblemType = 'numerical' | 'multiple choice';

/**
 * What a question asks. count_*: targets [k], "how many k?"; remove: [k], "remove all k, how many are
 * left?"; sum: [k1, k2] (disjoint kinds), "how many k1 or k2?"; compare: [k1, k2], "more k1 or k2?"
 * with options A. k1, B. k2, C. same.
 */
export interface SyntheticTask {
  kind: QuestionKind;
  targets: Kind[];
}

export interface SyntheticProblem {
  id: string;
  split: Split;
  /** Lower-case ASCII, at most 64 characters, without `<image>` (the loader prepends it). */
  question: string;
  problemType: ProblemType;
  /** 'A. circles', 'B. squares', 'C. same' for compare; empty otherwise. */
  options: string[];
  /** A count ("3") or an option letter ("A"). */
  answer: string;
  /** The gold reasoning, e.g. "red 2. blue 1. 2+1=3." */
  think: string;
  task: SyntheticTask;
  scene: SceneObject[];
  width: number;
  height: number;
  background: Background;
  image: RgbImage;
}

/** All the judge and the perturbations need of a problem. */
export type TaskAndScene = Pick<SyntheticProblem, 'task' | 'scene'>;

export interface GenerateOptions {
  /** Seed of the stream (a safe integer). */
  seed: number;
  /** How many problems (>= 0). */
  count: number;
  /** 'train' (default) or 'test': separate random streams, and disjoint by (scene, question), see testFraction. */
  split?: Split;
  /** 'easy': 1–3 shapes, colour counting only; 'normal' (default): 1–6 shapes, every question kind. Other options win. */
  difficulty?: Difficulty;
  /** Fewest shapes in a scene (default 1). */
  minObjects?: number;
  /** Most shapes in a scene (default 6, easy 3). */
  maxObjects?: number;
  /** Question kinds to draw from, uniformly (default all, easy ['count_color']). */
  kinds?: QuestionKind[];
  /** Image width in pixels (default 32). */
  width?: number;
  /** Image height in pixels (default 32). */
  height?: number;
  /**
   * 'grid' (default): each shape inside its own cell×cell cell, aligned with the policy's 8×8 patches,
   * so that what a visual token shows is one shape or none; 'free': anywhere, apart.
   */
  layout?: SceneLayout;
  /** Grid cell side in pixels (layout 'grid'; default 8, the embedded model's patch). */
  cell?: number;
  /** Smallest shape box in pixels (default 6). */
  minSize?: number;
  /** Largest shape box in pixels (default 9; with layout 'grid', cell − 1). */
  maxSize?: number;
  /** 'dark' (default), 'white', or 'mixed' (each problem draws one). */
  background?: Background | 'mixed';
  /**
   * Share of all possible (scene, question) pairs held out for the test split, by a hash of the pair
   * (default 0.2): a train stream never yields a held-out pair and a test stream only those, whatever
   * the seeds, as long as both use the same testFraction.
   */
  testFraction?: number;
  /** Prefix of problem ids (default 'syn'); ids read `<prefix>-<split>-<seed>-<index>`. */
  idPrefix?: string;
}

type Resolved = Required<Omit<GenerateOptions, 'difficulty'>>;

/** Bounds the templates keep (the longest question is 51 characters, the longest gold think 28). */
export const MAX_QUESTION_CHARS = 64;
export const MAX_THINK_CHARS = 64;

function resolve(fn: string, opts: unknown): Resolved {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw new SophiaError('E_TYPE', `${fn}: options must be an object {seed, count, ...}, got ${describe(opts)}`);
  const o = opts as GenerateOptions;
  if (typeof o.seed !== 'number' || !Number.isSafeInteger(o.seed)) throw new SophiaError(typeof o.seed === 'number' ? 'E_RANGE' : 'E_TYPE', `${fn}: seed must be a safe integer, got ${describe(o.seed)}`);
  if (o.count === undefined) throw new SophiaError('E_TYPE', `${fn}: count must be an integer >= 0, got undefined`);
  const count = intOption(fn, 'count', o.count, 0, 0, 1_000_000);
  const split = enumOption<Split>(fn, 'split', o.split, 'train', ['train', 'test']);
  const difficulty = enumOption<Difficulty>(fn, 'difficulty', o.difficulty, 'normal', ['easy', 'normal']);
  const easy = difficulty === 'easy';
  const width = intOption(fn, 'width', o.width, 32, 8, 1024);
  const height = intOption(fn, 'height', o.height, 32, 8, 1024);
  const layout = enumOption<SceneLayout>(fn, 'layout', o.layout, 'grid', ['grid', 'free']);
  const grid = layout === 'grid';
  const cell = intOption(fn, 'cell', o.cell, 8, 4, Math.min(width, height));
  const sizeCap = grid ? maxGridSize(cell) : Math.min(width, height);
  for (const [name, v] of [['minSize', o.minSize], ['maxSize', o.maxSize]] as const) {
    if (grid && typeof v === 'number' && v > sizeCap) {
      throw new SophiaError('E_RANGE', `${fn}: ${name} must be at most ${sizeCap} px: with layout 'grid' each shape keeps inside a cell of ${cell} px; raise cell or use layout 'free', got ${v}`);
    }
  }
  const minSize = intOption(fn, 'minSize', o.minSize, Math.min(6, sizeCap), 3, sizeCap);
  const maxSize = intOption(fn, 'maxSize', o.maxSize, Math.max(minSize, Math.min(9, sizeCap)), minSize, sizeCap);
  const minObjects = intOption(fn, 'minObjects', o.minObjects, 1, 1, 64);
  const maxObjects = intOption(fn, 'maxObjects', o.maxObjects, Math.max(minObjects, easy ? 3 : 6), 1, 64);
  if (maxObjects < minObjects) throw new SophiaError('E_CONFIG', `${fn}: maxObjects (${maxObjects}) must not be below minObjects (${minObjects})`);
  if (grid && maxObjects > gridCells(width, height, cell)) {
    throw new SophiaError('E_CONFIG', `${fn}: maxObjects (${maxObjects}) exceeds the ${gridCells(width, height, cell)} cells of ${cell} px in a ${width}×${height} image; lower maxObjects or cell, or use layout 'free'`);
  }
  if (!grid && !mayFit(maxObjects, minSize, width, height)) {
    throw new SophiaError('E_CONFIG', `${fn}: ${maxObjects} shapes of ${minSize}..${maxSize} px do not fit in a ${width}×${height} image; lower maxObjects or minSize, or enlarge the image`);
  }
  const background = enumOption<Background | 'mixed'>(fn, 'background', o.background, 'dark', ['dark', 'white', 'mixed']);
  let kinds: QuestionKind[] = easy ? ['count_color'] : [...QUESTION_KINDS];
  if (o.kinds !== undefined) {
    if (!Array.isArray(o.kinds) || o.kinds.length === 0) throw new SophiaError('E_TYPE', `${fn}: kinds must be a non-empty list of ${QUESTION_KINDS.join(', ')}, got ${describe(o.kinds)}`);
    o.kinds.forEach((k, i) => enumOption(fn, `kinds[${i}]`, k, 'count_color', QUESTION_KINDS));
    kinds = [...new Set(o.kinds)];
  }
  const testFraction = o.testFraction ?? 0.2;
  if (typeof testFraction !== 'number' || !(testFraction > 0 && testFraction < 1)) {
    throw new SophiaError(typeof testFraction === 'number' ? 'E_RANGE' : 'E_TYPE', `${fn}: testFraction must be a number in (0, 1), got ${describe(testFraction)}`);
  }
  const idPrefix = o.idPrefix ?? 'syn';
  if (typeof idPrefix !== 'string' || !/^[A-Za-z0-9_.-]{1,32}$/.test(idPrefix)) {
    throw new SophiaError(typeof idPrefix === 'string' ? 'E_CONFIG' : 'E_TYPE', `${fn}: idPrefix must be 1–32 letters, digits, '_', '.' or '-', got ${describe(idPrefix)}`);
  }
  return { seed: o.seed, count, split, minObjects, maxObjects, kinds, width, height, layout, cell, minSize, maxSize, background, testFraction, idPrefix };
}

/** Picks a kind of a category, preferring (with probability 0.8) one the scene holds. */
function pickKind<T extends Kind>(rng: Rng, all: readonly T[], objects: readonly SceneObject[], exclude: readonly Kind[] = []): T {
  const allowed = all.filter((k) => !exclude.includes(k));
  const present = allowed.filter((k) => countKind(objects, k) > 0);
  return present.length > 0 && rng() < 0.8 ? pick(rng, present) : pick(rng, allowed);
}

function drawTask(rng: Rng, kind: QuestionKind, objects: readonly SceneObject[]): SyntheticTask {
  const byColor = rng() < 0.5;
  const category: readonly Kind[] = byColor ? COLORS : SHAPES;
  switch (kind) {
    case 'count_color': return { kind, targets: [pickKind(rng, COLORS, objects)] };
    case 'count_shape': return { kind, targets: [pickKind(rng, SHAPES, objects)] };
    case 'count_both': {
      const o = rng() < 0.8 ? pick(rng, objects) : { color: pick(rng, COLORS), shape: pick(rng, SHAPES) };
      return { kind, targets: [`${o.color} ${o.shape}` as Kind] };
    }
    case 'remove': return { kind, targets: [pickKind(rng, category, objects)] };
    case 'sum':
    case 'compare': {
      const first = pickKind(rng, category, objects);
      return { kind, targets: shuffled(rng, [first, pickKind(rng, category, objects, [first])]) };
    }
  }
}

/** The words for a kind in a question: "red shapes", "circles", "red circles", "shapes". */
function nounPhrase(kind: Kind): string {
  const { color, shape } = kindParts(kind);
  if (color && shape) return `${color} ${plural(shape)}`;
  if (color) return `${color} shapes`;
  return shape ? plural(shape) : 'shapes';
}

/** The option text of a compared kind: "red", "circles". */
function optionPhrase(kind: Kind): string {
  const { color, shape } = kindParts(kind);
  return shape ? (color ? `${color} ${plural(shape)}` : plural(shape)) : (color as Color);
}

export function questionOf(task: SyntheticTask): { question: string; options: string[]; problemType: ProblemType } {
  const [k1, k2] = task.targets;
  switch (task.kind) {
    case 'count_color':
    case 'count_shape':
    case 'count_both':
      return { question: `how many ${nounPhrase(k1)} are there?`, options: [], problemType: 'numerical' };
    case 'remove':
      return { question: `remove all ${nounPhrase(k1)}. how many shapes are left?`, options: [], problemType: 'numerical' };
    case 'sum': {
      const both = kindParts(k1).color ? `${k1} or ${k2} shapes` : `${plural(k1 as Shape)} or ${plural(k2 as Shape)}`;
      return { question: `how many ${both} are there?`, options: [], problemType: 'numerical' };
    }
    case 'compare': {
      const both = kindParts(k1).color ? `${k1} or ${k2} shapes` : `${plural(k1 as Shape)} or ${plural(k2 as Shape)}`;
      return { question: `are there more ${both}?`, options: [`A. ${optionPhrase(k1)}`, `B. ${optionPhrase(k2)}`, 'C. same'], problemType: 'multiple choice' };
    }
  }
}

/** The option letter a comparison of the first and second kind's counts leads to. */
export const letterOf = (rel: '<' | '>' | '='): string => (rel === '>' ? 'A' : rel === '<' ? 'B' : 'C');
export const relOf = (a: number, b: number): '<' | '>' | '=' => (a > b ? '>' : a < b ? '<' : '=');

/** The gold steps of a task over a scene (see ./grammar). */
export function goldSteps(task: SyntheticTask, objects: readonly SceneObject[]): Step[] {
  const [k1, k2] = task.targets;
  const n1 = countKind(objects, k1);
  switch (task.kind) {
    case 'count_color':
    case 'count_shape':
    case 'count_both':
      return [{ type: 'count', kind: k1, n: n1 }];
    case 'remove': {
      const all = countKind(objects, 'all');
      return [{ type: 'count', kind: 'all', n: all }, { type: 'count', kind: k1, n: n1 }, { type: 'arith', a: all, op: '-', b: n1, c: all - n1 }];
    }
    case 'sum': {
      const n2 = countKind(objects, k2);
      return [{ type: 'count', kind: k1, n: n1 }, { type: 'count', kind: k2, n: n2 }, { type: 'arith', a: n1, op: '+', b: n2, c: n1 + n2 }];
    }
    case 'compare': {
      const n2 = countKind(objects, k2);
      return [{ type: 'count', kind: k1, n: n1 }, { type: 'count', kind: k2, n: n2 }, { type: 'compare', a: n1, rel: relOf(n1, n2), b: n2 }];
    }
  }
}

/** The gold answer: the last step's number, or the option letter of the comparison. */
export function answerOfSteps(steps: readonly Step[]): string {
  const last = steps[steps.length - 1];
  if (last.type === 'compare') return letterOf(last.rel);
  return String(last.type === 'arith' ? last.c : last.n);
}

/**
 * The census: an auxiliary SFT prompt whose every count is read from the picture (the dense visual
 * signal the task's own questions give only once or twice per response). Not a held-out question kind.
 */
export const CENSUS_QUESTION = 'count every colour and shape.';

/** The census response of a scene: the count of each colour, then of each shape; the answer is the total. */
export function censusResponse(objects: readonly SceneObject[]): string {
  const steps: Step[] = [...COLORS, ...SHAPES].map((k) => ({ type: 'count', kind: k, n: countKind(objects, k) }));
  return `<think>${formatThink(steps)}</think><answer>${objects.length}</answer>`;
}

/** The grid prompt: another auxiliary SFT prompt, for a scene on a grid of cells (layout 'grid'). */
export const GRID_QUESTION = 'name each cell.';

const COLOR_LETTER: Record<Color, string> = { red: 'r', green: 'g', blue: 'b', yellow: 'y' };
const SHAPE_LETTER: Record<Shape, string> = { circle: 'c', square: 's', triangle: 't' };

/**
 * What each cell of a grid scene holds, in reading order: its colour letter and its shape letter
 * (r g b y, c s t; '.' for an empty cell).
 */
export function gridLetters(objects: readonly SceneObject[], width: number, height: number, cell: number): { color: string[]; shape: string[] } {
  const cols = Math.floor(width / cell);
  const cells = cols * Math.floor(height / cell);
  const color = new Array<string>(cells).fill('.');
  const shape = new Array<string>(cells).fill('.');
  for (const o of objects) {
    const k = Math.floor(o.y / cell) * cols + Math.floor(o.x / cell);
    if (k < 0 || k >= cells) continue;
    color[k] = COLOR_LETTER[o.color];
    shape[k] = SHAPE_LETTER[o.shape];
  }
  return { color, shape };
}

/**
 * The grid response of a scene: one letter per cell in reading order for the colour ('.' for an
 * empty cell), then one per cell for the shape; the answer is the number of shapes. Letter k of each
 * line names what visual token k shows, a fixed distance back in the sequence: a dense, per-patch
 * signal for the vision tower.
 */
export function gridResponse(objects: readonly SceneObject[], width: number, height: number, cell: number): string {
  const { color, shape } = gridLetters(objects, width, height, cell);
  return `<think>${color.join('')} ${shape.join('')}</think><answer>${objects.length}</answer>`;
}

/** The gold response, `<think>…</think><answer>…</answer>`. */
export const goldResponse = (p: Pick<SyntheticProblem, 'think' | 'answer'>): string => `<think>${p.think}</think><answer>${p.answer}</answer>`;

/** The identity of a (scene, question) pair, which decides its split. */
export function problemKey(objects: readonly SceneObject[], width: number, height: number, question: string): string {
  const scene = objects.map((o) => `${o.shape[0]}${o.color[0]}${o.x},${o.y},${o.size}`).join(';');
  return `${width}x${height}|${scene}|${question}`;
}

const isHeldOut = (key: string, testFraction: number): boolean => hashString(key) / 2 ** 32 < testFraction;

/** Builds a problem from its parts (the scene is not validated here; see problemFromRow for outside data). */
export function makeProblem(parts: { id: string; split: Split; task: SyntheticTask; scene: SceneObject[]; width: number; height: number; background: Background }): SyntheticProblem {
  const { question, options, problemType } = questionOf(parts.task);
  const steps = goldSteps(parts.task, parts.scene);
  return {
    ...parts,
    question,
    problemType,
    options,
    answer: answerOfSteps(steps),
    think: formatThink(steps),
    image: renderScene(parts.scene, parts),
  };
}

/**
 * Deterministic problems: the same options give the same problems, images included. The train and test
 * splits of a seed are separate streams and never share a (scene, question) pair; no pair repeats
 * within one call either.
 */
export function generateProblems(opts: GenerateOptions): SyntheticProblem[] {
  const fn = 'generateProblems';
  const o = resolve(fn, opts);
  const rng = createRng(o.seed, `synthetic/${o.split}`);
  const out: SyntheticProblem[] = [];
  const seen = new Set<string>();
  const budget = 1000 + 100 * o.count;
  for (let attempt = 0; out.length < o.count; attempt++) {
    if (attempt >= budget) {
      throw new SophiaError('E_CONFIG', `${fn}: found only ${out.length} of ${o.count} distinct ${o.split} problems in ${budget} draws; allow more objects, sizes or question kinds`);
    }
    const scene = sampleScene(rng, o, fn);
    const task = drawTask(rng, pick(rng, o.kinds), scene);
    const background: Background = o.background === 'mixed' ? pick(rng, ['dark', 'white'] as const) : o.background;
    const { question } = questionOf(task);
    const key = problemKey(scene, o.width, o.height, question);
    if (isHeldOut(key, o.testFraction) !== (o.split === 'test') || seen.has(key)) continue;
    seen.add(key);
    const id = `${o.idPrefix}-${o.split}-${o.seed}-${out.length}`;
    out.push(makeProblem({ id, split: o.split, task, scene, width: o.width, height: o.height, background }));
  }
  return out;
}

type KindForm = 'colour' | 'shape' | 'colour shape' | 'all';
const formOf = (k: Kind): KindForm => {
  const { color, shape } = kindParts(k);
  return color && shape ? 'colour shape' : color ? 'colour' : shape ? 'shape' : 'all';
};
const TARGET_FORMS: Record<QuestionKind, readonly KindForm[]> = {
  count_color: ['colour'], count_shape: ['shape'], count_both: ['colour shape'],
  remove: ['colour', 'shape'], sum: ['colour', 'shape'], compare: ['colour', 'shape'],
};

/** Checks a problem handed in by a caller (the judge's and the perturbations' input). */
export function checkProblem(fn: string, problem: unknown): asserts problem is TaskAndScene {
  if (problem === null || typeof problem !== 'object') throw new SophiaError('E_TYPE', `${fn}: problem must be a synthetic problem object, got ${describe(problem)}`);
  const p = problem as Partial<SyntheticProblem>;
  const task = p.task as Partial<SyntheticTask> | undefined;
  if (task === null || typeof task !== 'object') throw new SophiaError('E_TYPE', `${fn}: problem.task must be an object {kind, targets}, got ${describe(task)}`);
  enumOption(fn, 'problem.task.kind', task.kind, 'count_color', QUESTION_KINDS);
  const need = task.kind === 'sum' || task.kind === 'compare' ? 2 : 1;
  const targets = task.targets;
  if (!Array.isArray(targets) || targets.length !== need || !targets.every(isKind) || !targets.every((k) => TARGET_FORMS[task.kind as QuestionKind].includes(formOf(k)))) {
    throw new SophiaError('E_CONFIG', `${fn}: problem.task.targets of a ${task.kind} task must be ${need} kind(s) of the form ${TARGET_FORMS[task.kind as QuestionKind].join(' or ')}, got ${describe(targets)}${Array.isArray(targets) ? ` ${JSON.stringify(targets.slice(0, 3))}` : ''}`);
  }
  if (need === 2 && (targets[0] === targets[1] || formOf(targets[0]) !== formOf(targets[1]))) {
    throw new SophiaError('E_CONFIG', `${fn}: problem.task.targets of a ${task.kind} task must be two different colours or two different shapes, got ${JSON.stringify(targets)}`);
  }
  checkScene(p.scene, `${fn}: problem.scene`);
}
