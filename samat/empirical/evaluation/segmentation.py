"""Segmentation under attack: mIoU (D eq. 15) clean and under PGD on the per-pixel loss (D Section 5.2: 10 steps,
ℓ∞ ε = 1/255 and ℓ2 ε = 1), per-class IoU, and the sanity checks of classification carried over.

Every test image is attacked and scored at its own size (images of one size are batched together). The attack is
the project's batched PGD (:func:`samat.empirical.attacks.pgd.pgd`) ascending the summed cross-entropy of the labelled
pixels, with step 2.5 ε / steps and a random start, in eval mode; torchattacks has no segmentation attacks.

The checks compare two columns on the same images: b exceeds a when b's mIoU is higher and, beyond noise, more images
score a higher pixel accuracy under b than a lower one (classification's paired sign test, images as the units;
:func:`miou_exceeds`). They are:

* robust ≤ clean for every attack column (an attack on the loss need not lower mIoU pixel by pixel, so this is a
  check beyond noise, not the exact image-by-image one of classification);
* PGD with twice the steps does not leave a higher mIoU;
* within an attack family, mIoU does not rise with ε;
* every perturbation stays within its budget (up to float32 rounding) and within [0, 1];
* a large ℓ∞ attack (ε = 0.5, 20 steps) drives mIoU below 1/K, the most a prediction that ignores the image can
  reach on average: otherwise the gradients are masked.

An evaluation with new columns recomputes every column (segmentation keeps no per-image results in eval.json).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from samat.core.errors import ParameterError
from samat.core.results import atomic_write_bytes, provenance, write_json
from samat.empirical.attacks.build import evaluating
from samat.empirical.attacks.meter import PerturbationMeter
from samat.empirical.attacks.pgd import pgd
from samat.empirical.attacks.specs import GRADIENT_ALGORITHMS, IMAGE_BOX, Algorithm, AttackSpec, spec
from samat.empirical.data import as_inputs
from samat.empirical.evaluation.checks import LARGE_EPS, Check, exceeds
from samat.empirical.evaluation.columns import NATURAL, SANITY, column_specs
from samat.empirical.evaluation.store import reusable_evaluation
from samat.empirical.evaluation.trained import Loaded, eval_indices, load_trained, locate, trained_config
from samat.empirical.pixelwise import confusion, iou, logits_of, mean_iou, pixel_loss, predicted_confusion, size_batches
from samat.empirical.training.runs import file_sha256
from samat.empirical.training.setup import resolve_device

SEGMENTATION_COLUMNS = ("pgd10_linf@1/255", "pgd10_l2@1")  # D Section 5.2: 10-step PGD, ℓ∞ 1/255 and ℓ2 ε = 1
EXAMPLES = 4  # images whose predictions eval.json's examples file keeps (for the figure)
MIOU_CHECK = "mIoU does not increase with eps"


def miou_exceeds(weaker: torch.Tensor, stronger: torch.Tensor) -> tuple[bool, str]:
    """Does the attack that should be stronger leave a higher mIoU than the weaker one, beyond noise?

    Both are per-image confusion matrices (N, K, K) of the same images. It does when its mIoU is higher and more
    images score a higher pixel accuracy under it than a lower one, beyond noise: the paired sign test of
    classification's checks (:func:`~.checks.exceeds`) with images as the units. Images are independent; pixels
    are not, and the two attacks share their random start, so neither a pixel-level count nor a standard error
    of the paired mIoU difference sees the attack's own randomness (a restart from another seed moves mIoU as
    much as the steps do).
    """
    d = float(mean_iou(stronger.sum(0)) - mean_iou(weaker.sum(0)))
    accuracy_w, accuracy_s = pixel_accuracy(weaker), pixel_accuracy(stronger)
    found = exceeds(accuracy_w > accuracy_s, accuracy_s > accuracy_w)
    return (not math.isnan(d)) and d > 0 and found.exceeds, (
        f"mIoU {100 * d:+.2f} points; {found.only_stronger} images score higher under the stronger attack, "
        f"{found.only_weaker} lower")


def pixel_accuracy(matrices: torch.Tensor) -> torch.Tensor:
    """Each image's fraction of labelled pixels predicted right, from its confusion matrix (N, K, K)."""
    return matrices.diagonal(dim1=1, dim2=2).sum(1).double() / matrices.sum((1, 2)).clamp_min(1).double()


