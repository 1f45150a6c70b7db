"""Benchmark: evaluation throughput of PreActResNet-18 (32x32x3): the standard l2 AutoAttack on N images, and
the papers' full column set (empirical.attacks.PAPER_COLUMNS, with `samat eval`'s sanity attacks) per 10,000.

    python bench/eval_throughput.py [--json out.json]     # CUDA: AutoAttack on 1,000 images, columns on 1,000
    python bench/eval_throughput.py --quick               # CPU: a few images each (minutes)

The network is PRN-18 with random weights (seed 0) on random CIFAR-shaped images. An attack's cost depends
on how many images survive its stages (AutoAttack runs APGD-T, FAB-T and Square, 5,000 queries, only on the
images that APGD-CE left correct; Pixle stops per image once it succeeds), not on what the network learned,
so two models are timed:

* "random init": the network itself, each image labelled with its prediction (clean accuracy 100%, so
  every image is attacked). Its margins are small but so are its input gradients, so a part of the images
  survives the early stages: an arbitrary middle case, reported with its robust accuracy.
* "robust": the same network behind a wrapper that adds a margin of 1000 to class 0 (labels 0), so no
  attack within budget ever succeeds while every forward and backward pass still runs through PRN-18:
  every stage of every attack runs on every image. This is the upper bound, and the case of the papers'
  adversarially trained models, most of whose images survive.

Attacks run as `samat eval` runs them (empirical.evaluation.evaluate.evaluate: fp32, batched, seeded), on the
device's default precision (TF32 convolutions on NVIDIA GPUs are PyTorch's default). The per-10,000
figures are the measured seconds scaled linearly from the measured number of images (each batch is
attacked independently, so the cost is linear in the images once a batch is full); the table says
which figures are measured and which are scaled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch import nn

from empirical.attacks.build import build_attack
from empirical.attacks.specs import PAPER_COLUMNS, spec
from empirical.data import as_inputs
from empirical.evaluation.evaluate import evaluate
from empirical.models import build_model
from empirical.training.setup import resolve_device

from common import CIFAR_MEAN, CIFAR_STD, count, machine, random_images, run

PER = 10_000
ROBUST_MARGIN = 1000.0


class AlwaysRobust(nn.Module):
    """PRN-18's logits plus a margin on class 0 that no perturbation within budget can overcome."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return logits + ROBUST_MARGIN * nn.functional.one_hot(torch.zeros_like(logits[:, 0], dtype=torch.long),
                                                              logits.shape[1]).to(logits.dtype)


