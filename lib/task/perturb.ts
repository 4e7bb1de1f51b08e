/**
 * Deliberately flawed responses to synthetic problems, for annotating with the judge and training a
 * learned thinking reward model on scores spread over the whole grid.
 */
import { SophiaError, describe } from '../errors';
import { TASK_VOCABULARY, countKind, formatStep, formatThink, type Kind, type Step } from './grammar';
import { answerOfSteps, checkProblem, goldSteps, relOf, type TaskAndScene } from './problems';
import { enumOption, pick, randInt, shuffled, toRng, type Rng } from '../random';
import { COLORS, SHAPES } from './scene';

export type PerturbationKind =
  | 'gold' // the gold response
  | 'wrong_count_right_answer' // a miscount, yet the gold answer
  | 'wrong_count_wrong_answer' // one or two miscounts carried through to the answer
  | 'wrong_arithmetic' // a false sum, difference or comparison
  | 'skipped_step' // a required step left out
  | 'reordered' // the operation stated before the counts it uses
  | 'repetition' // steps said again, or a word stuttered
  | 'off_task' // words that have nothing to do with the task
  | 'redundant' // correct counts of kinds nobody asked about
  | 'bad_format' // no answer, or text outside the tags
  | 'truncated' // the think cut off part-way
  | 'garbage' // no usable reasoning at all
  | 'degenerate' // the short, right-answer templates RL drifts into against a weak reward model ('1.', 'all 1. 1=1=1.', an empty think)
  | 'other_scene'; // fluent, consistent gold-style reasoning about another scene (wrong for this image)

export const PERTURBATION_KINDS: readonly PerturbationKind[] = [
  'gold', 'wrong_count_right_answer', 'wrong_count_wrong_answer', 'wrong_arithmetic', 'skipped_step', 'reordered',
  'repetition', 'off_task', 'redundant', 'bad_format', 'truncated', 'garbage', 'degenerate', 'other_scene',
];

/**
 * The degenerate reasoning an RL run found against a weak thinking reward model, each with the gold
 * answer (so the outcome reward cannot tell them from good reasoning): an empty think, a bare
 * number, `all 1. 1=1=1.`, the answer restated, a step said three times, a stuttered count.
 */
export function degenerateResponses(problem: TaskAndScene): string[] {
  checkProblem('degenerateResponses', problem);
  const gold = goldSteps(problem.task, problem.scene);
  const answer = answerOfSteps(gold);
  const first = gold[0] as Extract<Step, { type: 'count' }>;
  const step = formatStep(first);
  return [
    respond('', answer),
    respond('1.', answer),
    respond('all 1. 1=1=1.', answer),
    respond(`${answer}.`, answer),
    respond(`${step}. ${step}. ${step}.`, answer),
    respond(`${first.kind} ${first.kind} ${first.kind}.`, answer),
  ];
}

/** Another scene for the same task: as many shapes ± 2 (1..6), colours and shapes redrawn; its gold steps differ from the true ones. */
function otherSceneSteps(rng: Rng, problem: TaskAndScene, gold: Step[]): Step[] {
  const goldThink = formatThink(gold);
  for (let tries = 0; tries < 50; tries++) {
    const n = Math.max(1, Math.min(6, problem.scene.length + randInt(rng, -2, 2)));
    const scene = Array.from({ length: n }, (_, i) => ({ shape: pick(rng, SHAPES), color: pick(rng, COLORS), x: i * 8, y: 0, size: 6 }));
    const steps = goldSteps(problem.task, scene);
    if (formatThink(steps) !== goldThink) return steps;
  }
  return recompute(miscounted(rng, gold, gold.filter((x) => x.type === 'count').length));
}

const OFF_TASK_WORDS = [
  'hmm', 'wait', 'let', 'me', 'think', 'i', 'see', 'ok', 'so', 'the', 'answer', 'is', 'nice', 'picture', 'maybe',
  'cats', 'like', 'sky', 'weather', 'today', 'good', 'question', 'look', 'carefully', 'at', 'image', 'probably', 'yes',
].filter((w) => !TASK_VOCABULARY.has(w));

const respond = (think: string, answer: string): string => `<think>${think}</think><answer>${answer}</answer>`;

/** A different non-negative count near n. */
function miscount(rng: Rng, n: number): number {
  const options = [n - 2, n - 1, n + 1, n + 2].filter((v) => v >= 0);
  return pick(rng, options);
}

