"""Clean and robust accuracy of a model on a fixed set of images, under the papers' threat models, with the
sanity checks of :mod:`.checks`.

An evaluation can be extended: given an earlier result for the same model, images and seed, its columns are
kept without attacking again, and the checks across columns (accuracy against eps, the large attack) are
recomputed over old and new columns together, replacing the old ones.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from samat.core.errors import ParameterError, SamatError
from samat.empirical.attacks.build import BuiltAttack, build_attack
from samat.empirical.attacks.meter import PerturbationMeter
from samat.empirical.attacks.specs import GRADIENT_ALGORITHMS, IMAGE_BOX, Algorithm, AttackSpec, spec
from samat.empirical.data import as_inputs
from samat.empirical.evaluation.checks import FAMILY_CHECK, LARGE_EPS, Check, exceeds, robust_within_clean
from samat.empirical.evaluation.columns import NATURAL, SANITY, column_spec
from samat.empirical.evaluation.store import pack_mask, unpack_mask
from samat.empirical.inference import correct_mask
from samat.empirical.training.precision import tf32


@contextlib.contextmanager
def attack_precision(device: torch.device) -> Iterator[None]:
    """Attacks run in float32 with TF32 tensor-core convolutions and matrix products on CUDA (PyTorch's default
    for convolutions; set here for both, whatever a training run in the same process chose, and restored after).
    A GPU test shows TF32 gives the same robust accuracy as full float32 on a trained model."""
    if device.type != "cuda":
        yield
        return
    with tf32(True):
        yield


def stronger_pgd(s: AttackSpec) -> AttackSpec:
    """The sanity check's PGD against a PGD column: the same budget, twice the steps."""
    return spec(f"pgd{2 * s.steps}_{s.norm.value}").at(s.eps)


def large_attack() -> AttackSpec:
    """The sanity check's large ℓ∞ attack (it must drive accuracy below chance)."""
    return spec("pgd20_linf").at(LARGE_EPS)


def attacks_run(specs: dict[str, AttackSpec]) -> dict[str, AttackSpec]:
    """Every attack an evaluation of these columns runs, by column label: the columns, then the sanity attacks
    (a PGD of twice the steps per PGD column, the large ℓ∞ attack)."""
    out = dict(specs)
    for s in specs.values():
        if s.algorithm is Algorithm.PGD:
            out.setdefault(f"{stronger_pgd(s).label}{SANITY}", stronger_pgd(s))
    out.setdefault(f"{large_attack().label}{SANITY}", large_attack())
    return out


def attack_in_batches(attack: BuiltAttack, model: nn.Module, inputs: torch.Tensor, y: torch.Tensor,
                      clean: torch.Tensor, batch_size: int, *, meter: PerturbationMeter | None = None,
                      progress: bool = False, label: str = "") -> torch.Tensor:
    """The attack on every image, a batch at a time; whether the model classifies each x_adv correctly."""
    hits = []
    with attack_precision(y.device):
        for i in tqdm(range(0, len(y), batch_size), desc=label, unit="batch", disable=not progress, leave=False):
            xb, yb = inputs[i:i + batch_size], y[i:i + batch_size]
            x_adv = attack(xb, yb, clean=clean[i:i + batch_size])
            hits.append(correct_mask(model, x_adv, yb, batch_size=batch_size))
            if meter is not None:
                meter.add(xb, x_adv, flow=getattr(attack, "last_flow", None))
    return torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool, device=y.device)


