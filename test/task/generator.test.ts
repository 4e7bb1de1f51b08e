import {
  COLORS, MAX_QUESTION_CHARS, MAX_THINK_CHARS, QUESTION_KINDS, SHAPES, generateProblems, goldResponse, problemKey, renderScene, type SyntheticProblem,
} from '../../lib/task';
import { expectSophiaError, expectedAnswer, objectsFromPixels, sortObjects } from './helpers';

const SEED = 7;
const train = generateProblems({ seed: SEED, count: 600 });
const test_ = generateProblems({ seed: SEED, count: 300, split: 'test' });
const keyOf = (p: SyntheticProblem): string => problemKey(p.scene, p.width, p.height, p.question);

describe('determinism', () => {
  test('the same seed gives identical problems and images', () => {
    const again = generateProblems({ seed: SEED, count: 600 });
    expect(again.map(({ image, ...rest }) => rest)).toEqual(train.map(({ image, ...rest }) => rest));
    again.forEach((p, i) => expect(Buffer.from(p.image.data).equals(Buffer.from(train[i].image.data))).toBe(true));
  });

  test('a shorter run is a prefix of a longer one', () => {
    expect(generateProblems({ seed: SEED, count: 50 }).map((p) => p.question + p.think)).toEqual(train.slice(0, 50).map((p) => p.question + p.think));
  });

  test('different seeds give different problems', () => {
    const other = generateProblems({ seed: SEED + 1, count: 600 });
    const mine = new Set(train.map(keyOf));
    expect(other.filter((p) => mine.has(keyOf(p))).length).toBe(0);
    expect(other.map((p) => p.question)).not.toEqual(train.map((p) => p.question));
    expect(other.filter((p, i) => Buffer.from(p.image.data).equals(Buffer.from(train[i].image.data))).length).toBe(0);
  });
});

describe('splits', () => {
  test('train and test share no (scene, question) pair, for this seed and across seeds', () => {
    const trainKeys = new Set(train.map(keyOf));
    expect(test_.filter((p) => trainKeys.has(keyOf(p)))).toEqual([]);
    const otherTrain = new Set(generateProblems({ seed: SEED + 100, count: 600 }).map(keyOf));
    expect(test_.filter((p) => otherTrain.has(keyOf(p)))).toEqual([]);
    expect(new Set(test_.map((p) => p.id)).size).toBe(300);
    expect(test_.every((p) => p.split === 'test' && p.id.startsWith(`syn-test-${SEED}-`))).toBe(true);
    expect(train.every((p) => p.split === 'train' && p.id.startsWith(`syn-train-${SEED}-`))).toBe(true);
  });

  test('no pair repeats within a split', () => {
    expect(new Set(train.map(keyOf)).size).toBe(train.length);
    expect(new Set(train.map((p) => p.id)).size).toBe(train.length);
  });

  test('even a tiny easy problem space keeps the splits apart', () => {
    const opts = { difficulty: 'easy' as const, width: 8, height: 8, minSize: 6, maxSize: 6, maxObjects: 1 };
    const a = generateProblems({ seed: 1, count: 40, ...opts });
    const b = generateProblems({ seed: 1, count: 8, split: 'test', ...opts });
    const keys = new Set(a.map(keyOf));
    expect(b.filter((p) => keys.has(keyOf(p)))).toEqual([]);
  });
});

