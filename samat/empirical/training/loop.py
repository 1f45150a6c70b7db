"""One training loop for every method: SGD, Adam, SAM, ASAM, ESAM and PGD adversarial training.

The method only changes the *step* (what happens to one batch); data, schedule, checkpoints and
metrics are shared. The same code runs on CPU (tests) and CUDA (experiments), where it switches on
bf16 autocast, channels_last, cudnn.benchmark and the fast step (the model compiled and each full
batch's step replayed as one CUDA graph, :mod:`samat.empirical.training.fast`). Inside a round it never
waits for the GPU: losses and accuracies accumulate on the device, and the host reads them every
LOG_EVERY steps (for the progress bar and the NaN check) and at the end of the round.

Every random choice (shuffling, augmentation, ESAM's masks, PGD's random start) is drawn from a
generator seeded by (seed, round), so a run interrupted after any round and resumed ends with
exactly the weights of an uninterrupted run. A round is what a run is tested, logged and checkpointed after:
an epoch, or ``eval_every`` iterations of a run counted in iterations (``iterations``).

Launched by torchrun with several processes, the same loop trains data-parallel (DDP): each rank
trains on its slice of every global batch; see :mod:`samat.empirical.training.distributed`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from samat.core.errors import Interrupted, SamatError
from samat.core.results import provenance
from samat.empirical.data import BatchStream, Dataset, TextDataset
from samat.empirical.inference import clean_accuracy, correct_mask
from samat.empirical.training import distributed, segmentation
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.distributed import World
from samat.empirical.training.runs import TRAINING, RunDir, non_finite
from samat.empirical.training.setup import Setup, build, load_data, resolve_device, round_generator, round_seed
from samat.empirical.vocabulary import Task

LOG_EVERY = 50  # steps between host reads of the running loss (progress bar, NaN check)


class TrainingDiverged(SamatError):
    """The loss became NaN or inf; the last good checkpoint is kept."""

    exit_code = 3


def train(cfg: TrainConfig, run_dir: str | Path | RunDir, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, stop_after: int | None = None, data: Dataset | None = None,
          log: Callable[[str], None] | None = None, device: torch.device | None = None,
          world: World | None = None, resume_hint: str | None = None) -> dict:
    """Train one run into ``run_dir``; returns the final summary (or a partial one with ``stop_after``).

    The process holds the run's lock from start to end: a second writer gets a one-line error naming it.
    ``stop_after`` ends the call after that many rounds, leaving a resumable run (as an interruption would);
    ``data`` reuses an already loaded dataset. ``progress`` shows a progress bar on a terminal; without one (or
    without ``progress``), ``log`` (if given) gets one line per round. Under torchrun (WORLD_SIZE > 1) it joins
    the process group and trains data-parallel; every rank returns the same summary and rank 0 writes
    ``run_dir`` (see :mod:`samat.empirical.training.distributed`). ``device`` and ``world``: the configuration's
    device and the processes torchrun started, as the caller resolved them (None: resolved here, once).
    ``resume_hint`` says how the caller's user continues the run after an interruption or a failed write (None:
    the run folder's own, samat train's --resume; a grid, the demo or the study is run again).
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if resume_hint is not None:
        run.resume_hint = resume_hint
    device = device or resolve_device(cfg.device)
    with distributed.process_group(device, world) as world:
        lock = run.lock(TRAINING) if world.is_main else contextlib.nullcontext()
        with lock:
            try:
                return _train(cfg, run, world, device, resume=resume, overwrite=overwrite, progress=progress,
                              stop_after=stop_after, data=data, log=log)
            except SamatError as err:
                if not run.abort_replacement():
                    raise
                restored = SamatError(f"{err}; the run that --overwrite was to replace is back in {run.path}")
                restored.exit_code = err.exit_code
                raise restored from None
            except BaseException:
                run.abort_replacement()
                raise


def _prepare_run(run: RunDir, cfg: TrainConfig, world: World, model: torch.nn.Module, *, resume: bool,
                 overwrite: bool) -> dict | None:
    """Rank 0 checks that the disk has room for the run and prepares the run directory; the others learn its
    verdict and read the same checkpoint."""
    message, state = None, None
    if world.is_main:
        try:
            run.check_room(model)
            state = run.prepare(cfg, resume=resume, overwrite=overwrite)
        except SamatError as err:
            if not world.distributed:
                raise
            message = str(err)
    distributed.agree(world, message)
    if not world.is_main and run.has_checkpoint and resume:
        state = run.read_checkpoint()
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


