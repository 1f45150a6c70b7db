"""Text classification data: labelled sentences in the dataset's own train, validation and test splits
(:class:`TextCorpus`), and the same sentences as token ids of one tokenizer (:class:`TextDataset`).

A :class:`TextDataset` holds each split as one int64 tensor (N, L) of token ids padded with the tokenizer's pad id
to the longest sequence of the dataset (at most ``max_length``), beside the sentences themselves (what the word
substitution attacks perturb). Batches are padded to their own longest sequence: the model cuts the columns that
hold only padding (:class:`empirical.models.TextClassifier`), so a batch costs what its longest sentence costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from samat.core.errors import ParameterError
from samat.empirical.data.dataset import Dataset, _stratified_indices
from samat.empirical.vocabulary import Augment, Task

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TextCorpus:
    """Labelled sentences in the dataset's own splits, before tokenization."""

    name: str
    texts: dict[str, tuple[str, ...]]  # split -> sentences
    labels: dict[str, np.ndarray]  # split -> int64 labels
    label_names: tuple[str, ...]
    source: str  # where it was read from, for the run's provenance ("the Hugging Face hub: ...", "a folder ...")

    def __post_init__(self) -> None:
        for split in SPLITS:
            if split not in self.texts or len(self.texts[split]) != len(self.labels[split]):
                raise ValueError(f"{self.name}: the {split} split needs as many sentences as labels")

    def sizes(self) -> dict[str, int]:
        return {split: len(self.texts[split]) for split in SPLITS}

    def tokenized(self, tokenizer: Any, max_length: int, num_labels: int = 2) -> TextDataset:
        """The sentences as token ids of ``tokenizer`` (a transformers tokenizer), truncated to ``max_length``
        tokens as the tokenizer truncates (the special tokens kept). Labels outside 0..num_labels-1 are a
        ParameterError naming ``labels``."""
        check_labels(self, num_labels)
        ids, truncated = {}, {}
        for split in SPLITS:
            texts = list(self.texts[split])
            full = tokenizer(texts, truncation=False, verbose=False)["input_ids"] if texts else []
            truncated[split] = sum(len(t) > max_length for t in full)
            ids[split] = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"] if texts else []
        longest = max((len(t) for split in SPLITS for t in ids[split]), default=1)
        pad = int(tokenizer.pad_token_id)
        tensors = {split: _padded(ids[split], longest, pad) for split in SPLITS}
        y = {split: torch.as_tensor(self.labels[split], dtype=torch.int64) for split in SPLITS}
        lengths = [len(t) for split in SPLITS for t in ids[split]]
        return TextDataset(self.name, tensors["train"], y["train"], tensors["test"], y["test"], num_labels, (), (),
                           Augment.NONE, validation_x=tensors["validation"], validation_y=y["validation"],
                           texts={split: self.texts[split] for split in SPLITS}, pad_id=pad, max_length=max_length,
                           label_names=self.label_names, source=self.source,
                           tokens={"longest": longest, "mean": float(np.mean(lengths)) if lengths else 0.0,
                                   "truncated": truncated})


def _padded(sequences: Sequence[Sequence[int]], length: int, pad: int) -> torch.Tensor:
    out = torch.full((len(sequences), length), pad, dtype=torch.int64)
    for i, seq in enumerate(sequences):
        out[i, :len(seq)] = torch.as_tensor(seq, dtype=torch.int64)
    return out


def check_labels(corpus: TextCorpus, num_labels: int) -> None:
    """Every label in 0..num_labels-1 (for Rotten Tomatoes: 0 and 1, negative and positive)."""
    found = sorted({int(v) for split in SPLITS for v in np.unique(corpus.labels[split])})
    if any(v < 0 or v >= num_labels for v in found) or len(corpus.label_names) > num_labels:
        names = f" ({', '.join(corpus.label_names)})" if corpus.label_names else ""
        valid = " and ".join(str(v) for v in range(num_labels)) if num_labels == 2 else f"0..{num_labels - 1}"
        raise ParameterError("labels", "{" + ", ".join(map(str, found)) + "}" + names,
                             f"{valid} for {corpus.name}: this configuration classifies {num_labels} classes "
                             "(text.num_labels)")


@dataclass(eq=False)
class TextDataset(Dataset):
    """Token ids (int64 (N, L), padded with ``pad_id``) and labels of the train and test splits, the validation
    split beside them, and the sentences of every split (what the attacks perturb)."""

    validation_x: torch.Tensor | None = None
    validation_y: torch.Tensor | None = None
    texts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # split -> sentences, aligned with the rows
    pad_id: int = 0
    max_length: int = 512  # the tokenizer truncated to this many tokens
    label_names: tuple[str, ...] = ()
    source: str = ""
    tokens: dict[str, Any] = field(default_factory=dict)  # longest, mean and truncated (per split) sequence lengths

    task: ClassVar[Task] = Task.TEXT

    def __post_init__(self) -> None:
        super().__post_init__()
        for split in SPLITS:
            x = getattr(self, f"{split}_x")
            if x is None or x.ndim != 2 or x.dtype != torch.int64:
                raise ValueError(f"{self.name} {split}: token ids must be int64 (N, L)")
            if len(self.texts.get(split, ())) != len(x):
                raise ValueError(f"{self.name} {split}: {len(self.texts.get(split, ()))} sentences for {len(x)} rows")

    @property
    def kind(self) -> Literal["text"]:
        return "text"

    def to(self, device: torch.device | str) -> TextDataset:
        return replace(self, train_x=self.train_x.to(device), train_y=self.train_y.to(device),
                       test_x=self.test_x.to(device), test_y=self.test_y.to(device),
                       validation_x=self.validation_x.to(device), validation_y=self.validation_y.to(device))

    def subset(self, train: int | None, test: int | None, seed: int) -> TextDataset:
        """A seeded, class-stratified subset of ``train`` and ``test`` sentences (None: the whole split), in their
        order; the validation split stays whole."""
        g = torch.Generator().manual_seed(seed)
        changes: dict[str, Any] = {"texts": dict(self.texts)}
        for split, size, name, what in (("train", train, "train_subset", "training set"),
                                        ("test", test, "test_subset", "test set")):
            idx = _stratified_indices(getattr(self, f"{split}_y").cpu(), size, name, what, g)
            if idx is None:
                continue
            on = idx.to(getattr(self, f"{split}_x").device)
            changes |= {f"{split}_x": getattr(self, f"{split}_x")[on], f"{split}_y": getattr(self, f"{split}_y")[on]}
            changes["texts"][split] = tuple(self.texts[split][i] for i in idx.tolist())
        return replace(self, **changes)

    def describe(self) -> str:
        sizes = ", ".join(f"{split} {len(self.texts[split])}" for split in SPLITS)
        cut = sum(self.tokens.get("truncated", {}).values())
        return (f"{self.name}: text, {self.num_classes} classes ({', '.join(self.label_names)}), {sizes}; token ids "
                f"up to {self.max_length} (longest {self.tokens.get('longest')}, mean "
                f"{self.tokens.get('mean', 0):.1f}, {cut} truncated), padded per batch; from {self.source}; on "
                f"{self.train_x.device}")

    def sequence_record(self) -> dict[str, Any]:
        """What a run records of its sequences: the length limit, the lengths found, how batches are padded."""
        return {"max_length": self.max_length, **self.tokens, "padding": "per batch, to its longest sequence",
                "pad_id": self.pad_id}
