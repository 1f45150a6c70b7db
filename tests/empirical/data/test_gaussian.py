"""The papers' Gaussian model as a dataset (samat.empirical.data.gaussian)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samat.core.errors import ParameterError
from samat.empirical.data import (
    GaussianSpec,
    load_dataset,
)
from tests.empirical.data.helpers import Z

# --------------------------------------------------------------------------------------------------
# The Gaussian model as a dataset


def test_gaussian_dataset_matches_the_model():
    spec = GaussianSpec(p=0.7, eta=0.3, n=4, train_size=20_000, test_size=5_000, seed=3)
    ds = load_dataset("gaussian", gaussian=spec)
    assert ds.kind == "vector" and ds.input_shape == (5,) and ds.num_classes == 2 and ds.augment == "none"
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64 and ds.mean == ds.std == ()
    assert len(ds.train_y) == 20_000 and len(ds.test_y) == 5_000
    assert not torch.equal(ds.train_x[:5_000], ds.test_x)  # the test set has its own seed

    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        x, y = x.double(), y
        sign = 2.0 * y.double() - 1  # class 1 means y = +1
        # The robust feature equals y with probability p.
        agree = (x[:, 0] == sign).double().mean().item()
        assert abs(agree - spec.p) <= Z * np.sqrt(spec.p * (1 - spec.p) / len(y))
        # Non-robust features: class-conditional mean ±η, unit variance.
        for cls, target in ((1, spec.eta), (0, -spec.eta)):
            rows = x[y == cls, 1:]
            assert torch.all((rows.mean(0) - target).abs() <= Z / np.sqrt(len(rows)))
        # Balanced classes.
        assert abs(y.double().mean().item() - 0.5) <= Z * 0.5 / np.sqrt(len(y))

    # The same samples as theory.model.GaussianModel.sample with the spec's seeds.
    from samat.theory.model import GaussianModel

    x, y = GaussianModel(0.7, 0.3, 4).sample(5_000, 4)
    np.testing.assert_array_equal(ds.test_x.numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(ds.test_y.numpy(), (y > 0).astype(np.int64))


def test_gaussian_spec_is_validated():
    with pytest.raises(ParameterError, match="p=0.4"):
        GaussianSpec(p=0.4)
    with pytest.raises(ParameterError, match="train_size=0"):
        GaussianSpec(train_size=0)
    with pytest.raises(ParameterError, match="n=2.5"):
        GaussianSpec(n=2.5)
    # Integral floats, as a JSON or TOML config gives them, are accepted as integers.
    spec = GaussianSpec(n=3.0, train_size=50.0, test_size=20.0, seed=1.0)
    assert (spec.n, spec.train_size, spec.seed) == (3, 50, 1) and isinstance(spec.n, int)
    assert load_dataset("gaussian", gaussian=spec).input_shape == (4,)
