/**
 * The addon boundary under hostile input: every native entry point gets calls with wrong types,
 * shapes, dtypes, lengths and out-of-range values. Each must throw or reject with a SophiaError,
 * and the process must keep working afterwards.
 */
import { addon } from '../lib/native';
import { SophiaError } from '../lib/errors';

const seed = Number(process.env.SOPHIA_TEST_SEED ?? Date.now() % 1e9);
console.log(`fuzz seed ${seed} (set SOPHIA_TEST_SEED to replay)`);
let s = seed >>> 0;
const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];

const N = 6, V = 5, B = 2;
const notNumbers = ['x', {}, [], true, 10n, () => 1, Symbol('s'), new Float32Array(1)];
const badPositive = [0, -1, NaN, Infinity, -Infinity, ...notNumbers];
const notArrays = ['x', 1, {}, [1, 2], true, null, 10n];

// For each entry point: a valid call, and per key the values that must make it fail.
// `coupled`: keys whose bad values can cancel each other out (bf16 logits with dtype 'bf16', a V that
// matches a shorter labels array, ...). The random-combination test changes at most one key per set.
type Case = { valid: () => Record<string, unknown>; bad: Record<string, () => unknown[]>; async?: boolean; coupled?: string[][] };

const logits = () => new Float32Array(N * V).map(() => rand() * 4 - 2);
const labels = () => new Int32Array(N).map(() => Math.floor(rand() * V));
const f32 = (n: number) => new Float32Array(n).map(() => rand() - 0.5);

const cases: Record<string, Case> = {
  logprobs: {
    async: true,
    coupled: [['logits', 'V', 'labels', 'dtype']],
    valid: () => ({ logits: logits(), V, labels: labels(), temperature: 0.7, entropy: true }),
    bad: {
      logits: () => [undefined, ...notArrays, new Float64Array(N * V), new Int32Array(N * V), new Float32Array(N * V - 1), new Uint16Array(N * V)],
      labels: () => [undefined, ...notArrays, new Float32Array(N), new Int32Array(N - 1), new Int32Array(N).fill(V), new Int32Array(N).fill(-1)],
      V: () => [undefined, ...badPositive, 2.5, 2 ** 40, V + 1],
      temperature: () => badPositive,
      entropy: () => ['yes', 1, {}],
      dtype: () => ['f64', 'int8', 3, {}, 'bf16'],
    },
  },
  grpoLoss: {
    async: true,
    coupled: [['logits', 'V', 'labels', 'oldLogp', 'refLogp', 'mask', 'gradOut'], ['seqStarts', 'advantages', 'advantagesPer'], ['lossAgg', 'maxLen']],
    valid: () => ({
      logits: logits(), V, labels: labels(), oldLogp: f32(N), refLogp: f32(N), advantages: f32(B),
      seqStarts: new Int32Array([0, 2, N]), mask: new Uint8Array(N).fill(1), klCoef: 0.04, entropyCoef: 0.001,
    }),
    bad: {
      logits: () => [...notArrays.filter((v) => v !== null), new Float64Array(N * V), new Float32Array(N * V + 3)],
      labels: () => [undefined, ...notArrays, new Int32Array(N + 1), new Int32Array(N).fill(V + 7), new Uint32Array(N)],
      oldLogp: () => [undefined, ...notArrays, new Float32Array(N - 1), new Float64Array(N)],
      refLogp: () => [new Float32Array(N + 2), 'x', 3, {}],
      advantages: () => [undefined, ...notArrays, new Float32Array(3), new Float32Array(N + 1), new Float64Array(B)],
      seqStarts: () => [undefined, ...notArrays, new Int32Array(0), new Int32Array([1, 2, N]), new Int32Array([0, 4, 2, N]), new Int32Array([0, N + 1]), new Int32Array([0, 2])],
      mask: () => ['x', 1, {}, new Uint8Array(N).fill(2), new Float32Array(N).fill(-1), new Float32Array(N).fill(NaN), new Uint8Array(N - 1), new Int32Array(N)],
      temperature: () => badPositive,
      clipLow: () => [-0.1, 1, 2, NaN, ...notNumbers],
      clipHigh: () => [-0.1, NaN, Infinity, ...notNumbers],
      dualClip: () => [0.5, 1, -3, NaN, ...notNumbers],
      klCoef: () => [-1, NaN, Infinity, ...notNumbers],
      klType: () => ['k4', 'kl', 3, {}],
      entropyCoef: () => [NaN, Infinity, ...notNumbers],
      lossAgg: () => ['mean', 'sum', 1, {}, 'seq-mean-token-sum-norm' /* without maxLen */],
      maxLen: () => [0, -5, 1.5, 'x', {}],
      backward: () => ['no', 0, {}],
      inplace: () => ['no', 1],
      advantagesPer: () => ['row', 1],
      V: () => [undefined, ...badPositive, V - 1],
      gradOut: () => ['x', 3, {}, new Float32Array(N * V - 1), new Uint16Array(N * V), new Float64Array(N * V)],
    },
  },
  trustRewards: {
    coupled: [['outcome', 'thinking', 'groupSize', 'groupIds']],
    valid: () => ({ outcome: new Float32Array([1, 0, 1, 0]), thinking: new Float32Array([0.5, 0.2, NaN, 0.9]), groupSize: 2, step: 3, T: 10 }),
    bad: {
      outcome: () => [undefined, ...notArrays, new Float64Array(4), new Float32Array([1, NaN, 0, 0]), new Float32Array([Infinity, 0, 0, 0])],
      thinking: () => [undefined, ...notArrays, new Float32Array(3), new Float32Array([Infinity, 0, 0, 0])],
      groupSize: () => [0, -2, 3, 1.5, 'x', {}],
      groupIds: () => [new Int32Array(3), new Float32Array(4), 'x'],
      step: () => [undefined, -1, NaN, 'x', {}],
      T: () => [undefined, 0, -5, NaN, 'x'],
      alpha: () => [-1, NaN, 'x'],
      mode: () => ['paperish', 1],
      threshold: () => [NaN, 'x', Infinity],
      gate: () => [NaN, 'x'],
      allSameHigh: () => [NaN, {}],
      allSameLow: () => [Infinity, 'x'],
    },
  },
  thinkingNeeded: {
    coupled: [['outcome', 'groupSize']],
    valid: () => ({ outcome: new Float32Array([1, 0, 0.3, 0]), groupSize: 2, mode: 'reference' }),
    bad: {
      outcome: () => [undefined, ...notArrays, new Float32Array([NaN, 0, 0, 0]), new Int32Array(4)],
      groupSize: () => [0, 3, -1, 'x'],
      mode: () => ['x', 2],
      gate: () => [NaN, 'x'],
    },
  },
  groupAdvantages: {
    coupled: [['rewards', 'groupSize', 'groupIds']],
    valid: () => ({ rewards: new Float32Array([1, 0, 0.5, 0.25]), groupSize: 2, scale: 'group', eps: 1e-6 }),
    bad: {
      rewards: () => [undefined, ...notArrays, new Float32Array([NaN, 1, 1, 1]), new Float64Array(4)],
      groupSize: () => [0, 3, -1, 2.5, 'x'],
      groupIds: () => [new Int32Array(5), 'x', new Uint8Array(4)],
      scale: () => ['std', 0],
      eps: () => [-1, NaN, 'x'],
    },
  },
  streamRead: {
    valid: () => ({ bytes: 65536, iters: 1 }),
    bad: { bytes: () => [0, -1, 1.5, 'x', 2 ** 50], iters: () => [0, -1, 'x', 1e9] },
  },
  cudaCopyBandwidth: {
    valid: () => ({ bytes: 65536, iters: 1 }),
    bad: { bytes: () => [0, 'x'], iters: () => [0, 'x'] },
  },
};

