import { systemInfo } from '../native';

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function cudaVersion(v: number | undefined): string {
  if (!v) return 'none';
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** The lines `sophia info` prints. */
export function infoLines(): string[] {
  const s = systemInfo();
  const d = s.cuda.device;
  return [
    `sophia-rl ${s.version} (node ${s.node}, ${s.platform})`,
    `backend:            ${s.backend}   (${s.line.replace(/^sophia-rl: /, '')})`,
    `binary variant:     ${s.variant}${s.cuda.compiled ? ' (CUDA compiled in)' : ''}`,
    `CPU threads:        ${s.threads} (SIMD: ${s.simd})`,
    `device:             ${d ? d.name : 'none'}${s.cuda.usable ? '' : ` (${s.cuda.reason})`}`,
    `compute capability: ${d ? d.computeCapability : '-'}`,
    `device memory:      ${d ? `${gib(d.totalMemory)} total, ${gib(d.freeMemory)} free` : '-'}`,
    `CUDA runtime:       ${s.cuda.compiled ? cudaVersion(s.cuda.runtimeVersion) : 'not compiled in'}`,
    `CUDA driver:        ${s.cuda.compiled ? cudaVersion(s.cuda.driverVersion) : '-'}`,
  ];
}
