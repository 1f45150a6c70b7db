"""The papers' evaluation threat models, as data.

"On the duality between SAM and AT", Section 5.1.1 and Tables 2-7, evaluates against FGSM (l-inf, 1/255),
10-step PGD (l-inf 1/255, l2 32/255), AutoAttack (standard, l2 32/255), StAdv (Xiao et al. 2018), FAB
(10 steps, l2 32/255) and the black-box Pixle (at most 5 iterations), "mostly implemented by torchattacks".
"SAM alone can improve adversarial robustness" uses 10-step PGD at l-inf 1/255, 2/255 and l2 16/255, 32/255.

Each threat model is a frozen :class:`AttackSpec` (eps in pixel-intensity units, parsed once from strings
like "8/255" by :func:`parse_eps`); :data:`REGISTRY` holds the papers' entries, and :func:`expand` and
:func:`parse_attack` give one spec per eps. :func:`samat.empirical.attacks.build.build_attack` turns a spec into
a seeded callable.

Choices the papers leave open, stated once here:

- PGD's step size 2.5 eps / steps (:func:`~samat.empirical.attacks.pgd.default_step_size`: Madry et al. 2018;
  RobustBench), with a uniform random start; torchattacks' default step of 2/255 would exceed the papers' eps of
  1/255. FGSM's step is its budget.
- Pixle: ``max_iterations=5`` per restart, torchattacks' defaults otherwise (20 restarts, patches of 2-10 px);
  ``pixle`` runs it on whole batches (:mod:`.pixle`), ``pixle_torchattacks`` is torchattacks' own, image by image.
- FAB: untargeted, 1 restart, 10 steps (torchattacks' defaults apart from eps and steps).
- StAdv: see :class:`samat.empirical.attacks.stadv.StAdv` (flow bound 1 px per axis, 100 Adam steps, tau = 0.05,
  kappa = 0).

Text (D Section 5.3, Table 10): ``pso`` and ``iga`` are TextAttack's recipes PSOZang2020 (particle swarm over
HowNet synonyms, 60 particles, 20 iterations) and IGAWang2019 (improved genetic algorithm over counter-fitted
embedding neighbours, population 60, 20 iterations, at most 20 % of the words); they attack sentences, with the
search, constraints and goal function as TextAttack defines them (:mod:`empirical.attacks.text`), and have no budget.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from samat.core.errors import ParameterError
from samat.core.numbers import parse_number
from samat.empirical.attacks.pgd import default_step_size
from samat.empirical.vocabulary import MAX_STEPS, Norm

STADV_LEARNING_RATE = 0.1  # StAdv's Adam learning rate per pixel of flow budget (samat's choice; 0.1 px for 1 px)


class Algorithm(StrEnum):
    """The attack algorithms behind the threat models."""

    FGSM = "fgsm"
    PGD = "pgd"
    AUTOATTACK = "autoattack"
    FAB = "fab"
    PIXLE = "pixle"  # batched, on the device (empirical.attacks.pixle)
    PIXLE_TORCHATTACKS = "pixle_torchattacks"  # torchattacks' image-by-image original: the reference
    STADV = "stadv"
    PSO = "pso"  # TextAttack's PSOZang2020 (word substitution; empirical.attacks.text)
    IGA = "iga"  # TextAttack's IGAWang2019


GRADIENT_ALGORITHMS = (Algorithm.FGSM, Algorithm.PGD)  # the ones that also run on unboxed vectors
TEXT_ALGORITHMS = (Algorithm.PSO, Algorithm.IGA)  # word substitution: they attack sentences, nothing else

def parse_eps(text: str | float) -> float:
    """A budget from a user string: "8/255", "0.5", "1e-3" (or a number). Must be finite and >= 0."""
    value = parse_number(text, "eps")  # the one parser of "8/255"-style numbers (TrainConfig's at_eps uses it too)
    if not (math.isfinite(value) and value >= 0):
        raise ParameterError("eps", text, "a finite number >= 0 (pixel units, e.g. 8/255)")
    return value


def budget_problem(norm: Norm, eps: float | None, input_shape: tuple[int, ...] | None) -> str | None:
    """The one rule for a perturbation budget, adversarial training's and every attack's: what it must be for inputs
    of ``input_shape``, or None when ``eps`` is fine. Images live in the box [0, 1]^d, where a budget as large as
    the box lets the attack paint any image: ℓ∞ must stay below 1, and ℓ2 below √d, the box's diameter (d = C·H·W
    values per image). ``input_shape``: an image's (C, H, W); None for images whose size is not known yet (only the
    ℓ∞ rule applies); vectors (D,) (the Gaussian model) have no box and no limit. Flow (pixels) and ℓ0 budgets are
    the attacks' own."""
    if eps is None or (input_shape is not None and len(input_shape) != 3):
        return None
    if norm is Norm.LINF and eps >= 1:
        return "< 1 for l-inf on images in [0, 1] (a budget of 1 lets the attack paint any image), e.g. 8/255"
    if norm is Norm.L2 and input_shape is not None and eps >= (diameter := math.sqrt(math.prod(input_shape))):
        return (f"< {diameter:.4g} for l2 on {'x'.join(map(str, input_shape))} images in [0, 1] (the box's diameter "
                f"√{math.prod(input_shape)}: a budget that large lets the attack paint any image), e.g. 0.5")
    return None


