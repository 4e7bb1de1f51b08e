import { SophiaError } from '../../lib/errors';
import type { RgbImage } from '../../lib/data/images';
import type { SceneObject, SyntheticTask } from '../../lib/task';

/** Expects `f` to throw a SophiaError of `code` whose message matches every pattern. */
export function expectSophiaError(f: () => unknown, code: string, ...patterns: RegExp[]): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SophiaError);
  expect((err as SophiaError).code).toBe(code);
  for (const p of patterns) expect((err as Error).message).toMatch(p);
}

export async function expectSophiaErrorAsync(f: () => Promise<unknown>, code: string, ...patterns: RegExp[]): Promise<void> {
  let err: unknown;
  try {
    await f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SophiaError);
  expect((err as SophiaError).code).toBe(code);
  for (const p of patterns) expect((err as Error).message).toMatch(p);
}

// An independent reading of the task's meaning, written apart from lib/ on purpose.
const COLOR_WORDS = ['red', 'green', 'blue', 'yellow'];
function matches(o: { color: string; shape: string }, kind: string): boolean {
  if (kind === 'all') return true;
  return kind.split(' ').every((w) => (COLOR_WORDS.includes(w) ? o.color === w : o.shape === w));
}

export function expectedAnswer(task: SyntheticTask, objects: readonly { color: string; shape: string }[]): string {
  const n = (k: string): number => objects.filter((o) => matches(o, k)).length;
  const [k1, k2] = task.targets;
  switch (task.kind) {
    case 'count_color':
    case 'count_shape':
    case 'count_both':
      return String(n(k1));
    case 'remove':
      return String(objects.length - n(k1));
    case 'sum':
      return String(n(k1) + n(k2));
    case 'compare':
      return n(k1) > n(k2) ? 'A' : n(k1) < n(k2) ? 'B' : 'C';
  }
}

const PALETTE: Record<string, [number, number, number]> = {
  red: [220, 30, 30], green: [30, 180, 50], blue: [40, 70, 230], yellow: [235, 205, 20],
};

/**
 * The shapes an image shows, read back from its pixels: 8-connected components of each palette colour,
 * classified by how much of their bounding box they fill (square ≈ 1, circle ≈ 0.75–0.9, triangle ≈ 0.5–0.6).
 */
export function objectsFromPixels(img: RgbImage): { color: string; shape: string; pixels: number }[] {
  const { width: w, height: h, data } = img;
  const names = Object.keys(PALETTE);
  const label = new Int8Array(w * h).fill(-1);
  for (let p = 0; p < w * h; p++) {
    names.forEach((name, k) => {
      const [r, g, b] = PALETTE[name];
      if (data[p * 3] === r && data[p * 3 + 1] === g && data[p * 3 + 2] === b) label[p] = k;
    });
  }
  const colorAt = (x: number, y: number): string | null => (label[y * w + x] < 0 ? null : names[label[y * w + x]]);
  const seen = new Uint8Array(w * h);
  const out: { color: string; shape: string; pixels: number }[] = [];
  for (let y0 = 0; y0 < h; y0++) {
    for (let x0 = 0; x0 < w; x0++) {
      const color = colorAt(x0, y0);
      if (color === null || seen[y0 * w + x0]) continue;
      const stack = [[x0, y0]];
      seen[y0 * w + x0] = 1;
      let pixels = 0, minX = x0, maxX = x0, minY = y0, maxY = y0;
      while (stack.length > 0) {
        const [x, y] = stack.pop()!;
        pixels++;
        minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y);
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const nx = x + dx, ny = y + dy;
            if (nx < 0 || ny < 0 || nx >= w || ny >= h || seen[ny * w + nx] || colorAt(nx, ny) !== color) continue;
            seen[ny * w + nx] = 1;
            stack.push([nx, ny]);
          }
        }
      }
      const fill = pixels / ((maxX - minX + 1) * (maxY - minY + 1));
      out.push({ color, shape: fill > 0.95 ? 'square' : fill > 0.68 ? 'circle' : 'triangle', pixels });
    }
  }
  return out;
}

export const sortObjects = (objs: readonly { color: string; shape: string }[]): string[] => objs.map((o) => `${o.color} ${o.shape}`).sort();

export type { SceneObject };
