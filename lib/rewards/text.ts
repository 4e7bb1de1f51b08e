/** Word error rate and ROUGE, the text metrics behind the OCR and free-form outcome rewards. */
import { porterStem } from './porter';

function editDistance<T>(a: readonly T[], b: readonly T[]): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

const words = (s: string): string[] => s.split(/\s+/).filter((w) => w.length > 0);

/** Word-level Levenshtein distance over the reference's word count; an empty reference gives 0 or Infinity. */
export function wordErrorRate(reference: string, hypothesis: string): number {
  const ref = words(reference);
  const hyp = words(hypothesis);
  if (ref.length === 0) return hyp.length === 0 ? 0 : Infinity;
  return editDistance(ref, hyp) / ref.length;
}

/** ROUGE's tokens: lower case, runs of [a-z0-9], Porter-stemmed when longer than 3 characters. */
export function rougeTokens(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((t) => t.length > 0)
    .map((t) => (t.length > 3 ? porterStem(t) : t));
}

function fMeasure(overlap: number, predCount: number, refCount: number): number {
  if (overlap === 0 || predCount === 0 || refCount === 0) return 0;
  const precision = overlap / predCount;
  const recall = overlap / refCount;
  return (2 * precision * recall) / (precision + recall);
}

function ngramCounts(tokens: string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join('\u0000');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** ROUGE-N F-measure with clipped n-gram counts. */
export function rougeN(reference: string[], prediction: string[], n: number): number {
  const ref = ngramCounts(reference, n);
  const pred = ngramCounts(prediction, n);
  let overlap = 0;
  for (const [gram, count] of pred) overlap += Math.min(count, ref.get(gram) ?? 0);
  return fMeasure(overlap, Math.max(0, prediction.length - n + 1), Math.max(0, reference.length - n + 1));
}

/** ROUGE-L F-measure from the longest common subsequence. */
export function rougeL(reference: string[], prediction: string[]): number {
  let prev = new Array<number>(prediction.length + 1).fill(0);
  for (let i = 1; i <= reference.length; i++) {
    const cur = [0];
    for (let j = 1; j <= prediction.length; j++) {
      cur[j] = reference[i - 1] === prediction[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    }
    prev = cur;
  }
  return fMeasure(prev[prediction.length], prediction.length, reference.length);
}
