/**
 * A rule-based thinking judge for the synthetic task: it reads the `<think>` of a response in the
 * grammar of ./grammar, checks every claim against the scene and the arithmetic, and
 * scores the reasoning on the grid {0, 0.1, …, 1}.
 *
 * Scoring: start at 1 and subtract (in tenths, so the score lands exactly on the grid; floor 0):
 *   no `<think>…</think>`, or an empty one         → score 0, nothing else is judged
 *   no `<answer>…</answer>` after the think         0.3
 *   text outside the tags                           0.1
 *   wrong claims (a count that disagrees with the   0.6 for the first, 0.2 for each further one
 *     scene, false arithmetic or comparison)        (so one wrong count caps the score at 0.4)
 *   unsupported answer (it is not what the stated   0.3
 *     steps lead to, or they lead to nothing)
 *   missing required step (a count of an asked      0.2 each
 *     kind, the subtraction / sum / comparison)
 *   ungrounded operand (a number used by a step or  0.2 each
 *     stated as a conclusion that no earlier step
 *     stated)
 *   repetition (a step said again, a kind counted   0.2 each
 *     twice, a word stuttered)
 *   malformed step (task words out of grammar)      0.2 each
 *   off-task word (not in the task vocabulary)      0.1 each
 *   redundant step (correct but not needed)         0.1 each
 * The gold think scores 1.
 */
import { SophiaError, describe } from '../errors';
import { countKind, parseThink, type Kind, type Step } from './grammar';
import { checkProblem, letterOf, type TaskAndScene } from './problems';

export type JudgeCriterion =
  | 'format' | 'wrongClaims' | 'unsupported' | 'missingSteps' | 'ungrounded' | 'repetition' | 'malformed' | 'offTask' | 'redundant';

/** Deductions in tenths of a point. */
export const JUDGE_PENALTIES = {
  noAnswer: 3,
  outsideText: 1,
  firstWrongClaim: 6,
  furtherWrongClaim: 2,
  unsupported: 3,
  missingStep: 2,
  ungrounded: 2,
  repetition: 2,
  malformed: 2,
  offTaskWord: 1,
  redundant: 1,
} as const;

export interface JudgeBreakdown {
  format: { think: boolean; answer: boolean; outsideText: boolean };
  /** Steps found in the think (duplicates included). */
  steps: number;
  /** Claims checked: counts against the scene, arithmetic and comparisons. */
  claims: number;
  claimsWrong: number;
  missingSteps: number;
  ungrounded: number;
  /** Whether the answer is not what the stated steps lead to. */
  unsupported: boolean;
  repetition: number;
  malformed: number;
  /** Off-task words. */
  offTask: number;
  redundant: number;
  /** What the stated steps lead to ("3", "A"), or null when they lead nowhere. */
  derivedAnswer: string | null;
  /** The response's answer, or null when it has none. */
  answer: string | null;
  /** What each criterion took off the score (0 … 1). */
  penalties: Record<JudgeCriterion, number>;
}

export interface JudgeResult {
  /** In {0, 0.1, …, 1}. */
  score: number;
  breakdown: JudgeBreakdown;
}

interface ResponseParts {
  think: string | null;
  answer: string | null;
  outsideText: boolean;
}

function splitResponse(response: string): ResponseParts {
  const open = response.indexOf('<think>');
  const close = open < 0 ? -1 : response.indexOf('</think>', open + 7);
  if (close < 0) return { think: null, answer: null, outsideText: response.trim().length > 0 };
  const think = response.slice(open + 7, close);
  const rest = response.slice(close + 8);
  const m = /<answer>([\s\S]*?)<\/answer>/.exec(rest);
  const outside = response.slice(0, open) + (m ? rest.slice(0, m.index) + rest.slice(m.index + m[0].length) : rest);
  return { think, answer: m ? m[1].trim() : null, outsideText: outside.trim().length > 0 };
}

const flip = (rel: '<' | '>' | '='): '<' | '>' | '=' => (rel === '<' ? '>' : rel === '>' ? '<' : '=');

function requirements(p: TaskAndScene): { kinds: Kind[]; op: 'arith+' | 'arith-' | 'compare' | null } {
  const [k1, k2] = p.task.targets;
  switch (p.task.kind) {
    case 'remove': return { kinds: ['all', k1], op: 'arith-' };
    case 'sum': return { kinds: [k1, k2], op: 'arith+' };
    case 'compare': return { kinds: [k1, k2], op: 'compare' };
    default: return { kinds: [k1], op: null };
  }
}

function normaliseAnswer(answer: string, choice: boolean): string | null {
  if (choice) {
    const m = /^\(?([a-z])\)?(?:[.:\s]|$)/i.exec(answer);
    return m ? m[1].toUpperCase() : null;
  }
  return /^-?\d+$/.test(answer) ? String(Number(answer)) : null;
}

