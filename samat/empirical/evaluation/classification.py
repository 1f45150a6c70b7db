"""Classification's scorer: per example, whether the model classifies it correctly (its "hits"), clean and under
each attack; the headline is the accuracy.

An attack leaves the examples the model gets wrong unattacked (:func:`~samat.empirical.attacks.build.build_attack`),
so robust accuracy counts an example only if it is correct on both x and x_adv. eval.json keeps each attack's raw
hits (before they are combined with the clean ones) as a bitmask, so that the check "robust <= clean" sees an attack
that fixes a misclassified example, and an evaluation can be extended without attacking again.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from samat.empirical.attacks.build import BuiltAttack, build_attack
from samat.empirical.attacks.meter import PerturbationMeter
from samat.empirical.attacks.specs import GRADIENT_ALGORITHMS, TEXT_ALGORITHMS, AttackSpec
from samat.empirical.data import IMAGE_BOX, as_inputs
from samat.empirical.evaluation.checks import exceeds, robust_within_clean
from samat.empirical.evaluation.scorer import Attacked, Writer
from samat.empirical.evaluation.store import pack_mask, unpack_mask
from samat.empirical.inference import correct_mask


def attack_in_batches(attack: BuiltAttack, model: nn.Module, inputs: torch.Tensor, y: torch.Tensor,
                      clean: torch.Tensor, batch_size: int, *, meter: PerturbationMeter | None = None,
                      progress: bool = False, label: str = "") -> torch.Tensor:
    """The attack on every example, a batch at a time; whether the model classifies each x_adv correctly."""
    hits = []
    for i in tqdm(range(0, len(y), batch_size), desc=label, unit="batch", disable=not progress, leave=False):
        xb, yb = inputs[i:i + batch_size], y[i:i + batch_size]
        x_adv = attack(xb, yb, clean=clean[i:i + batch_size])
        hits.append(correct_mask(model, x_adv, yb, batch_size=batch_size))
        if meter is not None:
            meter.add(xb, x_adv, flow=getattr(attack, "last_flow", None))
    return torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool, device=y.device)


def attack_success_rate(clean: torch.Tensor, hits: torch.Tensor) -> float | None:
    """successful / (successful + failed), as TextAttack counts it: of the examples classified correctly (the
    others are skipped), the fraction the attack turns wrong. None when no example was attacked."""
    attacked = int(clean.sum())
    return None if attacked == 0 else int((clean & ~hits).sum()) / attacked


class Hits:
    """The classification scorer (:class:`~.scorer.Scorer`) of ``model`` on stored examples ``x`` (uint8 images
    or float vectors) with labels ``y``, attacked ``batch_size`` at a time with the evaluation's ``seed``."""

    task, metric, chance_name = "classification", "accuracy", "chance"

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int,
                 batch_size: int = 256, progress: bool = False) -> None:
        self.model, self.inputs, self.y = model, as_inputs(x), y
        self.num_classes, self.seed, self.batch_size, self.progress = num_classes, seed, batch_size, progress
        self.n, self.chance = len(y), 1 / num_classes
        self.box = IMAGE_BOX if self.inputs.dim() == 4 else None
        self.hits = torch.zeros(0, dtype=torch.bool)

    def supports(self, spec: AttackSpec) -> str | None:
        if spec.algorithm in TEXT_ALGORITHMS:
            return "an attack on images or vectors (pso and iga attack sentences: they evaluate text runs)"
        if self.inputs.dim() != 4 and spec.algorithm not in GRADIENT_ALGORITHMS:
            return "FGSM or PGD on vector data (AutoAttack, FAB, Pixle and StAdv attack (N, C, H, W) images only)"
        return None

    def clean(self) -> torch.Tensor:
        self.hits = correct_mask(self.model, self.inputs, self.y, batch_size=self.batch_size)
        return self.hits

    def attack(self, label: str, spec: AttackSpec) -> Attacked:
        attack = build_attack(spec, self.model, num_classes=self.num_classes, seed=self.seed, device=self.y.device,
                              box="auto")
        meter = PerturbationMeter(spec, box=self.box)
        bar = self.progress and sys.stderr.isatty()  # a bar on a terminal; the loop says one line per attack
        hits = attack_in_batches(attack, self.model, self.inputs, self.y, self.hits, self.batch_size, meter=meter,
                                 progress=bar, label=spec.title)
        return Attacked(hits, meter.summary())  # one host synchronisation, after the loop

    def value(self, outcome: torch.Tensor) -> float:
        return float((outcome & self.hits).double().mean()) if self.n else 0.0

    def within_clean(self, outcome: torch.Tensor) -> tuple[bool, str]:
        return robust_within_clean(self.hits, outcome)

    def exceeds(self, weaker: torch.Tensor, stronger: torch.Tensor) -> tuple[bool, str]:
        found = exceeds(weaker & self.hits, stronger & self.hits)
        return found.exceeds, found.detail

    def restore(self, previous: dict) -> dict[str, torch.Tensor]:
        return {label: unpack_mask(text, self.n, self.y.device) for label, text in previous.get("correct", {}).items()}

    def record(self, outcomes: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"accuracy": {label: self.value(hits) for label, hits in outcomes.items()},
                "correct": {label: pack_mask(hits) for label, hits in outcomes.items()}}

    def attachments(self) -> dict[str, Writer]:
        return {}

    def checks(self, label: str, outcome: torch.Tensor) -> list[tuple[str, bool, str]]:
        return []

    def written(self) -> None:
        return None
