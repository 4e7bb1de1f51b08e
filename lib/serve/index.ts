export {
  startThinkingRewardServer,
  type ThinkingRewardServer, type ThinkingRewardServerOptions, type ThinkingRewardServerStats,
} from './rm-server';
export { parseThinkingPrompt, parseChatRequest, ApiError, type ParsedRequest } from './parse';
