// npm run bench: every CPU benchmark (needs `npm run build`). GPU: bench/gpu.sh on a CUDA machine.
// Arguments go to bench/kernels.mjs; bench/model.mjs runs with its defaults (run it alone for its options).
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
const here = path.dirname(fileURLToPath(import.meta.url));
for (const [file, argv] of [['kernels.mjs', process.argv.slice(2)], ['model.mjs', []]])
  execFileSync(process.execPath, [path.join(here, file), ...argv], { stdio: 'inherit', env: { ...process.env, SOPHIA_QUIET: '1' } });
