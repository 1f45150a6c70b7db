"""Text data: Rotten Tomatoes from each of its forms (the original files, a saved dataset, the hub's parquet files,
the hub itself), the generated corpus, tokenization padded per batch, and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samat.core.errors import ParameterError, SamatError
from samat.empirical.data import DATASETS, load_dataset
from samat.empirical.data.text import SPLITS, TextCorpus
from samat.empirical.data.text.generated import GROUPS, generate, part_of_speech, sentence_words, vocabulary
from samat.empirical.data.text.rotten_tomatoes import split_polarity_files
from samat.empirical.vocabulary import DatasetName, Task
from tests.text import MAX_LENGTH, needs_text

pytestmark = needs_text


def write_polarity(folder: Path, n: int) -> tuple[list[str], list[str]]:
    """rt-polarity.pos and .neg with n sentences each (Latin-1, as the originals), in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pos = [f"a fine film number {i} , caf\u00e9 included" for i in range(n)]
    neg = [f"a dull film number {i}" for i in range(n)]
    (folder / "rt-polarity.pos").write_bytes(("\n".join(pos) + "\n").encode("latin-1"))
    (folder / "rt-polarity.neg").write_bytes(("\n".join(neg) + "\n").encode("latin-1"))
    return pos, neg


def test_every_text_dataset_has_a_loader():
    assert {n for n in DatasetName if n.task is Task.TEXT} <= set(DATASETS)


def test_polarity_files_split_as_the_datasets_script_splits_them(tmp_path):
    # 5,331 per class gives the library's 8,530 / 1,066 / 1,066; 11 per class: round(8.8) = 9, round(9.9) = 10
    pos, neg = write_polarity(tmp_path / "rt-polaritydata", 11)
    corpus = load_dataset("rotten_tomatoes", tmp_path)  # the tarball's inner folder is found too
    assert corpus.sizes() == {"train": 18, "validation": 2, "test": 2}
    assert corpus.texts["train"] == tuple(pos[:9] + neg[:9])
    assert corpus.texts["validation"] == (pos[9], neg[9]) and corpus.texts["test"] == (pos[10], neg[10])
    assert corpus.labels["train"].tolist() == [1] * 9 + [0] * 9
    assert "café" in corpus.texts["train"][0]  # read as Latin-1
    i1, i2 = int(5331 * 0.8 + 0.5), int(5331 * 0.9 + 0.5)
    assert (2 * i1, 2 * (i2 - i1), 2 * (5331 - i2)) == (8530, 1066, 1066)


def test_unequal_polarity_files_are_refused(tmp_path):
    write_polarity(tmp_path, 4)
    (tmp_path / "rt-polarity.neg").write_text("one\ntwo\n")
    with pytest.raises(SamatError, match="rt-polarity.pos has 4 sentences and rt-polarity.neg 2"):
        split_polarity_files(tmp_path)


def test_a_folder_without_the_files_names_them(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(SamatError) as err:
        load_dataset("rotten_tomatoes", tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message
    for name in ("rt-polarity.pos", "rt-polarity.neg", "dataset_dict.json", "parquet"):
        assert name in message


def _as_dataset_dict(corpus: TextCorpus):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(corpus.label_names))})
    return datasets.DatasetDict({split: datasets.Dataset.from_dict(
        {"text": list(corpus.texts[split]), "label": corpus.labels[split].tolist()}, features=features)
        for split in SPLITS})


def test_a_saved_dataset_and_parquet_files_load_the_same_sentences(tmp_path):
    original = split_polarity_files(write_polarity(tmp_path / "files", 10) and tmp_path / "files")
    saved = _as_dataset_dict(original)
    saved.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    for split in SPLITS:  # the hub repository's layout: data/<split>-00000-of-00001.parquet
        saved[split].to_parquet(str(tmp_path / "hub" / "data" / f"{split}-00000-of-00001.parquet"))
    for folder in ("saved", "hub"):
        corpus = load_dataset("rotten_tomatoes", tmp_path / folder)
        assert corpus.texts == original.texts, folder
        assert all(np.array_equal(corpus.labels[s], original.labels[s]) for s in SPLITS), folder
        assert corpus.label_names == ("neg", "pos")


