/** Scenes of coloured shapes and their rasterisation (no anti-aliasing: every pixel is a palette colour). */
import { SophiaError, describe } from '../errors';
import type { RgbImage } from '../data/images';
import { randInt, pick, shuffled, type Rng } from '../random';

export const COLORS = ['red', 'green', 'blue', 'yellow'] as const;
export const SHAPES = ['circle', 'square', 'triangle'] as const;
export type Color = (typeof COLORS)[number];
export type Shape = (typeof SHAPES)[number];
export type Background = 'dark' | 'white';

/** Saturated, far apart in RGB, and far from both backgrounds. */
export const PALETTE: Record<Color, readonly [number, number, number]> = {
  red: [220, 30, 30],
  green: [30, 180, 50],
  blue: [40, 70, 230],
  yellow: [235, 205, 20],
};
export const BACKGROUNDS: Record<Background, readonly [number, number, number]> = {
  dark: [24, 24, 28],
  white: [255, 255, 255],
};

/** One shape; (x, y) is the top-left corner of its size×size box, in pixels. */
export interface SceneObject {
  shape: Shape;
  color: Color;
  x: number;
  y: number;
  size: number;
}

/**
 * 'grid': every shape sits inside its own cell of a cell×cell grid (the vision tower's patches when
 * cell = patch), so one visual token never holds parts of two shapes; 'free': anywhere, apart.
 */
export type SceneLayout = 'grid' | 'free';

export interface SceneOptions {
  width: number;
  height: number;
  minObjects: number;
  maxObjects: number;
  minSize: number;
  maxSize: number;
  /** Default 'free'. */
  layout?: SceneLayout;
  /** Grid cell side in pixels (layout 'grid'); maxSize must leave a GAP inside it. */
  cell?: number;
}

/** Boxes are kept at least this many pixels apart, so shapes of one colour never touch. */
const GAP = 1;
const TRIES_PER_OBJECT = 60;
const TRIES_PER_SCENE = 200;

/** Whether n boxes of `size` px (plus gaps) could at all fit in the image; a quick test before sampling. */
export function mayFit(n: number, size: number, width: number, height: number): boolean {
  return n * (size + GAP) ** 2 <= (width + GAP) * (height + GAP);
}

/** Grid cells of a layout-'grid' scene. */
export const gridCells = (width: number, height: number, cell: number): number => Math.floor(width / cell) * Math.floor(height / cell);

/** The largest shape a grid cell holds with a GAP to the next cell's shapes. */
export const maxGridSize = (cell: number): number => cell - GAP;

function sampleGridScene(rng: Rng, opts: SceneOptions, cell: number, n: number, fn: string): SceneObject[] {
  const cols = Math.floor(opts.width / cell);
  const cells = gridCells(opts.width, opts.height, cell);
  if (n > cells || opts.maxSize > maxGridSize(cell)) {
    throw new SophiaError('E_CONFIG', `${fn}: ${n} shapes of ${opts.minSize}..${opts.maxSize} px do not fit a grid of ${cells} cells of ${cell} px (at most ${cells} shapes of at most ${maxGridSize(cell)} px)`);
  }
  const chosen = shuffled(rng, Array.from({ length: cells }, (_, i) => i)).slice(0, n);
  return chosen.map((c) => {
    const size = randInt(rng, opts.minSize, opts.maxSize);
    return {
      shape: pick(rng, SHAPES),
      color: pick(rng, COLORS),
      x: (c % cols) * cell + randInt(rng, 0, cell - GAP - size),
      y: Math.floor(c / cols) * cell + randInt(rng, 0, cell - GAP - size),
      size,
    };
  });
}

const apart = (a: SceneObject, b: SceneObject): boolean =>
  a.x + a.size + GAP <= b.x || b.x + b.size + GAP <= a.x || a.y + a.size + GAP <= b.y || b.y + b.size + GAP <= a.y;

/**
 * A scene of minObjects..maxObjects non-overlapping shapes, placed by rejection sampling. A scene that
 * cannot be completed within its tries is started again; after TRIES_PER_SCENE restarts the options
 * are taken to be infeasible (E_CONFIG).
 */