def check_budgets(specs: dict[str, AttackSpec], input_shape: tuple[int, ...] | None, where: str = "") -> None:
    """:func:`budget_problem` for every attack of a table's columns (by label), as a ParameterError naming it."""
    for label, s in specs.items():
        if (why := budget_problem(s.norm, s.eps, input_shape)) is not None:
            raise ParameterError("eps", format_eps(s.eps, s.norm, shortest=True), f"{why} (attack {label}{where})")


def format_eps(eps: float | None, norm: Norm, *, shortest: bool = False) -> str:
    """The inverse of :func:`parse_eps` for labels: k/255 for intensity budgets that are a multiple of 1/255, or
    of a thousandth of it where that is shorter than the decimal (1.5/255, but 0.5), exactly as :func:`parse_eps`
    reads it back; else the float's repr. ``shortest`` (titles, for people): the shorter spelling always (0.2
    rather than 51/255), and no trailing noise (1 rather than 1.0)."""
    if eps is None:
        return ""
    if norm in (Norm.LINF, Norm.L2) and math.isfinite(eps):
        k = round(eps * 255, 3)
        text = f"{k:g}/255"
        shorter = len(text) < len(repr(eps))
        if parse_number(text, "eps") == eps and (shorter or (float(k).is_integer() and not shortest)):
            return text
    return f"{eps:.6g}" if shortest else repr(eps)


_TITLES = {Algorithm.FGSM: "FGSM", Algorithm.PGD: "PGD-{steps}", Algorithm.AUTOATTACK: "AutoAttack",
           Algorithm.FAB: "FAB", Algorithm.PIXLE: "Pixle", Algorithm.STADV: "StAdv", Algorithm.PSO: "PSO",
           Algorithm.IGA: "IGA"}


@dataclass(frozen=True)
class AttackSpec:
    """One evaluation threat model. Build it with :func:`spec`, :func:`expand` or :func:`parse_attack`."""

    name: str  # registry name, e.g. "pgd10_linf"
    algorithm: Algorithm
    norm: Norm
    eps: float | None  # budget: intensity units for linf/l2 (1/255 ...), pixels for flow; None: no budget
    steps: int | None  # iterations (PGD/FAB/StAdv steps, Pixle iterations per restart); None: fixed by the algorithm
    restarts: int = 1  # Pixle restarts
    tau: float = 0.0  # StAdv flow-smoothness weight
    kappa: float = 0.0  # StAdv margin floor

    def __post_init__(self) -> None:
        if self.eps is not None and not (math.isfinite(self.eps) and self.eps >= 0):
            raise ParameterError("eps", self.eps, "a finite number >= 0 (pixel units, e.g. 8/255)")
        if self.steps is not None and (isinstance(self.steps, bool) or not 0 <= self.steps <= MAX_STEPS):
            raise ParameterError("steps", self.steps, f"an integer in [0, {MAX_STEPS:,}]")
        if self.restarts < 1:
            raise ParameterError("restarts", self.restarts, "an integer >= 1")

    @property
    def step_size(self) -> float | None:
        """The step, in the budget's units: PGD's :func:`~samat.empirical.attacks.pgd.default_step_size`, FGSM's
        budget, StAdv's Adam learning rate (:data:`STADV_LEARNING_RATE` per pixel of flow budget); None for attacks
        that choose their own."""
        if self.eps is None:
            return None
        if self.algorithm is Algorithm.PGD:
            return default_step_size(self.eps, self.steps)
        if self.algorithm is Algorithm.FGSM:
            return self.eps
        if self.algorithm is Algorithm.STADV:
            return STADV_LEARNING_RATE * self.eps
        return None

    @property
    def family_title(self) -> str:
        """The attack without its budget, for people: "PGD-10 ℓ∞", "AutoAttack ℓ2", "StAdv"."""
        name = _TITLES[self.algorithm].format(steps=self.steps)
        return name if self.norm in (Norm.L0, Norm.FLOW, Norm.WORDS) else f"{name} {self.norm.display}"

    @property
    def title(self) -> str:
        """The threat model for people (tables, figures, logs): "PGD-10 ℓ∞ 1/255", "FGSM ℓ∞ 1/255", "StAdv"; a
        flow budget other than StAdv's default shows in pixels ("StAdv 0.5 px")."""
        if self.eps is None or (self.algorithm is Algorithm.STADV and self.eps == REGISTRY["stadv"].eps):
            return self.family_title
        if self.norm is Norm.FLOW:
            return f"{self.family_title} {self.eps:g} px"
        return f"{self.family_title} {format_eps(self.eps, self.norm, shortest=True)}"

    @property
    def label(self) -> str:
        """A column name that :func:`parse_attack` reads back to this spec, e.g. "pgd10_linf@1/255"."""
        return self.name if self.eps is None else f"{self.name}@{format_eps(self.eps, self.norm)}"

    def at(self, eps: float | str) -> AttackSpec:
        """The same attack at another budget; its step size follows the budget."""
        if self.eps is None:
            raise ParameterError("eps", eps, f"absent for {self.name} (it has no perturbation budget)")
        return dataclasses.replace(self, eps=parse_eps(eps))


