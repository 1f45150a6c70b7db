"""The evaluation loop, one for every task: a model's examples scored clean and under each column's attack, with the
sanity checks of :mod:`.checks`; what is particular to a task is its :class:`~.scorer.Scorer`.

The loop runs the columns' attacks, then the sanity checks, each on the scorer's comparisons:

* robust <= clean, for every column;
* every perturbation within its budget and the [0, 1] box (where the scorer measured one);
* 2x the PGD steps is not weaker than each PGD column (it runs that PGD);
* within an attack family (one name and norm), the score does not rise with ε;
* a large ℓ∞ PGD (ε = 0.5) drives the score below chance, where the task supports it (otherwise the gradients are
  masked and every robust number is suspect).

An evaluation can be extended: given an earlier result for the same model, examples and seed, the columns whose
outcomes the scorer restores from it are kept without attacking again, the others are attacked again, and the
checks across columns (the score against ε, the large attack) are recomputed over old and new columns together,
replacing the old ones.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from samat.core.errors import ParameterError, SamatError
from samat.empirical.attacks.specs import Algorithm, AttackSpec, spec
from samat.empirical.evaluation.checks import LARGE_EPS, Check
from samat.empirical.evaluation.columns import NATURAL, SANITY, column_spec
from samat.empirical.evaluation.scorer import Attacked, Outcome, Scorer
from samat.empirical.evaluation.store import evaluated_columns
from samat.empirical.training.precision import tf32

EPS_CHECK = "does not increase with eps"  # the family check's name follows the metric: "accuracy does not ..."


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
    """The sanity check's large ℓ∞ attack (it must drive the score below chance)."""
    return spec("pgd20_linf").at(LARGE_EPS)


def sanity_label(s: AttackSpec) -> str:
    """The record label of a sanity attack: "pgd20_linf@8/255 (sanity)"."""
    return f"{s.label}{SANITY}"


def attacks_run(specs: dict[str, AttackSpec]) -> dict[str, AttackSpec]:
    """Every attack an evaluation of these columns runs, by record label: the columns, then the sanity attacks (a
    PGD of twice the steps per PGD column, the large ℓ∞ attack)."""
    out = dict(specs)
    for s in specs.values():
        if _is_pgd(s):
            out.setdefault(sanity_label(stronger_pgd(s)), stronger_pgd(s))
    out.setdefault(sanity_label(large_attack()), large_attack())
    return out


def _is_pgd(s: Any) -> bool:
    return isinstance(s, AttackSpec) and s.algorithm is Algorithm.PGD


def attack_record(s: Any, seconds: float, attacked: Attacked) -> dict[str, Any]:
    """An attack's record in eval.json: its settings, its time, its perturbations' size and the task's extras."""
    out: dict[str, Any] = {"name": s.name}
    if isinstance(s, AttackSpec):
        out |= {"norm": s.norm.value, "eps": s.eps, "steps": s.steps, "step_size": s.step_size}
    out["seconds"] = seconds
    out["torch_threads"] = torch.get_num_threads()  # float results on a CPU depend on it (docs/EMPIRICAL.md)
    if (size := attacked.perturbation) is not None:
        out |= {"max_perturbation": size["max"], "tolerance": size["tolerance"], "within_budget": size["within_eps"],
                "in_box": size["in_box"]}
    return out | attacked.record


