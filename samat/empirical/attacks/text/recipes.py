"""TextAttack's word-substitution recipes on a samat text classifier, example by example, reproducibly.

:func:`build_recipe` builds PSOZang2020 or IGAWang2019 with the recipe's own ``build``: its search, transformation,
constraints and goal function (untargeted classification) exactly as TextAttack defines them. The model is queried
through :class:`ClassifierWrapper` (a TextAttack ``ModelWrapper``), which tokenizes as training did (truncation to
``max_length``, padding to each batch's longest sentence) and returns the logits.

:func:`attack_example` attacks one sentence with every random draw seeded from (seed, index): numpy's global
generator (PSO's and the genetic algorithm's draws), Python's and torch's, as TextAttack's ``set_seed`` seeds them,
so that an evaluation resumed at any example gives what an uninterrupted one gives. The outcome is recorded as
TextAttack's result classes say: successful, failed or skipped (the model was already wrong).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.attacks.build import evaluating, seeded
from samat.empirical.attacks.specs import TEXT_ALGORITHMS, Algorithm, AttackSpec
from samat.empirical.libraries import text_library

RECIPES = {Algorithm.PSO: "PSOZang2020", Algorithm.IGA: "IGAWang2019"}  # textattack.attack_recipes' classes
PAPERS = {Algorithm.PSO: "Zang et al. 2020", Algorithm.IGA: "Wang et al. 2021"}
SUCCESSFUL, FAILED, SKIPPED = "successful", "failed", "skipped"


def example_seed(seed: int, index: int) -> int:
    """The seed of example ``index``'s attack (the same whatever was attacked before it)."""
    return (seed * 1_000_003 + index) % 2**32


_wrapper_class: type | None = None


def _wrapper_type() -> type:
    """:class:`ClassifierWrapper`'s class, made on first use (it subclasses TextAttack's ModelWrapper)."""
    global _wrapper_class
    if _wrapper_class is None:
        base = text_library("textattack.models.wrappers").ModelWrapper

        class ClassifierWrapper(base):
            """A samat text classifier as TextAttack queries it: sentences in, logits out (float32, on the CPU)."""

            def __init__(self, model: nn.Module, tokenizer: Any, max_length: int, device: torch.device) -> None:
                self.model, self.tokenizer, self.max_length, self.device = model, tokenizer, max_length, device
                self.calls = 0  # batches the model ran (TextAttack counts queries, before its cache)

            def __call__(self, text_input_list, **kwargs):
                encoded = self.tokenizer(list(text_input_list), truncation=True, max_length=self.max_length,
                                         padding=True, return_tensors="pt")
                self.calls += 1
                with torch.no_grad():
                    return self.model(encoded["input_ids"].to(self.device)).float().cpu()

        _wrapper_class = ClassifierWrapper
    return _wrapper_class


def classifier_wrapper(model: nn.Module, tokenizer: Any, max_length: int, device: torch.device):
    """The model as a TextAttack ModelWrapper (see :class:`ClassifierWrapper`)."""
    return _wrapper_type()(model, tokenizer, max_length, torch.device(device))


def build_recipe(spec: AttackSpec, wrapper) -> Any:
    """TextAttack's recipe for ``spec`` (pso or iga), built by the recipe itself on ``wrapper``."""
    if spec.algorithm not in TEXT_ALGORITHMS:
        raise ParameterError("attack", spec.name, "pso or iga (TextAttack's PSOZang2020 and IGAWang2019) for a text "
                             "model")
    recipes = text_library("textattack.attack_recipes")
    logging.getLogger("flair").setLevel(logging.WARNING)  # flair logs a tagger's whole vocabulary when it loads
    logger = text_library("textattack.shared.utils").logger
    level = logger.level
    logger.setLevel("ERROR")  # the recipe says whether it knows the model's class (it does not know samat's)
    try:
        return getattr(recipes, RECIPES[spec.algorithm]).build(wrapper)
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class ExampleResult:
    """One sentence attacked: TextAttack's outcome, its queries, the words of the sentence and those changed."""

    index: int  # in the evaluation's sentences
    status: str  # successful, failed or skipped
    queries: int  # TextAttack's count (num_queries of the final result); 0 when skipped
    words: int  # words of the original sentence (TextAttack's AttackedText.words)
    changed: int  # words that differ in the final text (all_words_diff)
    perturbed: str  # the final text (the original when skipped)
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def attack_example(attack: Any, text: str, label: int, *, index: int, seed: int, model: nn.Module) -> ExampleResult:
    """Attack one sentence with the model in eval mode and every random generator seeded from ``seed`` (the
    example's: :func:`example_seed`); the outcome is numbered ``index``."""
    t0 = time.perf_counter()
    with evaluating(model), seeded(seed, torch.device("cpu")):
        python_state = random.getstate()
        random.seed(seed)
        try:
            result = attack.attack(text, int(label))
        finally:
            random.setstate(python_state)
    return record_of(result, index, time.perf_counter() - t0)


def record_of(result: Any, index: int, seconds: float) -> ExampleResult:
    """The outcome of a TextAttack ``AttackResult``: skipped, failed or successful (untargeted classification has
    no MaximizedAttackResult), its queries, the sentence's words and how many the final text changed."""
    results = text_library("textattack.attack_results")
    original = result.original_result.attacked_text
    final = result.perturbed_result.attacked_text
    if isinstance(result, results.SkippedAttackResult):
        status = SKIPPED
    elif isinstance(result, results.FailedAttackResult):
        status = FAILED
    else:
        status = SUCCESSFUL
    changed = len(original.all_words_diff(final)) if status != SKIPPED else 0
    return ExampleResult(index, status, int(result.perturbed_result.num_queries) if status != SKIPPED else 0,
                         len(original.words), changed, final.text, seconds)


def summarize(records: list[ExampleResult]) -> dict[str, Any]:
    """TextAttack's attack metrics from the outcomes (textattack.metrics, unrounded): the success rate
    successful / (successful + failed), skipped sentences left out; accuracy under attack failed / all; queries
    averaged over the sentences attacked; words changed and their percentage averaged over the successful ones."""
    counts = {s: sum(r.status == s for r in records) for s in (SUCCESSFUL, FAILED, SKIPPED)}
    attacked = [r for r in records if r.status != SKIPPED]
    won = [r for r in records if r.status == SUCCESSFUL]
    n = len(records)
    return {
        "attacked": n, **counts,
        "attack_success_rate": counts[SUCCESSFUL] / len(attacked) if attacked else 0.0,
        "original_accuracy": (n - counts[SKIPPED]) / n if n else 0.0,
        "accuracy_under_attack": counts[FAILED] / n if n else 0.0,
        "average_queries": float(np.mean([r.queries for r in attacked])) if attacked else None,
        "average_words_changed": float(np.mean([r.changed for r in won])) if won else None,
        "average_words_changed_percent": float(np.mean([100.0 * r.changed / r.words for r in won if r.words]))
        if won else None,
        "average_words": float(np.mean([r.words for r in records])) if records else None,
        "sentence_seconds": float(sum(r.seconds for r in records)),  # summed over sentences, earlier runs included
    }


Progress = Callable[[ExampleResult], None]
