"""What a text evaluation costs on this device: TextAttack's recipes timed per sentence, as
:mod:`.text` runs them, on two models that bound the cost (the planner, ``samat experiment plan``, uses it).

A recipe's cost per sentence depends on how long its search runs, not on what the network learned, so two
calibration models bound it; both run the whole network on every query, so each query costs what it costs:

* "falls at once": any change to the sentence flips the prediction. PSO stops after its first population, IGA
  after its first generation: the cheap end.
* "never falls": no change ever flips it. PSO runs its 20 iterations of 60 particles, IGA its 20 generations, every
  query of them (TextAttack counts thousands for PSO): the dear end, where robust models sit.

A sentence's cost grows with its words (each word's substitutes are tried), so the calibration sentences' length
matters: the planner says where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from samat.empirical.attacks.specs import AttackSpec
from samat.empirical.attacks.text.recipes import attack_example, build_recipe, classifier_wrapper, example_seed
from samat.empirical.evaluation.cost import BOUNDS, ROBUST_MARGIN


class _Bounded(nn.Module):
    """A text classifier whose prediction on every query is decided by the bound, after the network ran on it:
    "never falls" always predicts class 0; "falls at once" predicts class 0 for the sentence being attacked
    (``original``, its token ids) and class 1 for any other."""

    def __init__(self, net: nn.Module, bound: str, pad_id: int) -> None:
        super().__init__()
        self.net, self.bound, self.pad_id = net, bound, pad_id
        self.original: list[int] = []

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        logits = self.net(input_ids)
        if self.bound == BOUNDS[1]:
            winner = torch.zeros(len(input_ids), dtype=torch.long, device=logits.device)
        else:
            rows = [[t for t in row if t != self.pad_id] for row in input_ids.tolist()]
            winner = torch.tensor([0 if row == self.original else 1 for row in rows], device=logits.device)
        return logits + ROBUST_MARGIN * nn.functional.one_hot(winner, logits.shape[1]).to(logits.dtype)


@dataclass(frozen=True)
class TextAttackCost:
    """A recipe's seconds (and TextAttack's queries) per sentence against each bound, measured on ``sentences``
    sentences of ``words`` words on average and scaled by ``scale`` (the run's words per sentence over theirs)."""

    seconds: dict[str, float]  # per calibration sentence, by bound
    queries: dict[str, float]
    sentences: int
    words: float
    scale: float = 1.0
    source: str = ""  # where the calibration sentences and resources came from
    notes: list[str] = field(default_factory=list)

    def seconds_for(self, n: int, bound: str) -> float:
        return n * self.seconds[bound] * self.scale

    def summary(self, low: str, high: str) -> str:
        per = f"{self.seconds[low] * self.scale:.2g} – {self.seconds[high] * self.scale:.2g} s per sentence"
        queries = f"{self.queries[low]:,.0f} – {self.queries[high]:,.0f} queries per calibration sentence"
        scaled = f", scaled x{self.scale:.2g} for the run's sentence length" if self.scale != 1 else ""
        sentences = f"{self.sentences} sentence" + ("s" if self.sentences != 1 else "")
        return f"{per} ({queries}, {self.words:.1f} words, {sentences}{scaled}; {self.source})"


def time_recipe(s: AttackSpec, net: nn.Module, tokenizer: Any, max_length: int, texts: list[str], *,
                device: torch.device, words: float | None = None, source: str = "") -> TextAttackCost:
    """The recipe of ``s`` on ``texts`` against both bounds, sentence by sentence as the evaluation attacks them;
    ``words``: the run's words per sentence, to scale by (None: the texts' own)."""
    seconds, queries = {}, {}
    pad = int(tokenizer.pad_token_id)
    for bound in BOUNDS:
        model = _Bounded(net, bound, pad).to(device).eval()
        attack = build_recipe(s, classifier_wrapper(model, tokenizer, max_length, device))
        total_seconds, total_queries = 0.0, 0
        for i, text in enumerate(texts):
            model.original = tokenizer([text], truncation=True, max_length=max_length)["input_ids"][0]
            record = attack_example(attack, text, 0, index=i, seed=example_seed(0, i), model=model)
            total_seconds += record.seconds
            total_queries += record.queries
        seconds[bound], queries[bound] = total_seconds / len(texts), total_queries / len(texts)
    own = sum(len(t.split()) for t in texts) / len(texts)
    scale = 1.0 if words is None else max(1.0, words / own)
    return TextAttackCost(seconds, queries, len(texts), own, scale, source)