def _test_scores(setup: Setup) -> dict[str, float]:
    """The round's test scores: accuracy; for text also the validation split's; for segmentation pixel accuracy
    and mIoU (each rank scores the whole test set, after the replicas' BatchNorm statistics are averaged)."""
    if setup.data.task is Task.TEXT:
        data, cfg = setup.data, setup.cfg
        return {"test_acc": _test_accuracy(setup),
                "validation_acc": clean_accuracy(setup.model, data.validation_x, data.validation_y,
                                                 batch_size=cfg.eval_batch_size, bf16=setup.bf16)}
    if setup.data.task is not Task.SEGMENTATION:
        return {"test_acc": _test_accuracy(setup)}
    if setup.world.distributed:
        distributed.average_batchnorm_statistics(setup.model, setup.world)
    return segmentation.test_scores(setup.model, setup.data, batch_size=setup.cfg.eval_batch_size, bf16=setup.bf16,
                                    channels_last=setup.channels_last)


def _train(cfg: TrainConfig, run: RunDir, world: World, device: torch.device, *, resume: bool,
           overwrite: bool, progress: bool, stop_after: int | None, data: Dataset | None,
           log: Callable[[str], None] | None) -> dict:
    if data is None:  # before the run directory is touched: a bad name, folder or subset leaves it alone
        data = load_data(cfg)
    # so are a model that does not fit the data and a fast path the device cannot take (before --overwrite
    # sets the old run aside)
    setup = build(cfg, data, world, notice=lambda message: _notice(run, world, log, progress, message),
                  device=device)
    state = _prepare_run(run, cfg, world, setup.model, resume=resume, overwrite=overwrite)
    history: list[dict] = []
    start_round = 0
    if state is not None:
        setup.load_state(state)
        start_round, history = int(state["round"]), list(state["history"])
    steps_per_round = len(setup.train_stream(None))  # per round: an epoch, or eval_every iterations
    if state is None and world.is_main:
        run.write_config(cfg, _provenance(setup, cfg.rounds * steps_per_round))
    show_bar = progress and world.is_main and sys.stderr.isatty()
    bar = tqdm(total=cfg.rounds * steps_per_round, initial=start_round * steps_per_round,
               disable=not show_bar, unit="step", desc=run.name, dynamic_ncols=True, leave=False)
    say = log if (log is not None and world.is_main and not show_bar) else None
    run_start = time.perf_counter()
    saved = start_round  # the rounds in the checkpoint on disk (not those trained: a write may be interrupted)
    try:
        for r in range(start_round, cfg.rounds):
            if stop_after is not None and r - start_round >= stop_after:
                return {"status": "partial", "rounds_done": r, "history": history}
            row = _round(setup, run, r, steps_per_round, bar)
            history.append(row)
            if world.is_main:
                run.save_checkpoint({"round": r + 1, "history": history, "model": setup.model.state_dict(),
                                     "optimizer": setup.ctx.optimizer.state_dict(), "config": cfg.identity()}, cfg)
            saved = r + 1
            if world.is_main:
                run.write_metrics(history)
            bar.set_postfix(round=r + 1, loss=f"{row['train_loss']:.3f}", test_acc=f"{row['test_acc']:.3f}")
            if say:
                say(_progress_line(cfg, run, row))
    except KeyboardInterrupt:
        bar.close()
        kept = (f"keeps its checkpoint after {cfg.round_name(saved)}: {run.resume_hint}" if saved else
                f"has no checkpoint yet (none before {cfg.round_name(1)}): start it again")
        raise Interrupted(f"interrupted; {run.path} {kept}") from None
    bar.close()
    return _finish(setup, run, history, time.perf_counter() - run_start)


def _notice(run: RunDir, world: World, log: Callable[[str], None] | None, progress: bool, message: str) -> None:
    """A line the run must say whether or not there is a progress bar (the fast path given up): to ``log`` without
    a bar, above the bar with one, on stderr when neither; once, by rank 0."""
    if not world.is_main:
        return
    line = f"  {run.name}: {message}"
    if progress and sys.stderr.isatty():
        tqdm.write(line, file=sys.stderr)
    elif log is not None:
        log(line)
    else:
        print(line, file=sys.stderr, flush=True)


