"""Benchmark: training throughput of PreActResNet-18 on 32x32x3 inputs, batch 128, for ST, SAM and AT-PGD10:
our loop against a baseline loop written the common way, timed in one run on one device.

    python bench/train_throughput.py [--loops eager,graph,compile,ours,baseline] [--json out.json]   # CUDA (minutes)
    python bench/train_throughput.py --quick                           # CPU: a few steps of batch 32 (minutes)

Our loop is empirical.training's, timed by ``samat.empirical.training.throughput.time_steps``: ``build()`` (bf16
autocast, channels_last, cudnn.benchmark on CUDA) and the step as ``train()`` runs it, the synthetic dataset
resident on the device as uint8, cut, converted and augmented (crop + flip) a batch at a time there by
``BatchStream``, losses summed on the device and read by the host every LOG_EVERY steps. Its variants
(``--loops``): "ours" is what ``train()`` does on the device (CUDA: the model compiled with inductor and each
step replayed as one CUDA graph, empirical.training.fast; CPU: eager), "eager" the step without either (the
loop before the fast path), "graph" the CUDA graph of the eager kernels, "compile" the compiled model
without the graph. The warm-up steps include compilation and graph capture: what they took beyond steady-state
steps is reported apart ("compile + capture", once per run), and the throughput is the steady state's. With
``--json`` the file is written as each method ends (``"complete": false`` until the end), so a run stopped early
keeps the figures of the methods it finished.

The baseline is the loop most research code has: a torch ``DataLoader`` over a Dataset that converts,
pads, crops, flips and normalizes each image on the CPU (torchvision's RandomCrop(32, 4, reflect) +
RandomHorizontalFlip + ToTensor + Normalize, written out without torchvision), pinned memory and worker
processes on CUDA, fp32 (with PyTorch's default TF32 convolutions; cudnn.benchmark and "high" matmul
precision (TF32) are set once for both loops, so neither depends on which runs first), normalization outside
the model, ``.item()`` on the loss and accuracy every step; SAM as davda54/sam (per-parameter loops, BN
momentum set to 0 for the second pass); PGD as Wong et al. / Rice et al. (in normalized units,
``loss.backward()`` for the input gradient, which also fills the parameters' gradients, model in train mode).

Both loops run the same model (same initial weights), optimizer settings and number of steps on the
same synthetic CIFAR-shaped data (random pixels and labels: the cost does not depend on their values).
The first ``--warmup`` steps of each are not timed; with ``--repeats R`` the two
loops alternate R times and the fastest of each counts (for shared or noisy machines; the load average
before and after is recorded). FLOPs come from torch.utils.flop_counter on one step
of our loop (batch 2, scaled linearly: convolutions and matrix products are linear in the batch); the
achieved fraction of the device's bf16 dense peak uses these "model FLOPs" for both loops.

"Equal accuracy": a short run of each method with ``samat.empirical.training.loop.train`` and with the baseline loop,
same seed and initial weights, on Fashion-MNIST (synthetic learnable images when it is missing): the
train loss per epoch and the test accuracy side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samat.empirical.data import Dataset, load_dataset
from samat.empirical.models import build_model
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.loop import train
from samat.empirical.training.precision import set_tf32
from samat.empirical.training.setup import build, resolve_device
from samat.empirical.training.throughput import time_calls, time_steps

from common import CIFAR_MEAN, CIFAR_STD, count, machine, output_file, random_images, run, write_record

METHODS = {"st": "sgd", "sam": "sam", "at": "pgd_at"}
LABELS = {"st": "ST (SGD)", "sam": "SAM", "at": "AT-PGD10"}
RHO = 0.1
AT_EPS, AT_STEPS = 8 / 255, 10  # l-inf PGD-10 with step 2.5 eps / steps (the project's default rule)
EPOCH_IMAGES = 50_000
# Our loop's variants: "ours" is what train() does on the device (CUDA: compiled + CUDA graph; CPU: eager)
VARIANTS = {"ours": {}, "eager": dict(compile=False, cuda_graph=False), "graph": dict(compile=False, cuda_graph=True),
            "compile": dict(compile=True, cuda_graph=False)}
# Dense bf16 peak (no sparsity), from the vendors' data sheets, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("H800", 989.4),
                    ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0))


# ---------------------------------------------------------------------------------------------------------
# Data


def synthetic_cifar(n_train: int, n_test: int = 256, seed: int = 0) -> Dataset:
    """Random uint8 32x32x3 images with random labels: the shape and dtype of CIFAR-10, nothing else."""
    x = random_images(n_train + n_test, seed)
    y = torch.randint(0, 10, (n_train + n_test,), generator=torch.Generator().manual_seed(seed + 1))
    return Dataset("synthetic-cifar", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10, CIFAR_MEAN, CIFAR_STD,
                   "crop_flip")


def learnable_images(n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """Fallback for the accuracy check: 1x28x28 noise whose class (of 10) sets a bright horizontal band."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 100, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 10, (n,), generator=g)
        for k in range(10):
            rows = slice(2 + 2 * k, 4 + 2 * k)
            x[y == k, :, rows, :] += 120
        return x, y

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return Dataset("synthetic-bands", xtr, ytr, xte, yte, 10, (0.25,), (0.2,), "none")


