"""Benchmark: torch's CPU thread count on a machine that other processes share.

    python bench/threads.py [--threads 1,2] [--competitors 0,1] [--repeats 2] [--json out.json]

Times one training epoch of the CPU default (``configs/fashion_mnist_default.toml``: the small CNN with SGD on
12,000 Fashion-MNIST images, batch 128) in a fresh interpreter per measurement, for each thread count, alone
and beside N competing processes (each a Python busy loop that keeps one core busy, as another user's job
would), and with OpenMP's default and passive wait policies. All cells of one repetition run back to back, so
that their ratios are measured side by side. What ``samat`` does about it follows from these figures (see
``samat/cli/runtime.py`` and docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import host, output_file, run, write_record

REPO = Path(__file__).resolve().parents[1]
BUSY_LOOP = "while True: pass"


def child(threads: int, images: int) -> dict:
    """One epoch in this process (torch not yet imported); its training seconds, as metrics.jsonl records them."""
    import torch

    torch.set_num_threads(threads)
    from samat.empirical.training.config import TrainConfig
    from samat.empirical.training.loop import train

    cfg = TrainConfig(dataset="fashion_mnist", model="small_cnn", train_subset=images, test_subset=500, epochs=1,
                      batch_size=128, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, Path(tmp) / "run", progress=False)
    return {"threads": torch.get_num_threads(), "train_seconds": summary["history"][0]["train_seconds"]}


def measure(threads: int, competitors: int, policy: str, images: int) -> dict:
    """One cell: start the competitors, time the epoch in a fresh interpreter, stop them."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy.upper()
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(competitors)]
    try:
        time.sleep(0.5 if busy else 0.0)
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--child", str(threads), "--images", str(images)], env=env,
                             capture_output=True, text=True, cwd=REPO, check=False)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    if out.returncode != 0:
        raise SystemExit(f"the timed epoch failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]) | {"competitors": competitors, "wait_policy": policy,
                                                                "load_average": load}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="thread counts to compare (default 1,2)")
    parser.add_argument("--competitors", default="0,1", help="busy processes beside the epoch (default 0,1)")
    parser.add_argument("--policies", default="default,passive", help="OMP_WAIT_POLICY values (default both)")
    parser.add_argument("--repeats", type=int, default=2, help="repetitions of the whole set (default 2)")
    parser.add_argument("--images", type=int, default=12000, help="training images (default 12000, as the demo)")
    parser.add_argument("--json", type=output_file, help="also write the figures to this JSON file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.images)))
        return 0
    info = host()
    cells = [(t, c, p) for c in map(int, args.competitors.split(",")) for t in map(int, args.threads.split(","))
             for p in args.policies.split(",")]
    rows = []
    for r in range(args.repeats):
        for t, c, p in cells:
            rows.append(measure(t, c, p, args.images) | {"repeat": r})
            print(f"threads {t}, {c} competing, wait policy {p}: {rows[-1]['train_seconds']:.1f} s "
                  f"(load {rows[-1]['load_average']:.2f})", file=sys.stderr, flush=True)
    info["load_average_after"] = os.getloadavg()[0]
    print(f"\n`python bench/threads.py` — {info['cpu']}, {info['cpus']} CPUs, Python {info['python']}, {info['date']}; "
          f"1-min load average {info['load_average_before']:.2f} before, {info['load_average_after']:.2f} after\n")
    print("| threads | competing busy processes | OMP_WAIT_POLICY | seconds per epoch (each repeat) | best |")
    print("|---|---|---|---|---|")
    for t, c, p in cells:
        times = [row["train_seconds"] for row in rows if (row["threads"], row["competitors"], row["wait_policy"])
                 == (t, c, p)]
        print(f"| {t} | {c} | {p} | {', '.join(f'{s:.1f}' for s in times)} | {min(times):.1f} |")
    if args.json:
        write_record(args.json, {"command": "python bench/threads.py", "machine": info, "rows": rows})
    return 0


if __name__ == "__main__":
    run(main)
