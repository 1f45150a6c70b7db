"""What an evaluation costs on this device: each attack timed at full batches, as the classification scorer runs
it, on two models that bound the cost. The benchmark (``bench/eval_throughput.py``) and the experiment planner
(``samat experiment plan``) both measure with it.

An attack's cost depends on how many images survive its stages (AutoAttack runs APGD-T, FAB-T and Square only on
the images that APGD-CE left correct; Pixle stops for an image once it succeeds), not on what the network
learned, so two models bound it:

* "falls at once" (random init): the network with random weights, each image labelled with its prediction (clean
  accuracy 100%, so every image is attacked). Its margins are small, so most images fall in an attack's first
  stage: the cheap end (a part of the images still survives the early stages).
* "never falls" (robust): the same network behind :class:`AlwaysRobust`, which adds a margin no attack within
  budget can overcome while every forward and backward pass still runs through the network: every stage of every
  attack runs on every image, the dear end, and the case of the papers' adversarially trained models, most of
  whose images survive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from samat.empirical.attacks.build import build_attack
from samat.empirical.attacks.specs import AttackSpec
from samat.empirical.data import as_inputs
from samat.empirical.evaluation.classification import attack_in_batches
from samat.empirical.evaluation.evaluate import attack_precision
from samat.empirical.inference import correct_mask
from samat.empirical.models import build_model
from samat.empirical.training.throughput import Clock

ROBUST_MARGIN = 1000.0  # logits: no perturbation within any of the papers' budgets moves a network's logits this far
BOUNDS = ("falls at once", "never falls")  # the two calibration models, cheap and dear


class AlwaysRobust(nn.Module):
    """A network's logits plus a margin on class 0 that no perturbation within budget can overcome."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return logits + ROBUST_MARGIN * nn.functional.one_hot(torch.zeros_like(logits[:, 0], dtype=torch.long),
                                                              logits.shape[1]).to(logits.dtype)


def calibration_model(architecture: str, input_shape: tuple[int, ...], num_classes: int, device: torch.device, *,
                      bound: str, seed: int = 0) -> nn.Module:
    """The network with random weights (seed), in eval mode: as it is ("falls at once"), or always robust."""
    torch.manual_seed(seed)
    channels = input_shape[0] if len(input_shape) == 3 else 0
    net = build_model(architecture, input_shape=input_shape, num_classes=num_classes,
                      mean=(0.5,) * channels, std=(0.25,) * channels).to(device).eval()
    return AlwaysRobust(net).eval() if bound == BOUNDS[1] else net


def calibration_images(model: nn.Module, n: int, input_shape: tuple[int, ...], device: torch.device, *,
                       bound: str, seed: int = 0, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """n random uint8 images (or float vectors) and labels: class 0 for the robust model (which it always
    predicts), else the model's own predictions (clean accuracy 100%: every image is attacked)."""
    g = torch.Generator().manual_seed(seed + 1)
    if len(input_shape) == 3:
        x = torch.randint(0, 256, (n, *input_shape), generator=g, dtype=torch.uint8).to(device)
    else:
        x = torch.randn(n, *input_shape, generator=g).to(device)
    if bound == BOUNDS[1]:
        return x, torch.zeros(n, dtype=torch.long, device=device)
    with torch.no_grad():
        y = torch.cat([model(as_inputs(x[i:i + batch_size])).argmax(1) for i in range(0, n, batch_size)])
    return x, y


@dataclass(frozen=True)
class AttackTiming:
    """``seconds`` to attack ``images`` images in batches of ``batch_size`` (whole batches) and classify the
    results; ``robust_accuracy`` on them."""

    label: str
    images: int
    batch_size: int
    seconds: float
    robust_accuracy: float

    def seconds_for(self, n: int) -> float:
        """The time for n images: the same cost per full batch, ceil(n / batch) batches (a last partial batch
        costs what a full one does on a GPU, where a batch runs in parallel; on a CPU it is an upper bound)."""
        per_batch = self.seconds * self.batch_size / self.images
        return math.ceil(n / self.batch_size) * per_batch


def time_attack(label: str, spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                num_classes: int, batch_size: int, seed: int = 0) -> AttackTiming:
    """The attack on (x, y) as the evaluation runs it (:func:`.classification.attack_in_batches`), timed."""
    inputs = as_inputs(x)
    clean = correct_mask(model, inputs, y, batch_size=batch_size)
    attack = build_attack(spec, model, num_classes=num_classes, seed=seed, device=y.device)
    clock = Clock(y.device)
    clock.start()
    with attack_precision(y.device):
        hits = attack_in_batches(attack, model, inputs, y, clean, batch_size)
    seconds = clock.stop()
    return AttackTiming(label, len(y), batch_size, seconds, float((hits & clean).double().mean()))
