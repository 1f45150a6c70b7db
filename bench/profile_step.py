"""Profile: where the time of one training step goes (torch.profiler), for our loop's variants side by side.

    python bench/profile_step.py [--method st] [--loops eager,ours] [--json out.json]   # CUDA: PRN-18, batch 128
    python bench/profile_step.py --quick                                              # CPU: batch 32, 2 steps

Each variant (see bench/train_throughput.py: "eager" is the step without compilation or CUDA graph, "ours" what
``train()`` runs on the device) runs the step as ``train()`` does (empirical.training.throughput), first
``--warmup`` untimed steps (compilation and graph capture), then ``--steps`` steps timed without the profiler
(the wall time per step), then the same number under torch.profiler. From the profile:

* busy: the time the device spends in operators per step. On CUDA the sum of the kernels' own device time; on a
  CPU the sum of the operators' own CPU time. The rest of the wall time is overhead the device waits through:
  Python, dispatch, kernel launches (on a CPU busy cannot exceed wall; on CUDA it can, a little, when the
  profiler's timestamps overlap).
* calls: operators (CPU) or kernels (CUDA) per step;
* the share of the busy time by kind of work (convolutions, matrix products, BatchNorm, the optimizer's update,
  the data's augmentation, the rest), from the operators' or kernels' names;
* the ten operators or kernels with the most time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from samat.empirical.training.setup import resolve_device
from samat.empirical.training.throughput import Clock, train_loop_step

from common import count, machine, output_file, run, write_record
from train_throughput import LABELS, METHODS, VARIANTS, our_config, synthetic_cifar

# Kinds of work, by a pattern of the operator's or kernel's name (first match wins).
KINDS = (
    ("convolution", r"conv|cudnn|xmma|implicit_gemm|wgrad|dgrad|winograd|fprop|bprop"),
    ("matrix product", r"addmm|\bmm\b|aten::mm|gemm|matmul|linear"),
    ("BatchNorm", r"batch_norm|bn_|batchnorm"),
    ("optimizer update", r"foreach|fused_sgd|fused_adam|_fused_|multi_tensor"),
    ("data (shuffle, crop, flip)", r"randperm|reflection_pad|gather|randint|index|flip"),
)


def kind_of(name: str) -> str:
    low = name.lower()
    return next((kind for kind, pattern in KINDS if re.search(pattern, low)), "other (elementwise, reductions, ...)")


def profile_variant(method: str, loop: str, args: argparse.Namespace, device: torch.device) -> dict:
    cfg = our_config(method, args, device, **VARIANTS[loop])
    data = synthetic_cifar(max(args.batch_size * (args.warmup + 2 * args.steps + 1), 512))
    setup, batches, one_step = train_loop_step(cfg, data, seed=args.seed)
    i = 0
    for _ in range(args.warmup):
        one_step(i, *next(batches))
        i += 1
    clock = Clock(device)
    clock.start()
    for _ in range(args.steps):
        one_step(i, *next(batches))
        i += 1
    wall = clock.stop() / args.steps
    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda) as prof:
        for _ in range(args.steps):
            one_step(i, *next(batches))
            i += 1
        if cuda:
            torch.cuda.synchronize(device)
    return summarize(prof, args.steps, wall, cuda) | {
        "method": method, "loop": loop, "compile": setup.compile_backend, "cuda_graph": setup.cuda_graph}


def summarize(prof, steps: int, wall: float, cuda: bool) -> dict:
    """Busy time, calls and kinds of work per step, from the profile's operators (CPU) or kernels (CUDA)."""
    rows = []
    for e in prof.key_averages():
        if cuda:  # kernels (and memcpy/memset): the events that run on the device; operators only launch them
            if not str(getattr(e, "device_type", "")).endswith("CUDA"):
                continue
            own = getattr(e, "self_device_time_total", None)
            own, calls = (own if own is not None else e.self_cuda_time_total), e.count
        else:  # operators: their own CPU time (the profiler's own bookkeeping excluded)
            own, calls = e.self_cpu_time_total, e.count
            if e.key.startswith("ProfilerStep") or e.key.startswith("[memory]"):
                continue
        if own > 0:
            rows.append((e.key, own / 1e6 / steps, calls / steps))
    busy = sum(r[1] for r in rows)
    kinds: dict[str, float] = {}
    for name, seconds, _ in rows:
        kinds[kind_of(name)] = kinds.get(kind_of(name), 0.0) + seconds
    top = sorted(rows, key=lambda r: -r[1])[:10]
    return {"wall_ms": 1e3 * wall, "busy_ms": 1e3 * busy, "calls_per_step": sum(r[2] for r in rows),
            "kinds_ms": {k: 1e3 * v for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            "top": [{"name": n, "ms": 1e3 * s, "calls": c} for n, s, c in top]}


def markdown(results: list[dict], device: torch.device) -> str:
    what = "kernels" if device.type == "cuda" else "operators"
    lines = ["| Method | Loop | wall ms/step | busy ms/step | busy / wall | " + what + " per step | busy by kind |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        how = " + ".join([f"compiled ({r['compile']})"] * bool(r["compile"]) + ["CUDA graph"] * r["cuda_graph"]) \
            or "eager"
        kinds = "; ".join(f"{k} {100 * v / r['busy_ms']:.0f}%" for k, v in r["kinds_ms"].items() if r["busy_ms"])
        lines.append(f"| {LABELS[r['method']]} | {r['loop']} ({how}) | {r['wall_ms']:.2f} | {r['busy_ms']:.2f} | "
                     f"{r['busy_ms'] / r['wall_ms']:.0%} | {r['calls_per_step']:.0f} | {kinds} |")
    for r in results:
        lines += ["", f"Top {what} of {LABELS[r['method']]}, {r['loop']} (ms per step, calls per step):", "",
                  "| " + what + " | ms | calls |", "|---|---|---|"]
        lines += [f"| `{t['name'][:90]}` | {t['ms']:.3f} | {t['calls']:.0f} |" for t in r["top"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="batch 32, 1 warm-up and 2 profiled steps: for a CPU")
    parser.add_argument("--methods", default="st", help="comma-separated subset of st,sam,at")
    parser.add_argument("--loops", help="comma-separated variants (default eager,ours on CUDA, ours on a CPU)")
    parser.add_argument("--batch-size", type=count(1), help="default 128 (32 with --quick)")
    parser.add_argument("--warmup", type=count(1), help="untimed steps first (default 10; 1 with --quick)")
    parser.add_argument("--steps", type=count(1), help="timed, then profiled steps (default 20; 2 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=output_file, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.batch_size = args.batch_size or (32 if args.quick else 128)
    args.warmup = args.warmup or (1 if args.quick else 10)
    args.steps = args.steps or (2 if args.quick else 20)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    loops = [v.strip() for v in (args.loops or ("eager,ours" if cuda else "ours")).split(",") if v.strip()]
    if not set(methods) <= set(METHODS) or not set(loops) <= set(VARIANTS):
        parser.error(f"--methods takes st,sam,at and --loops {','.join(VARIANTS)}")
    info = machine(device)
    command = "python bench/profile_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{command}\n{json.dumps(info)}", file=sys.stderr, flush=True)
    results = []
    for method in methods:
        for loop in loops:
            results.append(profile_variant(method, loop, args, device))
            r = results[-1]
            print(f"[profile] {LABELS[method]} {loop}: wall {r['wall_ms']:.2f} ms, busy {r['busy_ms']:.2f} ms per step",
                  file=sys.stderr, flush=True)
    info["load_average_after"] = os.getloadavg()[0]
    where = info.get("gpu", f"{info['cpu']}, {info['cpus']} CPUs, {info['threads']} threads")
    print(f"\n`{command.strip()}` — {where}, torch {info['torch']}, {info['date']}; PRN-18, batch {args.batch_size}, "
          f"{args.warmup} warm-up steps, {args.steps} timed and {args.steps} profiled steps; 1-min load average "
          f"{info['load_average_before']:.2f} before, {info['load_average_after']:.2f} after\n")
    print(markdown(results, device))
    if args.json:
        write_record(args.json, {"command": command.strip(), "machine": info, "results": results})
    return 0


if __name__ == "__main__":
    run(main)
