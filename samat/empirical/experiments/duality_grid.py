"""The duality grid kind: a ladder of SAM radii, a ladder of AT budgets and ST, on one dataset and model, with the
same seeds and the same attack columns, from which the duality map (:mod:`.duality`) reads at which AT budget
SAM(ρ) becomes as robust (issue: "the duality map").

    [experiment]
    kind = "duality"
    seeds = [0, 1]
    columns = ["natural", "pgd10_linf@1/255", "pgd10_l2@32/255"]

    [base]                              # the dataset, the model and the schedule, shared by every run
    dataset = "fashion_mnist"
    model = "small_cnn"

    [duality]
    rho = [0.025, 0.05, 0.1, 0.2, 0.4]  # SAM's radii, >= 3, strictly increasing
    at_eps = ["0.125/255", "0.25/255", "0.5/255", "1/255", "2/255"]  # AT's budgets, >= 3, strictly increasing
    at_norm = "linf"                    # AT's threat model (default linf); its steps come from [base] at_steps
    sam_method = "sam"                  # or asam, esam (default sam)
    resamples = 2000                    # bootstrap resamples over seeds and test images (default 2000)
    level = 0.95                        # the intervals' confidence (default 0.95)

The runs are made here, one per rung and seed: "ST (SGD)", "SAM (ρ=0.1)", "ℓ∞-AT (ε=1/255)"; the file has no
[[run]] entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samat.core.errors import ParameterError, SamatError
from samat.core.numbers import SEED_RANGE, is_int, is_seed, parse_number
from samat.empirical.attacks.specs import format_eps
from samat.empirical.vocabulary import THREAT_NORMS, Method, Norm

KIND = "duality"
KINDS = ("table", KIND)  # [experiment] kind: the papers' tables (default), or the duality map
MIN_RUNGS = 3
DEFAULT_RESAMPLES = 2000
FIELDS = ("rho", "at_eps", "at_norm", "sam_method", "resamples", "level", "bootstrap_seed")


@dataclass(frozen=True)
class Rung:
    """One rung of a ladder: its run label, its method and the value that sets it (ρ or ε; None for ST)."""

    label: str
    role: str  # "st", "sam" or "at"
    value: float | None
    fields: dict[str, Any]  # the configuration fields this rung sets


@dataclass(frozen=True)
class DualityLadder:
    radii: tuple[float, ...]  # SAM's ρ (weight space), increasing
    budgets: tuple[float, ...]  # AT's ε (input units), increasing
    at_norm: Norm = Norm.LINF
    sam_method: Method = Method.SAM
    resamples: int = DEFAULT_RESAMPLES
    level: float = 0.95
    bootstrap_seed: int = 0  # the resamples' seed (recorded with the results)

    @property
    def st(self) -> Rung:
        return Rung("ST (SGD)", "st", None, {"method": Method.SGD.value})

    @property
    def sam(self) -> tuple[Rung, ...]:
        return tuple(Rung(f"{self.sam_method.display} (ρ={rho:g})", "sam", rho,
                          {"method": self.sam_method.value, "rho": rho}) for rho in self.radii)

    @property
    def at(self) -> tuple[Rung, ...]:
        return tuple(Rung(f"{self.at_norm.display}-AT (ε={self.show_eps(eps)})", "at", eps,
                          {"method": Method.PGD_AT.value, "at_norm": self.at_norm.value, "at_eps": eps})
                     for eps in self.budgets)

    @property
    def rungs(self) -> tuple[Rung, ...]:
        return (self.st, *self.sam, *self.at)

    def show_eps(self, eps: float) -> str:
        """A budget for people, exactly as it reads back: the shorter of k/255 (to 4 digits: "0.0625/255") and the
        decimal ("0.02")."""
        text = format_eps(eps, self.at_norm, shortest=True)
        fraction = f"{eps * 255:.4g}/255"
        return fraction if len(fraction) < len(text) and parse_number(fraction, "at_eps") == eps else text


def _ladder(values: Any, key: str, where: str, example: str) -> tuple[float, ...]:
    valid = f"a list of at least {MIN_RUNGS} positive numbers, strictly increasing, e.g. {example} ({where})"
    if not isinstance(values, list) or len(values) < MIN_RUNGS:
        raise ParameterError(key, values, valid)
    parsed = tuple(parse_number(v, key) for v in values)
    increasing = all(b > a for a, b in zip(parsed, parsed[1:], strict=False))
    if not all(math.isfinite(v) and v > 0 for v in parsed) or not increasing:
        raise ParameterError(key, values, valid)
    return parsed


def read_ladder(table: Any, path: Path) -> DualityLadder:
    """The [duality] table of ``path``, validated: each problem is a one-line error naming the key."""
    where = f"in [duality] of {path}"
    if not isinstance(table, dict):
        raise SamatError(f"{path}: a duality experiment needs a [duality] table with rho = [...] and at_eps = [...]")
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise ParameterError("[duality] key", unknown[0], f"one of {', '.join(FIELDS)} ({where})")
    for key in ("rho", "at_eps"):
        if key not in table:
            raise ParameterError(key, None, f"given: the {'SAM radii' if key == 'rho' else 'AT budgets'} ({where})")
    radii = _ladder(table["rho"], "rho", where, "[0.05, 0.1, 0.2, 0.4]")
    budgets = _ladder(table["at_eps"], "at_eps", where, '["0.5/255", "1/255", "2/255", "4/255"]')
    at_norm = Norm.parse(table.get("at_norm", Norm.LINF.value), "at_norm")
    if at_norm not in THREAT_NORMS:
        raise ParameterError("at_norm", at_norm, f"one of {', '.join(THREAT_NORMS)} ({where})")
    sam_method = Method.parse(table.get("sam_method", Method.SAM.value), "sam_method")
    if not sam_method.sharpness_aware:
        raise ParameterError("sam_method", sam_method, f"a SAM method: sam, asam or esam ({where})")
    resamples = table.get("resamples", DEFAULT_RESAMPLES)
    if not is_int(resamples) or resamples < 100:
        raise ParameterError("resamples", resamples, f"an integer >= 100 ({where})")
    level = table.get("level", 0.95)
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0.5 <= level < 1:
        raise ParameterError("level", level, f"a confidence in [0.5, 1), e.g. 0.95 ({where})")
    seed = table.get("bootstrap_seed", 0)
    if not is_seed(seed):
        raise ParameterError("bootstrap_seed", seed, f"{SEED_RANGE} ({where})")
    return DualityLadder(radii, budgets, at_norm, sam_method, int(resamples), float(level), int(seed))
