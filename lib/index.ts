export { SophiaError, type SophiaErrorCode, ERROR_CODES } from './errors';
export {
  systemInfo,
  loadBackend,
  native,
  announceBackend,
  parseDeviceRequest,
  type Backend,
  type CudaStatus,
  type AddonInfo,
  type LoadedBackend,
  type SystemInfo,
  type DeviceRequest,
} from './native';
export {
  Tensor,
  tensorOf,
  type DType,
  type Device,
  type HostArray,
  floatToBf16Bits,
  bf16BitsToFloat,
  floatToF16Bits,
  f16BitsToFloat,
  float32ToBf16,
  bf16ToFloat32,
  float32ToF16,
  f16ToFloat32,
} from './tensor';
export { logprobs, logprobsSync, type LogprobsOptions, type LogprobsResult } from './ops/logprobs';
export {
  grpoLoss,
  grpoLossSync,
  type GrpoLossInputs,
  type GrpoLossOptions,
  type GrpoLossResult,
  type GrpoLossMetrics,
  type KlType,
  type LossAgg,
} from './ops/grpoLoss';
export { trustRewards, thinkingNeeded, type TrustInputs, type TrustOptions, type TrustResult, type TrustMode, type SameGroupOptions } from './ops/trust';
export { groupAdvantages, type AdvantageInputs, type AdvantageOptions } from './ops/advantages';
export type { Grouping } from './ops/common';
export * from './rewards';
export * from './data';
export * from './model';
export * from './task';
export * from './report';
export * from './serve';
export { pairedBootstrap, pairedRunsBootstrap, type Interval } from './stats';
export * from './train';

