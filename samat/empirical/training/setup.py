"""What a run is made of, built from its configuration: the device, the data, the model, the optimizer and
the step context. On CUDA it switches on bf16 autocast, channels_last, cudnn.benchmark and, in one process,
the fast step (:mod:`.fast`: the model compiled, each full batch's step replayed as one CUDA graph); the same
code runs on the CPU, eagerly unless the configuration asks for ``compile``. A segmentation run (a segmentation
dataset and network) gets the per-pixel objective and the joint augmentation of :mod:`.segmentation`; a text run
(a text dataset and the transformer) gets its sentences tokenized by its model's tokenizer (:mod:`.text`), AdamW's
weight-decay exemptions, and no fast path (its batches change length)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.data import IMAGE_BOX, BatchStream, Dataset, TextCorpus, TextDataset, load_dataset
from samat.empirical.models import build_model
from samat.empirical.models.transformer import check_max_length, load_tokenizer, model_config, no_weight_decay
from samat.empirical.training import distributed, segmentation
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.distributed import World
from samat.empirical.training.fast import COMPILED, EAGER, GRAPH, FastStep
from samat.empirical.training.optimizers import (
    build_optimizer,
    build_perturbation,
    make_capturable,
    make_eager,
    set_learning_rate,
)
from samat.empirical.training.precision import set_tf32
from samat.empirical.training.steps import CLASSIFICATION, STEPS, Objective, Step, StepContext
from samat.empirical.vocabulary import Augment, DatasetName, Task


def resolve_device(name: str) -> torch.device:
    """The device a configuration or a command names ("auto": CUDA where there is one, else the CPU), once: a name
    this machine lacks is a ParameterError. Commands resolve it at their edge and pass the device down."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParameterError("device", name, "auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", name, "auto or cpu on this machine (no CUDA device is available)")
    return device



SWITCH_OFF = "--set compile=false --set cuda_graph=false"  # what turns the fast path off, in `samat train`'s words


@dataclass(frozen=True)
class FastPath:
    """How a run's full batches are trained: the model's torch.compile backend (None: not compiled), whether each
    step is replayed as one CUDA graph, and why the fast path the configuration asks for is off (None: it is not)."""

    compile_backend: str | None
    cuda_graph: bool
    off: str | None = None

    @property
    def path(self) -> str:
        """"graph", "compiled" or "eager" (what final.json records)."""
        return GRAPH if self.cuda_graph else (COMPILED if self.compile_backend else EAGER)

    def describe(self) -> str:
        """For `samat train`'s first line: "CUDA-graph step (compiled with inductor)", "eager step", ..."""
        compiled = f"compiled with {self.compile_backend}" if self.compile_backend else ""
        if self.cuda_graph:
            return "CUDA-graph step" + (f" ({compiled})" if compiled else "")
        return f"compiled step ({self.compile_backend})" if compiled else "eager step"


def _triton() -> bool:
    """Whether triton can be imported (inductor's GPU kernels; a CUDA build of torch brings it)."""
    try:
        from torch.utils._triton import has_triton  # private, but the check inductor itself makes
    except ImportError:
        return False
    return has_triton()


def _c_compiler() -> str | None:
    """The C compiler Triton builds its launcher with: $CC, else gcc, else clang (triton.runtime.build)."""
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")


