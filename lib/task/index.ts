export { createRng, hashString, type Rng } from '../random';
export {
  COLORS, SHAPES, PALETTE, BACKGROUNDS, sampleScene, renderScene, covers, gridCells, maxGridSize,
  type Color, type Shape, type Background, type SceneObject, type SceneOptions, type SceneLayout,
} from './scene';
export {
  TASK_VOCABULARY, parseKind, kindParts, countKind, formatStep, formatThink, parseStep, parseThink,
  type Kind, type Step, type ParsedStep,
} from './grammar';
export {
  QUESTION_KINDS, MAX_QUESTION_CHARS, MAX_THINK_CHARS, generateProblems, goldSteps, goldResponse, answerOfSteps, questionOf,
  makeProblem, problemKey, checkProblem, CENSUS_QUESTION, censusResponse, GRID_QUESTION, gridResponse, gridLetters,
  type QuestionKind, type SyntheticTask, type TaskAndScene, type SyntheticProblem, type GenerateOptions as ProblemGenerateOptions, type Split, type Difficulty, type ProblemType,
} from './problems';
export {
  SYNTHETIC_DATA_SOURCE, writeSyntheticDataset, readSyntheticProblems, problemsById, problemFromRow, toSyntheticRow,
  type SyntheticRow, type WriteSyntheticOptions, type WrittenSyntheticDataset,
} from './io';
export { PERTURBATION_KINDS, perturb, flawedResponses, degenerateResponses, type PerturbationKind, type FlawedResponse } from './perturb';
export { judgeThinking, JUDGE_PENALTIES, type JudgeResult, type JudgeBreakdown, type JudgeCriterion } from './judge';
export * from './eval';
