"""What training needs to know about text classification (D Section 5.3): the ``text`` table of a configuration,
the sentences tokenized by the model's tokenizer, and the learning-rate schedule of transformers' Trainer.

The ``text`` table (every key optional)::

    text = { model = "distilbert-base-uncased", max_length = 128, num_labels = 2 }

``model`` is a Hugging Face model name or a folder (:mod:`empirical.models.transformer`); ``max_length`` the most
tokens a sentence keeps (the tokenizer truncates longer ones; batches are padded to their own longest sentence);
``num_labels`` the classes (2 for Rotten Tomatoes: a dataset with other labels is refused).

D Section 5.3 fine-tunes with AdamW at lr 5e-5 for three epochs, and SAM around the same AdamW (ρ = 0.05). The paper
names no schedule; transformers' Trainer decays the learning rate linearly to 0, after a linear warm-up over
``warmup_ratio`` of the steps (0 by default), which ``lr_schedule = "linear"`` reproduces step for step
(:func:`linear_factor`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from samat.core.errors import ParameterError, checked_table
from samat.core.numbers import is_int

DEFAULT_MODEL = "distilbert-base-uncased"  # D Section 5.3
MIN_LENGTH = 8  # tokens: [CLS], [SEP] and a few words


@dataclass(frozen=True)
class TextSpec:
    """A configuration's ``text`` table, parsed and validated (what can be checked without the model)."""

    model: str = DEFAULT_MODEL  # a Hugging Face model name, or a folder saved by save_pretrained
    max_length: int = 128  # tokens per sentence at most (special tokens included)
    num_labels: int = 2

    @classmethod
    def from_table(cls, table: object, name: str = "text") -> TextSpec:
        spec = cls(**checked_table(table, name, TEXT_FIELDS))
        if not isinstance(spec.model, str) or not spec.model.strip():
            raise ParameterError(f"{name}.model", spec.model, "a Hugging Face model name (e.g. "
                                 "distilbert-base-uncased) or a folder saved by save_pretrained")
        if not is_int(spec.max_length) or spec.max_length < MIN_LENGTH:
            raise ParameterError(f"{name}.max_length", spec.max_length, f"an integer >= {MIN_LENGTH} (and at most "
                                 "the model's position embeddings, e.g. 512 for DistilBERT)")
        if not is_int(spec.num_labels) or spec.num_labels < 2:
            raise ParameterError(f"{name}.num_labels", spec.num_labels, "an integer >= 2 (2 for Rotten Tomatoes)")
        object.__setattr__(spec, "max_length", int(spec.max_length))
        object.__setattr__(spec, "num_labels", int(spec.num_labels))
        return spec

    def model_options(self, pad_id: int) -> dict[str, Any]:
        """The network's options, as :func:`empirical.models.build_model` takes them."""
        return {"model": self.model, "pad_id": pad_id}


TEXT_FIELDS = tuple(f.name for f in fields(TextSpec))


def warmup_steps(warmup_ratio: float, total_steps: int) -> int:
    """The Trainer's warm-up length: ceil(warmup_ratio x total steps) (TrainingArguments.get_warmup_steps)."""
    return math.ceil(warmup_ratio * total_steps)


def linear_factor(step: int, total_steps: int, warmup_ratio: float) -> float:
    """The learning rate's factor at (0-based) step ``step`` of ``total_steps``: step / warm-up during the warm-up,
    then (total - step) / (total - warm-up) down to 0, as transformers' get_linear_schedule_with_warmup."""
    warmup = warmup_steps(warmup_ratio, total_steps)
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
