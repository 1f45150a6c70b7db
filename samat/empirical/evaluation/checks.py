"""The evaluation's sanity checks, as data. A failing one is a red flag on every robust number of the model.

* robust <= clean, image by image: no image the model gets wrong is classified correctly after the attack;
* accuracy does not increase with ε within an attack family, beyond noise;
* 2x the PGD steps is never weaker than the evaluated PGD, beyond noise;
* every perturbation stays within its budget (up to float32 rounding) and within [0, 1];
* a large-ε PGD attack (ℓ∞, ε = 0.5) drives the model below chance level: otherwise the gradients are
  not doing their job (masking) and every robust number is suspect.

"Beyond noise" is a paired test on the same images: b exceeds a if (#b-only - #a-only) > 2 √(#discordant).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

LARGE_EPS = 0.5  # ℓ∞ budget of the sanity attack: enough to turn any image into mid-grey


@dataclass(frozen=True)
class Check:
    """One sanity check's outcome; ``detail`` gives the numbers behind it."""

    check: str
    passed: bool
    detail: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two attacks on the same images."""

    exceeds: bool  # the attack that should be stronger leaves more images correct, beyond noise
    only_stronger: int  # images that survive only the stronger attack
    only_weaker: int

    @property
    def detail(self) -> str:
        return (f"{self.only_stronger} images survive only the stronger attack, "
                f"{self.only_weaker} only the weaker")


def exceeds(weaker: torch.Tensor, stronger: torch.Tensor) -> Comparison:
    """Does the attack that should be stronger leave more images correct, beyond noise? (paired masks)"""
    only_s, only_w = int((stronger & ~weaker).sum()), int((weaker & ~stronger).sum())
    return Comparison(only_s - only_w > 2 * math.sqrt(only_s + only_w), only_s, only_w)


def robust_within_clean(clean: torch.Tensor, hits: torch.Tensor) -> tuple[bool, str]:
    """The check "robust <= clean" on an attack's raw hits (correct on x_adv), before they are combined with
    ``clean``: an image the model gets wrong must stay wrong, since attacks leave such images unattacked."""
    gained = int((hits & ~clean).sum())
    return gained == 0, f"{int(hits.sum())} images correct under attack, {gained} of them wrong on the clean image"
