/** `sophia score`: the CLI of runScore (lib/train/score.ts). */
import type { Command } from 'commander';
import { intArg, numberArg } from './args';
import type { Mode } from '../rewards/outcome';
import type { ScoreFormat } from '../rewards/extract';
import type { AdvantageMode } from '../train/advantage';
import { failedText, formatScoreSummary, runScore } from '../train/score';

export { runScore, formatScoreSummary, type ScoreOptions, type ScoreSummary } from '../train/score';

/** Adds `sophia score` to the CLI. */
export function registerScore(program: Command): void {
  program
    .command('score')
    .description('score existing rollouts (e.g. from vLLM): outcome and thinking rewards, trust γ, final rewards and advantages per line')
    .requiredOption('--data <file>', 'JSONL rollouts, one {prompt, response, answer, problem_type, image?} per line, G consecutive lines per group')
    .requiredOption('--rm-url <url>', 'thinking reward model server (OpenAI-compatible; base or /v1/chat/completions URL)')
    .option('--rm-model <name>', 'served model name (default: the first one the server lists)')
    .requiredOption('--group-size <G>', 'responses per prompt', intArg(1))
    .requiredOption('--step <S>', 'training step of these rollouts', intArg(0))
    .option('--total-steps <T>', 'total training steps: the annealing horizon in paper mode', intArg(1))
    .option('--anneal-steps <T>', 'annealing horizon T, overriding --total-steps (reference mode default 500)', intArg(1))
    .option('--alpha <a>', 'thinking-reward weight α', numberArg, 0.3)
    .option('--mode <mode>', "'paper' or 'reference' (the public code's behaviour)", 'paper')
    .requiredOption('--out <file>', 'scored JSONL to write')
    .option('--concurrency <n>', 'reward-model requests in flight', intArg(1), 8)
    .option('--timeout-ms <ms>', 'time for one reward-model request', intArg(1), 60_000)
    .option('--max-retries <n>', 'retries per reward-model request', intArg(0), 3)
    .option('--advantage-mode <mode>', "how Rt enters the advantages: 'paper' (the paper's formula), 'centred' (the trainer's default) or 'skip-uniform'", 'paper')
    .option('--score-format <format>', "how replies are read: 'strict' (<answer>x</answer>, \\boxed{x} or a bare x in [0, 1]; anything else is a failure) or 'reference' (the reference code's extractor chain, clamped)", 'strict')
    .option('--image-base <dir>', 'folder of relative image paths (default: the data file folder)')
    .option('--no-progress', 'no progress bar')
    .action(async (o: Record<string, unknown>) => {
      const summary = await runScore({
        data: o.data as string, out: o.out as string, rmUrl: o.rmUrl as string, rmModel: o.rmModel as string | undefined,
        groupSize: o.groupSize as number, step: o.step as number, totalSteps: o.totalSteps as number | undefined,
        T: o.annealSteps as number | undefined, alpha: o.alpha as number, mode: o.mode as Mode,
        concurrency: o.concurrency as number, timeoutMs: o.timeoutMs as number, maxRetries: o.maxRetries as number,
        scoreFormat: o.scoreFormat as ScoreFormat, advantageMode: o.advantageMode as AdvantageMode,
        imageBase: o.imageBase as string | undefined, progress: o.progress === false ? false : undefined,
      });
      console.log(`sophia score: wrote ${o.out}\n${formatScoreSummary(summary)}`);
      const missing = summary.thinkingRequested - summary.thinkingScored;
      if (summary.thinkingRequested > 0 && summary.thinkingScored === 0) {
        console.error(`sophia score: error: none of the ${summary.thinkingRequested} thinking scores asked of ${o.rmUrl} came back (${failedText(summary)}); every thinking_reward in ${o.out} is null`);
        process.exitCode = 1;
      } else if (missing > 0) {
        console.error(`sophia score: warning: ${missing} of ${summary.thinkingRequested} thinking scores are missing (${failedText(summary)}); their thinking_reward is null`);
      }
    });
}