describe('contents', () => {
  const all = [...train, ...test_];

  // checks collect the offending problems, so a failure names them and the many checks stay fast
  const offenders = (bad: (p: SyntheticProblem) => boolean): string[] => all.filter(bad).map((p) => `${p.id}: ${p.question} ${JSON.stringify(p.scene)}`);

  test('answers agree with an independent reading of the scene', () => {
    expect(offenders((p) => p.answer !== expectedAnswer(p.task, p.scene))).toEqual([]);
  });

  test('answers agree with the shapes read back from the pixels', () => {
    expect(offenders((p) => {
      const seen = objectsFromPixels(p.image);
      return sortObjects(seen).join() !== sortObjects(p.scene).join() || p.answer !== expectedAnswer(p.task, seen);
    })).toEqual([]);
  });

  test('scenes: 1–6 shapes of 6–9 px inside the image, never overlapping or touching', () => {
    expect(offenders((p) => p.scene.length < 1 || p.scene.length > 6 || p.scene.some((o, i) =>
      o.size < 6 || o.size > 9 || o.x < 0 || o.y < 0 || o.x + o.size > p.width || o.y + o.size > p.height ||
      p.scene.slice(i + 1).some((q) => !(o.x + o.size < q.x || q.x + q.size < o.x || o.y + o.size < q.y || q.y + q.size < o.y))))).toEqual([]);
    expect(new Set(all.map((p) => p.scene.length))).toEqual(new Set([1, 2, 3, 4, 5, 6]));
  });

  test('texts are short (at most 64 characters), lower-case ASCII, and answers are numbers or option letters', () => {
    expect(offenders((p) => p.question.length > MAX_QUESTION_CHARS || p.think.length > MAX_THINK_CHARS)).toEqual([]);
    expect(offenders((p) => !/^[a-z0-9 .?]+$/.test(p.question) || !/^[a-z0-9 .+\-=<>]+$/.test(p.think))).toEqual([]);
    expect(offenders((p) => !/^(\d|[ABC])$/.test(p.answer) || p.options.some((o) => !/^[ABC]\. [a-z ]+$/.test(o)))).toEqual([]);
    expect(offenders((p) => p.problemType !== (p.task.kind === 'compare' ? 'multiple choice' : 'numerical') || p.options.length !== (p.task.kind === 'compare' ? 3 : 0))).toEqual([]);
    // the loader's prompt (<image> is one token, then 16 visual tokens) plus the gold response fit a 256-token context
    expect(offenders((p) => {
      const prompt = p.options.length ? `${p.question}\nOptions:\n${p.options.join('\n')}` : p.question;
      const response = goldResponse(p).replace(/<\/?(think|answer)>/g, '#');
      return 1 + 16 + prompt.length + response.length >= 200;
    })).toEqual([]);
  });

  test('every question kind, colour, shape and answer value shows up', () => {
    const kinds = new Set(train.map((p) => p.task.kind));
    expect([...kinds].sort()).toEqual([...QUESTION_KINDS].sort());
    const words = train.map((p) => p.question).join(' ');
    for (const w of [...COLORS, ...SHAPES]) expect(words).toContain(w);
    const answers = new Set(train.map((p) => p.answer));
    for (const a of ['0', '1', '2', '3', '4', 'A', 'B', 'C']) expect(answers).toContain(a);
  });

  test('the image is the rendering of the scene', () => {
    expect(offenders((p) => !Buffer.from(renderScene(p.scene, p).data).equals(Buffer.from(p.image.data)))).toEqual([]);
  });

  test('the question names its targets', () => {
    expect(offenders((p) => p.task.targets.some((t) => t.split(' ').some((w) => !p.question.includes(w))))).toEqual([]);
  });
});

describe('knobs', () => {
  test('easy: 1–3 shapes, colour counting only', () => {
    const easy = generateProblems({ seed: 3, count: 200, difficulty: 'easy' });
    expect(easy.every((p) => p.task.kind === 'count_color' && p.scene.length <= 3 && /^how many (red|green|blue|yellow) shapes are there\?$/.test(p.question))).toBe(true);
    expect(new Set(easy.map((p) => p.scene.length))).toEqual(new Set([1, 2, 3]));
  });

  test('explicit options: image size, object range, kinds, background', () => {
    const ps = generateProblems({ seed: 4, count: 50, width: 48, height: 40, minObjects: 4, maxObjects: 5, kinds: ['sum', 'compare'], background: 'white', layout: 'free', minSize: 7, maxSize: 11 });
    for (const p of ps) {
      expect(p.image).toMatchObject({ width: 48, height: 40 });
      expect(p.scene.length).toBeGreaterThanOrEqual(4);
      expect(p.scene.length).toBeLessThanOrEqual(5);
      expect(['sum', 'compare']).toContain(p.task.kind);
      expect(p.background).toBe('white');
      expect([...p.image.data.subarray(0, 3)]).toEqual(p.scene.some((o) => o.x === 0 && o.y === 0) ? expect.anything() : [255, 255, 255]);
      expect(sortObjects(objectsFromPixels(p.image))).toEqual(sortObjects(p.scene));
    }
    const mixed = generateProblems({ seed: 4, count: 60, background: 'mixed' });
    expect(new Set(mixed.map((p) => p.background))).toEqual(new Set(['dark', 'white']));
  });

  test("layout 'grid' (default): one shape per 8×8 patch, inside it with a pixel to spare", () => {
    const ps = generateProblems({ seed: 5, count: 300 });
    const cellsUsed = new Set<number>();
    for (const p of ps) {
      const cells = p.scene.map((o) => Math.floor(o.y / 8) * 4 + Math.floor(o.x / 8));
      expect(new Set(cells).size).toBe(p.scene.length);
      for (const o of p.scene) {
        expect(o.size).toBeGreaterThanOrEqual(6);
        expect(o.size).toBeLessThanOrEqual(7);
        expect((o.x % 8) + o.size).toBeLessThanOrEqual(7);
        expect((o.y % 8) + o.size).toBeLessThanOrEqual(7);
      }
      cells.forEach((c) => cellsUsed.add(c));
      expect(sortObjects(objectsFromPixels(p.image))).toEqual(sortObjects(p.scene));
    }
    expect(cellsUsed.size).toBe(16);
    const big = generateProblems({ seed: 5, count: 20, width: 48, height: 48, cell: 12, minObjects: 9, maxObjects: 9, minSize: 9, maxSize: 11 });
    for (const p of big) expect(new Set(p.scene.map((o) => Math.floor(o.y / 12) * 4 + Math.floor(o.x / 12))).size).toBe(9);
  });
});

