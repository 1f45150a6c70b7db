"""Training configuration as data: one frozen dataclass, validated once, serializable to JSON.

Budgets are in input units (pixels in [0, 1]): strings such as "8/255" are parsed here, at the
edge, and never again. Defaults follow the papers (W §5.1, D §5.1.1): SGD with lr 0.1, momentum 0.9,
weight decay 5e-4; Adam with lr 1e-3; 100 epochs of batch 128; the learning rate divided by 10 at
75% and 90% of training; 10-step PGD for adversarial training.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from theory.errors import ParameterError

METHODS = ("sgd", "adam", "sam", "asam", "esam", "pgd_at")
SAM_FAMILY = ("sam", "asam", "esam")
BASE_OPTIMIZERS = ("sgd", "adam")
NORMS = ("linf", "l2")
SAM_GRADIENTS = ("allreduce", "local")  # which gradient SAM's ascent uses when data-parallel (world size > 1)
AT_FEATURES = ("all", "non_robust")  # "non_robust": AT perturbs x2..x_{n+1} only (the papers' AT on vector data)
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}


def parse_number(value: Any, name: str) -> float:
    """A float from a number or a string such as "8/255"."""
    if isinstance(value, bool):
        raise ParameterError(name, value, "a number")
    if isinstance(value, int | float):
        return float(value)
    try:
        text = str(value).strip()
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise ParameterError(name, value, "a number (fractions such as 8/255 are fine)") from None


@dataclass(frozen=True)
class TrainConfig:
    # data
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    train_subset: int | None = None  # examples kept from the training set (seeded, stratified)
    test_subset: int | None = None
    augment: str | None = None  # None: the dataset's default ("crop_flip" for CIFAR-like data)
    gaussian: dict[str, float] = field(default_factory=dict)  # p, eta, n, train_size, test_size for "gaussian"
    # model
    model: str = "small_cnn"
    # method
    method: str = "sgd"
    base_optimizer: str | None = None  # None: adam for method "adam", sgd otherwise
    lr: float | None = None  # None: 0.1 for SGD, 1e-3 for Adam
    momentum: float = 0.9
    weight_decay: float = 5e-4
    rho: float = 0.1  # SAM family: radius of the weight perturbation (l2)
    esam_beta: float = 0.6  # ESAM: fraction of weights perturbed (stochastic weight perturbation)
    esam_gamma: float = 0.5  # ESAM: fraction of the batch kept by sharpness-sensitive data selection
    # SAM family under data parallelism (world size > 1; no effect in one process): "allreduce" climbs along the
    # gradient of the whole global batch (every replica perturbs identically, as one process would); "local"
    # along each replica's own gradient (m-sharpness with m = the per-replica batch, Foret et al. 2021, §4.1)
    sam_gradients: str = "allreduce"
    at_norm: str = "linf"
    at_eps: float = 8 / 255  # input units
    at_alpha: float | None = None  # PGD step; None: 2.5 eps / steps (Madry et al.)
    at_steps: int = 10
    at_features: str = "all"
    # schedule
    epochs: int = 100
    batch_size: int = 128
    lr_milestones: tuple[float, ...] = (0.75, 0.9)  # fractions of training at which lr *= lr_decay
    lr_decay: float = 0.1
    # execution (not part of what a run *is*: may differ on resume)
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    bf16: bool | None = None  # None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA with image data
    compile: bool = False
    eval_batch_size: int = 512

    EXECUTION_FIELDS = ("device", "bf16", "channels_last", "compile", "eval_batch_size", "data_dir")

    def __post_init__(self) -> None:
        for name in ("lr", "at_eps", "at_alpha", "rho", "momentum", "weight_decay", "lr_decay", "esam_beta",
                     "esam_gamma"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, float):
                object.__setattr__(self, name, parse_number(value, name))
        object.__setattr__(self, "lr_milestones", tuple(parse_number(m, "lr_milestones") for m in self.lr_milestones))
        object.__setattr__(self, "gaussian", dict(self.gaussian))
        self.validate()

    # --- derived values ---------------------------------------------------------------------
    @property
    def optimizer_name(self) -> str:
        return self.base_optimizer or ("adam" if self.method == "adam" else "sgd")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer_name]

    @property
    def pgd_step(self) -> float:
        return self.at_alpha if self.at_alpha is not None else 2.5 * self.at_eps / self.at_steps

    def lr_factor(self, progress: float) -> float:
        """Piecewise-constant schedule: lr_decay^(number of milestones passed); progress in [0, 1]."""
        return self.lr_decay ** sum(progress >= m for m in self.lr_milestones)

    # --- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        _choice("method", self.method, METHODS)
        if self.base_optimizer is not None:
            _choice("base_optimizer", self.base_optimizer, BASE_OPTIMIZERS)
        _choice("at_norm", self.at_norm, NORMS)
        _choice("at_features", self.at_features, AT_FEATURES)
        _choice("sam_gradients", self.sam_gradients, SAM_GRADIENTS)
        _check("rho", self.rho, self.rho >= 0, ">= 0")
        if self.lr is not None:
            _check("lr", self.lr, self.lr > 0 and math.isfinite(self.lr), "> 0")
        _check("momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)")
        _check("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
        _check("esam_beta", self.esam_beta, 0 < self.esam_beta <= 1, "in (0, 1]")
        _check("esam_gamma", self.esam_gamma, 0 < self.esam_gamma <= 1, "in (0, 1]")
        _check("at_eps", self.at_eps, self.at_eps >= 0, ">= 0")
        if self.at_alpha is not None:
            _check("at_alpha", self.at_alpha, self.at_alpha > 0, "> 0")
        _integer("at_steps", self.at_steps, 1)
        _integer("epochs", self.epochs, 1)
        _integer("batch_size", self.batch_size, 1)
        _integer("eval_batch_size", self.eval_batch_size, 1)
        _integer("seed", self.seed, 0)
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), 1)
        for m in self.lr_milestones:
            _check("lr_milestones", m, 0 < m < 1, "fractions in (0, 1)")
        _check("lr_decay", self.lr_decay, 0 < self.lr_decay <= 1, "in (0, 1]")

    # --- (de)serialization ------------------------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ParameterError("config key", unknown[0], "one of " + ", ".join(cls.keys()))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict(self.to_dict() | changes)

    def identity(self) -> dict[str, Any]:
        """What a run *is*: everything but how it is executed (a resumed run must match this)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.EXECUTION_FIELDS}

    def default_name(self) -> str:
        method = self.method
        if self.method in SAM_FAMILY:
            method += f"-rho{self.rho:g}" + ("-local" if self.sam_gradients == "local" else "")
        if self.method == "pgd_at":
            method += f"-{self.at_norm}-eps{round(self.at_eps * 255, 3):g}of255"
        return f"{self.dataset}-{self.model}-{method}-seed{self.seed}"


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ParameterError(name, value, "one of " + ", ".join(options))


def _check(name: str, value: Any, ok: bool, valid: str) -> None:
    if not ok:
        raise ParameterError(name, value, valid)


def _integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(name, value, f"an integer >= {minimum}")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as JSON where it parses, else as text."""
    import json

    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ParameterError("--set", text, "key=value")
    if key not in TrainConfig.keys():
        raise ParameterError("config key", key, "one of " + ", ".join(TrainConfig.keys()))
    raw = raw.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if raw.lower() in ("none", "null"):
        value = None
    return key, value
