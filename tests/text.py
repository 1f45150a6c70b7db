"""The text tests' world, a plugin of tests/conftest.py: the text extra (every text test module carries
:data:`needs_text`, skipped with its reason where the extra is not installed), stand-ins for TextAttack's resources
in this process's folders (tests/conftest.py points the libraries at them), a tiny DistilBERT with a WordPiece
vocabulary of the generated corpus's lexicon, and a run trained on that corpus."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import pytest

from samat.empirical.libraries import block_torchvision
from samat.empirical.training.config import TrainConfig

TEXT_PACKAGES = ("transformers", "datasets", "textattack", "flair", "nltk")
MISSING = [name for name in TEXT_PACKAGES if find_spec(name) is None]
needs_text = pytest.mark.skipif(bool(MISSING), reason=f"the text extra is not installed ({', '.join(MISSING)} "
                                "missing): pip install 'samat[text]'")
block_torchvision()  # the tests import transformers and datasets directly too (see samat/empirical/libraries.py)
RESOURCES = Path(os.environ["TA_CACHE_DIR"]).parent  # this process's folders (tests/conftest.py)
MAX_LENGTH = 32  # tokens: the generated sentences have at most 12 words


@pytest.fixture(scope="session")
def standins() -> Path:
    """Stand-ins for TextAttack's resources, written once per test process where the libraries read them."""
    from samat.empirical.attacks.text.standins import write_standins

    if not (RESOURCES / "textattack" / "post_install_check_3").exists():
        write_standins(RESOURCES)
    return RESOURCES


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer DistilBERT of width 32 with the lexicon's vocabulary, saved as save_pretrained saves it."""
    from samat.empirical.data.text.generated import vocabulary
    from samat.empirical.models.transformer import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-distilbert"), vocabulary())


def text_cfg(model: Path, **changes) -> TrainConfig:
    """The tiny model on a subset of the generated corpus: a second or two per epoch on one core."""
    base = {"dataset": "generated_reviews", "model": "transformer", "text": {"model": str(model),
            "max_length": MAX_LENGTH}, "method": "adamw", "lr": 3e-3, "weight_decay": 0.0, "epochs": 2,
            "batch_size": 32, "lr_schedule": "linear", "train_subset": 512, "device": "cpu", "eval_batch_size": 256}
    return TrainConfig.from_dict(base | changes)


@pytest.fixture(scope="session")
def trained_run(tiny_model, tmp_path_factory) -> Path:
    """A finished ST run of the tiny model on the generated corpus (3 epochs on 512 sentences)."""
    from samat.empirical.training.loop import train

    run = tmp_path_factory.mktemp("text-runs") / "st"
    train(text_cfg(tiny_model, epochs=3), run, progress=False)
    return run