class _SegmentationEvaluation:
    """One model on one set of images: per-image confusion matrices clean and per attack, and the checks."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, sizes: torch.Tensor, num_classes: int, *,
                 seed: int, batch_size: int, progress: bool, log: Callable[[str], None]) -> None:
        self.model, self.x, self.y, self.sizes, self.k = model, x, y, sizes, num_classes
        self.seed, self.batch_size, self.progress, self.log = seed, batch_size, progress, log
        self.device = y.device
        self.matrices: dict[str, torch.Tensor] = {
            NATURAL: predicted_confusion(model, x, y, sizes, num_classes, batch_size=batch_size)}
        self.attacks: dict[str, dict] = {}
        self.checks: dict[str, Check] = {}
        self.examples: dict[str, torch.Tensor] = {}

    def miou(self, label: str) -> float:
        value = float(mean_iou(self.matrices[label].sum(0)))
        return value if math.isfinite(value) else 0.0

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks[name] = Check(name, bool(passed), detail)

    def run_attack(self, label: str, s: AttackSpec) -> None:
        """PGD (or FGSM) on every image at its own size; per-image confusion under attack, perturbation sizes."""
        meter = PerturbationMeter(s, box=IMAGE_BOX)
        matrices = torch.zeros_like(self.matrices[NATURAL])
        shown = torch.zeros(min(EXAMPLES, len(self.y)), *self.y.shape[1:], dtype=torch.uint8, device=self.device)
        t0 = time.perf_counter()
        batches = list(size_batches(self.sizes, self.batch_size))
        with evaluating(self.model):
            for idx, h, w in tqdm(batches, desc=label, unit="batch", disable=not self.progress, leave=False):
                on = idx.to(self.device)
                xb, yb = as_inputs(self.x[on][:, :, :h, :w]), self.y[on][:, :h, :w].long()
                gen = torch.Generator(device=self.device).manual_seed(self.seed)
                x_adv = pgd(self.model, xb, yb, norm=s.norm.value, eps=s.eps, alpha=s.step_size, steps=s.steps,
                            random_start=s.algorithm is Algorithm.PGD, generator=gen, box=IMAGE_BOX,
                            loss_fn=lambda output, target: pixel_loss(output, target, "sum"))
                with torch.no_grad():
                    pred = logits_of(self.model(x_adv)).argmax(1)
                matrices[on] = confusion(pred, yb, self.k)
                meter.add(xb, x_adv)
                for j, i in enumerate(idx.tolist()):
                    if i < len(shown):
                        shown[i].fill_(255)
                        shown[i, :h, :w] = pred[j].to(torch.uint8)
        size = meter.summary()
        seconds = time.perf_counter() - t0
        self.matrices[label], self.examples[label] = matrices, shown
        self.attacks[label] = {
            "name": s.name, "norm": s.norm.value, "eps": s.eps, "steps": s.steps, "step_size": s.step_size,
            "seconds": seconds, "max_perturbation": size["max"], "tolerance": size["tolerance"],
            "within_budget": size["within_eps"], "in_box": size["in_box"]}
        self.log(f"  {label}: mIoU {self.miou(label):.4f} ({seconds:.1f} s)")

    def check_columns(self, specs: dict[str, AttackSpec]) -> None:
        """Per column: robust ≤ clean (beyond noise), within budget and box, and twice the PGD steps not weaker."""
        for label, s in specs.items():
            found, detail = miou_exceeds(self.matrices[NATURAL], self.matrices[label])
            self.check(f"robust <= clean: {label}", not found,
                       f"{self.miou(label):.4f} <= {self.miou(NATURAL):.4f}; {detail}")
            a = self.attacks[label]
            self.check(f"within budget and [0, 1]: {label}", a["within_budget"] and a["in_box"] is not False,
                       f"largest perturbation {a['max_perturbation']:.6g} (budget {a['eps']}, slack "
                       f"{a['tolerance']:.2g})")
            if s.algorithm is Algorithm.PGD:
                stronger = spec(f"pgd{2 * s.steps}_{s.norm.value}").at(s.eps)
                more = f"{stronger.label}{SANITY}"
                self.run_attack(more, stronger)
                found, detail = miou_exceeds(self.matrices[label], self.matrices[more])
                self.check(f"more PGD steps are not weaker: {label} vs {stronger.steps} steps", not found, detail)

    def check_families(self, specs: dict[str, AttackSpec]) -> None:
        families: dict[tuple, list[tuple[float, str]]] = {}
        for label, s in specs.items():
            families.setdefault((s.name, s.norm), []).append((s.eps, label))
        for members in families.values():
            labels = [label for _, label in sorted(members)]
            for l1, l2 in zip(labels, labels[1:], strict=False):
                found, detail = miou_exceeds(self.matrices[l1], self.matrices[l2])
                self.check(f"{MIOU_CHECK}: {l1} -> {l2}", not found, detail)

    def check_large_attack(self) -> None:
        large = spec("pgd20_linf").at(LARGE_EPS)
        label = f"{large.label}{SANITY}"
        self.run_attack(label, large)
        bound = 1 / self.k
        self.check(f"a large attack (l-inf {LARGE_EPS}) drives mIoU below 1/K ({bound:.3g})", self.miou(label) < bound,
                   f"{self.miou(label):.4f}")

    def result(self, columns: list[str], class_names: tuple[str, ...]) -> dict[str, Any]:
        totals = {label: m.sum(0) for label, m in self.matrices.items()}
        sanity = [c.to_json() for c in self.checks.values()]
        labelled = {label: int(t.sum()) for label, t in totals.items()}
        return {
            "task": "segmentation", "metric": "mIoU", "n": len(self.y), "columns": columns,
            "classes": list(class_names),
            "miou": {label: self.miou(label) for label in totals},
            "accuracy": {label: float(t.trace()) / labelled[label] if labelled[label] else 0.0
                         for label, t in totals.items()},  # pixel accuracy
            "iou": {label: [None if math.isnan(v) else v for v in iou(t).tolist()] for label, t in totals.items()},
            "confusion": {label: t.tolist() for label, t in totals.items()},
            "attacks": self.attacks, "sanity": sanity, "sanity_passed": all(c["passed"] for c in sanity)}


def evaluate_segmentation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sizes: torch.Tensor,
                          columns: list[str], *, num_classes: int, class_names: tuple[str, ...] = (), seed: int = 0,
                          batch_size: int = 32, progress: bool = True,
                          log: Callable[[str], None] = lambda m: None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """mIoU of ``model`` on the images (x uint8 (N, C, H, W), y masks (N, H, W), sizes (N, 2)) clean and under each
    column's attack (FGSM or PGD), with per-class IoU, pixel accuracy, confusion matrices and the sanity checks.

    Returns the result (numbers only) and the examples: the first :data:`EXAMPLES` images, their masks and the
    predictions clean and under each column's attack (uint8 arrays, for the figure).
    """
    specs = column_specs(columns)
    bad = next((label for label, s in specs.items() if s.algorithm not in GRADIENT_ALGORITHMS), None)
    if bad is not None:
        raise ParameterError("attack", bad, "fgsm or pgd for a segmentation model (attacks on its per-pixel loss)")
    ev = _SegmentationEvaluation(model, x, y, sizes, num_classes, seed=seed, batch_size=batch_size,
                                 progress=progress, log=log)
    for label, s in specs.items():
        ev.run_attack(label, s)
    ev.check_columns(specs)
    ev.check_families(specs)
    ev.check_large_attack()
    ordered = [c for c in dict.fromkeys([NATURAL, *columns]) if c == NATURAL or c in specs]
    shown = min(EXAMPLES, len(y))
    clean = predicted_examples(model, x[:shown], sizes[:shown])
    examples = {"images": x[:shown].cpu().numpy(), "masks": y[:shown].cpu().numpy(),
                "sizes": sizes[:shown].numpy(), "pred:" + NATURAL: clean}
    examples |= {f"pred:{label}": ev.examples[label].cpu().numpy() for label in specs}
    return ev.result(ordered, class_names), examples


@torch.no_grad()
def predicted_examples(model: nn.Module, x: torch.Tensor, sizes: torch.Tensor) -> np.ndarray:
    """The model's clean predictions (uint8 (N, H, W) on the canvas, 255 outside each image)."""
    out = np.full((len(x), *x.shape[2:]), 255, dtype=np.uint8)
    with evaluating(model):
        for i, (h, w) in enumerate(sizes.tolist()):
            pred = logits_of(model(as_inputs(x[i:i + 1, :, :h, :w]))).argmax(1)[0]
            out[i, :h, :w] = pred.cpu().numpy()
    return out


