"""PyTorch baselines for bench/gpu.sh, same sizes and maths as sophia_gpu_bench:
logprobs as eager log_softmax + gather, and the GRPO loss (PPO clip, k3 KL, entropy bonus,
token mean) forward and forward+backward with autograd, each eager and with torch.compile.
Prints a table with sophia-rl's numbers beside them (read from its JSON) and writes JSON."""
import argparse
import json
import statistics

import torch

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=16384)
p.add_argument("--v", default="32768,151936")
p.add_argument("--reps", type=int, default=10)
p.add_argument("--sophia", default=None, help="sophia_gpu_bench JSON to compare with")
p.add_argument("--json", default="gpu-torch.json")
args = p.parse_args()
dev = "cuda"


def median_ms(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def logprobs(logits, labels):
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[:, None]).squeeze(-1)


def grpo_loss(logits, labels, old, ref, adv):
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, labels[:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all.nan_to_num(neginf=0.0)).sum(-1)
    ratio = torch.exp(torch.clamp(logp - old, -20, 20))
    pg = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.2))
    u = torch.clamp(ref - logp, -20, 20)
    kl = torch.clamp(torch.exp(u) - u - 1, -10, 10)
    return (pg + 0.04 * kl - 1e-3 * entropy).mean()


compiled_lp = torch.compile(logprobs)
compiled_loss = torch.compile(grpo_loss)
copy_src = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
copy_dst = torch.empty_like(copy_src)
copy_gbps = 2 * copy_src.numel() / (median_ms(lambda: copy_dst.copy_(copy_src), 20) * 1e-3) / 1e9
del copy_src, copy_dst
sophia = json.load(open(args.sophia)) if args.sophia else None
rows = []
print(f"PyTorch {torch.__version__} on {torch.cuda.get_device_name()}, copy bandwidth {copy_gbps:.0f} GB/s")
for V in [int(v) for v in args.v.split(",")]:
    N = args.n
    g = torch.Generator(device=dev).manual_seed(V)
    logits = (torch.rand(N, V, device=dev, generator=g) * 16 - 8).to(torch.bfloat16)
    labels = torch.randint(0, V, (N,), device=dev, generator=g)
    old = torch.full((N,), -float(torch.log(torch.tensor(float(V)))), device=dev)
    ref = old + 0.1
    adv = torch.randn(N, device=dev, generator=g)

    def fwd_bwd(fn):
        x = logits.detach().requires_grad_(True)
        fn(x, labels, old, ref, adv).backward()

    def peak(fn):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20

    res = {"V": V, "N": N}
    for name, fn in [
        ("logprobs eager", lambda: logprobs(logits, labels)),
        ("logprobs compile", lambda: compiled_lp(logits, labels)),
        ("fwd eager", lambda: grpo_loss(logits, labels, old, ref, adv)),
        ("fwd compile", lambda: compiled_loss(logits, labels, old, ref, adv)),
        ("fwd+bwd eager", lambda: fwd_bwd(grpo_loss)),
        ("fwd+bwd compile", lambda: fwd_bwd(compiled_loss)),
    ]:
        try:
            res[name] = {"ms": median_ms(fn, args.reps), "peakMiB": peak(fn)}
        except torch.OutOfMemoryError:
            res[name] = {"ms": None, "peakMiB": None, "error": "out of memory"}
            torch.cuda.empty_cache()
    rows.append(res)
    mine = next((r for r in (sophia or {}).get("rows", []) if r["V"] == V), None)
    print(f"\nV={V} bf16, N={N}")
    pairs = [("logprobs", "logprobsMs"), ("fwd", "fwdMs"), ("fwd+bwd", "fwdBwdMs")]
    for label, key in pairs:
        e, c = res[f"{label} eager"], res[f"{label} compile"]
        s = mine[key] if mine else None
        fmt = lambda x: f"{x:9.3f}" if x is not None else "      n/a"
        line = f"  {label:9s} sophia {fmt(s)} ms | torch eager {fmt(e['ms'])} ms ({e['peakMiB'] or 0:8.0f} MiB) | compile {fmt(c['ms'])} ms ({c['peakMiB'] or 0:8.0f} MiB)"
        if s and e["ms"]:
            line += f" | {e['ms'] / s:5.1f}x vs eager, {c['ms'] / s if c['ms'] else float('nan'):5.1f}x vs compile"
        print(line)
    del logits
    torch.cuda.empty_cache()
json.dump({"torch": torch.__version__, "copyGBps": copy_gbps, "rows": rows}, open(args.json, "w"), indent=1)
