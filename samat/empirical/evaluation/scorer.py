"""What a task contributes to an evaluation: its :class:`Scorer`.

The evaluation loop (:func:`.evaluate.evaluate`) is the same for every task: it runs the columns' attacks and the
sanity attacks, times them, keeps their records, runs the sanity checks, extends an earlier result and writes the
numbers. A scorer says what the loop cannot know: how one model's examples are scored, clean and under an attack,
and how two scores compare. The tasks' scorers:

* classification (:class:`.classification.Hits`): per example, whether it is classified correctly; the headline
  is the accuracy; "robust <= clean" holds example by example;
* segmentation (:class:`.segmentation.Confusions`): per image, its confusion matrix; the headline is the mIoU
  (D eq. 15); comparisons are paired tests with images as the units;
* text classification under word substitutions (:class:`.text.WordSubstitutions`) subclasses
  :class:`.classification.Hits` and replaces :meth:`Scorer.attack`: an example the attack fails on is a hit, one
  it succeeds on is not, one that was wrong already is left unattacked (skipped), so that the attack success rate
  successful / (successful + failed) is :func:`.classification.attack_success_rate` of the clean and attacked
  hits; what only that task measures (queries, words changed) goes into :attr:`Attacked.record`, its own checks
  into :meth:`Scorer.checks`.

A scorer is made for one evaluation: one model, one set of examples, one seed. The loop calls :meth:`Scorer.clean`
first, once; every other method may use what it returned.

An attack is an :class:`~samat.empirical.attacks.specs.AttackSpec` (the checks that need a PGD, a budget or the
large ℓ∞ attack read its fields). A task with attacks of its own gives any object with ``name``, ``label`` and
``title`` (the loop then records its name, and runs the checks that need no budget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from samat.empirical.attacks.specs import AttackSpec

Outcome = Any  # one task's per-example record: bool hits (N,), confusion matrices (N, K, K), ...
Writer = Callable[[BinaryIO], None]  # writes one file kept beside eval.json


@dataclass(frozen=True)
class Attacked:
    """One attack's result on every example, as a scorer returns it."""

    outcome: Outcome  # the per-example record under attack, of the kind Scorer.clean returns
    perturbation: dict | None = None  # PerturbationMeter.summary() of the attack's outputs (None: nothing measured)
    record: dict[str, Any] = field(default_factory=dict)  # more of the attack's record in eval.json, numbers only


class Scorer(Protocol):
    """One task's scoring of one model on one set of examples (see the module's docstring)."""

    task: str  # eval.json's "task": "classification", "segmentation", ...
    metric: str  # the headline number, as checks and logs name it: "accuracy", "mIoU"
    chance: float  # the headline that a prediction ignoring the input reaches; the large attack must go below it
    chance_name: str  # how the masking check names that number: "chance", "1/K"
    n: int  # the examples evaluated

    def supports(self, spec: AttackSpec) -> str | None:
        """Why ``spec`` cannot attack this task's examples (the valid attacks, for the one-line error), or None.
        The masking check's large ℓ∞ PGD runs only where it is supported."""

    def clean(self) -> Outcome:
        """The examples scored as they are (called first, once)."""

    def attack(self, label: str, spec: AttackSpec) -> Attacked:
        """``spec`` run on every example (seeded with the evaluation's seed), the result scored; ``label``: the
        column's (or, with " (sanity)", the sanity attack's) name in the result."""

    def value(self, outcome: Outcome) -> float:
        """The headline number of an outcome, a fraction: accuracy under attack, mIoU, ..."""

    def within_clean(self, outcome: Outcome) -> tuple[bool, str]:
        """The check "robust <= clean" of one attack's outcome against the clean one: (passed, the numbers)."""

    def exceeds(self, weaker: Outcome, stronger: Outcome) -> tuple[bool, str]:
        """Does the attack that should be stronger leave a higher score than the weaker one, beyond noise, on these
        same examples? (found, the numbers)"""

    def restore(self, previous: dict) -> dict[str, Outcome]:
        """The outcomes an earlier result of this model, examples and seed keeps (an eval.json), by column label;
        the loop does not attack them again. {} where the task keeps none: every column is attacked again."""

    def record(self, outcomes: dict[str, Outcome]) -> dict[str, Any]:
        """The task's part of eval.json from every outcome by label (natural, columns, sanity attacks): the
        headline numbers and whatever :meth:`restore` reads back. Numbers only."""

    def attachments(self) -> dict[str, Writer]:
        """Files kept beside eval.json, by name: ``write(f: BinaryIO)`` for each (segmentation: examples.npz, the
        predictions a figure shows); {} for none. Called after the loop, on what the attacks kept."""

    def checks(self, label: str, outcome: Outcome) -> list[tuple[str, bool, str]]:
        """The task's own sanity checks of one column's outcome, beside the loop's: (name, passed, the numbers)
        each (text: TextAttack skips exactly the sentences the model gets wrong, and its successes are
        misclassified); [] for none."""

    def written(self) -> None:
        """eval.json now holds every outcome: drop what was kept only to resume an interrupted evaluation (text:
        the per-sentence outcomes in the run folder); nothing for the other tasks."""