def evaluate_segmentation_path(path: str | Path, columns: list[str], *, n_eval: int, seed: int, batch_size: int,
                               device: str, data_dir: str | None, model: str | None, dataset: str | None,
                               overwrite: bool, progress: bool, log: Callable[[str], None]) -> dict:
    """``samat eval`` for a segmentation run: eval.json (and examples.npz for the figure) in its run directory.
    Batches hold at most the run's ``eval_batch_size`` images (large images need smaller batches than classes).

    An evaluation with the same settings that has every column is kept; otherwise every column is computed again
    and both files are replaced (atomically, examples first: eval.json names the examples it belongs to).
    """
    specs = column_specs(columns)
    run, weights = locate(path)
    out = run.path / "eval.json"
    settings = {"n_eval": n_eval, "seed": seed}
    sha = file_sha256(weights)
    previous = reusable_evaluation(out, weights, sha, settings, overwrite=overwrite, log=log)
    if previous is not None and all(c in previous.get("miou", {}) for c in specs):
        log(f"{out}: all {len(specs)} columns already evaluated (--overwrite redoes them)")
        return previous
    earlier = [c for c in (previous or {}).get("columns", []) if c != NATURAL]
    todo = list(dict.fromkeys([*earlier, *specs]))
    loaded: Loaded = load_trained(path, device=resolve_device(device), data_dir=data_dir, model=model,
                                  dataset=dataset)
    batch_size = min(batch_size, trained_config(path, data_dir=data_dir, model=model, dataset=dataset).eval_batch_size)
    idx = eval_indices(len(loaded.y), n_eval, seed)
    x, y, sizes = loaded.x[idx.to(loaded.y.device)], loaded.y[idx.to(loaded.y.device)], loaded.sizes[idx]
    log(f"evaluating {loaded.description} on {len(y)} test images: {', '.join(todo)}")
    result, examples = evaluate_segmentation(loaded.model, x, y, sizes, todo, num_classes=loaded.num_classes,
                                             class_names=loaded.class_names, seed=seed, batch_size=batch_size,
                                             progress=progress, log=log)
    result |= {"settings": settings, "model": loaded.description, "examples": "examples.npz"}

    def write_examples(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object, so numpy does not append another .npz
            np.savez_compressed(f, classes=np.array(loaded.class_names), **examples)

    atomic_write_bytes(run.path / "examples.npz", write_examples)
    record = provenance({"weights": {"file": weights.name, "sha256": sha}, "settings": settings,
                         "examples": {"file": "examples.npz", "sha256": file_sha256(run.path / "examples.npz")}})
    write_json(out, result, provenance_record=record, indent=2)
    return result | {"provenance": record}
