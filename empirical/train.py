"""One training loop for every method: SGD, Adam, SAM, ASAM, ESAM and PGD adversarial training.

The method only changes the *step* (what happens to one batch); data, schedule, checkpoints and
metrics are shared. The same code runs on CPU (tests) and CUDA (experiments), where it switches on
bf16 autocast, channels_last and cudnn.benchmark, and optionally torch.compile. Inside an epoch it
never waits for the GPU: losses and accuracies accumulate on the device, and the host reads them
every LOG_EVERY steps (for the progress bar and the NaN check) and at the end of the epoch.

Every random choice (shuffling, augmentation, ESAM's masks, PGD's random start) is drawn from a
generator seeded by (seed, epoch), so a run interrupted after any epoch and resumed ends with
exactly the weights of an uninterrupted run.

Launched by torchrun with several processes, the same loop trains data-parallel (DDP): each rank
trains on its slice of every global batch; see :mod:`empirical.distributed`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from empirical import distributed, provenance
from empirical.adversarial import pgd
from empirical.config import TrainConfig
from empirical.data import BatchStream, Dataset, GaussianSpec, load_dataset
from empirical.distributed import World
from empirical.evaluate import clean_accuracy, correct_mask
from empirical.models import build_model
from empirical.optim import WeightPerturbation, build_optimizer, build_perturbation
from empirical.runs import RunDir
from theory.errors import ParameterError, SamatError

LOG_EVERY = 50  # steps between host reads of the running loss (progress bar, NaN check)
StepResult = tuple[torch.Tensor, torch.Tensor]  # (mean loss of the batch, number correct), on the device


class TrainingDiverged(SamatError):
    """The loss became NaN or inf; the last good checkpoint is kept."""

    exit_code = 3


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


@contextlib.contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorm uses batch statistics but does not update its running ones (nor their counter).

    For SAM's second pass (davda54/sam's disable_running_stats) and for the attack's forward
    passes in adversarial training: only the clean first pass, or the pass on the adversarial
    batch that is trained on, may move the running statistics.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


class _FixedPrefix(nn.Module):
    """The model as a function of x[:, k:] with x[:, :k] held fixed (AT on the non-robust features)."""

    def __init__(self, model: nn.Module, prefix: torch.Tensor) -> None:
        super().__init__()
        self.model, self.prefix = model, prefix

    def forward(self, rest: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([self.prefix, rest], dim=1))


@dataclass
class StepContext:
    cfg: TrainConfig
    model: nn.Module  # the module whose parameters are trained (BatchNorm toggles act on it)
    forward: nn.Module  # what to call: the model, or its torch.compile'd version
    optimizer: torch.optim.Optimizer
    perturbation: WeightPerturbation | None
    autocast: Callable[[], contextlib.AbstractContextManager]
    box: tuple[float, float] | None  # valid input range for attacks; None for vector data
    # Data-parallel only (empirical.distributed): the bare (or compiled) module for PGD's input-gradient
    # passes, which need no gradient all-reduce (None: ``forward``), and the context of SAM's first
    # forward-backward (DDP's no_sync for per-replica perturbations)
    attack_forward: nn.Module | None = None
    ascent_gradient: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    @property
    def attack_model(self) -> nn.Module:
        return self.forward if self.attack_forward is None else self.attack_forward


def _loss(ctx: StepContext, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> tuple:
    with ctx.autocast():
        logits = ctx.forward(x)
    return F.cross_entropy(logits.float(), y, reduction=reduction), logits


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == y).sum()


def standard_step(ctx: StepContext, x, y, gen) -> StepResult:
    """SGD / Adam: one forward-backward pass on the batch."""
    loss, logits = _loss(ctx, x, y)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ctx.optimizer.step()
    return loss.detach(), _correct(logits.detach(), y)


def sam_step(ctx: StepContext, x, y, gen) -> StepResult:
    """SAM / ASAM: gradient at w, climb to w + e(w), gradient there, step from w (D eq. 4)."""
    ctx.optimizer.zero_grad(set_to_none=True)
    with ctx.ascent_gradient():
        loss, logits = _loss(ctx, x, y)
        loss.backward()
    ctx.perturbation.ascend(gen)
    ctx.optimizer.zero_grad(set_to_none=True)
    with running_stats_frozen(ctx.model):
        _loss(ctx, x, y)[0].backward()
    ctx.perturbation.descend()
    ctx.optimizer.step()
    return loss.detach(), _correct(logits.detach(), y)


def esam_step(ctx: StepContext, x, y, gen) -> StepResult:
    """ESAM (Du et al. 2022): stochastic weight perturbation, then sharpness-sensitive data selection.

    The second gradient is taken only on the fraction γ of the batch whose loss rises most under
    the perturbation, L(w + e; x_i) - L(w; x_i).
    """
    ctx.optimizer.zero_grad(set_to_none=True)
    with ctx.ascent_gradient():
        per_sample, logits = _loss(ctx, x, y, reduction="none")
        loss = per_sample.mean()
        loss.backward()
    ctx.perturbation.ascend(gen)
    ctx.optimizer.zero_grad(set_to_none=True)
    with running_stats_frozen(ctx.model):
        with torch.no_grad():
            sharpness = _loss(ctx, x, y, reduction="none")[0] - per_sample.detach()
        keep = max(1, math.ceil(ctx.cfg.esam_gamma * len(y)))
        chosen = torch.topk(sharpness, keep).indices
        _loss(ctx, x[chosen], y[chosen])[0].backward()
    ctx.perturbation.descend()
    ctx.optimizer.step()
    return loss.detach(), _correct(logits.detach(), y)


def adversarial_step(ctx: StepContext, x, y, gen) -> StepResult:
    """PGD adversarial training (Madry et al.; W eq. 3-4, D eq. 2-3): train on the PGD-attacked batch.

    The attack's forward passes use batch statistics without moving the running ones. The
    returned accuracy is on the adversarial batch (robust training accuracy).
    """
    cfg = ctx.cfg
    attack = dict(norm=cfg.at_norm, eps=cfg.at_eps, alpha=cfg.pgd_step, steps=cfg.at_steps, random_start=True,
                  generator=gen, box=ctx.box)
    with running_stats_frozen(ctx.model), ctx.autocast():
        if cfg.at_features == "non_robust":  # vector data: keep the robust feature x1 untouched
            rest = pgd(_FixedPrefix(ctx.attack_model, x[:, :1]), x[:, 1:], y, **attack)
            x_adv = torch.cat([x[:, :1], rest], dim=1)
        else:
            x_adv = pgd(ctx.attack_model, x, y, **attack)
    return standard_step(ctx, x_adv, y, gen)


STEPS: dict[str, Callable[[StepContext, torch.Tensor, torch.Tensor, torch.Generator], StepResult]] = {
    "sgd": standard_step, "adam": standard_step, "sam": sam_step, "asam": sam_step, "esam": esam_step,
    "pgd_at": adversarial_step,
}


def load_data(cfg: TrainConfig) -> Dataset:
    gaussian = GaussianSpec(**cfg.gaussian) if cfg.dataset == "gaussian" else None
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
    def augment(self) -> str:
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


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, stop_after: int | None = None, data: Dataset | None = None) -> dict:
    """Train one run into ``run_dir``; returns the final summary (or a partial one with ``stop_after``).

    ``stop_after`` ends the call after that many epochs, leaving a resumable run (as an
    interruption would); ``data`` reuses an already loaded dataset. Under torchrun (WORLD_SIZE > 1)
    it joins the process group and trains data-parallel; every rank returns the same summary and
    rank 0 writes ``run_dir`` (see :mod:`empirical.distributed`).
    """
    with distributed.process_group(resolve_device(cfg.device)) as world:
        return _train(cfg, run_dir, world, resume=resume, overwrite=overwrite, progress=progress,
                      stop_after=stop_after, data=data)


def _prepare_run(run: RunDir, cfg: TrainConfig, world: World, *, resume: bool, overwrite: bool) -> dict | None:
    """Rank 0 prepares the run directory; the others learn its verdict and read the same checkpoint."""
    message, state = None, None
    if world.is_main:
        try:
            state = run.prepare(cfg, resume=resume, overwrite=overwrite)
        except SamatError as err:
            if not world.distributed:
                raise
            message = str(err)
    distributed.agree(world, message)
    if not world.is_main and run.has_checkpoint and resume:
        state = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
    return state


def _test_accuracy(setup: Setup) -> float:
    """Clean test accuracy; data-parallel: BN statistics averaged over replicas, test set split across them."""
    cfg, world, data = setup.cfg, setup.world, setup.data
    kw = dict(batch_size=cfg.eval_batch_size, bf16=setup.bf16, channels_last=setup.channels_last)
    if not world.distributed:
        return clean_accuracy(setup.model, data.test_x, data.test_y, **kw)
    distributed.average_batchnorm_statistics(setup.model, world)
    x, y = world.shard(data.test_x, data.test_y)
    correct = correct_mask(setup.model, x, y, **kw).sum() if len(y) else torch.zeros((), device=setup.device)
    correct = world.sum(correct.to(torch.float64))
    return float(correct) / len(data.test_y) if len(data.test_y) else 0.0


def _train(cfg: TrainConfig, run_dir: str | Path, world: World, *, resume: bool, overwrite: bool, progress: bool,
           stop_after: int | None, data: Dataset | None) -> dict:
    run = RunDir(run_dir)
    if data is None:  # before the run directory is touched: a bad name, folder or subset leaves it alone
        data = load_data(cfg)
    state = _prepare_run(run, cfg, world, resume=resume, overwrite=overwrite)
    setup = build(cfg, data, world)
    model, ctx, device = setup.model, setup.ctx, setup.device
    history: list[dict] = []
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        ctx.optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
    elif world.is_main:
        extra = {"world_size": world.size} if world.distributed else {}
        run.write_config(cfg, provenance.collect(device) | {"device": str(device), "bf16": setup.bf16,
                                                          "channels_last": setup.channels_last,
                                                          "data": setup.data.describe()} | extra)
    step = STEPS[cfg.method]
    base_lr = cfg.learning_rate
    steps_per_epoch = len(BatchStream(setup.data.train_x, setup.data.train_y, cfg.batch_size, shuffle=False))
    total_steps = cfg.epochs * steps_per_epoch
    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, disable=not (progress and world.is_main),
               unit="step", desc=run.name, dynamic_ncols=True, leave=False)
    run_start = time.perf_counter()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after is not None and epoch - start_epoch >= stop_after:
                return {"status": "partial", "epochs_done": epoch, "history": history}
            t0 = time.perf_counter()
            gen = epoch_generator(cfg.seed, epoch, device)
            # Data-parallel: the batches come from a generator of their own, so that every rank cuts the same
            # global batches whatever the step draws (PGD's start, ESAM's masks) from ``gen`` for its shard.
            data_gen = epoch_generator(cfg.seed, epoch, device) if world.distributed else gen
            stream = BatchStream(setup.data.train_x, setup.data.train_y, cfg.batch_size, shuffle=True,
                                 augment=setup.augment, generator=data_gen)
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # Σ loss * batch size
            correct_sum = torch.zeros((), dtype=torch.long, device=device)
            count = 0
            for i, (x, y) in enumerate(stream):
                lr = base_lr * cfg.lr_factor((epoch * steps_per_epoch + i) / total_steps)
                for group in ctx.optimizer.param_groups:
                    group["lr"] = lr
                if world.distributed:
                    if len(y) < world.size:  # a last batch too small to give every rank an example
                        bar.update(1)
                        continue
                    shard_x, shard_y = world.shard(x, y)
                    setup.shard_weight.set(len(shard_y), len(y))
                    x, y = shard_x, shard_y
                if setup.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                loss, correct = step(ctx, x, y, gen)
                loss_sum += loss.double() * len(y)
                correct_sum += correct
                count += len(y)
                bar.update(1)
                if (i + 1) % LOG_EVERY == 0:
                    _check_and_show(loss_sum, correct_sum, count, bar, epoch, run, i + 1, world)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_seconds = time.perf_counter() - t0
            loss_total, correct, count = _check_and_show(loss_sum, correct_sum, count, bar, epoch, run,
                                                         steps_per_epoch, world)
            t1 = time.perf_counter()
            test_acc = _test_accuracy(setup)
            row = {"epoch": epoch + 1, "train_loss": loss_total / count, "train_acc": correct / count,
                   "test_acc": test_acc, "lr": lr, "train_seconds": train_seconds,
                   "eval_seconds": time.perf_counter() - t1, "seconds": time.perf_counter() - t0}
            history.append(row)
            if world.is_main:
                run.save_checkpoint({"epoch": epoch + 1, "history": history, "model": model.state_dict(),
                                     "optimizer": ctx.optimizer.state_dict(), "config": cfg.identity()})
                run.write_metrics(history)
            bar.set_postfix(epoch=epoch + 1, loss=f"{row['train_loss']:.3f}", test_acc=f"{test_acc:.3f}")
    except KeyboardInterrupt:
        bar.close()
        raise SamatError(f"interrupted; {run.path} keeps its checkpoint after epoch {len(history)}: "
                         "continue with --resume") from None
    bar.close()
    summary = {"status": "finished", "epochs": cfg.epochs, "test_acc": history[-1]["test_acc"],
               "train_acc": history[-1]["train_acc"], "train_loss": history[-1]["train_loss"],
               "seconds": sum(r["seconds"] for r in history), "seconds_this_call": time.perf_counter() - run_start,
               "device": str(device)}
    if world.distributed:
        summary["world_size"] = world.size
    if world.is_main:
        run.finish(model.state_dict(), summary)
        run.write_metrics(history)
    distributed.barrier(world)  # every rank returns once the run directory is complete
    return summary | {"history": history}


def _check_and_show(loss_sum: torch.Tensor, correct_sum: torch.Tensor, count: int, bar: tqdm, epoch: int,
                    run: RunDir, step: int, world: World) -> tuple[float, int, int]:
    """The one host read: running loss and accuracy (summed over ranks) for the bar, and the NaN/inf check."""
    if world.distributed:
        totals = world.sum(torch.stack([loss_sum, correct_sum.double(),
                                        torch.tensor(float(count), dtype=torch.float64, device=loss_sum.device)]))
        loss_sum, correct, count = float(totals[0]), int(totals[1]), int(totals[2])
    else:
        loss_sum, correct = float(loss_sum), int(correct_sum)
    if not math.isfinite(loss_sum):
        raise TrainingDiverged(
            f"the training loss became {loss_sum} in epoch {epoch + 1} (by step {step}) of {run.path}; stopped, and "
            f"kept the checkpoint of epoch {epoch}" + ("" if epoch else " (none: it failed in the first epoch)")
            + ": lower the learning rate or rho and retrain with --overwrite"
        )
    bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(count, 1):.3f}", acc=f"{correct / max(count, 1):.3f}")
    return loss_sum, correct, count