def _progress_line(cfg: TrainConfig, run: RunDir, row: dict) -> str:
    """One line per round, for logs without a terminal."""
    if cfg.iterations is None:
        where = f"epoch {row['round']}/{cfg.epochs}"
    else:
        where = f"iteration {row['step']}/{cfg.iterations}"
    test = f"test accuracy {100 * row['test_acc']:.1f} %"
    if "test_miou" in row:
        test = f"test mIoU {100 * row['test_miou']:.1f} %, pixel accuracy {100 * row['test_acc']:.1f} %"
    if "validation_acc" in row:
        test += f", validation accuracy {100 * row['validation_acc']:.1f} %"
    return (f"  {run.name}: {where}, train loss {row['train_loss']:.3f}, train accuracy {100 * row['train_acc']:.1f} "
            f"%, {test} ({row['seconds']:.1f} s)")


def _provenance(setup: Setup, total_steps: int) -> dict:
    """The run's provenance: code and machine, how it executes (device, precision, data), its learning-rate
    schedule, and for text its sequences (length limit, lengths found, padding)."""
    device, world = setup.device, setup.world
    extra = {"device": str(device), "bf16": setup.bf16, "channels_last": setup.channels_last,
             "compile": setup.compile_backend, "cuda_graph": setup.cuda_graph, "data": setup.data.describe(),
             "schedule": setup.cfg.schedule_record(total_steps)}
    if isinstance(setup.data, TextDataset):
        extra["sequences"] = setup.data.sequence_record()
    if device.type == "cuda":
        extra |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
    if world.distributed:
        extra["world_size"] = world.size
    return provenance(**extra)


