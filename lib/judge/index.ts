export { judgeThinking, JUDGE_PENALTIES, type JudgeResult, type JudgeBreakdown, type JudgeCriterion } from './thinking';