def _pgd(name: str, norm: Norm, eps: float, steps: int) -> AttackSpec:
    return AttackSpec(name, Algorithm.PGD, norm, eps, steps)


REGISTRY: dict[str, AttackSpec] = {
    s.name: s
    for s in (
        AttackSpec("fgsm_linf", Algorithm.FGSM, Norm.LINF, 1 / 255, steps=1),
        _pgd("pgd10_linf", Norm.LINF, 1 / 255, 10),
        _pgd("pgd10_l2", Norm.L2, 32 / 255, 10),
        AttackSpec("autoattack_l2", Algorithm.AUTOATTACK, Norm.L2, 32 / 255, steps=None),
        AttackSpec("autoattack_linf", Algorithm.AUTOATTACK, Norm.LINF, 8 / 255, steps=None),
        AttackSpec("fab_l2", Algorithm.FAB, Norm.L2, 32 / 255, steps=10),
        AttackSpec("pixle", Algorithm.PIXLE, Norm.L0, None, steps=5, restarts=20),
        AttackSpec("pixle_torchattacks", Algorithm.PIXLE_TORCHATTACKS, Norm.L0, None, steps=5, restarts=20),
        AttackSpec("stadv", Algorithm.STADV, Norm.FLOW, 1.0, steps=100, tau=0.05, kappa=0.0),
        AttackSpec("pso", Algorithm.PSO, Norm.WORDS, None, steps=20),  # 20 iterations of 60 particles
        AttackSpec("iga", Algorithm.IGA, Norm.WORDS, None, steps=20),  # 20 generations of 60
    )
}
# TextAttack's names for its recipes, accepted too
RECIPE_NAMES = {"psozang2020": "pso", "pso_zang_2020": "pso", "igawang2019": "iga", "iga_wang_2019": "iga"}
_PGD_NAME = re.compile(r"pgd(\d+)_(linf|l2)")


def spec(name: str) -> AttackSpec:
    """The registry entry ``name`` at its default budget; ``pgd<N>_linf`` / ``pgd<N>_l2`` give N-step PGD."""
    key = name.strip().lower()
    key = RECIPE_NAMES.get(key, key)
    if key in REGISTRY:
        return REGISTRY[key]
    m = _PGD_NAME.fullmatch(key)
    if m and 1 <= int(m.group(1)) <= MAX_STEPS:
        base = REGISTRY[f"pgd10_{m.group(2)}"]
        return _pgd(f"pgd{int(m.group(1))}_{m.group(2)}", base.norm, base.eps or 0.0, int(m.group(1)))
    if m:
        raise ParameterError("attack", name, f"PGD with 1 to {MAX_STEPS:,} steps (pgd<N>_linf / pgd<N>_l2)")
    raise ParameterError("attack", name, "one of " + ", ".join(REGISTRY) + ", or pgd<N>_linf / pgd<N>_l2 "
                         f"(N from 1 to {MAX_STEPS:,})")


def expand(name: str, eps_list: Iterable[float | str] | None = None) -> tuple[AttackSpec, ...]:
    """One spec per budget in ``eps_list`` (default: the registry's budget)."""
    base = spec(name)
    if eps_list is None:
        return (base,)
    return tuple(base.at(e) for e in eps_list)


def parse_attack(text: str) -> tuple[AttackSpec, ...]:
    """Specs from a user string ``name[@eps[,eps...]]``, e.g. "pgd10_linf@1/255,2/255" or "stadv@0.5"."""
    name, at, eps_text = text.partition("@")
    budgets = [e for e in eps_text.split(",") if e.strip()]
    if at and not budgets:
        raise ParameterError("attack", text, "name@eps[,eps...] with at least one budget after '@' (or the name "
                             "alone for its default budget), e.g. pgd10_linf@1/255")
    return expand(name, budgets if at else None)


# Table 2/3 columns of the duality paper, in the tables' order.
PAPER_COLUMNS: tuple[AttackSpec, ...] = tuple(
    spec(n) for n in ("fgsm_linf", "pgd10_linf", "pgd10_l2", "autoattack_l2", "stadv", "fab_l2", "pixle")
)
# "SAM alone can improve adversarial robustness", Tables 1-2: 10-step PGD at two budgets per norm.
SAM_ALONE_COLUMNS: tuple[AttackSpec, ...] = expand("pgd10_linf", ["1/255", "2/255"]) + expand(
    "pgd10_l2", ["16/255", "32/255"]
)

