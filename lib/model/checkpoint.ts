/**
 * Checkpoints of the embedded models: a folder with
 *   config.json          { format, version, kind: 'policy' | 'reward', model: ModelConfig, ...extra }
 *   tokenizer.json       the tokenizer's toJSON()
 *   model.safetensors    the weights (F32), one tensor per parameter, named as in `tensors`
 *   optimizer.safetensors (optional) AdamW moments as adam_m.<name> / adam_v.<name>, the step in the metadata
 * Every file is written atomically (temp file + rename); loading checks names, shapes and dtypes
 * and says what differs.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SophiaError, describe } from '../errors';
import type { Backend } from '../native';
import { resolveModelConfig, type ModelConfig } from './config';
import { VisionLanguageModel, type TensorInfo } from './model';
import { RewardModel } from './reward';
import { asFloat32, checkTensorSpec, readSafetensors, writeSafetensors, type SafeTensorInput } from './safetensors';
import { tokenizerFromJSON } from './tokenizer';

export const CHECKPOINT_FORMAT = 'sophia-rl-model';

export interface SaveOptions {
  /** Also save the AdamW state (to resume training). Default false. */
  optimizer?: boolean;
  /** Extra fields stored in config.json (e.g. how the checkpoint was made). */
  extra?: Record<string, unknown>;
}

export interface LoadOptions {
  /** Load the AdamW state too (an error when the checkpoint has none). Default false. */
  optimizer?: boolean;
  maxBytes?: number;
  /** 'cpu' or 'cuda' (see CreateModelOptions.device). Default: the process backend. */
  device?: Backend;
}

/** Writes `data` to `file` through a temp file in the same folder and a rename. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await fsp.open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw new SophiaError('E_IO', `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function tensorsOf(model: VisionLanguageModel, flat: Float32Array, prefix = ''): SafeTensorInput[] {
  return model.tensors.map((t) => ({ name: prefix + t.name, dtype: 'F32' as const, shape: t.shape, data: flat.subarray(t.offset, t.offset + t.size) }));
}

export async function saveModel(model: VisionLanguageModel, dir: string, opts: SaveOptions = {}): Promise<void> {
  if (typeof dir !== 'string' || dir === '') throw new SophiaError('E_TYPE', `saveModel: dir must be a path, got ${describe(dir)}`);
  await fsp.mkdir(dir, { recursive: true }).catch((err: Error) => {
    throw new SophiaError('E_IO', `saveModel: cannot create ${dir}: ${err.message}`, { cause: err });
  });
  const kind = model instanceof RewardModel ? 'reward' : 'policy';
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensorsOf(model, model.getState('params')), { format: CHECKPOINT_FORMAT, kind });
  if (opts.optimizer) {
    const tensors = [...tensorsOf(model, model.getState('adamM'), 'adam_m.'), ...tensorsOf(model, model.getState('adamV'), 'adam_v.')];
    await writeSafetensors(path.join(dir, 'optimizer.safetensors'), tensors, { format: CHECKPOINT_FORMAT, step: String(model.adamStep) });
  }
  await writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(model.tokenizer.toJSON()) + '\n');
  const config = { format: CHECKPOINT_FORMAT, version: 1, kind, model: model.config, params: model.numParams, ...(opts.extra ?? {}) };
  await writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw new SophiaError('E_IO', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new SophiaError('E_IO', `${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

function unflatten(file: string, tensors: readonly TensorInfo[], got: Map<string, import('./safetensors').SafeTensor>, numParams: number, prefix = ''): Float32Array {
  checkTensorSpec(file, tensors.map((t) => ({ name: prefix + t.name, shape: t.shape, dtype: 'F32' as const })), got);
  const flat = new Float32Array(numParams);
  for (const t of tensors) flat.set(asFloat32(got.get(prefix + t.name)!), t.offset);
  return flat;
}

/** What config.json says, validated. */
export async function readCheckpointConfig(dir: string): Promise<{ kind: 'policy' | 'reward'; model: ModelConfig; raw: Record<string, unknown> }> {
  const file = path.join(dir, 'config.json');
  const raw = await readJson(file);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new SophiaError('E_CONFIG', `${file} must hold a JSON object`);
  const r = raw as Record<string, unknown>;
  if (r.format !== CHECKPOINT_FORMAT) throw new SophiaError('E_CONFIG', `${file}: format must be "${CHECKPOINT_FORMAT}", got ${describe(r.format)} (not a sophia-rl checkpoint?)`);
  if (r.kind !== 'policy' && r.kind !== 'reward') throw new SophiaError('E_CONFIG', `${file}: kind must be "policy" or "reward", got ${describe(r.kind)}`);
  let model: ModelConfig;
  try {
    model = resolveModelConfig(r.model);
  } catch (err) {
    throw new SophiaError('E_CONFIG', `${file}: ${(err as Error).message}`, { cause: err });
  }
  if (model.rewardHead !== (r.kind === 'reward')) throw new SophiaError('E_CONFIG', `${file}: kind "${r.kind}" disagrees with model.rewardHead = ${model.rewardHead}`);
  return { kind: r.kind, model, raw: r };
}

