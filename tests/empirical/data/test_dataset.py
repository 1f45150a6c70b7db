"""The Dataset (samat.empirical.data.dataset): stratified subsets, devices, its description, and a loader for every
dataset name."""

from __future__ import annotations

import pytest
import torch

from samat.core.errors import ParameterError, SamatError
from samat.empirical import data as D
from samat.empirical.data import (
    Dataset,
    load_dataset,
)
from tests.empirical.data.helpers import uint8_images

# --------------------------------------------------------------------------------------------------
# Subsets, devices, description


def labelled(counts_train: list[int], counts_test: list[int]) -> Dataset:
    def split(counts):
        y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
        y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
        x = torch.arange(len(y), dtype=torch.float32)[:, None].repeat(1, 3)  # x[i] identifies example i
        return x, y

    (tx, ty), (vx, vy) = split(counts_train), split(counts_test)
    return Dataset("toy", tx, ty, vx, vy, len(counts_train), (), (), "none")


def test_subset_is_stratified_seeded_and_consistent():
    ds = labelled([500, 300, 200], [50, 30, 20])
    sub = ds.subset(train=100, test=10, seed=0)
    assert torch.bincount(sub.train_y).tolist() == [50, 30, 20]
    assert torch.bincount(sub.test_y).tolist() == [5, 3, 2]
    # Each kept example keeps its own label, without repeats.
    idx = sub.train_x[:, 0].long()
    assert torch.equal(ds.train_y[idx], sub.train_y) and len(set(idx.tolist())) == 100
    # Seeded: same seed same subset, another seed another one.
    assert torch.equal(ds.subset(100, 10, seed=0).train_x, sub.train_x)
    assert not torch.equal(ds.subset(100, 10, seed=1).train_x, sub.train_x)
    # None keeps a split whole; a size that does not divide evenly still sums exactly.
    whole = ds.subset(train=None, test=7, seed=0)
    assert whole.train_x is ds.train_x and len(whole.test_y) == 7
    counts = torch.bincount(ds.subset(train=11, test=None, seed=5).train_y, minlength=3)
    assert counts.sum() == 11 and torch.all((counts - 11 * torch.tensor([0.5, 0.3, 0.2])).abs() < 1)


@pytest.mark.parametrize("train", [0, -1, 1001, 2.5, True])
def test_bad_subset_sizes_are_parameter_errors(train):
    with pytest.raises(ParameterError, match=r"train_subset=.* or None \(all\)"):
        labelled([500, 300, 200], [50, 30, 20]).subset(train=train, test=None, seed=0)


def test_to_moves_every_tensor_and_keeps_dtypes():
    """Moved to another device (the meta device here, which every machine has), images stay uint8."""
    ds = uint8_images()
    moved = ds.to("meta")
    for key in ("train_x", "train_y", "test_x", "test_y"):
        a, b = getattr(ds, key), getattr(moved, key)
        assert b.device.type == "meta" and a.device.type == "cpu" and b.dtype == a.dtype and b.shape == a.shape
    assert moved.train_x.dtype == torch.uint8 and moved.train_y.dtype == torch.int64
    assert (moved.mean, moved.std, moved.augment) == (ds.mean, ds.std, ds.augment) and "on meta" in moved.describe()


def test_describe_is_one_line():
    line = labelled([5, 5], [2, 2]).describe()
    assert "\n" not in line and "toy" in line and "train 10" in line and "test 4" in line


def test_every_dataset_name_has_a_loader_and_the_gaussian_table_its_fields():
    from samat.empirical.data.gaussian import GAUSSIAN_FIELDS
    from samat.empirical.vocabulary import DatasetName, Task

    assert list(D.DATASETS) == list(DatasetName)
    assert GAUSSIAN_FIELDS == ("p", "eta", "n", "train_size", "test_size", "seed")
    # every classification dataset's shape is known without loading it (the planner's input); the Gaussian one
    # from its table; segmentation datasets are refused in one line (the planner does not cover them)
    classification = [name for name in DatasetName if name.task is Task.CLASSIFICATION]
    assert all(D.data_shape(name) is not None for name in classification)
    for name in set(DatasetName) - set(classification):
        with pytest.raises(SamatError, match="cannot be planned"):
            D.data_shape(name)
    spec = D.GaussianSpec(n=4, train_size=300, test_size=200)
    ds = load_dataset("gaussian", gaussian=spec)
    assert D.data_shape("gaussian", spec) == D.DataShape(len(ds.train_y), len(ds.test_y), ds.input_shape,
                                                         ds.num_classes)
