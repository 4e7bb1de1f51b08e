/**
 * The thinking reward model's user prompt, byte for byte as the published model was trained with
 * (../shared/reference/thinking-rm-prompt.txt). `{question}` and `{reasoning}` are the two slots; the
 * braces of `{0, 0.1, 0.2, ..., 1.0}` are literal text. Do not reformat: trailing spaces matter.
 */
export const THINKING_RM_PROMPT: string =
  "You are an expert reasoning evaluator. I will give you a multimodal question and an answer. Your goal is to judge a reward process and give a score between 0 and 1. You should focus on whether the reasoning process is good rather than whether the final answer is correct.### Evaluation Criteria:\n" +
  "- **Logical Soundness**: Does each step follow logically from the previous one?\n" +
  "- **Correct Reasoning**: Are the methods and steps used appropriate and valid? Are the facts and lemmas correctly stated and applied?\n" +
  "- **Error Identification**: Are there any logical fallacies, unsupported assumptions, or incorrect steps?\n" +
  "- **Language Consistency**: Is the reasoning process conducted in a single, consistent language without mixing different languages?\n" +
  "- **Redundancy**: Is the reasoning concise, without unnecessary repetition or extraneous steps?\n" +
  "Provide a single score from **{0, 0.1, 0.2, ..., 1.0}** based on the reasoning quality, where:\n" +
  " - **0**: Completely flawed reasoning\n" +
  "- **1**: Perfectly sound reasoning\n" +
  "- Intermediate values (e.g., 0.3, 0.7) should reflect partial correctness or minor errors.\n" +
  "Be strict, reward the good process and punish the bad one. You should only output the score without any explanation.\n" +
  "    Question: {question}\n" +
  "    Reasoning process: {reasoning}\n" +
  "    Your response format: <answer>your_score</answer>\n" +
  "    ";

/** Fills the two slots in one pass, so a question containing "{reasoning}" is not filled twice. */
export function fillThinkingPrompt(question: string, reasoning: string): string {
  return THINKING_RM_PROMPT.replace(/\{(question|reasoning)\}/g, (_m, slot: string) => (slot === 'question' ? question : reasoning));
}
