"""What training costs on this device: the steps of :func:`~.loop.train`'s inner loop timed on synthetic data of a
dataset's shape (the cost does not depend on the pixels' values), and the epoch's test pass. The benchmarks
(``bench/train_throughput.py``) and the experiment planner (``samat experiment plan``) both measure with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from samat.empirical.data import BatchStream, Dataset
from samat.empirical.inference import clean_accuracy
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.loop import LOG_EVERY
from samat.empirical.training.setup import Setup, build


class Clock:
    """Wall time between two marks: on CUDA after the queued work is done (events), else perf_counter."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.begin = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        self.t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return self.begin.elapsed_time(end) / 1000
        return time.perf_counter() - self.t0


def forever(epoch: Iterable) -> Iterator:
    """The batches of ``epoch``, restarted (reshuffled) each time it ends."""
    while True:
        yield from epoch


def time_calls(device: torch.device, warmup: int, steps: int, batches: Iterable,
               one_step: Callable[[int, torch.Tensor, torch.Tensor], None]) -> tuple[float, float]:
    """Seconds of ``warmup`` untimed calls of one_step(i, x, y) on the next batches, and of ``steps`` timed ones."""
    batches = forever(batches)
    clock = Clock(device)
    clock.start()
    for i in range(warmup):
        one_step(i, *next(batches))
    warm = clock.stop()
    clock.start()
    for i in range(warmup, warmup + steps):
        one_step(i, *next(batches))
    return warm, clock.stop()


@dataclass(frozen=True)
class StepTiming:
    """Timed steps of one configuration: ``seconds`` for ``steps`` steps of ``batch_size`` examples, after
    ``warmup`` untimed ones that took ``warmup_seconds`` (compilation, CUDA graph capture, cuDNN's search)."""

    steps: int
    seconds: float
    warmup: int
    warmup_seconds: float
    batch_size: int
    compile: str | None
    cuda_graph: bool
    bf16: bool
    channels_last: bool
    step_path: str = "eager"  # what the timed steps ran: "graph", "compiled" or "eager" (the fast path given up)
    fallback: str | None = None  # why the fast path was given up

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps

    @property
    def images_per_second(self) -> float:
        return self.steps * self.batch_size / self.seconds


def synthetic_images(n_train: int, n_test: int, shape: tuple[int, ...], num_classes: int, *, seed: int = 0,
                     augment: str = "crop_flip", name: str = "synthetic") -> Dataset:
    """Random uint8 images (or float vectors for a 1-d ``shape``) with random labels: a dataset's shape and
    dtype, nothing else."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    if len(shape) == 1:
        x, augment, mean, std = torch.randn(n, *shape, generator=g), "none", (), ()
    else:
        x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
        mean, std = (0.5,) * shape[0], (0.25,) * shape[0]
    y = torch.randint(0, num_classes, (n,), generator=g)
    return Dataset(name, x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes, mean, std, augment)


def train_loop_step(cfg: TrainConfig, data: Dataset, *, seed: int = 0, notice: Callable[[str], None] | None = None
                    ) -> tuple[Setup, Iterator, Callable[[int, torch.Tensor, torch.Tensor], None]]:
    """A setup for ``cfg``, its endless stream of shuffled, augmented batches, and ``one_step(i, x, y)``: step i
    of the method as ``train()`` runs it (channels_last, losses summed on the device, the host reading them every
    LOG_EVERY steps), at the schedule's first learning rate. The model is in train mode. ``notice``: where the line
    saying the fast path is off goes (default: stderr)."""
    setup = build(cfg, data) if notice is None else build(cfg, data, notice=notice)
    ctx, step = setup.ctx, setup.step
    gen = torch.Generator(device=setup.device).manual_seed(seed)
    stream = BatchStream(setup.data.train_x, setup.data.train_y, cfg.batch_size, shuffle=True,
                         augment=setup.augment, generator=gen, drop_last=True)
    loss_sum = torch.zeros((), dtype=torch.float64, device=setup.device)
    correct_sum = torch.zeros((), dtype=torch.long, device=setup.device)
    setup.set_learning_rate(cfg.learning_rate * cfg.lr_factor_at(0, 1))  # the first step's

    def one_step(i: int, x: torch.Tensor, y: torch.Tensor) -> None:
        nonlocal loss_sum, correct_sum
        if setup.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        loss, correct = step(ctx, x, y, gen)
        loss_sum += loss.double() * len(y)
        correct_sum += correct
        if (i + 1) % LOG_EVERY == 0:  # train()'s one host read
            float(loss_sum), int(correct_sum)

    setup.model.train()
    return setup, forever(stream), one_step


def time_steps(cfg: TrainConfig, data: Dataset, *, warmup: int, steps: int, seed: int = 0,
               notice: Callable[[str], None] | None = None) -> StepTiming:
    """``steps`` steps of ``cfg``'s method as ``train()`` runs them (:func:`train_loop_step`), after ``warmup``
    untimed ones (the first of which compiles and captures)."""
    setup, batches, one_step = train_loop_step(cfg, data, seed=seed, notice=notice)
    warm, seconds = time_calls(setup.device, warmup, steps, batches, one_step)
    return StepTiming(steps, seconds, warmup, warm, cfg.batch_size, setup.compile_backend, setup.cuda_graph,
                      setup.bf16, setup.channels_last, setup.step_path, setup.fallback)


def time_test_pass(setup: Setup, n_images: int) -> float:
    """Seconds of the epoch's test-accuracy pass over ``n_images`` of the setup's test split (as ``train()``
    measures it: eval mode, the evaluation batch size), after one untimed pass."""
    cfg, data = setup.cfg, setup.data
    kw = dict(batch_size=cfg.eval_batch_size, bf16=setup.bf16, channels_last=setup.channels_last)
    x, y = data.test_x[:n_images], data.test_y[:n_images]
    clean_accuracy(setup.model, x, y, **kw)
    clock = Clock(setup.device)
    clock.start()
    clean_accuracy(setup.model, x, y, **kw)
    return clock.stop()
