"""What a run is made of, built from its configuration: the device, the data, the model, the optimizer and
the step context. On CUDA it switches on bf16 autocast, channels_last and cudnn.benchmark (and optionally
torch.compile); the same code runs on the CPU."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import ParameterError
from empirical.data import Dataset, load_dataset
from empirical.models import build_model
from empirical.training import distributed
from empirical.training.config import TrainConfig
from empirical.training.distributed import World
from empirical.training.optimizers import build_optimizer, build_perturbation
from empirical.training.steps import StepContext
from empirical.vocabulary import Augment, DatasetName


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParameterError("device", name, "auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", name, "auto or cpu on this machine (no CUDA device is available)")
    return device



def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The generator of one epoch; the same for every seed below 2**64 / 1,000,003 as before seeds up to 2**63 - 1
    were allowed (taken modulo 2**64, what a generator's seed holds)."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + epoch) % 2**64)



def load_data(cfg: TrainConfig) -> Dataset:
    gaussian = cfg.gaussian_spec if cfg.dataset == DatasetName.GAUSSIAN else None
    data = load_dataset(cfg.dataset, cfg.data_dir, gaussian=gaussian)
    if cfg.train_subset is not None or cfg.test_subset is not None:
        data = data.subset(cfg.train_subset, cfg.test_subset, seed=cfg.seed)
    return data


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

    @property
    def cfg(self) -> TrainConfig:
        return self.ctx.cfg

    @property
    def model(self) -> nn.Module:
        return self.ctx.model

    @property
    def augment(self) -> Augment:
        return self.cfg.augment if self.cfg.augment is not None else self.data.augment


def build(cfg: TrainConfig, data: Dataset | None = None, world: World | None = None) -> Setup:
    """Data, model, optimizer and step context for ``cfg``; wrapped in DDP when ``world`` (default: the
    initialized process group, if any) has several ranks."""
    world = world or World.current()
    device = world.device(resolve_device(cfg.device))
    data = (data or load_data(cfg)).to(device)
    bf16 = cfg.bf16 if cfg.bf16 is not None else device.type == "cuda"
    channels_last = cfg.channels_last
    if channels_last is None:
        channels_last = device.type == "cuda" and data.kind == "image"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    torch.manual_seed(cfg.seed)  # weight initialization
    model = build_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, mean=data.mean,
                        std=data.std).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if cfg.compile else model
    attack_forward, ascent_gradient, shard_weight = None, contextlib.nullcontext, None
    if world.distributed:
        ddp, shard_weight = distributed.wrap(model, device, world)
        attack_forward, forward = forward, (torch.compile(ddp) if cfg.compile else ddp)
        ascent_gradient = distributed.ascent_gradients(ddp, cfg.sam_gradients)
    optimizer = build_optimizer(cfg, model.parameters())
    perturbation = build_perturbation(cfg, model.parameters())

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    box = (0.0, 1.0) if data.kind == "image" else None
    ctx = StepContext(cfg, model, forward, optimizer, perturbation, autocast, box, attack_forward, ascent_gradient)
    return Setup(device, data, ctx, bf16, channels_last, world, shard_weight)

