/**
 * The server side of the thinking-reward protocol: a chat-completions request body back into the
 * ThinkingItem that OpenAIThinkingReward (lib/rewards/thinking.ts) turned into it.
 */
import { describe } from '../errors';
import { declaredSize, imageFormat } from '../data/images';
import { THINKING_RM_PROMPT } from '../rewards/prompt';
import type { ThinkingItem } from '../rewards/thinking';

/** An error answered to the HTTP client as `{error: {message, type, param, code}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const badRequest = (param: string, message: string): ApiError => new ApiError(400, 'invalid_request_error', 'invalid_value', message, param);

const [PREFIX, AFTER_QUESTION] = THINKING_RM_PROMPT.split('{question}');
const [MIDDLE, SUFFIX] = AFTER_QUESTION.split('{reasoning}');

/**
 * The question and reasoning of a filled thinking-reward prompt, or null when the text is not one.
 * The exact template (lib/rewards/prompt.ts) gives the slots byte for byte; otherwise the
 * `Question:` / `Reasoning process:` / `Your response format:` lines are located with any
 * indentation and line endings and the slots come back trimmed. The first `Reasoning process:`
 * line ends the question: the reasoning, written by a policy, is the side likely to quote it.
 */
export function parseThinkingPrompt(text: string): { question: string; reasoning: string } | null {
  if (text.length >= PREFIX.length + MIDDLE.length + SUFFIX.length && text.startsWith(PREFIX) && text.endsWith(SUFFIX)) {
    const inner = text.slice(PREFIX.length, text.length - SUFFIX.length);
    const cut = inner.indexOf(MIDDLE);
    if (cut >= 0) return { question: inner.slice(0, cut), reasoning: inner.slice(cut + MIDDLE.length) };
  }
  const t = text.replace(/\r\n?/g, '\n');
  const q = /(?:^|\n)[ \t]*Question:[ \t]?/.exec(t);
  if (!q) return null;
  const afterQ = q.index + q[0].length;
  const r = /\n[ \t]*Reasoning process:[ \t]?/.exec(t.slice(afterQ));
  if (!r) return null;
  const afterR = afterQ + r.index + r[0].length;
  const rest = t.slice(afterR);
  // the format line, if it is the last line, is template; found without a backtracking regex
  const lastLine = rest.trimEnd().lastIndexOf('\n');
  const reasoning = lastLine >= 0 && /^[ \t]*Your response format:/.test(rest.slice(lastLine + 1)) ? rest.slice(0, lastLine) : rest;
  return { question: t.slice(afterQ, afterQ + r.index).trim(), reasoning: reasoning.trim() };
}

/** What a chat-completions request asks the server to do. */
export interface ParsedRequest {
  item: ThinkingItem;
  /** Choices to answer (OpenAI `n`): the one score repeated. */
  n: number;
  /** The model the request named, if any. */
  model?: string;
  /** UTF-8 bytes of the prompt text, for the usage estimate. */
  promptBytes: number;
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);
const MAX_N = 128;
/** The client prefixes this to a question that comes with an image and holds no `<image>` yet. */
const CLIENT_IMAGE_MARKER = '<image> ';

function isObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

/** The most pixels an image in a request may declare (4096², see ThinkingRewardServerOptions.maxImagePixels). */
export const MAX_REQUEST_IMAGE_PIXELS = 16_777_216;

function decodeImageUrl(value: unknown, param: string, maxPixels: number): Buffer {
  const url = isObject(value) ? value.url : value;
  if (typeof url !== 'string') throw badRequest(param, `${param}: expected {url: 'data:image/png;base64,…'} or the URL string, got ${describe(url)}`);
  const m = /^data:image\/[a-z0-9.+-]+;base64,/i.exec(url);
  if (!m) {
    const shown = url.startsWith('data:') ? 'a data: URL that is not base64 image data' : 'a URL that is not a data: URL (this server fetches nothing)';
    throw badRequest(param, `${param}: expected a base64 data URL such as data:image/png;base64,…, got ${shown}`);
  }
  const b64 = url.slice(m[0].length).replace(/\s+/g, '');
  if (b64.length === 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw badRequest(param, `${param}: the data URL's payload is not base64`);
  const bytes = Buffer.from(b64, 'base64');
  if (imageFormat(bytes) === null) throw badRequest(param, `${param}: expected PNG or JPEG image data, got ${bytes.length} bytes of another or no format`);
  // Refused from the header, before anything decodes it: a small file can claim a huge image.
  const size = declaredSize(bytes);
  if (size && size.width * size.height > maxPixels) {
    throw badRequest(param, `${param}: the image declares ${size.width}×${size.height} pixels, over this server's limit of ${maxPixels}`);
  }
  return bytes;
}

function optionalNumber(body: Record<string, unknown>, key: string): void {
  const v = body[key];
  if (v !== undefined && v !== null && (typeof v !== 'number' || !Number.isFinite(v))) throw badRequest(key, `${key}: expected a number, got ${describe(v)}`);
}

function optionalPositiveInt(body: Record<string, unknown>, key: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw badRequest(key, `${key}: expected ${max === Number.MAX_SAFE_INTEGER ? 'a positive integer' : `an integer from 1 to ${max}`}, got ${describe(v)}`);
  }
  return v;
}

