/**
 * For test files that need a GPU: loads the CUDA backend where one is usable and makes it the
 * process backend (SOPHIA_DEVICE=cuda, before the first op or model is made); elsewhere prints why
 * the file's GPU tests are skipped. Errors other than "no usable GPU" (E_DEVICE) are thrown.
 */
import { SophiaError } from '../../lib/errors';
import { loadBackend, type LoadedBackend } from '../../lib/native';

export function probeCuda(label: string): { cuda?: LoadedBackend; reason: string } {
  try {
    const cuda = loadBackend('cuda');
    process.env.SOPHIA_DEVICE = 'cuda';
    return { cuda, reason: '' };
  } catch (err) {
    if (!(err instanceof SophiaError && err.code === 'E_DEVICE')) throw err;
    console.log(`${label}: skipped, no usable GPU: ${err.message}`);
    return { reason: err.message };
  }
}
