"""Training configuration as data: one frozen dataclass, validated once, serializable to JSON.

Budgets are in input units (pixels in [0, 1]): strings such as "8/255" are parsed here, at the
edge, and never again. Choices are the typed vocabularies of :mod:`samat.empirical.vocabulary`. Defaults follow
the papers (W §5.1, D §5.1.1): SGD with lr 0.1, momentum 0.9, weight decay 5e-4; Adam with lr 1e-3; 100
epochs of batch 128; the learning rate divided by 10 at 75% and 90% of training; 10-step PGD for
adversarial training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samat.core.errors import ParameterError, SamatError, checked_table
from samat.core.numbers import SEED_RANGE, is_int, is_seed, parse_number
from samat.empirical.attacks.pgd import default_step_size
from samat.empirical.attacks.specs import budget_problem
from samat.empirical.data import input_shape_of
from samat.empirical.data.gaussian import GAUSSIAN_FIELDS, GaussianSpec
from samat.empirical.training.segmentation import SegmentationSpec
from samat.empirical.training.text import TextSpec, linear_factor, warmup_steps
from samat.empirical.vocabulary import (
    MAX_STEPS,
    THREAT_NORMS,
    Architecture,
    AtFeatures,
    Augment,
    DatasetName,
    LrSchedule,
    Method,
    Norm,
    Optimizer,
    SamGradients,
    Task,
)

COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")  # torch.compile backends a configuration may name
# Keys renamed to the glossary's words (docs/ARCHITECTURE.md): the old spelling is still read, with a warning that
# names the new one, so that older configuration files and run folders load
RENAMED = {"at_alpha": "at_step_size"}


@dataclass(frozen=True)
class TrainConfig:
    # data
    dataset: str = DatasetName.FASHION_MNIST  # a DatasetName, or the name of a Dataset passed in by code
    data_dir: str | None = None
    train_subset: int | None = None  # examples kept from the training set (seeded, stratified)
    test_subset: int | None = None
    augment: Augment | None = None  # None: the dataset's default (crop_flip for CIFAR-like data)
    gaussian: dict[str, float] = field(default_factory=dict)  # p, eta, n, train_size, test_size for "gaussian"
    # model
    model: Architecture = Architecture.SMALL_CNN
    segmentation: dict[str, Any] = field(default_factory=dict)  # segmentation networks: training/segmentation.py
    text: dict[str, Any] = field(default_factory=dict)  # text classifiers (model transformer): training/text.py
    # method
    method: Method = Method.SGD
    base_optimizer: Optimizer | None = None  # None: the method's own (adam for "adam", sgd otherwise)
    lr: float | None = None  # None: 0.1 for SGD, 1e-3 for Adam
    momentum: float = 0.9
    weight_decay: float = 5e-4
    rho: float = 0.1  # SAM family: radius of the weight perturbation (l2)
    esam_beta: float = 0.6  # ESAM: fraction of weights perturbed (stochastic weight perturbation)
    esam_gamma: float = 0.5  # ESAM: fraction of the batch kept by sharpness-sensitive data selection
    # SAM family under data parallelism (world size > 1; no effect in one process): "allreduce" climbs along the
    # gradient of the whole global batch (every replica perturbs identically, as one process would); "local"
    # along each replica's own gradient (m-sharpness with m = the per-replica batch, Foret et al. 2021, §4.1)
    sam_gradients: SamGradients = SamGradients.ALLREDUCE
    at_norm: Norm = Norm.LINF
    at_eps: float = 8 / 255  # input units
    at_step_size: float | None = None  # PGD's step size, input units; None: default_step_size (2.5 eps / steps)
    at_steps: int = 10
    at_features: AtFeatures = AtFeatures.ALL
    # schedule
    epochs: int = 100
    batch_size: int = 128
    lr_milestones: tuple[float, ...] = (0.75, 0.9)  # fractions of training at which lr *= lr_decay
    lr_decay: float = 0.1
    lr_schedule: LrSchedule = LrSchedule.STEP  # "poly": lr (1 - t)^lr_power (DeepLab; D Section 5.2)
    lr_power: float = 0.9
    warmup_ratio: float = 0.0  # "linear": the fraction of the steps over which lr rises linearly from 0
    # Counted in iterations instead (D Section 5.2: 30,000): `iterations` steps replace `epochs` passes, and the
    # run is tested, logged and checkpointed every `eval_every` iterations (a round) instead of every epoch.
    iterations: int | None = None
    eval_every: int = 1000
    # execution (not part of what a run *is*: may differ on resume)
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    bf16: bool | None = None  # None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA with image data
    # The fast path (one process only; empirical.training.fast): ``compile`` torch.compiles the model for full
    # batches (null: on for CUDA; true: the inductor backend; or a backend's name: inductor, aot_eager, eager);
    # ``cuda_graph`` replays each full batch's whole step as one CUDA graph (null: on for CUDA)
    compile: bool | str | None = None
    cuda_graph: bool | None = None
    eval_batch_size: int = 512

    EXECUTION_FIELDS = ("device", "bf16", "channels_last", "compile", "cuda_graph", "eval_batch_size", "data_dir")

    def __post_init__(self) -> None:
        for name in ("lr", "at_eps", "at_step_size", "rho", "momentum", "weight_decay", "lr_decay", "esam_beta",
                     "esam_gamma", "lr_power", "warmup_ratio"):
            value = getattr(self, name)
            if value is None and name not in ("lr", "at_step_size"):
                raise ParameterError(name, value, "a number")
            if value is not None and not isinstance(value, float):
                object.__setattr__(self, name, parse_number(value, name))
        if not isinstance(self.lr_milestones, list | tuple):
            raise ParameterError("lr_milestones", self.lr_milestones, "a list of fractions in (0, 1)")
        object.__setattr__(self, "lr_milestones", tuple(parse_number(m, "lr_milestones") for m in self.lr_milestones))
        object.__setattr__(self, "gaussian", checked_table(self.gaussian, "gaussian", GAUSSIAN_FIELDS))
        for name in ("at_steps", "epochs", "batch_size", "eval_batch_size", "seed", "train_subset", "test_subset",
                     "iterations", "eval_every"):
            if is_int(getattr(self, name)):  # numpy integers become ints (JSON-serializable)
                object.__setattr__(self, name, int(getattr(self, name)))
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if isinstance(self.dataset, str):  # the spelling load_dataset accepts ("Fashion-MNIST"), stored canonically
            name = self.dataset.strip().lower().replace("-", "_")
            object.__setattr__(self, "dataset", DatasetName(name) if name in set(DatasetName) else name)
        self._parse_choices()
        self._parse_tables()
        self._check_ranges()
        self._check_task()

    # --- parsing: each field from what a file or a command line gives to its type, once ---------------------------
    def _parse_choices(self) -> None:
        """Each choice as its vocabulary's member (a ParameterError naming the first bad one); the augmentation
        after the dataset is known to be a name."""
        choices = (("method", Method), ("base_optimizer", Optimizer), ("at_norm", Norm), ("at_features", AtFeatures),
                   ("sam_gradients", SamGradients), ("model", Architecture), ("lr_schedule", LrSchedule))
        for name, vocabulary in choices:
            value = getattr(self, name)
            if value is None and name == "base_optimizer":
                continue
            object.__setattr__(self, name, vocabulary.parse(value, name))
        if self.at_norm not in THREAT_NORMS:
            raise ParameterError("at_norm", self.at_norm, "one of " + ", ".join(THREAT_NORMS))
        _check("dataset", self.dataset, isinstance(self.dataset, str) and bool(self.dataset),
               "a dataset name: one of " + DatasetName.choices())
        if self.augment is not None:
            object.__setattr__(self, "augment", Augment.parse(self.augment, "augment"))

    def _parse_tables(self) -> None:
        """The ``gaussian``, ``segmentation`` and ``text`` tables as their specs (kept beside the tables, which stay
        as given: they are what config.json records)."""
        object.__setattr__(self, "_gaussian_spec", GaussianSpec.from_table(self.gaussian))
        if not isinstance(self.segmentation, Mapping):
            raise ParameterError("segmentation", self.segmentation, "a table of segmentation settings")
        object.__setattr__(self, "segmentation", dict(self.segmentation))
        object.__setattr__(self, "_segmentation_spec", SegmentationSpec.from_table(self.segmentation))
        if not isinstance(self.text, Mapping):
            raise ParameterError("text", self.text, "a table of text settings")
        object.__setattr__(self, "text", dict(self.text))
        object.__setattr__(self, "_text_spec", TextSpec.from_table(self.text))

    # --- derived values ---------------------------------------------------------------------
    @property
    def optimizer_name(self) -> Optimizer:
        return self.base_optimizer or Optimizer(self.method.optimizer)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else self.optimizer_name.default_lr

    @property
    def gaussian_spec(self) -> GaussianSpec:
        """The ``gaussian`` table as a :class:`GaussianSpec` (parsed once, when the configuration was made)."""
        return self._gaussian_spec

    @property
    def pgd_step_size(self) -> float:
        """The step size of adversarial training's PGD: ``at_step_size``, or the default rule where it is null."""
        return self.at_step_size if self.at_step_size is not None else default_step_size(self.at_eps, self.at_steps)

    @property
    def segmentation_spec(self) -> SegmentationSpec:
        """The ``segmentation`` table as a :class:`SegmentationSpec` (parsed once, when the configuration was made)."""
        return self._segmentation_spec

    @property
    def text_spec(self) -> TextSpec:
        """The ``text`` table as a :class:`TextSpec` (parsed once, when the configuration was made)."""
        return self._text_spec

    @property
    def round_steps(self) -> int | None:
        """Iterations per round of an iteration-counted run; None when a round is an epoch (a pass over the data)."""
        return None if self.iterations is None else min(self.eval_every, self.iterations)

    def round_name(self, rounds: int) -> str:
        """The point after ``rounds`` rounds, as people count this run: "epoch 3", or "iteration 600" for a run
        counted in iterations (where a round is ``round_steps`` iterations, not a pass over the data)."""
        return f"epoch {rounds}" if self.round_steps is None else f"iteration {rounds * self.round_steps}"

    @property
    def rounds(self) -> int:
        """Rounds of training: epochs, or iterations / round_steps (each round ends with a test and a checkpoint)."""
        return self.epochs if self.iterations is None else self.iterations // self.round_steps

    def lr_factor(self, progress: float) -> float:
        """The learning rate's factor after a fraction ``progress`` in [0, 1] of training: "step" lr_decay^(number
        of milestones passed); "poly" (1 - progress)^lr_power. "linear" counts whole steps: :meth:`lr_factor_at`."""
        if self.lr_schedule is LrSchedule.LINEAR:
            raise ValueError("the linear schedule counts whole steps: use lr_factor_at(step, total_steps)")
        if self.lr_schedule is LrSchedule.POLY:
            return (1.0 - progress) ** self.lr_power
        return self.lr_decay ** sum(progress >= m for m in self.lr_milestones)

    def lr_factor_at(self, step: int, total_steps: int) -> float:
        """The factor at the (0-based) step ``step`` of ``total_steps``: "linear" counts its warm-up in whole steps
        as transformers' Trainer does (:func:`~empirical.training.text.linear_factor`); the others follow
        :meth:`lr_factor` of step / total_steps."""
        if self.lr_schedule is LrSchedule.LINEAR:
            return linear_factor(step, total_steps, self.warmup_ratio)
        return self.lr_factor(step / total_steps)

    def schedule_record(self, total_steps: int) -> dict[str, Any]:
        """What a run records of its learning-rate schedule."""
        record: dict[str, Any] = {"kind": self.lr_schedule.value, "description": self.lr_schedule.display,
                                  "peak_lr": self.learning_rate, "total_steps": total_steps}
        if self.lr_schedule is LrSchedule.LINEAR:
            record["warmup_steps"] = warmup_steps(self.warmup_ratio, total_steps)
        elif self.lr_schedule is LrSchedule.POLY:
            record["power"] = self.lr_power
        else:
            record |= {"milestones": list(self.lr_milestones), "decay": self.lr_decay}
        return record

    # --- checks (nothing is parsed or assigned here) ---------------------------------------------------------
    def _check_ranges(self) -> None:
        """A ParameterError naming the first field outside its range.

        ``dataset`` is not checked against :class:`DatasetName` here: :func:`samat.empirical.training.loop.train`
        also trains on a Dataset passed in under its own name; ``train`` loads a named one (and so checks the name,
        the folder and the subset sizes) before it touches the run directory.
        """
        if self.dataset == DatasetName.GAUSSIAN:  # vectors: no image augmentation, and x1 is the robust feature
            _check("augment", self.augment, self.augment in (None, Augment.NONE),
                   "none or null for the gaussian dataset")
        elif self.at_features is AtFeatures.NON_ROBUST:
            raise ParameterError("at_features", self.at_features,
                                 "'all' for image data (non_robust is for the gaussian model)")
        # Budgets and rates: finite (inf or nan would train to NaN weights) and in range
        _finite("rho", self.rho, self.rho >= 0, ">= 0")
        if self.lr is not None:
            _finite("lr", self.lr, self.lr > 0, "> 0")
        _finite("momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)")
        _finite("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
        _finite("esam_beta", self.esam_beta, 0 < self.esam_beta <= 1, "in (0, 1]")
        _finite("esam_gamma", self.esam_gamma, 0 < self.esam_gamma <= 1, "in (0, 1]")
        _finite("at_eps", self.at_eps, self.at_eps >= 0, ">= 0")
        if self.at_step_size is not None:
            _finite("at_step_size", self.at_step_size, self.at_step_size > 0, "> 0")
        _integer("at_steps", self.at_steps, 1, MAX_STEPS)
        _integer("epochs", self.epochs, 1)
        _integer("batch_size", self.batch_size, 1)
        _integer("eval_batch_size", self.eval_batch_size, 1)
        _check("seed", self.seed, is_seed(self.seed), SEED_RANGE)
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), 1)
        for m in self.lr_milestones:
            _check("lr_milestones", m, 0 < m < 1, "fractions in (0, 1)")
        _finite("lr_decay", self.lr_decay, 0 < self.lr_decay <= 1, "in (0, 1]")
        _finite("lr_power", self.lr_power, self.lr_power > 0, "> 0")
        _finite("warmup_ratio", self.warmup_ratio, 0 <= self.warmup_ratio < 1, "in [0, 1)")
        if self.iterations is not None:
            _integer("iterations", self.iterations, 1)
        _integer("eval_every", self.eval_every, 1)
        if self.iterations is not None and self.iterations % self.round_steps:
            raise ParameterError("eval_every", self.eval_every, f"a divisor of iterations={self.iterations}")
        if self.method.adversarial:  # the rule every attack's budget follows too (attacks.specs.budget_problem)
            shape = input_shape_of(self.dataset, self._gaussian_spec)
            if (why := budget_problem(self.at_norm, self.at_eps, shape)) is not None:
                raise ParameterError("at_eps", self.at_eps, why)
        if self.data_dir is not None:
            _check("data_dir", self.data_dir, isinstance(self.data_dir, str) and bool(self.data_dir),
                   "a folder (text) or null (the dataset's default)")
        _check("device", self.device, isinstance(self.device, str), "auto, cpu, cuda or cuda:N")
        for name in ("bf16", "channels_last"):
            value = getattr(self, name)
            _check(name, value, value is None or isinstance(value, bool), "true, false or null (automatic)")
        _check("compile", self.compile, self.compile is None or isinstance(self.compile, bool)
               or self.compile in COMPILE_BACKENDS, "true, false, null (automatic) or a backend: "
               + ", ".join(COMPILE_BACKENDS))
        _check("cuda_graph", self.cuda_graph, self.cuda_graph is None or isinstance(self.cuda_graph, bool),
               "true, false or null (automatic)")

    def _check_task(self) -> None:
        """A segmentation network for a segmentation dataset and a classifier for the others; the segmentation
        table and augmentation only with them (a dataset passed in by code is checked when the run is built)."""
        segmenting = self.model.task is Task.SEGMENTATION
        texting = self.model.task is Task.TEXT
        if self.text and not texting:
            raise ParameterError("text", self.text, f"empty for {self.model} (only the transformer takes text "
                                 "settings)")
        if texting and self.augment not in (None, Augment.NONE):
            raise ParameterError("augment", self.augment, "none or null for a text model")
        if texting and self.method.adversarial:
            methods = ", ".join(m.value for m in Method if not m.adversarial)
            raise ParameterError("method", self.method, f"one of {methods} for a text model (PGD-AT perturbs "
                                 "images)")
        if self.segmentation and not segmenting:
            raise ParameterError("segmentation", self.segmentation, f"empty for {self.model} (a classifier)")
        if self.augment is Augment.SCALE_CROP_FLIP and not segmenting:
            raise ParameterError("augment", self.augment, "none, crop or crop_flip for a classifier")
        if segmenting and self.augment not in (None, Augment.NONE, Augment.SCALE_CROP_FLIP):
            raise ParameterError("augment", self.augment, "none or scale_crop_flip for a segmentation network")
        if isinstance(self.dataset, DatasetName) and self.dataset.task is not self.model.task:
            networks = ", ".join(a.value for a in Architecture if a.task is self.dataset.task)
            raise ParameterError("model", self.model, f"one of {networks} for the {self.dataset.task.display} "
                                 f"dataset {self.dataset}")

    # --- (de)serialization ------------------------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The configuration of a table of fields (a file, --set, a run's config.json); renamed keys are read under
        their new names (:data:`RENAMED`)."""
        values = dict(values)
        for old in RENAMED.keys() & values.keys():
            new = renamed_key(old)
            if new in values:
                raise ParameterError(old, values[old], f"absent: it is the old name of {new}, which is given too")
            values[new] = values.pop(old)
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
        method = self.method.value
        if self.method.sharpness_aware:
            method += f"-rho{self.rho:g}" + ("-local" if self.sam_gradients is SamGradients.LOCAL else "")
        if self.method.adversarial:
            method += f"-{self.at_norm}-eps{round(self.at_eps * 255, 3):g}of255"
        return f"{self.dataset}-{self.model}-{method}-seed{self.seed}"


def renamed_key(key: str) -> str:
    """A configuration key under its glossary name: an old spelling is replaced, and said once per process (a
    FutureWarning)."""
    if key not in RENAMED:
        return key
    if key not in _SAID:
        _SAID.add(key)
        warnings.warn(f"the configuration key {key} is deprecated: it is now called {RENAMED[key]}", FutureWarning,
                      stacklevel=3)
    return RENAMED[key]


_SAID: set[str] = set()  # the old keys already said


def _check(name: str, value: Any, ok: bool, valid: str) -> None:
    if not ok:
        raise ParameterError(name, value, valid)


def _finite(name: str, value: float, ok: bool, valid: str) -> None:
    if not (math.isfinite(value) and ok):
        raise ParameterError(name, value, f"{valid} and finite")


def _integer(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        raise ParameterError(name, value, f"an integer >= {minimum}" if maximum is None else
                             f"an integer in [{minimum}, {maximum:,}]")


def read_document(path: os.PathLike | str, what: str, hint: str = "") -> dict[str, Any]:
    """A TOML (``.toml``) or JSON file holding a table, or a one-line SamatError saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise SamatError(f"{what} {path} not found{hint}")
    if path.is_dir():
        raise SamatError(f"{what} {path} is a folder: give a file{hint}")
    try:
        text = path.read_bytes().decode()
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as err:
        raise SamatError(f"cannot read {what} {path}: {err.strerror or type(err).__name__}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SamatError(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {err}") from None
    if not isinstance(doc, dict):
        raise SamatError(f"{path} must hold a table of settings, not a {type(doc).__name__}")
    return doc


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as JSON where it parses, else as text."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ParameterError("--set", text, "key=value")
    key = renamed_key(key)
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
