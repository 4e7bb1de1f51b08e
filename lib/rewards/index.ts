export { THINKING_RM_PROMPT, fillThinkingPrompt } from './prompt';
export { gradeAnswer, normalizeMathd, normalizeAnswer, latexToText, type GradeOptions } from './math';
export { porterStem } from './porter';
export { wordErrorRate, rougeTokens, rougeN, rougeL } from './text';
export {
  formatReward, extractAnswer, numericalReward, choiceReward, ocrReward, freeFormReward, outcomeReward,
  registerOutcomeReward, unregisterOutcomeReward, outcomeRewardTypes,
  type Mode, type OutcomeInput, type OutcomeOptions, type CustomRewardInput, type CustomOutcomeReward,
} from './outcome';
export { extractThinkingScore, parseThinkingScore, type ScoreFormat } from './extract';
export {
  OpenAIThinkingReward, thinkingInput, chatCompletionsUrl, listModels, THINKING_FAILURES,
  type ThinkingItem, type ThinkingReward, type ThinkingRewardStats, type ThinkingFailure, type OpenAIThinkingRewardOptions,
} from './thinking';
