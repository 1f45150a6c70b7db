"""Benchmark: evaluation throughput of PreActResNet-18 (32x32x3) on D Table 2's full column set
(empirical.attacks.PAPER_COLUMNS) with `samat eval`'s sanity attacks, at full batches, per 10,000 images.

    python bench/eval_throughput.py [--json out.json]     # CUDA: 2 batches of 256 images per attack and model
    python bench/eval_throughput.py --quick               # CPU: 2 batches of 2 images (minutes)

With ``--json`` the file is written as each attack ends (``"complete": false`` until the end).

Every attack runs as `samat eval` runs it (empirical.evaluation.evaluate.attack_in_batches: fp32 with TF32 on
CUDA, batched, seeded) on ``--batches`` full batches (at least 2) of ``--batch-size`` images (default 256, the
evaluation's batch), timed on the device. Per 10,000 images is ceil(10,000 / batch) times the measured seconds
per full batch: each batch is attacked independently, so that is the cost of 10,000 images in such batches.

The network is PRN-18 with random weights on random CIFAR-shaped images, in the two models of
empirical.evaluation.cost that bound an attack's cost: "falls at once" (random init, every image labelled with
the network's prediction: most fall in an attack's first stage) and "never falls" (always robust: every stage of
every attack runs on every image, the case of the papers' adversarially trained models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from samat.empirical.attacks.specs import PAPER_COLUMNS
from samat.empirical.evaluation.columns import column_specs
from samat.empirical.evaluation.cost import BOUNDS, calibration_images, calibration_model, time_attack
from samat.empirical.evaluation.evaluate import attacks_run
from samat.empirical.training.setup import resolve_device

from common import count, machine, output_file, run, write_record

PER = 10_000
TARGETS = {BOUNDS[1]: 600.0, BOUNDS[0]: 240.0}  # seconds per 10,000 images on one H100/H200 (the issue's)


def measure(bound: str, args: argparse.Namespace, device: torch.device, done=lambda partial: None) -> dict:
    """Every attack of D Table 2's columns (and the sanity attacks) on the bound's model, timed; ``done(figures so
    far)`` after each attack."""
    model = calibration_model("prn18", (3, 32, 32), 10, device, bound=bound, seed=args.seed)
    n = args.batches * args.batch_size
    x, y = calibration_images(model, n, (3, 32, 32), device, bound=bound, seed=args.seed)
    attacks = {}
    for label, s in attacks_run(column_specs(args.columns)).items():
        t = time_attack(label, s, model, x, y, num_classes=10, batch_size=args.batch_size, seed=args.seed)
        attacks[label] = {"images": t.images, "batch_size": t.batch_size, "seconds": t.seconds,
                          "images_per_s": t.images / t.seconds, "per_10000_seconds": t.seconds_for(PER),
                          "robust_accuracy": t.robust_accuracy}
        print(f"[{bound}] {label}: {t.images} images in {t.seconds:.1f} s, {t.seconds_for(PER):,.0f} s per "
              f"{PER:,}, robust accuracy {t.robust_accuracy:.3f}", file=sys.stderr, flush=True)
        done({"images": n, "attacks": attacks, "per_10000_seconds": None})
    total = sum(a["per_10000_seconds"] for a in attacks.values())
    return {"images": n, "attacks": attacks, "per_10000_seconds": total}


def markdown(result: dict) -> str:
    bounds = list(result["bounds"])
    lines = ["| Attack (`samat eval`) | " + " | ".join(f"{b}: images/s | {b}: s per {PER:,} | {b}: robust acc."
                                                      for b in bounds) + " |",
             "|---|" + "---|---|---|" * len(bounds)]
    labels = list(dict.fromkeys(label for b in bounds for label in result["bounds"][b]["attacks"]))
    for label in labels:
        cells = []
        for b in bounds:
            a = result["bounds"][b]["attacks"].get(label)
            cells += ["—"] * 3 if a is None else [f"{a['images_per_s']:.3g}", f"{a['per_10000_seconds']:,.0f}",
                                                  f"{100 * a['robust_accuracy']:.1f}%"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = []
    for b in bounds:
        cells += ["", f"**{result['bounds'][b]['per_10000_seconds']:,.0f}**", ""]
    lines.append(f"| **{result['columns_name']}: all columns + sanity checks** | " + " | ".join(cells) + " |")
    lines += ["", f"Measured on {result['batches']} full batches of {result['batch_size']} images per attack and "
              f"model; per {PER:,}: ceil({PER:,} / {result['batch_size']}) x the seconds per batch."]
    if result["targets"]:
        lines += ["", "| Target (one H100/H200) | measured | verdict |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in result["targets"]]
    return "\n".join(lines)


def check_targets(result: dict, device: torch.device) -> list[dict]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    applies = "H100" in name or "H200" in name
    out = []
    for bound, limit in TARGETS.items():
        if bound in result["bounds"]:
            seconds = result["bounds"][bound]["per_10000_seconds"]
            out.append({"target": f"D Table 2's columns on {PER:,} images, {bound}: <= {limit / 60:g} min",
                        "measured": f"{seconds / 60:,.1f} min",
                        "verdict": ("met" if seconds <= limit else "**missed**") if applies
                        else "n/a: not an H100/H200"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="2 batches of 2 images: for a CPU")
    parser.add_argument("--batch-size", type=count(1), help="attack batch (default 256; 2 with --quick)")
    parser.add_argument("--batches", type=count(2), default=2, help="full batches per attack and model (>= 2)")
    parser.add_argument("--bounds", default=",".join(BOUNDS),
                        help=f"comma-separated subset of: {', '.join(BOUNDS)}")
    parser.add_argument("--columns", nargs="+", default=[s.label for s in PAPER_COLUMNS], metavar="COLUMN",
                        help="attack columns (default: D Table 2's; the sanity attacks follow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=output_file, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    column_specs(args.columns)  # a bad column is a one-line error before anything runs
    device = resolve_device(args.device)
    args.batch_size = args.batch_size or (2 if args.quick else 256)
    bounds = [b.strip() for b in args.bounds.split(",") if b.strip()]
    if not bounds or not set(bounds) <= set(BOUNDS):
        parser.error(f"--bounds takes a comma-separated subset of: {', '.join(BOUNDS)}")
    import torchattacks

    info = machine(device) | {"torchattacks": torchattacks.__version__}
    command = "python bench/eval_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{command}\n{json.dumps(info)}", file=sys.stderr, flush=True)
    paper = args.columns == [s.label for s in PAPER_COLUMNS]
    result: dict = {"command": command.strip(), "machine": info, "batch_size": args.batch_size,
                    "batches": args.batches, "columns": args.columns,
                    "columns_name": "D Table 2" if paper else "The columns above", "bounds": {}}
    def partial(bound: str, figures: dict) -> None:  # as each attack ends: a run stopped later keeps them
        if args.json:
            write_record(args.json, result | {"bounds": result["bounds"] | {bound: figures}, "complete": False})

    for bound in bounds:
        result["bounds"][bound] = measure(bound, args, device, lambda figures, b=bound: partial(b, figures))
    result["complete"] = True
    result["targets"] = check_targets(result, device) if paper else []
    info["load_average_after"] = os.getloadavg()[0]
    where = info.get("gpu", f"{info['cpu']}, {info['cpus']} CPUs, {info['threads']} threads")
    print(f"\n`{command.strip()}` — {where}, torch {info['torch']}, torchattacks {info['torchattacks']}, "
          f"Python {info['python']}, {info['date']}; PRN-18 with random weights; 1-min load average "
          f"{info['load_average_before']:.2f} before, {info['load_average_after']:.2f} after\n")
    print(markdown(result))
    if args.json:
        write_record(args.json, result)
    return 0


if __name__ == "__main__":
    run(main)
