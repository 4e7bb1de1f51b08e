/**
 * Scoring rollouts from code instead of the CLI: the same pipeline as `sophia score`.
 * Run after `npm run build` with a thinking reward model served by vLLM:
 *   vllm serve <thinking-reward-model> --port 8000
 *   node --experimental-strip-types examples/score/score-in-code.ts   (Node 22+), or compile it with tsc
 */
import { OpenAIThinkingReward, outcomeReward, thinkingInput, trustRewards, groupAdvantages } from 'sophia-rl';
import { readFileSync } from 'node:fs';

const G = 4;
const rows = readFileSync(new URL('./rollouts.jsonl', import.meta.url), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

const rm = new OpenAIThinkingReward({ baseUrl: 'http://127.0.0.1:8000/v1', model: process.env.RM_MODEL ?? 'thinking-rm', concurrency: 8, timeoutMs: 60_000, maxRetries: 3 });

const outcome = Float32Array.from(
  await Promise.all(rows.map((r) => outcomeReward({ response: r.response, groundTruth: r.answer, problemType: r.problem_type }))),
);
const thinking = Float32Array.from(await rm.score(rows.map((r) => ({ question: r.prompt, response: thinkingInput(r.response) }))));
const trust = trustRewards({ outcome, thinking, groupSize: G }, { step: 10, totalSteps: 1500 });
const advantages = groupAdvantages({ rewards: trust.rewards, groupSize: G });

rows.forEach((r, i) => console.log(`Ro=${outcome[i].toFixed(2)} Rt=${thinking[i].toFixed(2)} R=${trust.rewards[i].toFixed(3)} A=${advantages[i].toFixed(3)}`));
console.log('γ per group:', Array.from(trust.gamma), 'RM stats:', rm.stats);