async function expectSophiaError(call: () => unknown, what: string): Promise<void> {
  let result: unknown;
  try {
    result = call();
    if (result instanceof Promise) result = await result;
  } catch (err) {
    if (!(err instanceof SophiaError)) throw new Error(`${what}: threw a non-SophiaError: ${String(err)} (seed ${seed})`);
    if (!/^E_[A-Z]+$/.test(err.code) || err.message.length < 10) throw new Error(`${what}: poor error ${err.code}: ${err.message}`);
    return;
  }
  throw new Error(`${what}: did not fail (seed ${seed})`);
}

describe('addon boundary fuzz', () => {
  const native = addon() as unknown as Record<string, (...a: unknown[]) => unknown>;
  let calls = 0;

  test.each(Object.keys(cases))('%s rejects single bad arguments with a SophiaError', async (name) => {
    const c = cases[name];
    const fn = native[name];
    for (const [key, bads] of Object.entries(c.bad)) {
      for (const bad of bads()) {
        for (const async of c.async ? [false, true] : [false]) {
          const args = { ...c.valid(), [key]: bad, async };
          // The CPU build has no cudaCopyBandwidth at all: any call is E_DEVICE, which is still a SophiaError.
          await expectSophiaError(() => fn(args), `${name}.${key} = ${String(bad)} (async ${async})`);
          calls++;
        }
      }
    }
  });

  test('random combinations of bad arguments, and non-object calls, all fail cleanly', async () => {
    const names = Object.keys(cases);
    for (let i = 0; i < 700; i++) {
      const name = pick(names);
      const c = cases[name];
      const keys = Object.keys(c.bad);
      const args: Record<string, unknown> = c.valid();
      const k = 1 + Math.floor(rand() * 3);
      const changed: string[] = [];
      for (let j = 0; j < k; j++) {
        const key = pick(keys);
        const clash = (c.coupled ?? []).some((set) => set.includes(key) && changed.some((o) => o !== key && set.includes(o)));
        if (clash) continue;
        changed.push(key);
        args[key] = pick(c.bad[key]());
      }
      args.async = c.async ? rand() < 0.5 : false;
      await expectSophiaError(() => native[name](args), `${name}(${JSON.stringify(Object.keys(args))}) #${i}`);
      calls++;
    }
    for (const name of names) {
      for (const bad of [undefined, null, 1, 'x', [], new Float32Array(3), () => 0]) {
        await expectSophiaError(() => native[name](bad), `${name}(${String(bad)})`);
        calls++;
      }
    }
    for (const bad of [-1, 'x', NaN, 1.5, {}]) {
      await expectSophiaError(() => new (native.DeviceBuffer as unknown as new (b: unknown) => unknown)(bad), `new DeviceBuffer(${String(bad)})`);
      calls++;
    }
  });

  afterAll(() => {
    console.log(`fuzz: ${calls} rejected calls`);
    expect(calls).toBeGreaterThanOrEqual(1000);
  });

  test('the addon still computes correctly after the fuzzing', () => {
    const r = native.logprobs({ logits: new Float32Array([0, 0, Math.log(2)]), V: 3, labels: new Int32Array([2]), entropy: true }) as {
      logp: Float32Array;
      entropy: Float32Array;
    };
    expect(r.logp[0]).toBeCloseTo(Math.log(0.5), 6);
    expect(r.entropy[0]).toBeCloseTo(-(0.25 * Math.log(0.25) * 2 + 0.5 * Math.log(0.5)), 6);
  });
});