/** Redoes the operation step (if any) from the counts stated before it. */
function recompute(steps: Step[]): Step[] {
  const counts = steps.filter((s): s is Extract<Step, { type: 'count' }> => s.type === 'count').map((s) => s.n);
  return steps.map((s) => {
    if (s.type === 'arith') return { ...s, a: counts[0], b: counts[1], c: s.op === '+' ? counts[0] + counts[1] : counts[0] - counts[1] };
    if (s.type === 'compare') return { ...s, a: counts[0], b: counts[1], rel: relOf(counts[0], counts[1]) };
    return s;
  });
}

/** Miscounts `how many` of the count steps (distinct ones). */
function miscounted(rng: Rng, steps: Step[], how: number): Step[] {
  const countAt = steps.map((s, i) => (s.type === 'count' ? i : -1)).filter((i) => i >= 0);
  const chosen = shuffled(rng, countAt).slice(0, how);
  return steps.map((s, i) => (chosen.includes(i) && s.type === 'count' ? { ...s, n: miscount(rng, s.n) } : s));
}

/** The operation step `s` with the gold step's result or relation. */
function withGoldConclusion(s: Step, goldStep: Step): Step {
  if (s.type === 'arith' && goldStep.type === 'arith') return { ...s, c: goldStep.c };
  if (s.type === 'compare' && goldStep.type === 'compare') return { ...s, rel: goldStep.rel };
  return s;
}

/** Kinds the gold steps do not count. */
function otherKinds(gold: Step[]): Kind[] {
  const used = new Set(gold.map((s) => (s.type === 'count' ? s.kind : null)));
  return ([...COLORS, ...SHAPES, 'all'] as Kind[]).filter((k) => !used.has(k));
}

function offTaskPhrase(rng: Rng, words: number): string {
  return Array.from({ length: words }, () => pick(rng, OFF_TASK_WORDS)).join(' ');
}

function randomText(rng: Rng, length: number): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789 .,!?+-=';
  return Array.from({ length }, () => chars[Math.floor(rng() * chars.length)]).join('');
}

