"""The papers' data model D(p, η, n) (:class:`samat.theory.model.GaussianModel`) as a dataset of vectors."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from samat.core.errors import ParameterError, SamatError, checked_table
from samat.core.machine import available_memory, human_bytes
from samat.core.numbers import is_int
from samat.empirical.data.dataset import Dataset, LoadRequest
from samat.empirical.vocabulary import Augment
from samat.theory.model import GaussianModel
from samat.theory.model import check_parameters as check_gaussian_parameters


@dataclass(frozen=True)
class GaussianSpec:
    """The papers' D(p, η, n) as a dataset, sampled with :class:`samat.theory.model.GaussianModel`."""

    p: float = 0.8  # probability that the robust feature x1 equals y
    eta: float = 0.5  # mean magnitude η of the n non-robust features N(ηy, 1)
    n: int = 10  # number of non-robust features (inputs have n + 1 coordinates)
    train_size: int = 10_000
    test_size: int = 10_000
    seed: int = 0  # the training set uses seed, the test set seed + 1

    def __post_init__(self) -> None:
        for name in ("p", "eta"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise ParameterError(name, value, "a number")
        check_gaussian_parameters(p=self.p, eta=self.eta, n=self.n)
        for name, low in (("n", 1), ("train_size", 1), ("test_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():  # 10.0 from a JSON/TOML config
                value = int(value)
            if not is_int(value) or value < low:
                raise ParameterError(name, value, f"an integer >= {low}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "p", float(self.p))
        object.__setattr__(self, "eta", float(self.eta))

    @classmethod
    def from_table(cls, table: object, name: str = "gaussian") -> GaussianSpec:
        """The spec of a configuration's ``gaussian`` table; a bad key or value is a ParameterError naming
        ``name.key``."""
        values = checked_table(table, name, GAUSSIAN_FIELDS)
        try:
            return cls(**values)
        except ParameterError as err:
            raise ParameterError(f"{name}.{err.name}", err.value, err.valid) from None


GAUSSIAN_FIELDS = tuple(f.name for f in dataclasses.fields(GaussianSpec))


def memory_needed(spec: GaussianSpec) -> int:
    """Peak bytes of drawing the dataset: the float32 copies of both splits, and the float64 sample of the larger
    split with its normal draw (GaussianModel.sample) while they are made."""
    width = spec.n + 1
    return 4 * (spec.train_size + spec.test_size) * width + 16 * max(spec.train_size, spec.test_size) * width


def load_gaussian(request: LoadRequest) -> Dataset:
    spec = request.gaussian
    needed, available = memory_needed(spec), available_memory()
    if available is not None and needed > available:
        raise SamatError(f"gaussian: {spec.train_size:,} + {spec.test_size:,} samples of n + 1 = {spec.n + 1:,} "
                         f"features need about {human_bytes(needed)} of memory, and this machine has "
                         f"{human_bytes(available)} available: lower gaussian.n, train_size or test_size")
    model = GaussianModel(spec.p, spec.eta, spec.n)

    def draw(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = model.sample(size, seed)
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy((y > 0).astype(np.int64))  # y=+1 -> 1

    train_x, train_y = draw(spec.train_size, spec.seed)
    test_x, test_y = draw(spec.test_size, spec.seed + 1)
    return Dataset("gaussian", train_x, train_y, test_x, test_y, 2, (), (), Augment.NONE)


