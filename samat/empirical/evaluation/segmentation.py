"""Segmentation's scorer: per image, its confusion matrix clean and under each attack; the headline is the mIoU
(D eq. 15), beside the per-class IoU and the pixel accuracy (all from :mod:`samat.empirical.pixelwise`).

Every test image is attacked and scored at its own size (images of one size are batched together). The attacks are
FGSM and PGD built by :func:`~samat.empirical.attacks.build.build_attack` on the summed cross-entropy of the labelled
pixels (D Section 5.2: 10 steps, ℓ∞ ε = 1/255 and ℓ2 ε = 1; step 2.5 ε / steps and a random start), in eval mode,
with the evaluation's seed; torchattacks has no segmentation attacks.

The comparisons of the loop's checks are paired tests on the same images: b exceeds a when b's mIoU is higher and,
beyond noise, more images score a higher pixel accuracy under b than a lower one (classification's paired sign
test, images as the units; :func:`miou_exceeds`). So "robust <= clean" is a check beyond noise here, not the exact
image-by-image one of classification (an attack on the loss need not lower mIoU pixel by pixel), and the masking
check asks the large ℓ∞ attack for an mIoU below 1/K, the most a prediction that ignores the image reaches on
average.

eval.json keeps no per-image results for segmentation: an evaluation with new columns attacks every column again.
The predictions on the first :data:`EXAMPLES` images, clean and under each column's attack, go to examples.npz
beside it (for the figure).
"""

from __future__ import annotations

import math
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from samat.empirical.attacks.build import build_attack, evaluating
from samat.empirical.attacks.meter import PerturbationMeter
from samat.empirical.attacks.specs import GRADIENT_ALGORITHMS, AttackSpec
from samat.empirical.data import IMAGE_BOX, as_inputs
from samat.empirical.evaluation.checks import exceeds
from samat.empirical.evaluation.columns import NATURAL, SANITY
from samat.empirical.evaluation.scorer import Attacked, Writer
from samat.empirical.pixelwise import (
    confusion,
    iou,
    logits_of,
    mean_iou,
    miou_score,
    pixel_accuracy,
    pixel_loss,
    predicted_confusion,
    size_batches,
)

SEGMENTATION_COLUMNS = ("pgd10_linf@1/255", "pgd10_l2@1")  # D Section 5.2: 10-step PGD, ℓ∞ 1/255 and ℓ2 ε = 1
EXAMPLES = 4  # images whose predictions the examples file beside eval.json keeps (for the figure)


def summed_pixel_loss(output, y: torch.Tensor) -> torch.Tensor:
    """What the attacks ascend: the cross-entropy summed over every labelled pixel of the batch."""
    return pixel_loss(output, y, "sum")


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