class _Evaluation:
    """The state of one evaluation: per-column accuracy, attack records and raw per-image hits, and checks."""

    def __init__(self, model: nn.Module, inputs: torch.Tensor, y: torch.Tensor, *, num_classes: int, seed: int,
                 batch_size: int, progress: bool, log: Callable[[str], None], previous: dict | None) -> None:
        self.model, self.inputs, self.y = model, inputs, y
        self.num_classes, self.seed, self.batch_size, self.progress, self.log = (
            num_classes, seed, batch_size, progress, log)
        self.n, self.device = len(y), y.device
        self.box = IMAGE_BOX if inputs.dim() == 4 else None
        before = previous or {}
        if before and before.get("n") != self.n:
            raise SamatError(f"the earlier evaluation has {before.get('n')} images, this one {self.n}: "
                             "pass --overwrite")
        self.columns: list[str] = list(before.get("columns", []))
        self.accuracy: dict[str, float] = dict(before.get("accuracy", {}))
        self.attacks: dict[str, dict] = dict(before.get("attacks", {}))
        try:
            self.hits = {label: unpack_mask(text, self.n, self.device)
                         for label, text in before.get("correct", {}).items()}
        except (ValueError, TypeError) as err:
            raise SamatError(f"the earlier evaluation's per-image hits are corrupt ({err}): pass --overwrite") from None
        self.checks: dict[str, Check] = {c["check"]: Check(c["check"], c["passed"], c["detail"])
                                         for c in before.get("sanity", []) if not c["check"].startswith(FAMILY_CHECK)}
        self.clean = correct_mask(model, inputs, y, batch_size=batch_size)
        self.hits[NATURAL] = self.clean
        self.accuracy[NATURAL] = float(self.clean.double().mean())

    def robust(self, label: str) -> torch.Tensor:
        return self.hits[label] & self.clean

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks[name] = Check(name, bool(passed), detail)

    def run_attack(self, label: str, s: AttackSpec) -> None:
        """Attack every image in batches; record the raw hits, the robust accuracy and the perturbation sizes."""
        attack = build_attack(s, self.model, num_classes=self.num_classes, seed=self.seed, device=self.device,
                              box="auto")
        meter = PerturbationMeter(s, box=self.box)
        t0 = time.perf_counter()
        bar = self.progress and sys.stderr.isatty()  # a bar on a terminal; one line per attack always
        hits = attack_in_batches(attack, self.model, self.inputs, self.y, self.clean, self.batch_size, meter=meter,
                                 progress=bar, label=s.title)
        size = meter.summary()  # one host synchronisation, after the loop
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        self.hits[label] = hits
        self.accuracy[label] = float(self.robust(label).double().mean())
        self.attacks[label] = {
            "name": s.name, "norm": s.norm.value, "eps": s.eps, "steps": s.steps, "step_size": s.step_size,
            "seconds": seconds, "max_perturbation": size["max"], "tolerance": size["tolerance"],
            "within_budget": size["within_eps"], "in_box": size["in_box"],
        }
        sanity = SANITY if label.endswith(SANITY) else ""
        self.log(f"  {s.title}{sanity}: {100 * self.accuracy[label]:.2f} % ({seconds:.1f} s)")

    def check_columns(self, specs: dict[str, AttackSpec]) -> None:
        """Per new column: robust <= clean, and the perturbations within budget and box."""
        for label in specs:
            passed, detail = robust_within_clean(self.clean, self.hits[label])
            self.check(f"robust <= clean: {label}", passed,
                       f"{self.accuracy[label]:.4f} <= {self.accuracy[NATURAL]:.4f}; {detail}")
            a = self.attacks[label]
            self.check(f"within budget and [0, 1]: {label}", a["within_budget"] and a["in_box"] is not False,
                       f"largest perturbation {a['max_perturbation']:.6g} (budget {a['eps']}, slack "
                       f"{a['tolerance']:.2g})")

    def check_more_steps(self, specs: dict[str, AttackSpec]) -> None:
        """Each new PGD column against PGD with twice the steps: the stronger attack must not be weaker."""
        for label, s in specs.items():
            if s.algorithm is Algorithm.PGD:
                stronger = stronger_pgd(s)
                more = f"{stronger.label}{SANITY}"
                self.run_attack(more, stronger)
                found = exceeds(self.robust(label), self.robust(more))
                self.check(f"more PGD steps are not weaker: {label} vs {stronger.steps} steps", not found.exceeds,
                           found.detail)

    def check_families(self, specs_all: dict[str, AttackSpec]) -> None:
        """Within an attack family, accuracy must not rise with the budget (over old and new columns)."""
        families: dict[tuple, list[tuple[float, str]]] = {}
        for label in self.columns:
            s = specs_all[label]
            if s.eps is not None:
                families.setdefault((s.name, s.norm), []).append((s.eps, label))
        for members in families.values():
            labels = [label for _, label in sorted(members)]
            for l1, l2 in zip(labels, labels[1:], strict=False):
                found = exceeds(self.robust(l1), self.robust(l2))
                self.check(f"{FAMILY_CHECK}: {l1} -> {l2}", not found.exceeds, found.detail)

    def check_large_attack(self) -> None:
        """A large ℓ∞ attack must drive accuracy below chance (else the gradients are masked)."""
        large = large_attack()
        label = f"{large.label}{SANITY}"
        if label not in self.accuracy:  # an earlier evaluation ran it on the same model, images and seed
            self.run_attack(label, large)
        chance = 1 / self.num_classes
        self.check(f"a large attack (l-inf {LARGE_EPS}) drives accuracy below chance ({chance:.3g})",
                   self.accuracy[label] < chance, f"{self.accuracy[label]:.4f}")

    def result(self) -> dict[str, Any]:
        sanity = [c.to_json() for c in self.checks.values()]
        return {"n": self.n, "columns": self.columns, "accuracy": self.accuracy, "attacks": self.attacks,
                "correct": {k: pack_mask(v) for k, v in self.hits.items()}, "sanity": sanity,
                "sanity_passed": all(c["passed"] for c in sanity)}


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, columns: list[str], *, num_classes: int,
             seed: int = 0, batch_size: int = 256, progress: bool = True,
             log: Callable[[str], None] = lambda m: None, previous: dict | None = None) -> dict[str, Any]:
    """Accuracy of ``model`` on (x, y) clean and under each column's attack, with sanity checks.

    x, y are the evaluation images (already the subset). Returns numbers only (accuracy as fractions), and in
    ``correct`` each attack's raw per-image hits (:func:`~.store.pack_mask`). With ``previous``, an earlier
    result of this function for the same model, images and seed, its columns are kept without attacking again,
    and the checks across columns are recomputed over old and new columns together.
    """
    specs = {label: column_spec(label) for label in columns}
    inputs = as_inputs(x)
    if inputs.dim() != 4:
        bad = next((label for label, s in specs.items() if s.algorithm not in GRADIENT_ALGORITHMS), None)
        if bad is not None:
            raise ParameterError("attack", bad, "FGSM or PGD on vector data (AutoAttack, FAB, Pixle and StAdv "
                                 "attack (N, C, H, W) images only)")
    ev = _Evaluation(model, inputs, y, num_classes=num_classes, seed=seed, batch_size=batch_size, progress=progress,
                     log=log, previous=previous)
    specs_all = {label: column_spec(label) for label in ev.columns if label not in specs} | specs
    for label, s in specs.items():
        ev.run_attack(label, s)
        if label not in ev.columns:
            ev.columns.append(label)
    ev.check_columns(specs)
    ev.check_more_steps(specs)
    ev.check_families(specs_all)
    ev.check_large_attack()
    return ev.result()