class _Evaluation:
    """The state of one evaluation: each attack's outcome and record, and the checks."""

    def __init__(self, scorer: Scorer, device: torch.device, log: Callable[[str], None],
                 previous: dict | None) -> None:
        self.scorer, self.device, self.log = scorer, device, log
        before = previous or {}
        if before and before.get("n") != scorer.n:
            raise SamatError(f"the earlier evaluation has {before.get('n')} examples, this one {scorer.n}: "
                             "pass --overwrite")
        self.eps_check = f"{scorer.metric} {EPS_CHECK}"
        self.columns: list[str] = evaluated_columns(before)
        self.attacks: dict[str, dict] = dict(before.get("attacks", {}))
        try:
            self.outcomes: dict[str, Outcome] = scorer.restore(before) if before else {}
        except (ValueError, TypeError, KeyError) as err:
            raise SamatError(f"the earlier evaluation's per-example results are corrupt ({err}): pass --overwrite"
                             ) from None
        self.checks: dict[str, Check] = {c["check"]: Check(c["check"], c["passed"], c["detail"])
                                         for c in before.get("sanity", []) if EPS_CHECK not in c["check"]}
        self.outcomes[NATURAL] = scorer.clean()

    def value(self, label: str) -> float:
        return self.scorer.value(self.outcomes[label])

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks[name] = Check(name, bool(passed), detail)

    def run_attack(self, label: str, s: Any) -> None:
        """Attack every example; keep the outcome and the attack's record, and say the score in one line."""
        t0 = time.perf_counter()
        with attack_precision(self.device):
            attacked = self.scorer.attack(label, s)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        self.outcomes[label] = attacked.outcome
        self.attacks[label] = attack_record(s, seconds, attacked)
        sanity = SANITY if label.endswith(SANITY) else ""
        self.log(f"  {s.title}{sanity}: {self.scorer.metric} {100 * self.value(label):.2f} % ({seconds:.1f} s)")

    def check_columns(self, specs: dict[str, Any]) -> None:
        """Per new column: robust <= clean, and the perturbations within budget and box."""
        for label in specs:
            passed, detail = self.scorer.within_clean(self.outcomes[label])
            self.check(f"robust <= clean: {label}", passed,
                       f"{self.value(label):.4f} <= {self.value(NATURAL):.4f}; {detail}")
            for name, passed, detail in self.scorer.checks(label, self.outcomes[label]):
                self.check(f"{name}: {label}", passed, detail)
            a = self.attacks[label]
            if "within_budget" in a:
                self.check(f"within budget and [0, 1]: {label}", a["within_budget"] and a["in_box"] is not False,
                           f"largest perturbation {a['max_perturbation']:.6g} (budget {a['eps']}, slack "
                           f"{a['tolerance']:.2g})")

    def check_more_steps(self, specs: dict[str, Any]) -> None:
        """Each new PGD column against PGD with twice the steps: the stronger attack must not be weaker."""
        for label, s in specs.items():
            if _is_pgd(s):
                stronger = stronger_pgd(s)
                more = sanity_label(stronger)
                self.run_attack(more, stronger)
                found, detail = self.scorer.exceeds(self.outcomes[label], self.outcomes[more])
                self.check(f"more PGD steps are not weaker: {label} vs {stronger.steps} steps", not found, detail)

    def check_families(self, specs_all: dict[str, Any]) -> None:
        """Within an attack family, the score must not rise with the budget (over old and new columns)."""
        families: dict[tuple, list[tuple[float, str]]] = {}
        for label in self.columns:
            s = specs_all[label]
            if isinstance(s, AttackSpec) and s.eps is not None:
                families.setdefault((s.name, s.norm), []).append((s.eps, label))
        for members in families.values():
            labels = [label for _, label in sorted(members)]
            for l1, l2 in zip(labels, labels[1:], strict=False):
                found, detail = self.scorer.exceeds(self.outcomes[l1], self.outcomes[l2])
                self.check(f"{self.eps_check}: {l1} -> {l2}", not found, detail)

    def check_large_attack(self) -> None:
        """A large ℓ∞ attack must drive the score below chance (else the gradients are masked)."""
        large = large_attack()
        if self.scorer.supports(large) is not None:
            return
        label = sanity_label(large)
        if label not in self.outcomes:  # an earlier evaluation ran it on the same model, examples and seed
            self.run_attack(label, large)
        s = self.scorer
        self.check(f"a large attack (l-inf {LARGE_EPS}) drives {s.metric} below {s.chance_name} ({s.chance:.3g})",
                   self.value(label) < s.chance, f"{self.value(label):.4f}")

    def result(self) -> dict[str, Any]:
        sanity = [c.to_json() for c in self.checks.values()]
        return {"task": self.scorer.task, "metric": self.scorer.metric, "n": self.scorer.n, "columns": self.columns,
                **self.scorer.record(self.outcomes), "attacks": self.attacks, "sanity": sanity,
                "sanity_passed": all(c["passed"] for c in sanity)}


def evaluate(scorer: Scorer, specs: dict[str, Any], *, device: torch.device | str = "cpu",
             previous: dict | None = None, log: Callable[[str], None] = lambda m: None,
             subject: str = "the model") -> dict[str, Any]:
    """The scorer's examples scored clean and under each column's attack (``specs``: the attack of each column, by
    label, as :func:`.columns.column_specs` gives them), with the sanity checks. Returns numbers only (scores as
    fractions), in the scorer's record.

    With ``previous``, an earlier result of this function for the same model, examples and seed, its columns are
    kept: those whose outcomes the scorer restores are not attacked again, the others are; the checks across
    columns are recomputed over old and new columns together. ``device``: where the examples are (CUDA attacks
    run with TF32 and are timed to the end of their kernels). ``log`` gets a line naming ``subject`` and the
    attacks to run, then one line per attack.
    """
    for label, s in specs.items():
        if (valid := scorer.supports(s)) is not None:
            raise ParameterError("attack", label, valid)
    ev = _Evaluation(scorer, torch.device(device), log, previous)
    earlier = {label: column_spec(label) for label in evaluated_columns(previous or {}) if label not in specs}
    specs_all = earlier | specs
    todo = {label: s for label, s in specs_all.items() if label not in ev.outcomes}
    titles = ", ".join(s.title for s in todo.values()) or "no new column"
    log(f"evaluating {subject} on {scorer.n} test examples: {titles}")
    for label, s in todo.items():
        ev.run_attack(label, s)
        if label not in ev.columns:
            ev.columns.append(label)
    ev.check_columns(todo)
    ev.check_more_steps(todo)
    ev.check_families(specs_all)
    ev.check_large_attack()
    return ev.result()
