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