class PerSampleAugmented(torch.utils.data.Dataset):
    """The common CPU pipeline, one image per call: ToTensor, RandomCrop(pad 4, reflect), RandomHorizontalFlip,
    Normalize (torchvision's transforms, written out so that torchvision is never imported)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 augment: str) -> None:
        self.x, self.y, self.augment = x.cpu(), y.cpu(), augment
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.x[i].float().div(255)  # ToTensor
        if self.augment in ("crop", "crop_flip"):
            _, h, w = img.shape
            img = F.pad(img[None], (4, 4, 4, 4), mode="reflect")[0]
            top, left = (int(v) for v in torch.randint(0, 9, (2,)))
            img = img[:, top:top + h, left:left + w]
            if self.augment == "crop_flip" and torch.rand(1).item() < 0.5:
                img = img.flip(-1)
        return (img - self.mean) / self.std, int(self.y[i])  # Normalize


# ---------------------------------------------------------------------------------------------------------
# The baseline loop


class BaselineSAM(torch.optim.Optimizer):
    """davda54/sam's SAM: first_step climbs to w + e(w) parameter by parameter, second_step returns and steps."""

    def __init__(self, params, base_optimizer, rho: float, **kwargs) -> None:
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self) -> None:
        grad_norm = torch.norm(torch.stack([p.grad.norm(p=2) for g in self.param_groups for p in g["params"]
                                            if p.grad is not None]), p=2)
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.data.clone()
                p.add_(p.grad * scale.to(p))
        self.zero_grad()

    @torch.no_grad()
    def second_step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.data = self.state[p]["old_p"]
        self.base_optimizer.step()
        self.zero_grad()


def _bn_momentum(model: nn.Module, zero: bool) -> None:
    """davda54/sam's disable_running_stats / enable_running_stats (BN momentum 0 for the second pass)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if zero:
                m.backup_momentum = m.momentum
                m.momentum = 0
            elif hasattr(m, "backup_momentum"):
                m.momentum = m.backup_momentum


class Baseline:
    """One step of ST, SAM or PGD-AT, written the common way, with the run's settings (``cfg``: learning rate,
    momentum, weight decay, ρ, and the PGD budget, step and steps); inputs arrive normalized."""

    def __init__(self, method: str, model: nn.Module, cfg: TrainConfig, device: torch.device,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.method, self.model, self.steps = method, model, cfg.at_steps
        sgd = dict(lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if method == "sam":
            self.opt = BaselineSAM(model.parameters(), torch.optim.SGD, rho=cfg.rho, **sgd)
        else:
            self.opt = torch.optim.SGD(model.parameters(), **sgd)
        m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.eps, self.step_size = cfg.at_eps / s, cfg.pgd_step_size / s  # pixel units -> normalized units
        self.lower, self.upper = (0 - m) / s, (1 - m) / s

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Wong et al.'s / Rice et al.'s attack_pgd (l-inf, one restart, no early stop), in normalized units."""
        delta = torch.zeros_like(x)
        delta.uniform_(-1, 1)
        delta = delta * self.eps
        delta = torch.max(torch.min(delta, self.upper - x), self.lower - x)
        delta.requires_grad = True
        for _ in range(self.steps):
            loss = F.cross_entropy(self.model(x + delta), y)
            loss.backward()
            grad = delta.grad.detach()
            d = torch.max(torch.min(delta + self.step_size * torch.sign(grad), self.eps), -self.eps)
            d = torch.max(torch.min(d, self.upper - x), self.lower - x)
            delta.data = d
            delta.grad.zero_()
        return torch.max(torch.min(x + delta.detach(), self.upper), self.lower)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        model, opt = self.model, self.opt
        if self.method == "at":
            x = self.attack(x, y)
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        if self.method == "sam":
            opt.first_step()
            _bn_momentum(model, zero=True)
            F.cross_entropy(model(x), y).backward()
            opt.second_step()
            _bn_momentum(model, zero=False)
        else:
            opt.step()
        return loss.item(), (out.max(1)[1] == y).sum().item()