def _round(setup: Setup, run: RunDir, index: int, steps_per_round: int, bar: tqdm) -> dict:
    """Train one round (an epoch, or eval_every iterations), then measure the test scores; the round's row of
    metrics. ``index`` counts the rounds from 0."""
    cfg, world, device = setup.cfg, setup.world, setup.device
    t0 = time.perf_counter()
    gen = round_generator(cfg.seed, index, device)
    torch.manual_seed(round_seed(cfg.seed, index))  # the global generator (dropout) restarts every round too
    # Data-parallel: the batches come from a generator of their own, so that every rank cuts the same
    # global batches whatever the step draws (PGD's start, ESAM's masks) from ``gen`` for its shard.
    data_gen = round_generator(cfg.seed, index, device) if world.distributed else gen
    stream = setup.train_stream(data_gen)
    setup.model.train()
    loss_sum, correct_sum, count, lr = _batches(setup, run, stream, gen, index, steps_per_round, bar)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - t0
    loss_total, correct, count = _check_and_show(loss_sum, correct_sum, count, bar, index, run, steps_per_round,
                                                 world, cfg)
    _check_weights(setup, run, index)  # before the round is tested, checkpointed or kept as final
    t1 = time.perf_counter()
    test = _test_scores(setup)
    return {"round": index + 1, "step": (index + 1) * steps_per_round, "train_loss": loss_total / count,
            "train_acc": correct / count, **test, "lr": lr, "step_path": setup.step_path,
            "torch_threads": torch.get_num_threads(), "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t1, "seconds": time.perf_counter() - t0}


def _batches(setup: Setup, run: RunDir, stream: BatchStream, gen: torch.Generator, index: int, steps_per_round: int,
             bar: tqdm) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """The steps of round ``index``. Losses and accuracies accumulate on the device (Σ loss * batch size, Σ correct);
    the host reads them only every LOG_EVERY steps. Returns them, the examples counted and the last lr."""
    cfg, ctx, world, device, step = setup.cfg, setup.ctx, setup.world, setup.device, setup.step
    total_steps = cfg.rounds * steps_per_round
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct_sum = torch.zeros((), dtype=torch.float64, device=device)  # segmentation: a sum of pixel accuracies
    count, lr, lr_set = 0, cfg.learning_rate, None
    for i, (x, y) in enumerate(stream):
        lr = cfg.learning_rate * cfg.lr_factor_at(index * steps_per_round + i, total_steps)
        if lr != lr_set:  # piecewise constant: set (a device write on the fast path) only when it changes
            setup.set_learning_rate(lr)
            lr_set = lr
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
            _check_and_show(loss_sum, correct_sum, count, bar, index, run, i + 1, world, cfg)
    return loss_sum, correct_sum, count, lr


def _finish(setup: Setup, run: RunDir, history: list[dict], seconds_this_call: float) -> dict:
    """Write the final weights and summary (rank 0), and return the summary with the history."""
    cfg, world = setup.cfg, setup.world
    summary = {"status": "finished", "epochs": cfg.epochs if cfg.iterations is None else None,
               "iterations": history[-1]["step"],
               **{k: history[-1][k] for k in ("test_miou", "validation_acc") if k in history[-1]},
               "test_acc": history[-1]["test_acc"],
               "train_acc": history[-1]["train_acc"], "train_loss": history[-1]["train_loss"],
               "seconds": sum(r["seconds"] for r in history), "seconds_this_call": seconds_this_call,
               "device": str(setup.device), "step_path": _step_path(history),
               "torch_threads": sorted({row["torch_threads"] for row in history if "torch_threads" in row})}
    if setup.fallback is not None:
        summary["fast_path_off"] = setup.fallback
    if world.distributed:
        summary["world_size"] = world.size
    if world.is_main:
        run.finish(setup.model.state_dict(), summary, cfg)
        run.write_metrics(history)
    distributed.barrier(world)  # every rank returns once the run directory is complete
    return summary | {"history": history}


def _step_path(history: list[dict]) -> str:
    """What trained the run's full batches: "graph", "compiled" or "eager"; "mixed" when a resumed run's rounds
    differ (each round's row in metrics.jsonl says which)."""
    paths = {row["step_path"] for row in history if "step_path" in row}
    return paths.pop() if len(paths) == 1 else ("mixed" if paths else "unrecorded")


def _diverged(cfg: TrainConfig, run: RunDir, index: int, what: str) -> TrainingDiverged:
    """The run stopped in round ``index`` (from 0) because ``what`` ("the training loss became nan") happened;
    the checkpoint on disk is the previous round's, whose weights were checked to be finite."""
    kept = (f"kept the checkpoint of {cfg.round_name(index)}" if index else
            f"kept nothing (it diverged before {cfg.round_name(1)})")
    return TrainingDiverged(f"{what} of {run.path}; stopped, and {kept}: lower the learning rate or rho and "
                            "retrain with --overwrite")


def _check_weights(setup: Setup, run: RunDir, index: int) -> None:
    """:class:`TrainingDiverged` when a weight or buffer of the model is NaN or infinite after round ``index``
    (a step can overflow the weights while the losses it computed, before it, were finite)."""
    bad = non_finite(setup.model.state_dict())
    if setup.world.distributed:  # every rank stops, or none
        flag = torch.tensor(float(bad is not None), dtype=torch.float64, device=setup.device)
        if float(setup.world.sum(flag)) and bad is None:
            bad = "another replica's weights"
    if bad is not None:
        cfg = setup.cfg
        where = f"epoch {index + 1}" if cfg.round_steps is None else \
            f"iterations {index * cfg.round_steps + 1}-{(index + 1) * cfg.round_steps}"
        raise _diverged(cfg, run, index, f"the weights became non-finite (NaN or inf in {bad}) in {where}")


def _check_and_show(loss_sum: torch.Tensor, correct_sum: torch.Tensor, count: int, bar: tqdm, index: int,
                    run: RunDir, step: int, world: World, cfg: TrainConfig) -> tuple[float, float, int]:
    """The one host read: running loss and accuracy (summed over ranks) for the bar, and the NaN/inf check, in
    round ``index`` (from 0)."""
    if world.distributed:
        totals = world.sum(torch.stack([loss_sum, correct_sum.double(),
                                        torch.tensor(float(count), dtype=torch.float64, device=loss_sum.device)]))
        loss_sum, correct, count = float(totals[0]), float(totals[1]), int(totals[2])
    else:
        loss_sum, correct = float(loss_sum), float(correct_sum)
    if not math.isfinite(loss_sum):
        where = f"epoch {index + 1} (by step {step})" if cfg.round_steps is None else \
            f"iteration {index * cfg.round_steps + step} or before"
        raise _diverged(cfg, run, index, f"the training loss became {loss_sum} in {where}")
    bar.set_postfix(round=index + 1, loss=f"{loss_sum / max(count, 1):.3f}", acc=f"{correct / max(count, 1):.3f}")
    return loss_sum, correct, count