def _cpp_compiler() -> bool:
    """Whether inductor's CPU backend finds its C++ compiler ($CXX or g++)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler  # private, but the search inductor itself makes
        get_cpp_compiler()
    except Exception:  # noqa: BLE001 - InvalidCxxCompiler, or a torch that moved it: either way, no compile
        return False
    return True


def inductor_missing(device: torch.device) -> str | None:
    """What inductor lacks to compile for ``device`` on this machine (None: nothing). On CUDA: Triton, and the C
    compiler and Python's headers that Triton builds its launcher with at run time; on a CPU: a C++ compiler and
    Python's headers (inductor's CPU kernels are C++ modules that include Python.h)."""
    if device.type == "cuda":
        if not _triton():
            return "triton is not installed (inductor's GPU kernels are Triton kernels)"
        if _c_compiler() is None:
            return "no C compiler was found (gcc, clang or $CC; Triton compiles its launcher with it)"
    elif not _cpp_compiler():
        return "no C++ compiler was found (g++ or $CXX; inductor's CPU backend compiles its kernels with it)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "Python's headers (Python.h) are missing (inductor builds its kernels against them)"
    return None


def fast_path(cfg: TrainConfig, device: torch.device, world: World) -> FastPath:
    """The fast path of a run: on CUDA in one process, by default, the model compiled with inductor and each full
    batch's step replayed as a CUDA graph; off on the CPU and under torchrun unless the configuration asks.
    Inductor where it cannot run here (:func:`inductor_missing`) means the eager step, with the reason in ``off``
    (the run says so in one line and records it). A CUDA graph where none can be taken is a ParameterError."""
    automatic = device.type == "cuda" and not world.distributed and cfg.model.task is not Task.TEXT
    if cfg.model.task is Task.TEXT:  # per-batch padding: every batch has its own length, and would recompile
        if cfg.compile:
            raise ParameterError("compile", cfg.compile, "false or null for a text model (its batches are padded "
                                 "to their own length)")
        if cfg.cuda_graph:
            raise ParameterError("cuda_graph", cfg.cuda_graph, "false or null for a text model (its batches are "
                                 "padded to their own length)")
    if cfg.compile is None:
        backend = "inductor" if automatic else None
    else:
        backend = "inductor" if cfg.compile is True else (cfg.compile or None)
    graph = automatic if cfg.cuda_graph is None else cfg.cuda_graph
    if graph and device.type != "cuda":
        raise ParameterError("cuda_graph", cfg.cuda_graph, "false or null on a CPU (CUDA graphs need a CUDA device)")
    if graph and world.distributed:
        raise ParameterError("cuda_graph", cfg.cuda_graph, "false or null under torchrun (one process only)")
    if backend == "inductor" and (missing := inductor_missing(device)):
        return FastPath(None, False, missing)
    return FastPath(backend, graph)


def fallback_message(reason: str) -> str:
    """The one line a run says when its fast path is off: why, and the switch that skips it."""
    return f"fast path off: {reason}; training on the eager step ({SWITCH_OFF} skips the fast path)"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def round_seed(seed: int, index: int) -> int:
    """The seed of round ``index`` (from 0) of a run: the same for every seed below 2**64 / 1,000,003 as before seeds
    up to 2**63 - 1 were allowed (taken modulo 2**64, what a generator's seed holds)."""
    return (seed * 1_000_003 + index) % 2**64


def round_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The generator of round ``index``: shuffling, augmentation, ESAM's masks, PGD's random start."""
    return torch.Generator(device=device).manual_seed(round_seed(seed, index))


def tokenize(cfg: TrainConfig, corpus: TextCorpus) -> TextDataset:
    """A text dataset's sentences as token ids of the run's model (``text.max_length`` checked against it)."""
    spec = cfg.text_spec
    check_max_length(spec.model, spec.max_length, model_config(spec.model))
    return corpus.tokenized(load_tokenizer(spec.model, spec.max_length), spec.max_length, spec.num_labels)


def load_data(cfg: TrainConfig, *, subsets: bool = True) -> Dataset:
    """The configuration's dataset, on the CPU; with ``subsets``, cut to its train_subset and test_subset (an
    evaluation draws its own subset of the whole test split). A text dataset's sentences come tokenized by the
    run's model's tokenizer."""
    gaussian = cfg.gaussian_spec if cfg.dataset == DatasetName.GAUSSIAN else None
    data = load_dataset(cfg.dataset, cfg.data_dir, gaussian=gaussian)
    if isinstance(data, TextCorpus):
        data = tokenize(cfg, data)
    if subsets and (cfg.train_subset is not None or cfg.test_subset is not None):
        data = data.subset(cfg.train_subset, cfg.test_subset, seed=cfg.seed)
    return data


def build_network(cfg: TrainConfig, data: Dataset) -> nn.Module:
    """The configuration's network for ``data`` (its input shape, classes and normalization; a segmentation
    network with the configuration's options; a text classifier named by its ``text`` table, padding with the
    dataset's pad id), on the CPU, initialized from torch's global generator."""
    options = cfg.segmentation_spec.model_options if data.task is Task.SEGMENTATION else None
    if data.task is Task.TEXT:
        options = cfg.text_spec.model_options(data.pad_id)
    return build_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, mean=data.mean,
                       std=data.std, options=options)


@dataclass
class Setup:
    """Everything a run is made of, built from its configuration."""

    device: torch.device
    data: Dataset
    ctx: StepContext  # holds the configuration and the model
    bf16: bool
    channels_last: bool
    world: World = World()  # one process unless launched data-parallel
    shard_weight: distributed.ShardWeight | None = None  # this rank's share of the global batch (DDP only)
    step: Step | None = None  # the method's step, or its fast path (None: the method's step)
    compile_backend: str | None = None  # the model's torch.compile backend on full batches (None: eager)
    cuda_graph: bool = False  # each full batch's step replayed as one CUDA graph
    fallback: str | None = None  # why the fast path the configuration asks for is off (None: it is not)
    notice: Callable[[str], None] = _stderr  # where the one line about a fast path given up goes
    learning_rate: float | None = None  # the last one set (set_learning_rate), exactly

    def __post_init__(self) -> None:
        if self.step is None:
            self.step = STEPS[self.cfg.method]
        if isinstance(self.step, FastStep):
            self.step.on_fallback = self._fall_back

    @property
    def step_path(self) -> str:
        """What trains the full batches now: "graph", "compiled" or "eager" (recorded with every round)."""
        if isinstance(self.step, FastStep):
            return self.step.path
        return COMPILED if self.compile_backend else EAGER

    def set_learning_rate(self, lr: float) -> None:
        """Every group's learning rate (in place on the fast path: the compiled or captured step reads it)."""
        set_learning_rate(self.ctx.optimizer, lr)
        self.learning_rate = lr

    def _fall_back(self, reason: str) -> None:
        """The fast step failed on its first batch and put back what it changed: the optimizer as the eager step
        has it, and one line saying so."""
        if self.cuda_graph:
            make_eager(self.ctx.optimizer, self.cfg.learning_rate if self.learning_rate is None
                       else self.learning_rate)
        self.fallback = reason
        self.notice(fallback_message(reason))

    def load_state(self, state: dict) -> None:
        """A checkpoint's weights and optimizer state (then the fast path's optimizer settings again)."""
        self.model.load_state_dict(state["model"])
        self.ctx.optimizer.load_state_dict(state["optimizer"])
        if self.cuda_graph and self.step_path == GRAPH:
            make_capturable(self.ctx.optimizer, self.device)

    @property
    def cfg(self) -> TrainConfig:
        return self.ctx.cfg

    @property
    def model(self) -> nn.Module:
        return self.ctx.model

    @property
    def augment(self) -> Augment:
        return self.cfg.augment if self.cfg.augment is not None else self.data.augment

    def train_stream(self, generator: torch.Generator | None) -> BatchStream:
        """A round's batches of training data: a shuffled pass (epoch), or ``round_steps`` full batches
        (iteration-counted runs); segmentation augments images and masks together."""
        augment = self.augment
        if augment is Augment.SCALE_CROP_FLIP:
            augment = segmentation.joint_augment(self.data, self.cfg.segmentation_spec, self.device)
        return BatchStream(self.data.train_x, self.data.train_y, self.cfg.batch_size, shuffle=True, augment=augment,
                           generator=generator, steps=self.cfg.round_steps)


