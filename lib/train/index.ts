/** Training from TypeScript: Trust-GRPO runs, their config, SFT, reward-model training and reports. */
export {
  TrustGrpoTrainer, readMetrics, readSamples, defaultPolicyDir, defaultRewardDir,
  type EvalMetrics, type EvalMetricKey, type StepMetrics, type SampleRecord, type TrainerHooks, type RunSummary,
  type Rollouts, type RolloutRewards, type StepAdvantages, type UpdateStats,
} from './trainer';
export {
  TrainConfigSchema, resolveTrainConfig, loadTrainConfig, learningRate, redactSecrets, redactUrl, REDACTED,
  type TrainConfig, type TrainConfigInput,
} from './config';
export {
  composeAdvantages, uniformShares, withinGroupCorrelation, ADVANTAGE_MODES,
  type AdvantageMode, type AdvantageParts, type ComposedAdvantages,
} from './advantage';
export {
  runSft, resolveSftOptions, formatSftSummary, SftOptionsSchema, SFT_FLAWED_KINDS, lrAt,
  type SftOptions, type SftConfig, type SftResult, type SftProgress, type SeeingSummary, type LrSchedule,
} from './sft';
export {
  runRmTrain, resolveRmOptions, formatRmSummary, RmOptionsSchema, RM_HARD_KINDS, probeFaithfulness, readRollouts,
  type RmOptions, type RmConfig, type RmResult, type RmProgress, type Faithfulness,
} from './rm';
export { writeRunReport, writeAblationReport, type AblationRun } from './report';
export {
  runAblation, ablationComparisons, ABLATION_VARIANTS, ABLATION_EVAL_PROBLEMS, MAIN_JOB,
  type AblationOptions, type AblationResult,
} from './ablation';
export { runScore, formatScoreSummary, type ScoreOptions, type ScoreSummary } from './score';
export { runEval, formatEval, type EvalCliOptions, type PolicyEvaluation } from './evaluate';