/**
 * Checks a chat-completions body and finds the item to score: the last user message holds the
 * filled prompt (a string, or text parts joined by newlines as vLLM joins them) and at most the
 * image parts; the first image is the item's image. The `<image> ` the client put in front of the
 * question is taken off again, so a question comes back as it was sent. Other OpenAI fields
 * (seed, stop, user, logprobs, …) are accepted and ignored. Throws ApiError 400 naming the field.
 */
export function parseChatRequest(body: unknown, opts: { maxImagePixels?: number } = {}): ParsedRequest {
  const maxImagePixels = opts.maxImagePixels ?? MAX_REQUEST_IMAGE_PIXELS;
  if (!isObject(body)) throw badRequest('body', `the request body must be a JSON object, got ${describe(body)}`);
  const model = body.model;
  if (model !== undefined && model !== null && typeof model !== 'string') throw badRequest('model', `model: expected a string, got ${describe(model)}`);
  if (body.stream !== undefined && body.stream !== null && body.stream !== false) {
    throw badRequest('stream', `stream: this server answers whole replies only; expected false or no stream field, got ${describe(body.stream)}`);
  }
  optionalNumber(body, 'temperature');
  optionalNumber(body, 'top_p');
  optionalPositiveInt(body, 'max_tokens');
  optionalPositiveInt(body, 'max_completion_tokens');
  const n = optionalPositiveInt(body, 'n', MAX_N) ?? 1;

  const messages = body.messages;
  if (messages === undefined) throw badRequest('messages', 'messages: required, an array of {role, content} with the thinking-reward prompt in a user message');
  if (!Array.isArray(messages) || messages.length === 0) throw badRequest('messages', `messages: expected a non-empty array, got ${describe(messages)}`);
  let user = -1;
  messages.forEach((m, i) => {
    if (!isObject(m)) throw badRequest(`messages[${i}]`, `messages[${i}]: expected an object {role, content}, got ${describe(m)}`);
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) {
      throw badRequest(`messages[${i}].role`, `messages[${i}].role: expected one of ${[...ROLES].join(', ')}, got ${describe(m.role)}`);
    }
    const c = m.content;
    if (!(typeof c === 'string' || Array.isArray(c) || (c === null && m.role !== 'user'))) {
      throw badRequest(`messages[${i}].content`, `messages[${i}].content: expected a string or an array of content parts, got ${describe(c)}`);
    }
    if (m.role === 'user') user = i;
  });
  if (user < 0) throw badRequest('messages', 'messages: no message has role "user"; the thinking-reward prompt goes in a user message');

  const content = (messages[user] as Record<string, unknown>).content as string | unknown[];
  const texts: string[] = [];
  let image: Buffer | undefined;
  if (typeof content === 'string') {
    texts.push(content);
  } else {
    content.forEach((part, j) => {
      const param = `messages[${user}].content[${j}]`;
      if (!isObject(part)) throw badRequest(param, `${param}: expected a content part {type, …}, got ${describe(part)}`);
      if (part.type === 'text') {
        if (typeof part.text !== 'string') throw badRequest(`${param}.text`, `${param}.text: expected a string, got ${describe(part.text)}`);
        texts.push(part.text);
      } else if (part.type === 'image_url') {
        const bytes = decodeImageUrl(part.image_url, `${param}.image_url`, maxImagePixels);
        image ??= bytes;
      } else {
        throw badRequest(`${param}.type`, `${param}.type: expected 'text' or 'image_url', got ${describe(part.type)}`);
      }
    });
  }
  const text = texts.join('\n');
  const slots = parseThinkingPrompt(text);
  if (!slots) {
    throw badRequest(
      `messages[${user}].content`,
      `messages[${user}].content: expected the thinking-reward prompt with a 'Question: …' line followed by a 'Reasoning process: …' line, got ${texts.length === 0 ? 'no text part' : `text of ${text.length} characters without them`}`,
    );
  }
  let question = slots.question;
  if (image !== undefined && question.startsWith(CLIENT_IMAGE_MARKER)) question = question.slice(CLIENT_IMAGE_MARKER.length);
  return {
    item: { question, response: slots.reasoning, ...(image !== undefined ? { image } : {}) },
    n,
    ...(typeof model === 'string' ? { model } : {}),
    promptBytes: Buffer.byteLength(text, 'utf8'),
  };
}