def build(cfg: TrainConfig, data: Dataset | None = None, world: World | None = None,
          notice: Callable[[str], None] = _stderr, device: torch.device | None = None) -> Setup:
    """Data, model, optimizer and step context for ``cfg``; wrapped in DDP when ``world`` (default: the
    initialized process group, if any) has several ranks. ``notice`` gets the one line that says the fast path
    is off (inductor cannot run here, or the fast step failed on its first batch), once. ``device``: the
    configuration's device, as its caller resolved it (None: resolved here)."""
    world = world or World.current()
    device = world.device(device or resolve_device(cfg.device))
    data = (data or load_data(cfg)).to(device)
    bf16 = cfg.bf16 if cfg.bf16 is not None else device.type == "cuda"
    channels_last = cfg.channels_last
    if channels_last is None:
        channels_last = device.type == "cuda" and data.kind == "image"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        set_tf32(True)  # float32 convolutions and matrix products on TF32 tensor cores (precision.py)
    if data.task is not cfg.model.task:
        raise ParameterError("model", cfg.model, f"a {data.task.display} network for {data.name}")
    segmenting, texting = data.task is Task.SEGMENTATION, data.task is Task.TEXT
    torch.manual_seed(cfg.seed)  # weight initialization
    model = build_network(cfg, data)
    if segmenting:
        segmentation.load_backbone_weights(model, cfg.segmentation_spec)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    plan = fast_path(cfg, device, world)
    backend, graph = plan.compile_backend, plan.cuda_graph
    if plan.off:
        notice(fallback_message(plan.off))
    # static shapes in one process (the fast step sends other batch sizes the eager way); DDP as torch decides
    dynamic = None if world.distributed else False
    forward = torch.compile(model, backend=backend, dynamic=dynamic) if backend else model
    attack_forward, ascent_gradient, shard_weight = None, contextlib.nullcontext, None
    if world.distributed:
        ddp, shard_weight = distributed.wrap(model, device, world)
        attack_forward, forward = forward, (torch.compile(ddp, backend=backend) if backend else ddp)
        ascent_gradient = distributed.ascent_gradients(ddp, cfg.sam_gradients)
    optimizer = build_optimizer(cfg, model.parameters(), no_decay=no_weight_decay(model) if texting else ())
    if graph:
        make_capturable(optimizer, device)
    perturbation = build_perturbation(cfg, model.parameters())

    def autocast():
        # no weight cache under a CUDA graph: cached casts would outlive the capture (torch's CUDA graph notes)
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not graph) if bf16 \
            else contextlib.nullcontext()

    box = IMAGE_BOX if data.kind == "image" else None
    objective = Objective(*segmentation.objective(cfg.segmentation_spec)) if segmenting else CLASSIFICATION
    ctx = StepContext(cfg, model, forward, optimizer, perturbation, autocast, box, attack_forward, ascent_gradient,
                      objective)
    step = STEPS[cfg.method]
    if (backend or graph) and not world.distributed:
        step = FastStep(step, cfg.batch_size, graph=graph)
    return Setup(device, data, ctx, bf16, channels_last, world, shard_weight, step, backend, graph, plan.off, notice)

