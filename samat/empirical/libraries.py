"""The text task's libraries (the ``samat[text]`` extra): transformers, datasets and textattack, imported on first
use and never at import time, so that ``samat theory``, the image commands and ``import empirical`` load none of
them.

Each is imported through :func:`text_library`, which turns a missing package into one line naming the extra to
install, and keeps transformers from importing torchvision: on a CPU machine the registry's torchvision (pulled in
by torchattacks' metadata) fails at import ("operator torchvision::nms does not exist"), and transformers imports it
wherever it is installed, although nothing of the text task needs it (docs/DEPENDENCIES.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from samat.core.errors import SamatError

TEXT_EXTRA = "pip install 'samat[text]'"
TEXT_LIBRARIES = ("transformers", "datasets", "textattack", "flair", "nltk")  # what the text task may import


def missing_text_libraries() -> list[str]:
    """The text task's libraries that are not installed (looked for without importing them)."""
    return [name for name in TEXT_LIBRARIES if importlib.util.find_spec(name) is None]


def text_library(name: str) -> ModuleType:
    """The module ``name`` (one of :data:`TEXT_LIBRARIES` or a submodule), imported on first use; a
    :class:`SamatError` naming the extra when it is not installed."""
    if name.split(".")[0] not in TEXT_LIBRARIES:
        raise ValueError(f"{name} is not one of the text task's libraries")
    block_torchvision()
    if name.split(".")[0] == "textattack":
        _check_nltk_stopwords()
    try:
        return importlib.import_module(name)
    except ImportError as err:
        missing = getattr(err, "name", None) or name
        raise SamatError(f"the text task needs {missing}, which is not installed: {TEXT_EXTRA}") from None


def block_torchvision() -> None:
    """Make ``import torchvision`` fail in this process unless it already succeeded: transformers then takes it
    for absent (see the module's docstring). Nothing in samat imports torchvision."""
    if "torchvision" not in sys.modules:
        sys.modules["torchvision"] = None


STOPWORDS = Path("corpora") / "stopwords" / "english"  # what `import textattack` reads (its augmentation recipes)


def _check_nltk_stopwords() -> None:
    """`import textattack` builds a StopwordModification at import time, which reads NLTK's English stopwords: say
    where they go when they are missing, before the import fails with NLTK's multi-line message."""
    try:
        nltk = importlib.import_module("nltk")
    except ImportError:
        raise SamatError(f"the text task needs nltk, which is not installed: {TEXT_EXTRA}") from None
    try:
        nltk.data.find("corpora/stopwords")
    except LookupError:
        first = os.environ.get("NLTK_DATA", "").split(os.pathsep)[0] or nltk.data.path[0]
        raise SamatError(f"TextAttack needs NLTK's stopwords corpus, which is missing: place the folder stopwords "
                         f"(with its file english) in {Path(first) / 'corpora'} (NLTK_DATA names the folder; "
                         "`python -m nltk.downloader stopwords` fetches it on a machine with internet)") from None
