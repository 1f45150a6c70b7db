"""Rotten Tomatoes (Pang and Lee 2005), the data of D Table 10: 5,331 positive and 5,331 negative sentences from
movie reviews, in the datasets library's train / validation / test split (8,530 / 1,066 / 1,066).

It loads from one of:

- the Hugging Face hub by name (:data:`HUB_NAME`, through the datasets library and its cache), when no folder
  is given and ``./data/rotten_tomatoes`` does not exist;
- a folder holding the original files ``rt-polarity.pos`` and ``rt-polarity.neg`` (as in rt-polaritydata.tar.gz,
  also inside its ``rt-polaritydata/`` folder), split as the datasets library's script split them: the first 80 %
  of each class for training, the next 10 % for validation, the rest for testing (:func:`split_polarity_files`);
- a folder written by ``DatasetDict.save_to_disk`` (``dataset_dict.json`` with ``train/``, ``validation/``,
  ``test/``), or a copy of the hub repository (its ``data/*.parquet`` files).

Labels are 0 (negative) and 1 (positive), as the datasets library numbers them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samat.core.errors import SamatError
from samat.empirical.data.dataset import LoadRequest
from samat.empirical.data.text.dataset import SPLITS, TextCorpus
from samat.empirical.libraries import text_library

HUB_NAME = "cornell-movie-review-data/rotten_tomatoes"
POLARITY_FILES = ("rt-polarity.pos", "rt-polarity.neg")
LABEL_NAMES = ("neg", "pos")  # the datasets library's ClassLabel names: 0 negative, 1 positive
FORMS = ("rt-polarity.pos and rt-polarity.neg (the original files), a folder saved by DatasetDict.save_to_disk "
         "(dataset_dict.json with train/, validation/ and test/), or the hub repository's data/*.parquet files")


def load_rotten_tomatoes(request: LoadRequest) -> TextCorpus:
    """Rotten Tomatoes from ``request.data_dir`` (see the module), or from the hub when it is None."""
    if request.data_dir is None:
        return _from_hub()
    folder = Path(request.data_dir)
    if not folder.is_dir():
        raise SamatError(f"data_dir {folder} does not exist: give a folder holding {FORMS}")
    for candidate in (folder, folder / "rt-polaritydata"):
        if all((candidate / name).is_file() for name in POLARITY_FILES):
            return split_polarity_files(candidate)
    if (folder / "dataset_dict.json").is_file():
        datasets = text_library("datasets")
        try:
            return _from_dataset_dict(datasets.load_from_disk(str(folder)), f"the saved dataset in {folder}")
        except (OSError, ValueError, KeyError) as err:
            raise SamatError(f"cannot read the saved dataset in {folder} ({type(err).__name__}: {err}): save it "
                             "again with DatasetDict.save_to_disk") from None
    if any(folder.rglob("*.parquet")):
        datasets = text_library("datasets")
        try:
            loaded = datasets.load_dataset(str(folder))
        except (OSError, ValueError) as err:
            raise SamatError(f"cannot read the parquet files in {folder} ({type(err).__name__}: "
                             f"{str(err).splitlines()[0]}): copy the hub repository {HUB_NAME} again") from None
        return _from_dataset_dict(loaded, f"the parquet files in {folder}")
    raise SamatError(f"data_dir {folder} holds none of Rotten Tomatoes' forms: place {FORMS} there")


def split_polarity_files(folder: Path) -> TextCorpus:
    """The original files split as the datasets library's script (datasets/rotten_tomatoes/rotten_tomatoes.py)
    split them: per class the first round(0.8 n) sentences for training, up to round(0.9 n) for validation, the rest
    for testing; positives first in each split. The files are Latin-1, one sentence per line."""
    lines = {}
    for name in POLARITY_FILES:
        try:
            lines[name] = [t.strip() for t in (folder / name).read_text(encoding="latin-1").splitlines()]
        except OSError as err:
            raise SamatError(f"cannot read {folder / name}: {err.strerror}") from None
    pos, neg = lines["rt-polarity.pos"], lines["rt-polarity.neg"]
    if len(pos) != len(neg) or not pos:
        raise SamatError(f"{folder}: rt-polarity.pos has {len(pos)} sentences and rt-polarity.neg {len(neg)}; the "
                         "original files hold 5,331 each: replace them")
    i1, i2 = int(len(pos) * 0.8 + 0.5), int(len(pos) * 0.9 + 0.5)
    bounds = {"train": (0, i1), "validation": (i1, i2), "test": (i2, len(pos))}
    texts, labels = {}, {}
    for split, (a, b) in bounds.items():
        texts[split] = tuple(pos[a:b] + neg[a:b])
        labels[split] = np.array([1] * (b - a) + [0] * (b - a), dtype=np.int64)
    return TextCorpus("rotten_tomatoes", texts, labels, LABEL_NAMES, f"the files {', '.join(POLARITY_FILES)} in "
                      f"{folder}")


def _from_hub() -> TextCorpus:
    datasets = text_library("datasets")
    try:
        loaded = datasets.load_dataset(HUB_NAME)
    except Exception as err:  # noqa: BLE001 - offline, the hub and its cache fail in many ways
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise SamatError(f"cannot load {HUB_NAME} from the Hugging Face hub ({reason}): on a machine without it, "
                         f"place {FORMS} in data/rotten_tomatoes, or name their folder with data_dir") from None
    return _from_dataset_dict(loaded, f"the Hugging Face hub ({HUB_NAME})")


def _from_dataset_dict(loaded, source: str) -> TextCorpus:
    """A datasets.DatasetDict with the splits train, validation and test and the columns text and label."""
    missing = [s for s in SPLITS if s not in loaded]
    if missing:
        raise SamatError(f"{source} has no {missing[0]} split (it has {', '.join(loaded)}): Rotten Tomatoes comes "
                         "with train, validation and test")
    texts, labels = {}, {}
    for split in SPLITS:
        columns = loaded[split].column_names
        if "text" not in columns or "label" not in columns:
            raise SamatError(f"{source}: the {split} split has the columns {', '.join(columns)}, not text and label")
        texts[split] = tuple(loaded[split]["text"])
        labels[split] = np.asarray(loaded[split]["label"], dtype=np.int64)
    feature = loaded["train"].features.get("label")
    names = tuple(getattr(feature, "names", None) or LABEL_NAMES)
    return TextCorpus("rotten_tomatoes", texts, labels, names, source)