def baseline_model(arch: str, data: Dataset, device: torch.device, seed: int) -> nn.Module:
    torch.manual_seed(seed)  # as build() does: the same initial weights as ours
    return build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes).to(device)


def baseline_loader(data: Dataset, batch_size: int, workers: int, device: torch.device, augment: str,
                    drop_last: bool = True) -> torch.utils.data.DataLoader:
    ds = PerSampleAugmented(data.train_x, data.train_y, data.mean, data.std, augment)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=device.type == "cuda", drop_last=drop_last,
                                       persistent_workers=workers > 0)


# ---------------------------------------------------------------------------------------------------------
# Timing


def our_config(method: str, args: argparse.Namespace, device: torch.device, **kw) -> TrainConfig:
    return TrainConfig.from_dict(dict(dataset="synthetic-cifar", model="prn18", method=METHODS[method], rho=RHO,
                                      at_norm="linf", at_eps=AT_EPS, at_steps=AT_STEPS, batch_size=args.batch_size,
                                      device=str(device), seed=args.seed) | kw)


def time_ours(method: str, args: argparse.Namespace, data: Dataset, device: torch.device, steps: int,
              loop: str = "ours") -> dict:
    """Our loop as train() runs it (empirical.training.throughput.time_steps), in one of its variants."""
    t = time_steps(our_config(method, args, device, **VARIANTS[loop]), data, warmup=args.warmup, steps=steps,
                   seed=args.seed)
    return {"steps": steps, "seconds": t.seconds, "warmup_seconds": t.warmup_seconds, "bf16": t.bf16,
            "channels_last": t.channels_last, "compile": t.compile, "cuda_graph": t.cuda_graph,
            "step_path": t.step_path, "fast_path_off": t.fallback}


def setup_seconds(timed: dict, warmup: int) -> float:
    """What the warm-up took beyond ``warmup`` steady-state steps: compilation, CUDA-graph capture, cuDNN's search
    (reported apart from the steady-state throughput)."""
    return max(0.0, timed["warmup_seconds"] - warmup * timed["seconds"] / timed["steps"])


def time_baseline(method: str, args: argparse.Namespace, data: Dataset, device: torch.device, steps: int) -> dict:
    model = baseline_model("prn18", data, device, args.seed)
    base = Baseline(method, model, our_config(method, args, device), device, data.mean, data.std)
    loader = baseline_loader(data, args.batch_size, args.workers, device, "crop_flip")
    model.train()
    # base.step reads loss and accuracy with .item() every step, as the common loop does; the warm-up also starts
    # the loader's workers, which is not a step's cost
    warm, seconds = time_calls(device, args.warmup, steps, loader, lambda i, x, y: base.step(x.to(device),
                                                                                           y.to(device)))
    del loader
    return {"steps": steps, "seconds": seconds, "warmup_seconds": warm, "workers": args.workers}