/** One response of the given kind; deterministic for a seed (or consumes the given generator). */
export function perturb(problem: TaskAndScene, kind: PerturbationKind, seed: number | Rng): string {
  const fn = 'perturb';
  checkProblem(fn, problem);
  enumOption(fn, 'kind', kind, 'gold', PERTURBATION_KINDS);
  const rng = toRng(fn, 'seed', seed);
  const gold = goldSteps(problem.task, problem.scene);
  const answer = answerOfSteps(gold);
  const goldThink = formatThink(gold);
  const counts = gold.filter((s) => s.type === 'count').length;
  const hasOp = gold.length > counts;
  switch (kind) {
    case 'gold':
      return respond(goldThink, answer);
    case 'wrong_count_right_answer': {
      const wrong = miscounted(rng, gold, 1);
      if (!hasOp) return respond(formatThink(wrong), answer);
      const variant = randInt(rng, 0, 2);
      // 0: the operation follows the miscount and the answer jumps back; 1: the operation is forced to the
      // gold result; 2: the operation quietly uses the true counts
      const steps = variant === 2 ? wrong : recompute(wrong);
      if (variant === 1) steps[steps.length - 1] = withGoldConclusion(steps[steps.length - 1], gold[gold.length - 1]);
      return respond(formatThink(steps), answer);
    }
    case 'wrong_count_wrong_answer': {
      let steps = recompute(miscounted(rng, gold, counts > 1 && rng() < 0.3 ? 2 : 1));
      // a comparison may survive one miscount; try a few more so the answer changes
      for (let i = 0; i < 8 && answerOfSteps(steps) === answer; i++) steps = recompute(miscounted(rng, gold, 1));
      return respond(formatThink(steps), answerOfSteps(steps));
    }
    case 'wrong_arithmetic': {
      if (!hasOp) {
        const steps = miscounted(rng, gold, 1);
        return respond(formatThink(steps), answerOfSteps(steps));
      }
      const last = gold[gold.length - 1];
      const broken: Step = last.type === 'arith'
        ? { ...last, c: last.c + pick(rng, [-2, -1, 1, 2]) }
        : { ...(last as Extract<Step, { type: 'compare' }>), rel: pick(rng, (['<', '>', '='] as const).filter((r) => r !== (last as { rel: string }).rel)) };
      const steps = [...gold.slice(0, -1), broken];
      return respond(formatThink(steps), rng() < 0.5 ? answerOfSteps(steps) : answer);
    }
    case 'skipped_step': {
      if (!hasOp) return respond(`${answer}.`, answer);
      const drop = shuffled(rng, gold.map((_, i) => i)).slice(0, rng() < 0.25 ? 2 : 1);
      return respond(formatThink(gold.filter((_, i) => !drop.includes(i))), answer);
    }
    case 'reordered': {
      if (!hasOp) return respond(`${answer}. ${goldThink}`, answer);
      return respond(formatThink([gold[gold.length - 1], ...shuffled(rng, gold.slice(0, -1))]), answer);
    }
    case 'repetition': {
      if (rng() < 0.2) {
        // a stuttered word breaks a count into an ungrammatical step
        const i = randInt(rng, 0, counts - 1);
        const s = gold[i] as Extract<Step, { type: 'count' }>;
        return respond(gold.map((g, j) => (j === i ? `${s.kind.split(' ')[0]} ${s.kind} ${s.n}.` : `${formatStep(g)}.`)).join(' '), answer);
      }
      if (rng() < 0.2) return respond(`${goldThink} ${goldThink}`, answer);
      const steps = [...gold];
      for (let r = randInt(rng, 1, 3); r > 0; r--) {
        const at = randInt(rng, 0, steps.length - 1);
        steps.splice(at + 1, 0, steps[at]);
      }
      return respond(formatThink(steps), answer);
    }
    case 'off_task': {
      const pieces = gold.map((s) => `${formatStep(s)}.`);
      const inserts = randInt(rng, 1, 2);
      for (let k = 0; k < inserts; k++) pieces.splice(randInt(rng, 0, pieces.length), 0, `${offTaskPhrase(rng, randInt(rng, 1, 3))}.`);
      return respond(pieces.join(' '), answer);
    }
    case 'redundant': {
      const extra = shuffled(rng, otherKinds(gold)).slice(0, randInt(rng, 1, 3))
        .map((k): Step => ({ type: 'count', kind: k, n: countKind(problem.scene, k) }));
      const steps = [...gold];
      for (const e of extra) steps.splice(randInt(rng, 0, counts), 0, e);
      return respond(formatThink(steps), answer);
    }
    case 'bad_format': {
      const v = randInt(rng, 0, 3);
      if (v === 0) return `<think>${goldThink}</think>`;
      if (v === 1) return `<think>${goldThink}</think><answer></answer>`;
      if (v === 2) return `${offTaskPhrase(rng, 2)} ${respond(goldThink, answer)}`;
      return `<think>${goldThink}</think> ${answer}`;
    }
    case 'truncated': {
      const cut = randInt(rng, 1, Math.max(1, goldThink.length - 2));
      const prefix = goldThink.slice(0, cut);
      return rng() < 0.3 ? `<think>${prefix}` : respond(prefix, answer);
    }
    case 'degenerate':
      return pick(rng, degenerateResponses(problem));
    case 'other_scene': {
      const steps = otherSceneSteps(rng, problem, gold);
      return respond(formatThink(steps), answerOfSteps(steps));
    }
    case 'garbage': {
      const v = randInt(rng, 0, 2);
      if (v === 0) return randomText(rng, randInt(rng, 5, 40));
      if (v === 1) return `<answer>${answer}</answer>`;
      return respond(randomText(rng, randInt(rng, 5, 40)), randomText(rng, 2).trim() || answer);
    }
  }
}

export interface FlawedResponse {
  kind: PerturbationKind;
  response: string;
}

/**
 * `perKind` responses of each kind in `kinds` (default: every kind, one each, gold included), drawing
 * from `rng` (a seed or a generator).
 */
export function flawedResponses(problem: TaskAndScene, rng: number | Rng, opts: { kinds?: PerturbationKind[]; perKind?: number } = {}): FlawedResponse[] {
  const fn = 'flawedResponses';
  checkProblem(fn, problem);
  const random = toRng(fn, 'rng', rng);
  if (opts === null || typeof opts !== 'object') throw new SophiaError('E_TYPE', `${fn}: opts must be an object, got ${describe(opts)}`);
  const kinds = opts.kinds ?? [...PERTURBATION_KINDS];
  if (!Array.isArray(kinds)) throw new SophiaError('E_TYPE', `${fn}: opts.kinds must be a list of ${PERTURBATION_KINDS.join(', ')}, got ${describe(kinds)}`);
  kinds.forEach((k, i) => enumOption(fn, `opts.kinds[${i}]`, k, 'gold', PERTURBATION_KINDS));
  const perKind = opts.perKind ?? 1;
  if (typeof perKind !== 'number' || !Number.isInteger(perKind) || perKind < 1 || perKind > 1000) {
    throw new SophiaError(typeof perKind === 'number' ? 'E_RANGE' : 'E_TYPE', `${fn}: opts.perKind must be an integer in [1, 1000], got ${describe(perKind)}`);
  }
  const out: FlawedResponse[] = [];
  for (const kind of kinds) for (let i = 0; i < perKind; i++) out.push({ kind, response: perturb(problem, kind, random) });
  return out;
}