describe('bad options', () => {
  test.each([
    [{ seed: 1, count: -1 }, 'E_RANGE', /count must be an integer in \[0, 1000000\], got -1/],
    [{ seed: 1, count: '5' }, 'E_TYPE', /count must be an integer, got "5"/],
    [{ seed: 1 }, 'E_TYPE', /count .* got undefined/],
    [{ seed: 1.5, count: 1 }, 'E_RANGE', /seed must be a safe integer, got 1.5/],
    [{ seed: '1', count: 1 }, 'E_TYPE', /seed/],
    [{ seed: 1, count: 1, split: 'val' }, 'E_CONFIG', /split must be one of "train", "test", got "val"/],
    [{ seed: 1, count: 1, difficulty: 3 }, 'E_TYPE', /difficulty must be a string/],
    [{ seed: 1, count: 1, kinds: [] }, 'E_TYPE', /kinds must be a non-empty list/],
    [{ seed: 1, count: 1, kinds: ['count_color', 'divide'] }, 'E_CONFIG', /kinds\[1\] must be one of .*got "divide"/],
    [{ seed: 1, count: 1, minObjects: 4, maxObjects: 2 }, 'E_CONFIG', /maxObjects \(2\) must not be below minObjects \(4\)/],
    [{ seed: 1, count: 1, maxObjects: 0 }, 'E_RANGE', /maxObjects/],
    [{ seed: 1, count: 1, width: 4 }, 'E_RANGE', /width must be an integer in \[8, 1024\], got 4/],
    [{ seed: 1, count: 1, maxSize: 40 }, 'E_RANGE', /maxSize/],
    [{ seed: 1, count: 1, testFraction: 1 }, 'E_RANGE', /testFraction must be a number in \(0, 1\), got 1/],
    [{ seed: 1, count: 1, idPrefix: 'a/b' }, 'E_CONFIG', /idPrefix/],
    [{ seed: 1, count: 1, layout: 'free', minObjects: 30, maxObjects: 30 }, 'E_CONFIG', /do not fit in a 32×32 image/],
    [{ seed: 1, count: 1, layout: 'free', minObjects: 12, maxObjects: 12, minSize: 8 }, 'E_CONFIG', /12 shapes of 8..9 px do not fit/],
    [{ seed: 1, count: 1, minObjects: 17, maxObjects: 17 }, 'E_CONFIG', /maxObjects \(17\) exceeds the 16 cells of 8 px in a 32×32 image/],
    [{ seed: 1, count: 1, maxSize: 8 }, 'E_RANGE', /maxSize must be .*at most 7 .*cell of 8 px.*got 8/],
    [{ seed: 1, count: 1, layout: 'hex' }, 'E_CONFIG', /layout must be one of "grid", "free", got "hex"/],
    [{ seed: 1, count: 1, cell: 2 }, 'E_RANGE', /cell must be an integer in \[4, 32\], got 2/],
    [null, 'E_TYPE', /options must be an object/],
  ])('%j → %s', (opts, code, pattern) => {
    expectSophiaError(() => generateProblems(opts as never), code, /generateProblems/, pattern);
  });
});