def count_flops(method: str, args: argparse.Namespace, batch: int = 2) -> float:
    """Model FLOPs of one step of our loop per image (matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    data = synthetic_cifar(batch, 2)
    setup = build(our_config(method, args, torch.device("cpu"), batch_size=batch), data)
    x = data.train_x.float() / 255
    with FlopCounterMode(display=False) as counter:
        setup.step(setup.ctx, x, data.train_y, torch.Generator().manual_seed(0))
    return counter.get_total_flops() / batch


def peak_tflops(args: argparse.Namespace, device: torch.device) -> tuple[float | None, str]:
    if args.peak_tflops is not None:
        return args.peak_tflops, "given"
    if device.type != "cuda":
        return None, "unknown (CPU)"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, f"{name}: {value:g} TFLOP/s dense bf16 (data sheet)"
    return None, f"unknown for {name}: pass --peak-tflops"


# ---------------------------------------------------------------------------------------------------------
# Equal accuracy


def accuracy_data(args: argparse.Namespace) -> Dataset:
    try:
        full = load_dataset("fashion_mnist", args.data_dir)
    except Exception as err:  # noqa: BLE001 - the fallback is reported
        print(f"Fashion-MNIST unavailable ({err}); using synthetic learnable images", file=sys.stderr)
        return learnable_images(args.acc_train, args.acc_test, args.seed)
    return full.subset(args.acc_train, args.acc_test, seed=args.seed)


def baseline_train(method: str, data: Dataset, args: argparse.Namespace, device: torch.device) -> dict:
    """The baseline loop for whole epochs with the lr schedule of train() (per iteration), then test accuracy."""
    model = baseline_model(args.acc_model, data, device, args.seed)
    cfg = accuracy_config(method, data, args, device)
    base = Baseline(method, model, cfg, device, data.mean, data.std)
    loader = baseline_loader(data, args.acc_batch_size, args.workers, device, args.acc_augment, drop_last=False)
    steps_per_epoch, history = len(loader), []
    t0 = time.perf_counter()
    for epoch in range(args.acc_epochs):
        model.train()
        total, correct, n = 0.0, 0, 0
        for i, (x, y) in enumerate(loader):
            progress = (epoch * steps_per_epoch + i) / (args.acc_epochs * steps_per_epoch)
            base.set_lr(cfg.learning_rate * cfg.lr_factor(progress))
            x, y = x.to(device), y.to(device)
            loss, c = base.step(x, y)
            total, correct, n = total + loss * len(y), correct + c, n + len(y)
        history.append({"train_loss": total / n, "train_acc": correct / n})
    seconds = time.perf_counter() - t0
    model.eval()
    test = PerSampleAugmented(data.test_x, data.test_y, data.mean, data.std, "none")
    hits = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test, batch_size=500):
            hits += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
    return {"history": history, "test_acc": hits / len(test), "seconds": seconds}


def accuracy_config(method: str, data: Dataset, args: argparse.Namespace, device: torch.device) -> TrainConfig:
    return our_config(method, args, device, dataset=data.name, model=args.acc_model, epochs=args.acc_epochs,
                      batch_size=args.acc_batch_size, augment=args.acc_augment, data_dir=args.data_dir)


def equal_accuracy(args: argparse.Namespace, device: torch.device, done=lambda partial: None) -> dict:
    """The equal-accuracy runs, method by method; ``done(result so far)`` after each."""
    data = accuracy_data(args)
    out = {"dataset": data.name, "model": args.acc_model, "epochs": args.acc_epochs,
           "batch_size": args.acc_batch_size, "augment": args.acc_augment, "methods": {}}
    for method in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            ours = train(accuracy_config(method, data, args, device), os.path.join(tmp, "run"), progress=False,
                         data=data)
        ours_seconds = sum(r["train_seconds"] for r in ours["history"])  # training epochs only, as the baseline's
        base = baseline_train(method, data, args, device)
        out["methods"][method] = {
            "ours": {"train_loss": [r["train_loss"] for r in ours["history"]], "test_acc": ours["test_acc"],
                     "seconds": ours_seconds},
            "baseline": {"train_loss": [r["train_loss"] for r in base["history"]], "test_acc": base["test_acc"],
                         "seconds": base["seconds"]},
        }
        print(f"[accuracy] {LABELS[method]}: ours loss {_fmt_list(out['methods'][method]['ours']['train_loss'])} "
              f"acc {ours['test_acc']:.4f}; baseline loss {_fmt_list(out['methods'][method]['baseline']['train_loss'])}"
              f" acc {base['test_acc']:.4f}", file=sys.stderr, flush=True)
        done(out)
    return out


def _fmt_list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


# ---------------------------------------------------------------------------------------------------------
# Report


@dataclass
class Row:
    method: str
    loop: str
    steps: int
    seconds: float
    batch: int
    flops_per_image: float
    peak: float | None
    how: str = ""  # what our loop ran: compiled (backend), CUDA graph, or eager
    setup: float = 0.0  # seconds of the warm-up beyond its steady-state steps: compilation, capture

    @property
    def label(self) -> str:
        return f"{self.loop} ({self.how})" if self.how else self.loop

    @property
    def images_per_s(self) -> float:
        return self.steps * self.batch / self.seconds

    @property
    def epoch_seconds(self) -> float:
        return EPOCH_IMAGES / self.images_per_s

    @property
    def tflops(self) -> float:
        return self.flops_per_image * self.images_per_s / 1e12


def markdown(rows: list[Row], peak_note: str, accuracy: dict | None, targets: list[tuple[str, str, str]]) -> str:
    by = {(r.method, r.loop): r for r in rows}
    lines = []
    if rows:  # nothing was timed with --accuracy-only
        lines += ["| Method | Loop | images/s | s per 50k epoch | vs ST (same loop) | over eager | over baseline | "
                  "model TFLOP/s | of bf16 peak | compile + capture (s, once) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = by.get(("st", r.loop))
        ratio = f"{r.epoch_seconds / st.epoch_seconds:.2f}" if st and r.method != "st" else "—"
        eager = by.get((r.method, "eager"))
        over_eager = f"{eager.epoch_seconds / r.epoch_seconds:.2f}x" if eager and r.loop not in ("eager",
                                                                                             "baseline") else "—"
        other = by.get((r.method, "baseline"))
        speedup = f"**{other.epoch_seconds / r.epoch_seconds:.2f}x**" if r.loop != "baseline" and other else "—"
        frac = f"{100 * r.tflops / r.peak:.1f}%" if r.peak else "unknown"
        lines.append(f"| {LABELS[r.method]} | {r.label} | {r.images_per_s:,.1f} | {r.epoch_seconds:,.1f} | {ratio} | "
                     f"{over_eager} | {speedup} | {r.tflops:.3g} | {frac} | {r.setup:,.1f} |")
    if rows:
        flops = {r.method: r.flops_per_image for r in rows}
        lines += ["", f"Peak: {peak_note}. Model FLOPs per image and step (forward + backward passes of our step): "
                  + ", ".join(f"{LABELS[m]} {f / 1e9:.2f} GFLOP" for m, f in flops.items())]
    if targets:
        lines += ["", "| Target (one H100/H200) | measured | verdict |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in targets]
    if accuracy:
        lines += ["", f"Equal accuracy: {accuracy['model']} on {accuracy['dataset']}, {accuracy['epochs']} epochs of "
                  f"batch {accuracy['batch_size']}, augment {accuracy['augment']}, same seed and initial weights.", "",
                  "| Method | train loss per epoch: ours | baseline | test acc: ours | baseline "
                  "| seconds: ours | baseline |",
                  "|---|---|---|---|---|---|---|"]
        for m, v in accuracy["methods"].items():
            lines.append(f"| {LABELS[m]} | {_fmt_list(v['ours']['train_loss'])} "
                         f"| {_fmt_list(v['baseline']['train_loss'])}"
                         f" | {100 * v['ours']['test_acc']:.2f} | {100 * v['baseline']['test_acc']:.2f} | "
                         f"{v['ours']['seconds']:.1f} | {v['baseline']['seconds']:.1f} |")
    return "\n".join(lines)


def check_targets(rows: list[Row], device: torch.device) -> list[tuple[str, str, str]]:
    """The targets of one H100 or H200 (the same compute), judged on "ours"; n/a on any other device."""
    by = {(r.method, r.loop): r for r in rows}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    applies = "H100" in name or "H200" in name
    verdict = (lambda ok: "met" if ok else "**missed**") if applies else (lambda ok: "n/a: not an H100/H200")
    out = []
    if ("st", "ours") in by:
        st = by[("st", "ours")]
        out.append(("our ST epoch <= 1.0 s", f"{st.epoch_seconds:.2f} s", verdict(st.epoch_seconds <= 1.0)))
        if ("st", "baseline") in by:
            x = by[("st", "baseline")].epoch_seconds / st.epoch_seconds
            out.append(("our ST >= 3.5x the common loop", f"{x:.2f}x", verdict(x >= 3.5)))
        if st.peak:
            frac = st.tflops / st.peak
            out.append(("our ST >= 15% of dense bf16 peak", f"{100 * frac:.1f}%", verdict(frac >= 0.15)))
        for m, limit in (("sam", 2.05), ("at", 11.0)):
            if (m, "ours") in by:
                x = by[(m, "ours")].epoch_seconds / st.epoch_seconds
                out.append((f"{LABELS[m]}/ST <= {limit}", f"{x:.2f}", verdict(x <= limit)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--quick", action="store_true",
                        help="a few steps of batch 32 and a short accuracy check: for a CPU (minutes)")
    parser.add_argument("--batch-size", type=count(1), help="default 128 (32 with --quick)")
    parser.add_argument("--warmup", type=count(1),
                        help="untimed steps per method and loop (default 15; 1 with --quick)")
    parser.add_argument("--steps", type=count(1), help="timed steps for ST and SAM (default 100; 2 with --quick)")
    parser.add_argument("--at-steps-timed", type=count(1), help="timed steps for AT (default 30; 2 with --quick)")
    parser.add_argument("--repeats", type=count(1), default=1,
                        help="alternate the loops this often; the fastest counts")
    parser.add_argument("--methods", default="st,sam,at", help="comma-separated subset of st,sam,at")
    parser.add_argument("--loops", help="comma-separated subset of " + ",".join([*VARIANTS, "baseline"])
                        + ": our loop as train() runs it on the device, eager, CUDA graph only, compiled only, and "
                        "the common loop (default eager,ours,baseline on CUDA; ours,baseline on a CPU)")
    parser.add_argument("--workers", type=count(0), help="baseline DataLoader workers (default 8 on CUDA, 0 on CPU)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: from a table)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-accuracy", action="store_true", help="timing only")
    parser.add_argument("--accuracy-only", action="store_true", help="the equal-accuracy runs only")
    parser.add_argument("--acc-model", help="model of the accuracy runs (default prn18 on CUDA, small_cnn on CPU)")
    parser.add_argument("--acc-epochs", type=count(1), help="default 2 (1 with --quick)")
    parser.add_argument("--acc-train", type=count(1), help="training images (default 20000; 3000 with --quick)")
    parser.add_argument("--acc-test", type=count(1), default=2000, help="test images (default 2000)")
    parser.add_argument("--acc-batch-size", type=count(1), default=128)
    parser.add_argument("--acc-augment", default="crop_flip", choices=("none", "crop", "crop_flip"))
    parser.add_argument("--data-dir", help="Fashion-MNIST's folder for the accuracy runs (default: the Debian one)")
    parser.add_argument("--json", type=output_file, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"

    def pick(value, full, quick):
        return value if value is not None else (quick if args.quick else full)

    args.batch_size = pick(args.batch_size, 128, 32)
    args.warmup = pick(args.warmup, 15, 1)
    args.steps = pick(args.steps, 100, 2)
    args.at_steps_timed = pick(args.at_steps_timed, 30, 2)
    if args.workers is None:
        args.workers = min(8, os.cpu_count() or 1) if cuda else 0
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    loops = [loop.strip() for loop in (args.loops or ("eager,ours,baseline" if cuda else "ours,baseline")).split(",")
             if loop.strip()]
    if not set(args.methods) <= set(METHODS) or not set(loops) <= {*VARIANTS, "baseline"}:
        parser.error(f"--methods takes st,sam,at and --loops {','.join([*VARIANTS, 'baseline'])}")
    args.acc_model = args.acc_model or ("prn18" if cuda else "small_cnn")
    args.acc_epochs = pick(args.acc_epochs, 2, 1)
    args.acc_train = pick(args.acc_train, 20_000, 3000)
    if not cuda and ({"graph", "compile"} & set(loops)):
        parser.error("--loops graph and compile are for CUDA (CUDA graphs need one; compiling PRN-18 on a CPU "
                     "takes longer than the measurement)")
    if cuda:  # for both loops, whichever runs first (build() would set them for ours only)
        torch.backends.cudnn.benchmark = True
        set_tf32(True)

    info = machine(device)
    command = "python bench/train_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{command}\n{json.dumps(info)}", file=sys.stderr, flush=True)
    peak, peak_note = peak_tflops(args, device)
    result: dict = {"command": command.strip(), "machine": info, "batch_size": args.batch_size,
                    "warmup": args.warmup, "rows": [], "peak_tflops": peak, "peak_note": peak_note}
    rows: list[Row] = []
    if not args.accuracy_only:
        steps_needed = args.warmup + max(args.steps, args.at_steps_timed)
        n_train = EPOCH_IMAGES if cuda else max(steps_needed * args.batch_size, 512)
        data = synthetic_cifar(n_train)
        for method in args.methods:
            flops = count_flops(method, args)
            steps = args.at_steps_timed if method == "at" else args.steps
            best: dict[str, dict] = {}
            for _ in range(args.repeats):
                for loop in loops:
                    timed = (time_baseline(method, args, data, device, steps) if loop == "baseline"
                             else time_ours(method, args, data, device, steps, loop))
                    timed["all_seconds"] = best.get(loop, {}).get("all_seconds", []) + [timed["seconds"]]
                    timed["seconds"] = min(timed["all_seconds"])
                    best[loop] = timed
                    if cuda:
                        torch.cuda.empty_cache()
            for loop in loops:
                timed = best[loop]
                how = "" if loop == "baseline" else " + ".join(
                    [f"compiled ({timed['compile']})"] * bool(timed["compile"]) + ["CUDA graph"] * timed["cuda_graph"]
                ) or "eager"
                if loop != "baseline" and timed["step_path"] == "eager" and how != "eager":
                    how = "eager: the fast path was off"
                setup = setup_seconds(timed, args.warmup)
                row = Row(method, loop, steps, timed["seconds"], args.batch_size, flops, peak, how, setup)
                rows.append(row)
                result["rows"].append(timed | {"method": method, "loop": loop, "images_per_s": row.images_per_s,
                                               "epoch_seconds": row.epoch_seconds, "flops_per_image": flops,
                                               "tflops": row.tflops, "setup_seconds": setup})
                print(f"[timing] {LABELS[method]} {row.label}: {row.images_per_s:,.1f} images/s, "
                      f"{row.epoch_seconds:,.1f} s per 50k epoch at steady state; compile + capture {setup:,.1f} s "
                      "once", file=sys.stderr, flush=True)
            if args.json:  # as each method ends: a run stopped later keeps these figures
                write_record(args.json, result | {"complete": False})
    accuracy = None if args.skip_accuracy else equal_accuracy(
        args, device, lambda partial: args.json and write_record(args.json, result | {"accuracy": partial,
                                                                                       "complete": False}))
    result["accuracy"] = accuracy
    result["complete"] = True
    info["load_average_after"] = os.getloadavg()[0]
    targets = check_targets(rows, device)
    result["targets"] = [dict(target=a, measured=b, verdict=c) for a, b, c in targets]
    timing = ("" if args.accuracy_only else f"batch {args.batch_size}, {args.warmup} warm-up steps, {args.steps} timed "
              f"steps (AT {args.at_steps_timed}), best of {args.repeats}; baseline DataLoader workers {args.workers}; ")
    note = (f"{info.get('gpu', info['cpu'])}, {info['cpus']} CPUs, torch {info['torch']}, Python {info['python']}, "
            f"{info['date']}; {timing}"
            f"1-min load average {info['load_average_before']:.2f} before, {info['load_average_after']:.2f} after")
    print(f"\n`{command.strip()}` — {note}\n")
    print(markdown(rows, peak_note, accuracy, targets))
    if args.json:
        write_record(args.json, result)
    return 0


if __name__ == "__main__":
    run(main)
