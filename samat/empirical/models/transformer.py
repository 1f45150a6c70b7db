"""Transformers for text classification (D Section 5.3): a Hugging Face ``AutoModelForSequenceClassification``
(the paper's distilbert-base-uncased) from a name or a local folder, behind :class:`TextClassifier`, which takes
token ids padded with the pad id and cuts each batch to its longest sequence.

``text.model`` names the network: a model on the Hugging Face hub ("distilbert-base-uncased", loaded through the
transformers cache, so a machine without the hub needs it cached), or a folder (an absolute path, or one starting
with "." or "~") holding what ``save_pretrained`` writes: config.json, the weights (model.safetensors or
pytorch_model.bin) and the tokenizer (tokenizer.json or vocab.txt, with tokenizer_config.json).
:func:`write_tiny_model` writes such a folder for a tiny DistilBERT with a WordPiece vocabulary of given words (the
tests and the CPU default).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samat.core.errors import ParameterError, SamatError
from samat.empirical.libraries import text_library

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # BERT's, in its vocabulary's order
MODEL_FILES = "config.json, the weights (model.safetensors or pytorch_model.bin) and the tokenizer (tokenizer.json " \
              "or vocab.txt, with tokenizer_config.json)"


def is_folder(name: str) -> bool:
    """Whether ``text.model`` names a folder (an absolute path, or one starting with "." or "~") or an existing
    folder, rather than a model on the hub."""
    return name.startswith(("/", ".", "~")) or Path(name).is_dir()


def pretrained_location(name: str, parameter: str = "text.model") -> str:
    """The folder (expanded) or the hub name that ``name`` gives; a missing folder is a ParameterError naming
    ``parameter``."""
    if not is_folder(name):
        return name
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ParameterError(parameter, name, f"an existing folder holding {MODEL_FILES}, or a model name on the "
                             "Hugging Face hub such as distilbert-base-uncased")
    if not (folder / "config.json").is_file():
        raise ParameterError(parameter, name, f"a folder holding {MODEL_FILES} (it has no config.json)")
    return str(folder)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' warnings off for the block: fine-tuning loads a network whose classification head is new,
    which it reports at length every time."""
    logging = text_library("transformers").logging
    before = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(before)


def _loading(what: str, name: str):
    """The one-line error for a model or tokenizer that cannot be loaded."""
    def fail(err: Exception) -> SamatError:
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        where = (f"the folder {name} must hold {MODEL_FILES}" if is_folder(name) else
                 f"{name} is not on this machine and the hub cannot be reached: on a machine with the hub, save it "
                 f"with AutoModelForSequenceClassification.from_pretrained('{name}').save_pretrained(DIR) and "
                 f"AutoTokenizer.from_pretrained('{name}').save_pretrained(DIR), and give DIR as text.model")
        return SamatError(f"cannot load the {what} of {name} ({reason}): {where}")
    return fail


def model_config(name: str) -> Any:
    """The transformers configuration of the model ``name`` (its config.json)."""
    location = pretrained_location(name)
    transformers = text_library("transformers")
    try:
        with _quiet():
            return transformers.AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as err:
        raise _loading("configuration", name)(err) from None


def max_positions(config: Any) -> int | None:
    """The longest sequence the model takes (its position embeddings), or None when it does not say."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_max_length(name: str, max_length: int, config: Any | None = None) -> None:
    """``text.max_length`` within what the model ``name`` takes (a ParameterError naming the range)."""
    longest = max_positions(config if config is not None else model_config(name))
    if longest is not None and max_length > longest:
        raise ParameterError("text.max_length", max_length, f"an integer in 8..{longest} ({name} takes at most "
                             f"{longest} tokens)")


def load_tokenizer(name: str, max_length: int) -> Any:
    """The model's tokenizer, truncating to ``max_length`` tokens (its model_max_length, which TextAttack's
    model wrappers also read)."""
    location = pretrained_location(name)
    transformers = text_library("transformers")
    try:
        with _quiet():
            tokenizer = transformers.AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError, TypeError) as err:
        raise _loading("tokenizer", name)(err) from None
    if tokenizer.pad_token_id is None:
        raise SamatError(f"the tokenizer of {name} has no padding token: give a model whose tokenizer pads")
    tokenizer.model_max_length = max_length
    return tokenizer


class TextClassifier(nn.Module):
    """A sequence classifier on token ids padded with ``pad_id`` (N, L) -> logits (N, K).

    Each call cuts the columns after the batch's longest sequence (padding per batch, as transformers'
    DataCollatorWithPadding pads) and masks the padding of the shorter ones.
    """

    def __init__(self, network: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.network = network
        self.pad_id = int(pad_id)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(1, input_ids.shape[1] + 1, device=input_ids.device)
        lengths = ((input_ids != self.pad_id) * positions).amax(1)  # each row's last token that is not padding
        longest = max(int(lengths.max()), 1) if len(lengths) else 1
        ids = input_ids[:, :longest]
        mask = (positions[:longest] <= lengths[:, None]).long()
        return self.network(input_ids=ids, attention_mask=mask).logits


def build_text_classifier(name: str, num_classes: int, pad_id: int) -> TextClassifier:
    """``AutoModelForSequenceClassification`` of ``name`` (a hub name or a folder) with ``num_classes`` outputs;
    a head the checkpoint lacks starts from torch's global generator (seed it first)."""
    location = pretrained_location(name)
    transformers = text_library("transformers")
    try:
        with _quiet():
            network = transformers.AutoModelForSequenceClassification.from_pretrained(
                location, num_labels=num_classes, ignore_mismatched_sizes=False)
    except (OSError, ValueError, RuntimeError) as err:
        raise _loading("weights", name)(err) from None
    return TextClassifier(network, pad_id)


# transformers' Trainer (get_decay_parameter_names): no weight decay for parameters of LayerNorm modules, nor for
# those whose name (lowercase) matches one of these
NO_DECAY_PATTERNS = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)")


def no_weight_decay(model: nn.Module) -> set[nn.Parameter]:
    """The parameters that transformers' Trainer exempts from weight decay: those of LayerNorm modules, biases and
    normalization weights by name."""
    exempt = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if isinstance(module, nn.LayerNorm) or NO_DECAY_PATTERNS.search(full.lower()):
                exempt.add(param)
    return exempt


def write_tiny_model(folder: str | os.PathLike, words: Sequence[str], *, dim: int = 32, layers: int = 2,
                     heads: int = 2, hidden: int = 64, positions: int = 64, seed: int = 0) -> Path:
    """A DistilBERT with ``layers`` layers of width ``dim`` and a WordPiece vocabulary of ``words`` (lowercase,
    whole words; BERT's special tokens first), randomly initialized from ``seed``, saved into ``folder`` as
    ``save_pretrained`` saves a model and its tokenizer. Returns the folder."""
    transformers = text_library("transformers")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys([*SPECIAL_TOKENS, *(w.lower() for w in words)]))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.DistilBertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True,
                                                     model_max_length=positions)
    config = transformers.DistilBertConfig(vocab_size=len(vocab), dim=dim, n_layers=layers, n_heads=heads,
                                           hidden_dim=hidden, max_position_embeddings=positions, pad_token_id=0,
                                           num_labels=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = transformers.DistilBertForSequenceClassification(config)
    network.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