export function sampleScene(rng: Rng, opts: SceneOptions, fn = 'sampleScene'): SceneObject[] {
  const n = randInt(rng, opts.minObjects, opts.maxObjects);
  if ((opts.layout ?? 'free') === 'grid') return sampleGridScene(rng, opts, opts.cell ?? 8, n, fn);
  for (let attempt = 0; attempt < TRIES_PER_SCENE; attempt++) {
    const objects: SceneObject[] = [];
    for (let tries = 0; objects.length < n && tries < TRIES_PER_OBJECT * n; tries++) {
      const size = randInt(rng, opts.minSize, opts.maxSize);
      const o: SceneObject = {
        shape: pick(rng, SHAPES),
        color: pick(rng, COLORS),
        x: randInt(rng, 0, opts.width - size),
        y: randInt(rng, 0, opts.height - size),
        size,
      };
      if (objects.every((p) => apart(o, p))) objects.push(o);
    }
    if (objects.length === n) return objects;
  }
  throw new SophiaError('E_CONFIG', `${fn}: ${n} shapes of ${opts.minSize}..${opts.maxSize} px do not fit in a ${opts.width}×${opts.height} image; lower maxObjects or maxSize, or enlarge the image`);
}

/** Whether pixel (px, py) of an object's box is inside the shape (tested at the pixel centre). */
export function covers(shape: Shape, size: number, px: number, py: number): boolean {
  const cx = px + 0.5;
  const cy = py + 0.5;
  if (shape === 'square') return true;
  if (shape === 'circle') {
    const r = size / 2;
    return (cx - r) ** 2 + (cy - r) ** 2 <= r * r;
  }
  // upward triangle: apex at the top middle, base along the bottom edge
  return Math.abs(cx - size / 2) <= (cy / size) * (size / 2);
}

/** Rasterises a scene into an RGB image. */
export function renderScene(objects: readonly SceneObject[], opts: { width: number; height: number; background?: Background }): RgbImage {
  const { width, height } = opts;
  const bg = BACKGROUNDS[opts.background ?? 'dark'];
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) data.set(bg, p * 3);
  for (const o of objects) {
    const rgb = PALETTE[o.color];
    for (let py = 0; py < o.size; py++) {
      for (let px = 0; px < o.size; px++) {
        const x = o.x + px;
        const y = o.y + py;
        if (x < 0 || y < 0 || x >= width || y >= height || !covers(o.shape, o.size, px, py)) continue;
        data.set(rgb, (y * width + x) * 3);
      }
    }
  }
  return { width, height, data };
}

/** Checks a scene read from outside (a JSON row, a caller's object); `what` names it in errors. */
export function checkScene(objects: unknown, what: string): asserts objects is SceneObject[] {
  if (!Array.isArray(objects)) throw new SophiaError('E_TYPE', `${what} must be a list of objects {shape, color, x, y, size}, got ${describe(objects)}`);
  objects.forEach((o, i) => {
    const at = `${what}[${i}]`;
    if (o === null || typeof o !== 'object') throw new SophiaError('E_TYPE', `${at} must be an object {shape, color, x, y, size}, got ${describe(o)}`);
    const { shape, color, x, y, size } = o as Record<string, unknown>;
    if (!SHAPES.includes(shape as Shape)) throw new SophiaError('E_CONFIG', `${at}.shape must be one of ${SHAPES.join(', ')}, got ${describe(shape)}`);
    if (!COLORS.includes(color as Color)) throw new SophiaError('E_CONFIG', `${at}.color must be one of ${COLORS.join(', ')}, got ${describe(color)}`);
    for (const [name, v, min] of [['x', x, 0], ['y', y, 0], ['size', size, 1]] as const) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new SophiaError(typeof v === 'number' ? 'E_RANGE' : 'E_TYPE', `${at}.${name} must be an integer >= ${min}, got ${describe(v)}`);
    }
  });
}