/** Judges the reasoning of one response to a synthetic problem (see the rules above). */
export function judgeThinking(problem: TaskAndScene, response: string): JudgeResult {
  checkProblem('judgeThinking', problem);
  if (typeof response !== 'string') throw new SophiaError('E_TYPE', `judgeThinking: response must be a string, got ${describe(response)}`);
  const scene = problem.scene;
  const { think, answer: rawAnswer, outsideText } = splitResponse(response);
  const choice = problem.task.kind === 'compare';
  const tenths: Record<JudgeCriterion, number> = {
    format: 0, wrongClaims: 0, unsupported: 0, missingSteps: 0, ungrounded: 0, repetition: 0, malformed: 0, offTask: 0, redundant: 0,
  };
  const b: JudgeBreakdown = {
    format: { think: think !== null && think.trim().length > 0, answer: rawAnswer !== null && rawAnswer !== '', outsideText },
    steps: 0, claims: 0, claimsWrong: 0, missingSteps: 0, ungrounded: 0, unsupported: false, repetition: 0, malformed: 0,
    offTask: 0, redundant: 0, derivedAnswer: null, answer: rawAnswer, penalties: { ...tenths },
  };
  if (!b.format.think) {
    b.penalties.format = 1;
    return { score: 0, breakdown: b };
  }

  const req = requirements(problem);
  const parsed = parseThink(think!);
  b.steps = parsed.length;
  const seen = new Set<string>();
  const known = new Set<number>();
  const claimed = new Map<Kind, number>();
  let opFound = false;
  let lastValue: number | null = null; // the latest number a relevant step concluded
  let lastCompare: Extract<Step, { type: 'compare' }> | null = null;
  const ground = (...values: number[]): void => {
    b.ungrounded += values.filter((v) => !known.has(v)).length;
  };
  for (const ps of parsed) {
    if (seen.has(ps.text)) {
      b.repetition++;
      continue;
    }
    seen.add(ps.text);
    const s = ps.step;
    if (!s) {
      if (ps.offTask.length > 0) b.offTask += ps.offTask.length;
      else b.malformed++;
      b.repetition += ps.stutters;
      continue;
    }
    switch (s.type) {
      case 'count': {
        b.claims++;
        if (claimed.has(s.kind)) b.repetition++;
        const right = countKind(scene, s.kind) === s.n;
        const needed = req.kinds.includes(s.kind);
        if (!right) b.claimsWrong++;
        else if (!needed) b.redundant++;
        claimed.set(s.kind, s.n);
        known.add(s.n);
        if (needed && req.op === null) lastValue = s.n;
        break;
      }
      case 'arith': {
        b.claims++;
        if ((s.op === '+' ? s.a + s.b : s.a - s.b) !== s.c) b.claimsWrong++;
        ground(s.a, s.b);
        known.add(s.c);
        if (req.op === `arith${s.op}`) {
          opFound = true;
          lastValue = s.c;
        } else b.redundant++;
        break;
      }
      case 'compare': {
        b.claims++;
        const truth = s.a > s.b ? '>' : s.a < s.b ? '<' : '=';
        if (truth !== s.rel) b.claimsWrong++;
        ground(s.a, s.b);
        if (req.op === 'compare') {
          opFound = true;
          lastCompare = s;
        } else b.redundant++;
        break;
      }
      case 'number':
        if (!known.has(s.n)) b.ungrounded++;
        else b.redundant++;
        if (!choice) lastValue = s.n;
        break;
    }
  }
  b.missingSteps = req.kinds.filter((k) => !claimed.has(k)).length + (req.op !== null && !opFound ? 1 : 0);

  if (choice) {
    const v1 = claimed.get(req.kinds[0]);
    const v2 = claimed.get(req.kinds[1]);
    if (lastCompare) {
      const swapped = v1 !== undefined && v2 !== undefined && lastCompare.a === v2 && lastCompare.b === v1 && v1 !== v2;
      b.derivedAnswer = letterOf(swapped ? flip(lastCompare.rel) : lastCompare.rel);
    } else if (v1 !== undefined && v2 !== undefined) {
      b.derivedAnswer = letterOf(v1 > v2 ? '>' : v1 < v2 ? '<' : '=');
    }
  } else if (lastValue !== null) {
    b.derivedAnswer = String(lastValue);
  }
  if (b.format.answer) {
    const given = normaliseAnswer(rawAnswer!, choice);
    b.unsupported = given === null || b.derivedAnswer === null || given !== b.derivedAnswer;
  }

  const P = JUDGE_PENALTIES;
  tenths.format = (b.format.answer ? 0 : P.noAnswer) + (outsideText ? P.outsideText : 0);
  tenths.wrongClaims = b.claimsWrong === 0 ? 0 : P.firstWrongClaim + P.furtherWrongClaim * (b.claimsWrong - 1);
  tenths.unsupported = b.unsupported ? P.unsupported : 0;
  tenths.missingSteps = P.missingStep * b.missingSteps;
  tenths.ungrounded = P.ungrounded * b.ungrounded;
  tenths.repetition = P.repetition * b.repetition;
  tenths.malformed = P.malformed * b.malformed;
  tenths.offTask = P.offTaskWord * b.offTask;
  tenths.redundant = P.redundant * b.redundant;
  let total = 0;
  for (const c of Object.keys(tenths) as JudgeCriterion[]) {
    total += tenths[c];
    b.penalties[c] = tenths[c] / 10;
  }
  return { score: Math.max(0, 10 - total) / 10, breakdown: b };
}
