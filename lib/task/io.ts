/**
 * Synthetic datasets on disk: a JSON list of rows in the released training set's format, which
 * loadDataset reads unchanged, plus one PNG per problem. Each row also keeps the problem's scene, task
 * and gold think under extra columns (`scene`, `task`, `think`, …) that loadDataset ignores and
 * readSyntheticProblems reads back, so the judge can look a row's scene up by its id.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SophiaError, describe } from '../errors';
import { encodePng } from '../data/images';
import { checkProblem, generateProblems, makeProblem, type GenerateOptions, type Split, type SyntheticProblem } from './problems';
import { BACKGROUNDS, type Background } from './scene';

export const SYNTHETIC_DATA_SOURCE = 'synthetic-clevr-math';

/** A row as written: the released format's columns first, then the synthetic extras. */
export interface SyntheticRow {
  problem_id: string;
  problem: string;
  data_type: 'image';
  problem_type: SyntheticProblem['problemType'];
  options: string[];
  solution: string;
  path: string;
  data_source: string;
  split: Split;
  think: string;
  task: SyntheticProblem['task'];
  scene: SyntheticProblem['scene'];
  width: number;
  height: number;
  background: Background;
}

/** The row of a problem whose image lies at `imagePath` (relative to the image base directory). */
export function toSyntheticRow(problem: SyntheticProblem, imagePath: string): SyntheticRow {
  return {
    problem_id: problem.id,
    problem: problem.question,
    data_type: 'image',
    problem_type: problem.problemType,
    options: problem.options,
    solution: `<answer>${problem.answer}</answer>`,
    path: imagePath,
    data_source: SYNTHETIC_DATA_SOURCE,
    split: problem.split,
    think: problem.think,
    task: problem.task,
    scene: problem.scene,
    width: problem.width,
    height: problem.height,
    background: problem.background,
  };
}

/** Rebuilds a problem (image re-rendered) from a row written by writeSyntheticDataset; E_TYPE/E_CONFIG name what is wrong. */
export function problemFromRow(row: unknown, where = 'row'): SyntheticProblem {
  if (row === null || typeof row !== 'object' || Array.isArray(row)) throw new SophiaError('E_TYPE', `problemFromRow: ${where} must be an object, got ${describe(row)}`);
  const r = row as Partial<SyntheticRow>;
  const id = r.problem_id;
  if (typeof id !== 'string' || id === '') throw new SophiaError('E_TYPE', `problemFromRow: ${where}.problem_id must be a non-empty string, got ${describe(id)}`);
  for (const [name, v] of [['width', r.width], ['height', r.height]] as const) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 4096) throw new SophiaError('E_CONFIG', `problemFromRow: ${where}.${name} must be an integer in [1, 4096], got ${describe(v)}`);
  }
  const background = r.background ?? 'dark';
  if (!(background in BACKGROUNDS)) throw new SophiaError('E_CONFIG', `problemFromRow: ${where}.background must be "dark" or "white", got ${describe(background)}`);
  const split = r.split ?? 'train';
  if (split !== 'train' && split !== 'test') throw new SophiaError('E_CONFIG', `problemFromRow: ${where}.split must be "train" or "test", got ${describe(split)}`);
  checkProblem(`problemFromRow: ${where}`, { task: r.task, scene: r.scene });
  return makeProblem({ id, split, task: r.task!, scene: r.scene!, width: r.width!, height: r.height!, background });
}

export interface WriteSyntheticOptions extends GenerateOptions {
  /** File name of the JSON, without extension (default: the split). */
  name?: string;
}

export interface WrittenSyntheticDataset {
  /** The JSON file, for loadDataset. */
  file: string;
  /** Where the PNGs are (rows name them relative to the JSON file's folder, loadDataset's default base). */
  imageDir: string;
  problems: SyntheticProblem[];
}

/** Writes atomically: a temporary file, then a rename. */
async function writeAtomic(file: string, bytes: string | Uint8Array): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.promises.writeFile(tmp, bytes);
  await fs.promises.rename(tmp, file);
}

/**
 * Generates problems (see generateProblems) and writes `<dir>/<name>.json` and `<dir>/images/<id>.png`.
 * The folder is created when missing; files of the same names are replaced.
 */
export async function writeSyntheticDataset(dir: string, opts: WriteSyntheticOptions): Promise<WrittenSyntheticDataset> {
  const fn = 'writeSyntheticDataset';
  if (typeof dir !== 'string' || dir === '') throw new SophiaError('E_TYPE', `${fn}: dir must be a non-empty string, got ${describe(dir)}`);
  if (opts === null || typeof opts !== 'object') throw new SophiaError('E_TYPE', `${fn}: opts must be an object {seed, count, ...}, got ${describe(opts)}`);
  const name = opts.name ?? opts.split ?? 'train';
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name.startsWith('.')) {
    throw new SophiaError(typeof name === 'string' ? 'E_CONFIG' : 'E_TYPE', `${fn}: name must be a plain file name (letters, digits, '_', '.', '-'), got ${describe(name)}`);
  }
  const problems = generateProblems(opts);
  const root = path.resolve(dir);
  const imageDir = path.join(root, 'images');
  try {
    await fs.promises.mkdir(imageDir, { recursive: true });
    const rows: SyntheticRow[] = [];
    for (const p of problems) {
      const rel = `images/${p.id}.png`;
      await writeAtomic(path.join(root, rel), encodePng(p.image));
      rows.push(toSyntheticRow(p, rel));
    }
    const file = path.join(root, `${name}.json`);
    await writeAtomic(file, JSON.stringify(rows));
    return { file, imageDir, problems };
  } catch (err) {
    throw new SophiaError('E_IO', `${fn}: cannot write the dataset under ${root} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
}

/** Reads the problems of a JSON file written by writeSyntheticDataset (images re-rendered from the scenes). */
export async function readSyntheticProblems(file: string): Promise<SyntheticProblem[]> {
  const fn = 'readSyntheticProblems';
  if (typeof file !== 'string' || file === '') throw new SophiaError('E_TYPE', `${fn}: file must be a non-empty string, got ${describe(file)}`);
  let rows: unknown;
  try {
    rows = JSON.parse(await fs.promises.readFile(file, 'utf8'));
  } catch (err) {
    throw new SophiaError('E_IO', `${fn}: cannot read ${file} as JSON (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  if (!Array.isArray(rows)) throw new SophiaError('E_IO', `${fn}: ${file} must hold a JSON list of rows, got ${describe(rows)}`);
  return rows.map((row, i) => problemFromRow(row, `${path.basename(file)} row ${i}`));
}

/** Problems by id, for looking a dataset row's scene up (DatasetRow.id is the row's problem_id). */
export function problemsById(problems: readonly SyntheticProblem[]): Map<string, SyntheticProblem> {
  return new Map(problems.map((p) => [p.id, p]));
}
