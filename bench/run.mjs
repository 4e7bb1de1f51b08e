// npm run bench: every CPU benchmark (needs `npm run build`). GPU: bench/gpu.sh on a CUDA machine.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
const here = path.dirname(fileURLToPath(import.meta.url));
execFileSync(process.execPath, [path.join(here, 'kernels.mjs'), ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, SOPHIA_QUIET: '1' } });
