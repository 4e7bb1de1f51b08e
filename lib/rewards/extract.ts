/** Turns a thinking reward model's reply into a score (method.md §1.3): a chain of extractors, first hit wins. */

function asNumber(text: string): number {
  const t = text.trim();
  return /^[-+]?(\d+\.?\d*|\.\d+)$/.test(t) ? Number(t) : NaN;
}

const EXTRACTORS: ((reply: string) => number)[] = [
  (r) => asNumber(/\\box(?:es|ed)?\{([^{}]*)\}/.exec(r)?.[1] ?? ''),
  (r) => asNumber(/<answer>([\s\S]*?)<\/answer>/.exec(r)?.[1] ?? ''),
  (r) => asNumber(/(?<![\w.])([01](?:\.\d+)?)(?!\w|\.\d)/.exec(r)?.[1] ?? ''),
  (r) => asNumber(/<\/think>\s*(\d+(?:\.\d+)?)/.exec(r)?.[1] ?? ''),
  (r) => asNumber(/\*\*Total Wrong Steps\*\*:\s*(\d+)/i.exec(r)?.[1] ?? ''),
  (r) => asNumber(/\*\*(\d+) wrong steps?\*\*/i.exec(r)?.[1] ?? ''),
  (r) => asNumber(/\*\*[^*\n]*Wrong Steps\*\*:\s*(\d+)/i.exec(r)?.[1] ?? ''),
];

/** The score in a reward model's reply, clamped to [0, 1]; NaN when no extractor finds a number. */
export function extractThinkingScore(reply: string): number {
  for (const extract of EXTRACTORS) {
    const x = extract(reply);
    if (Number.isFinite(x)) return Math.min(1, Math.max(0, x));
  }
  return NaN;
}

/** How a reply's score is read: 'strict' (default of the HTTP client) or 'reference' (extractThinkingScore). */
export type ScoreFormat = 'strict' | 'reference';

/**
 * The score of a reply in the form the published prompt asks for, or why there is none: the reply
 * is `<answer>x</answer>`, `\boxed{x}` (or `\box`, `\boxes`), or the bare number x, after an optional
 * `<think>…</think>`, with nothing else around it; x must lie in [0, 1]. Anything else ("Error: upstream
 * overloaded, 1 request dropped", a step count, `7`, `-5`) is no score: a server's error text or a model
 * that ignores the format must not pass for a judgement.
 */
export function parseThinkingScore(reply: string): { score: number; problem?: 'unparseable' | 'out_of_range' } {
  if (typeof reply !== 'string') return { score: NaN, problem: 'unparseable' };
  const body = reply.replace(/^\s*<think>[\s\S]*?<\/think>/, '').trim();
  const m = /^(?:<answer>\s*([^<]*?)\s*<\/answer>|\\box(?:es|ed)?\{\s*([^{}]*?)\s*\}|([^\s<>{}]+?))\.?$/.exec(body);
  const text = m ? (m[1] ?? m[2] ?? m[3] ?? '') : '';
  const x = asNumber(text);
  if (Number.isNaN(x)) return { score: NaN, problem: 'unparseable' };
  if (x < 0 || x > 1) return { score: NaN, problem: 'out_of_range' };
  return { score: x };
}