class Confusions:
    """The segmentation scorer (:class:`~.scorer.Scorer`) of ``model`` on stored images ``x`` (uint8 (N, C, H, W)
    on a canvas, each cut to its own size from ``sizes`` (N, 2)) with masks ``y`` (N, H, W), attacked
    ``batch_size`` images at a time with the evaluation's ``seed``."""

    task, metric, chance_name = "segmentation", "mIoU", "1/K"

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, sizes: torch.Tensor, *, num_classes: int,
                 class_names: tuple[str, ...] = (), seed: int, batch_size: int = 32, progress: bool = False) -> None:
        self.model, self.x, self.y, self.sizes, self.k = model, x, y, sizes, num_classes
        self.class_names, self.seed, self.batch_size, self.progress = class_names, seed, batch_size, progress
        self.n, self.chance, self.device = len(y), 1 / num_classes, y.device
        self.shown: dict[str, torch.Tensor] = {}  # each column's predictions on the first EXAMPLES images
        self.natural = torch.zeros(0, num_classes, num_classes, dtype=torch.int64)

    def supports(self, spec: AttackSpec) -> str | None:
        if spec.algorithm not in GRADIENT_ALGORITHMS:
            return "fgsm or pgd for a segmentation model (attacks on its per-pixel loss)"
        return None

    def clean(self) -> torch.Tensor:
        self.natural = predicted_confusion(self.model, self.x, self.y, self.sizes, self.k, batch_size=self.batch_size)
        return self.natural

    def attack(self, label: str, spec: AttackSpec) -> Attacked:
        """Every image attacked at its own size; its confusion matrix under attack, and the perturbations' sizes."""
        attack = build_attack(spec, self.model, num_classes=self.k, seed=self.seed, device=self.device,
                              box=IMAGE_BOX, loss=summed_pixel_loss)
        meter = PerturbationMeter(spec, box=IMAGE_BOX)
        matrices = torch.zeros_like(self.natural)
        shown = torch.zeros(min(EXAMPLES, self.n), *self.y.shape[1:], dtype=torch.uint8, device=self.device)
        batches = list(size_batches(self.sizes, self.batch_size))
        with evaluating(self.model):
            for idx, h, w in tqdm(batches, desc=label, unit="batch", disable=not self.progress, leave=False):
                on = idx.to(self.device)
                xb, yb = as_inputs(self.x[on][:, :, :h, :w]), self.y[on][:, :h, :w].long()
                x_adv = attack(xb, yb)
                with torch.no_grad():
                    pred = logits_of(self.model(x_adv)).argmax(1)
                matrices[on] = confusion(pred, yb, self.k)
                meter.add(xb, x_adv)
                for j, i in enumerate(idx.tolist()):
                    if i < len(shown):
                        shown[i].fill_(255)
                        shown[i, :h, :w] = pred[j].to(torch.uint8)
        if not label.endswith(SANITY):
            self.shown[label] = shown
        return Attacked(matrices, meter.summary())

    def value(self, outcome: torch.Tensor) -> float:
        return miou_score(outcome.sum(0))

    def within_clean(self, outcome: torch.Tensor) -> tuple[bool, str]:
        found, detail = miou_exceeds(self.natural, outcome)
        return not found, detail

    def exceeds(self, weaker: torch.Tensor, stronger: torch.Tensor) -> tuple[bool, str]:
        return miou_exceeds(weaker, stronger)

    def restore(self, previous: dict) -> dict[str, torch.Tensor]:
        return {}  # eval.json keeps no per-image confusion matrices: every column is attacked again

    def record(self, outcomes: dict[str, torch.Tensor]) -> dict[str, Any]:
        totals = {label: m.sum(0) for label, m in outcomes.items()}
        return {
            "classes": list(self.class_names),
            "miou": {label: miou_score(t) for label, t in totals.items()},
            "accuracy": {label: float(pixel_accuracy(t)) for label, t in totals.items()},  # pixel accuracy
            "iou": {label: [None if math.isnan(v) else v for v in iou(t).tolist()] for label, t in totals.items()},
            "confusion": {label: t.tolist() for label, t in totals.items()}}

    def attachments(self) -> dict[str, Writer]:
        """examples.npz: the first images, their masks and sizes, and the predictions clean and under each column."""
        shown = min(EXAMPLES, self.n)
        examples = {"classes": np.array(self.class_names), "images": self.x[:shown].cpu().numpy(),
                    "masks": self.y[:shown].cpu().numpy(), "sizes": self.sizes[:shown].numpy(),
                    f"pred:{NATURAL}": predicted_examples(self.model, self.x[:shown], self.sizes[:shown])}
        examples |= {f"pred:{label}": pred.cpu().numpy() for label, pred in self.shown.items()}

        def write(f: BinaryIO) -> None:
            np.savez_compressed(f, **examples)  # a file object, so numpy does not append another .npz

        return {"examples.npz": write}

    def checks(self, label: str, outcome: torch.Tensor) -> list[tuple[str, bool, str]]:
        return []

    def written(self) -> None:
        return None


@torch.no_grad()
def predicted_examples(model: nn.Module, x: torch.Tensor, sizes: torch.Tensor) -> np.ndarray:
    """The model's clean predictions (uint8 (N, H, W) on the canvas, 255 outside each image)."""
    out = np.full((len(x), *x.shape[2:]), 255, dtype=np.uint8)
    with evaluating(model):
        for i, (h, w) in enumerate(sizes.tolist()):
            pred = logits_of(model(as_inputs(x[i:i + 1, :, :h, :w]))).argmax(1)[0]
            out[i, :h, :w] = pred.cpu().numpy()
    return out