def make_model(device: torch.device, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("prn18", input_shape=(3, 32, 32), num_classes=10, mean=CIFAR_MEAN, std=CIFAR_STD)
    return model.to(device).eval()


def images_and_labels(model: nn.Module, n: int, device: torch.device, robust: bool, seed: int):
    x = random_images(n, seed + 1).to(device)
    if robust:
        return x, torch.zeros(n, dtype=torch.long, device=device)
    with torch.no_grad():
        preds = torch.cat([model(as_inputs(x[i:i + 500])).argmax(1) for i in range(0, n, 500)])
    return x, preds  # labels = predictions: clean accuracy 100%, every image gets attacked


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_autoattack(model: nn.Module, n: int, device: torch.device, batch_size: int, robust: bool,
                    seed: int) -> dict:
    """The standard l2 AutoAttack (32/255) alone, as evaluate() builds it, on n images."""
    x, y = images_and_labels(model, n, device, robust, seed)
    attack = build_attack(spec("autoattack_l2"), model, num_classes=10, seed=seed, device=device)
    sync(device)
    t0 = time.perf_counter()
    survived = 0
    for i in range(0, n, batch_size):
        xb = as_inputs(x[i:i + batch_size])
        x_adv = attack(xb, y[i:i + batch_size])
        with torch.no_grad():
            survived += int((model(x_adv).argmax(1) == y[i:i + batch_size]).sum())
    sync(device)
    seconds = time.perf_counter() - t0
    return {"images": n, "seconds": seconds, "images_per_s": n / seconds, "robust_accuracy": survived / n}


def time_columns(model: nn.Module, n: int, device: torch.device, batch_size: int, robust: bool, seed: int) -> dict:
    """evaluate() with every PAPER_COLUMNS attack and its sanity attacks; seconds per attack from its result."""
    x, y = images_and_labels(model, n, device, robust, seed)
    columns = [s.label for s in PAPER_COLUMNS]
    sync(device)
    t0 = time.perf_counter()
    result = evaluate(model, x, y, columns, num_classes=10, seed=seed, batch_size=batch_size, progress=False,
                      log=lambda m: print(f"    {m}", file=sys.stderr, flush=True))
    sync(device)
    total = time.perf_counter() - t0
    attacks = {label: {"seconds": a["seconds"], "accuracy": result["accuracy"][label]}
               for label, a in result["attacks"].items()}
    return {"images": n, "seconds": total, "attacks": attacks}


def markdown(result: dict) -> str:
    lines = []
    aa = result.get("autoattack", {})
    if aa:
        lines += ["| AutoAttack l2 32/255 (standard) | images | seconds | images/s | seconds per 1,000 | robust acc. |",
                  "|---|---|---|---|---|---|"]
        for kind, r in aa.items():
            lines.append(f"| {kind} | {r['images']:,} | {r['seconds']:.1f} | {r['images_per_s']:.3g} | "
                         f"{1000 * r['seconds'] / r['images']:,.1f}{'' if r['images'] == 1000 else ' (scaled)'} | "
                         f"{100 * r['robust_accuracy']:.1f}% |")
    cols = result.get("columns", {})
    if cols:
        kinds = list(cols)
        lines += ["", "| Column (`samat eval`) | " + " | ".join(
            f"{k}: images/s | {k}: s per {PER:,}" for k in kinds) + " |",
                  "|---|" + "---|---|" * len(kinds)]
        labels = list(dict.fromkeys(label for k in kinds for label in cols[k]["attacks"]))
        for label in labels:
            cells = []
            for k in kinds:
                a = cols[k]["attacks"].get(label)
                n = cols[k]["images"]
                cells += ["—", "—"] if a is None else [f"{n / a['seconds']:.3g}", f"{PER * a['seconds'] / n:,.0f}"]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        cells = []
        for k in kinds:
            n, s = cols[k]["images"], cols[k]["seconds"]
            cells += [f"{n / s:.3g}", f"**{PER * s / n:,.0f}**"]
        lines.append("| **all columns + sanity checks** | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Measured on " + ", ".join(f"{cols[k]['images']:,} images ({k})" for k in kinds)
                     + f"; per-{PER:,} figures scaled linearly"
                     + ("" if all(cols[k]["images"] == PER for k in kinds) else " from them") + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="a few images of each: for a CPU")
    parser.add_argument("--aa-images", type=count(0),
                        help="AutoAttack, random-init model (default 1000; 16 with --quick)")
    parser.add_argument("--aa-robust-images", type=count(0),
                        help="AutoAttack, robust model (default 1000; 2 with --quick; 0 skips)")
    parser.add_argument("--column-images", type=count(0),
                        help="column set, random-init model (default 1000; 8 with --quick)")
    parser.add_argument("--column-robust-images", type=count(0),
                        help="column set, robust model (default 500; 1 with --quick; 0 skips)")
    parser.add_argument("--batch-size", type=count(1), help="attack batch (default 500 on CUDA, all images on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    q = args.quick

    def pick(value, full, quick):
        return value if value is not None else (quick if q else full)

    n_aa, n_aa_r = pick(args.aa_images, 1000, 16), pick(args.aa_robust_images, 1000, 2)
    n_col, n_col_r = pick(args.column_images, 1000, 8), pick(args.column_robust_images, 500, 1)
    batch = args.batch_size or (500 if device.type == "cuda" else max(n_aa, n_col, n_aa_r, n_col_r))
    import torchattacks

    info = machine(device) | {"torchattacks": torchattacks.__version__}
    command = "python bench/eval_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{command}\n{json.dumps(info)}", file=sys.stderr, flush=True)
    net = make_model(device, args.seed)
    robust = AlwaysRobust(net).eval()
    result: dict = {"command": command.strip(), "machine": info, "batch_size": batch, "autoattack": {}, "columns": {}}
    for kind, model, n in (("random init", net, n_aa), ("robust", robust, n_aa_r)):
        if n:
            r = time_autoattack(model, n, device, batch, kind == "robust", args.seed)
            result["autoattack"][kind] = r
            print(f"[autoattack] {kind}: {n} images in {r['seconds']:.1f} s ({r['images_per_s']:.2f} images/s), "
                  f"robust accuracy {r['robust_accuracy']:.3f}", file=sys.stderr, flush=True)
    for kind, model, n in (("random init", net, n_col), ("robust", robust, n_col_r)):
        if n:
            print(f"[columns] {kind}: {n} images", file=sys.stderr, flush=True)
            result["columns"][kind] = time_columns(model, n, device, batch, kind == "robust", args.seed)
    info["load_average_after"] = os.getloadavg()[0]
    where = info.get("gpu", f"{info['cpu']}, {info['cpus']} CPUs")
    print(f"\n`{command.strip()}` — {where}, torch {info['torch']}, torchattacks {info['torchattacks']}, "
          f"Python {info['python']}, {info['date']}; attack batch {batch}; PRN-18 with random weights; "
          f"1-min load average {info['load_average_before']:.2f} before, {info['load_average_after']:.2f} after\n")
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    run(main)