def test_labels_that_are_not_binary_are_refused_naming_the_parameter(tmp_path, tiny_model):
    from samat.empirical.models.transformer import load_tokenizer

    corpus = generate({"train": 6, "validation": 2, "test": 2})
    labels = dict(corpus.labels) | {"train": np.array([0, 1, 2, 0, 1, 2])}
    three = TextCorpus(corpus.name, corpus.texts, labels, ("neg", "neutral", "pos"), corpus.source)
    with pytest.raises(ParameterError) as err:
        three.tokenized(load_tokenizer(str(tiny_model), MAX_LENGTH), MAX_LENGTH, num_labels=2)
    assert err.value.name == "labels" and "{0, 1, 2}" in str(err.value) and "0 and 1" in str(err.value)


def test_the_hub_unreachable_says_which_files_to_place(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ./data/rotten_tomatoes: the hub by name (offline here: HF_DATASETS_OFFLINE)
    with pytest.raises(SamatError) as err:
        load_dataset("rotten_tomatoes")
    message = str(err.value)
    assert "\n" not in message and "cornell-movie-review-data/rotten_tomatoes" in message
    assert "rt-polarity.pos" in message and "data/rotten_tomatoes" in message


def test_the_generated_corpus_is_fixed_labelled_and_leaves_a_synonym_to_the_attacks():
    a, b = generate(), generate()
    assert a.texts == b.texts and a.sizes() == {"train": 2000, "validation": 200, "test": 200}
    polarity = {w: g.polarity for g in GROUPS for w in g.words}
    for text, label in zip(a.texts["train"], a.labels["train"], strict=True):
        words = text.split()
        deciding = words[words.index("but") + 1:] if "but" in words else words
        signs = {polarity[w] for w in deciding if polarity.get(w)}
        assert signs == {1 if label == 1 else -1}, text
    used = {w for split in SPLITS for t in a.texts[split] for w in t.split()}
    unseen = {g.words[-1] for g in GROUPS if len(g.words) > 2}
    assert not used & unseen and used <= set(vocabulary())
    assert set(part_of_speech()) == set(vocabulary())
    assert all(sentence_words(g) == g.words[:-1] for g in GROUPS if len(g.words) > 2)
    assert 0.4 < a.labels["train"].mean() < 0.6


def test_tokenized_sentences_are_padded_and_truncated_as_the_tokenizer_does(tiny_model):
    from samat.empirical.models.transformer import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model), 8)
    corpus = generate({"train": 40, "validation": 8, "test": 8})
    data = corpus.tokenized(tokenizer, 8)
    assert data.kind == "text" and data.train_x.dtype == torch.int64
    for split in SPLITS:
        x = getattr(data, f"{split}_x")
        expected = tokenizer(list(corpus.texts[split]), truncation=True, max_length=8)["input_ids"]
        for row, ids in zip(x.tolist(), expected, strict=True):
            assert row[:len(ids)] == ids and set(row[len(ids):]) <= {data.pad_id}
    full = tokenizer(list(corpus.texts["train"]))["input_ids"]
    assert data.tokens["truncated"]["train"] == sum(len(t) > 8 for t in full) > 0
    subset = data.subset(10, 4, seed=0)  # the sentences follow their rows
    for split, size in (("train", 10), ("test", 4)):
        x = getattr(subset, f"{split}_x")
        again = tokenizer(list(subset.texts[split]), truncation=True, max_length=8)["input_ids"]
        assert len(again) == size and all(row[:len(ids)] == ids for row, ids in zip(x.tolist(), again, strict=True))
    assert subset.texts["validation"] == data.texts["validation"]
