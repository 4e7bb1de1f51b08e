import { fillThinkingPrompt } from '../../lib/rewards/prompt';
import { parseChatRequest, parseThinkingPrompt } from '../../lib/serve/parse';

test('parseThinkingPrompt inverts fillThinkingPrompt byte for byte', () => {
  const cases: [string, string][] = [
    ['What is 2+2?', 'Add them: 4.'],
    ['', ''],
    ['  padded  ', '\n\nleading and trailing newlines\n\n'],
    ['What is {reasoning}?', '{question} {reasoning}'],
    ['Multi\nline\r\nquestion', 'Steps:\n    Question: quoted\n    Reasoning process: quoted\n    Your response format: <answer>1</answer>\n    '],
    ['<image>Which colour?', '红色 — because ∑ 🎨 $x^2$'],
    ['A\n    Your response format: <answer>your_score</answer>\n    ', 'B'],
  ];
  for (const [question, reasoning] of cases) expect(parseThinkingPrompt(fillThinkingPrompt(question, reasoning))).toEqual({ question, reasoning });
});

test('parseThinkingPrompt finds the slots in prompts that were reformatted on the way', () => {
  const filled = fillThinkingPrompt('Which shape?', 'It is round.');
  const expected = { question: 'Which shape?', reasoning: 'It is round.' };
  expect(parseThinkingPrompt(filled.replace(/\n/g, '\r\n'))).toEqual(expected);
  expect(parseThinkingPrompt(filled.trim())).toEqual(expected);
  expect(parseThinkingPrompt(filled.replace(/\n {4}/g, '\n'))).toEqual(expected);
  expect(parseThinkingPrompt('Question: Which shape?\nReasoning process: It is round.')).toEqual(expected);
  expect(parseThinkingPrompt('Judge this.\nQuestion: Which shape?\n\tReasoning process:It is round.\nYour response format: a number\n\n')).toEqual(expected);
  expect(parseThinkingPrompt('Question: Which shape?\nReasoning process: Your response format: is not at a line start')).toEqual({
    question: 'Which shape?', reasoning: 'Your response format: is not at a line start',
  });
});

test('parseThinkingPrompt gives null for text that is not the prompt', () => {
  for (const text of ['', 'hello', 'Question: only a question', 'Reasoning process: only reasoning\nQuestion: after']) {
    expect(parseThinkingPrompt(text)).toBeNull();
  }
});

test('parseChatRequest: last user message, text parts joined, first image, <image> prefix of the client removed', () => {
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
  const jpg = Buffer.from('ffd8ffe000104a464946', 'hex');
  const url = (b: Buffer, mime = 'png'): string => `data:image/${mime};base64,${b.toString('base64')}`;
  const filled = fillThinkingPrompt('<image> Which shape?', 'round');
  const r = parseChatRequest({
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: fillThinkingPrompt('earlier', 'ignored') },
      { role: 'assistant', content: null },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: url(png) } }, { type: 'text', text: filled }, { type: 'image_url', image_url: url(jpg, 'jpeg') }] },
    ],
    n: 2,
    model: 'm',
  });
  expect(r).toEqual({ item: { question: 'Which shape?', response: 'round', image: png }, n: 2, model: 'm', promptBytes: Buffer.byteLength(filled) });
  // without an image the marker is part of the question; the dataset's '<image>' (no space) always is
  expect(parseChatRequest({ messages: [{ role: 'user', content: filled }] }).item.question).toBe('<image> Which shape?');
  const own = parseChatRequest({ messages: [{ role: 'user', content: [{ type: 'text', text: fillThinkingPrompt('<image>Q', 'r') }, { type: 'image_url', image_url: { url: url(jpg) } }] }] });
  expect(own.item).toEqual({ question: '<image>Q', response: 'r', image: jpg });
  const split = parseChatRequest({ messages: [{ role: 'user', content: [{ type: 'text', text: 'Question: a' }, { type: 'text', text: 'Reasoning process: b' }] }] });
  expect(split.item).toEqual({ question: 'a', response: 'b' });
});
