import { Command } from 'commander';
import { SophiaError } from '../errors';
import { announceBackend, packageRoot, parseDeviceRequest } from '../native';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { infoLines } from './info';
import { registerEval } from './eval';
import { registerRmServe } from './rm-serve';
import { registerRmTrain } from './rm-train';
import { registerScore } from './score';
import { registerSft } from './sft';
import { registerTrain } from './train';
import { smokeKernel } from './smoke';

// The CLI says which backend it runs on (SOPHIA_QUIET=1 silences it); the library alone is quiet.
announceBackend(true);

const program = new Command();
program
  .name('sophia')
  .description('Trust-GRPO for multimodal reasoning models (SophiaVL-R1)')
  .version(packageVersion(), '-V, --version', 'print the sophia-rl version')
  .option('--device <device>', "backend for every command: 'auto' (CUDA when a usable GPU is there), 'cpu' or 'cuda' (default: $SOPHIA_DEVICE, else auto)")
  .showHelpAfterError();

// --device is the same as SOPHIA_DEVICE, set before anything loads the backend.
program.hook('preAction', (root) => {
  const device = root.opts().device as string | undefined;
  if (device === undefined) return;
  try {
    process.env.SOPHIA_DEVICE = parseDeviceRequest(device);
  } catch {
    throw new SophiaError('E_CONFIG', `--device must be 'auto', 'cpu' or 'cuda', got ${JSON.stringify(device)}`);
  }
});

program
  .command('info')
  .description('print the backend, device, CUDA versions and CPU threads')
  .action(() => {
    console.log(infoLines().join('\n'));
  });

program
  .command('check')
  .description('system info and one grpoLoss run checked against a float64 oracle')
  .action(async () => {
    console.log(infoLines().join('\n'));
    const r = await smokeKernel();
    console.log(`\nkernel check: grpoLoss on N=${r.N}, V=${r.V} (${r.backend}) loss=${r.loss.toFixed(6)}, max |grad - oracle| = ${r.maxGradError.toExponential(2)}: ${r.ok ? 'ok' : 'MISMATCH'}`);
    if (!r.ok) process.exitCode = 1;
  });

function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

registerScore(program);
registerRmServe(program);
registerRmTrain(program);
registerSft(program);
registerTrain(program);
registerEval(program);

// --no-progress on every command: without it only `score` had one (the others read SOPHIA_QUIET).
const everyCommand = (c: Command): Command[] => [c, ...c.commands.flatMap(everyCommand)];
for (const c of everyCommand(program).slice(1)) {
  if (c.commands.length > 0 || c.options.some((o) => o.long === '--no-progress')) continue;
  c.option('--no-progress', 'no progress lines on stderr (as SOPHIA_QUIET=1)');
}
program.hook('preAction', (_root, action) => {
  if (action.opts().progress === false) process.env.SOPHIA_QUIET = '1';
});

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof SophiaError) {
    console.error(`sophia: ${err.code}: ${err.message}`);
  } else {
    console.error(err);
  }
  process.exitCode = 1;
});