/** Loads a policy or a reward model, whichever the checkpoint holds. */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<VisionLanguageModel | RewardModel> {
  if (typeof dir !== 'string' || dir === '') throw new SophiaError('E_TYPE', `loadModel: dir must be a path, got ${describe(dir)}`);
  const { kind, model: config } = await readCheckpointConfig(dir);
  const tokenizer = tokenizerFromJSON(await readJson(path.join(dir, 'tokenizer.json')));
  const create = kind === 'reward' ? RewardModel.create : VisionLanguageModel.create;
  const { rewardHead: _rh, ...arch } = config;
  const model = create({ config: arch, tokenizer, maxBytes: opts.maxBytes, device: opts.device });
  try {
    const weightsFile = path.join(dir, 'model.safetensors');
    const { tensors } = await readSafetensors(weightsFile);
    model.setState('params', unflatten(weightsFile, model.tensors, tensors, model.numParams));
    if (opts.optimizer) {
      const optFile = path.join(dir, 'optimizer.safetensors');
      const st = await readSafetensors(optFile);
      const step = Number(st.metadata.step);
      if (!Number.isInteger(step) || step < 0) throw new SophiaError('E_IO', `${optFile}: metadata "step" must be a non-negative integer, got ${describe(st.metadata.step)}`);
      const both = new Map(st.tensors);
      const m = new Map([...both].filter(([k]) => k.startsWith('adam_m.')));
      const v = new Map([...both].filter(([k]) => k.startsWith('adam_v.')));
      const extra = [...both.keys()].filter((k) => !k.startsWith('adam_m.') && !k.startsWith('adam_v.'));
      if (extra.length) throw new SophiaError('E_SHAPE', `${optFile}: unexpected tensors ${extra.slice(0, 5).join(', ')}`);
      model.setState('adamM', unflatten(optFile, model.tensors, m, model.numParams, 'adam_m.'));
      model.setState('adamV', unflatten(optFile, model.tensors, v, model.numParams, 'adam_v.'), step);
    }
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

export async function loadPolicy(dir: string, opts: LoadOptions = {}): Promise<VisionLanguageModel> {
  const m = await loadModel(dir, opts);
  if (m instanceof RewardModel) {
    m.dispose();
    throw new SophiaError('E_CONFIG', `${dir} holds a reward model, not a policy`);
  }
  return m;
}

export async function loadRewardModel(dir: string, opts: LoadOptions = {}): Promise<RewardModel> {
  const m = await loadModel(dir, opts);
  if (!(m instanceof RewardModel)) {
    m.dispose();
    throw new SophiaError('E_CONFIG', `${dir} holds a policy, not a reward model`);
  }
  return m;
}
