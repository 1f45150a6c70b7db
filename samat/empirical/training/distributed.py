"""Data-parallel training over several processes: torch.distributed DDP, launched with torchrun.

    torchrun --nproc_per_node=4 -m samat train --method sam --dataset cifar10 --model prn18 ...

:func:`samat.empirical.training.loop.train` reads the rank and world size from the environment torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), joins the process group (gloo on CPU, nccl on CUDA, one GPU
per process: ``cuda:LOCAL_RANK``), and runs the one training loop with these differences:

* **Data**: every rank holds the whole dataset and draws the same global batches as a single process
  with the same seed would (same shuffle, same augmentation); rank r trains on its contiguous slice
  (:meth:`World.shard`). ``batch_size`` stays the *global* batch size, split across ranks.
* **Gradients**: DDP all-reduces them; a comm hook weights each replica by its share of the global batch
  (n_r / N) so that the result is the global batch's mean gradient even when the last batch does not
  split evenly (plain DDP averages the replicas' means with equal weights).
* **SAM's ascent** (``sam_gradients``): "allreduce" takes the first backward through DDP as usual, so every
  replica climbs along the global batch's gradient to the same w + e(w), as one process would; "local"
  runs the first forward-backward under DDP's ``no_sync()``, so each replica climbs along its own gradient
  (m-sharpness, Foret et al. 2021 §4.1, with m = the per-replica batch). The second backward, whose
  gradient the base optimizer uses, is always all-reduced, so the replicas' weights stay identical.
* **PGD** (adversarial training): each replica attacks its own shard with the bare module (input
  gradients only, no DDP hooks), then trains on it through DDP.
* **BatchNorm**: batch statistics are per replica (plain BN, not SyncBatchNorm: SyncBN would add an
  all-reduce to every BN layer of every forward pass: 2 per SAM step, 12 per PGD-10 step). Running
  statistics are *not* broadcast from rank 0 before every forward (DDP's default): each replica keeps its
  own running average, and before every evaluation and checkpoint :func:`average_batchnorm_statistics`
  replaces them by their mean over replicas. The running average is linear in the batch statistics,
  so this equals the running average of the replicas' averaged batch statistics: the running mean is
  exactly that of the global batch means; the running variance is the mean within-shard variance, which
  leaves out the (O(1/shard size)) spread of the shard means. Rank 0's statistics alone (DDP's default)
  would summarize only 1/world_size of the data. ``running_stats_frozen`` acts on the module inside the
  wrapper and works unchanged.
* **Output**: only rank 0 writes the run directory and shows progress; losses, accuracies and the test
  accuracy are summed over ranks first, so every rank returns the same summary.
* **Random numbers**: the data stream and the step (PGD's random start, ESAM's masks) draw from two
  generators seeded alike on every rank, (seed, epoch). In one process they share one generator, so
  runs of methods that draw in the step (pgd_at, esam) are equal in distribution to single-process
  runs, not bit for bit; sgd, adam, sam and asam draw only in the data stream and see the same batches.
  ESAM's data selection keeps the top fraction of each replica's shard, not of the global batch.

A global batch smaller than the world size (a last batch of fewer than world_size examples) is skipped.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from samat.core.errors import ParameterError, SamatError

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}


@dataclass(frozen=True)
class World:
    """This process's place among the replicas: rank in 0..size-1, and its GPU index on the node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> World:
        """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them; one process when they are absent."""
        env = os.environ if environ is None else environ
        values = {}
        for key, name in (("RANK", "rank"), ("WORLD_SIZE", "size"), ("LOCAL_RANK", "local_rank")):
            text = env.get(key)
            try:
                values[name] = int(text) if text not in (None, "") else None
            except ValueError:
                raise ParameterError(key, text, "an integer >= 0 (as torchrun sets it)") from None
        size = values["size"] or 1
        rank = values["rank"] or 0
        if size < 1 or not 0 <= rank < size:
            raise ParameterError("RANK", rank, f"in 0..{size - 1} for WORLD_SIZE={size}")
        local = values["local_rank"] if values["local_rank"] is not None else rank
        return cls(rank, size, local)

    @classmethod
    def current(cls) -> World:
        """The initialized process group's world, else one process."""
        if dist.is_available() and dist.is_initialized():
            env = cls.from_environment()
            rank, size = dist.get_rank(), dist.get_world_size()
            return cls(rank, size, env.local_rank if env.size == size else rank)
        return cls()

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: plain "cuda" becomes cuda:LOCAL_RANK; CPU and explicit indices stay."""
        if device.type == "cuda" and device.index is None and self.distributed:
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's contiguous slice of each global-batch tensor (sizes differ by at most one).

        The slices of ranks 0..size-1, concatenated, are the global batch in its order.
        """
        if not self.distributed:
            return tensors
        return tuple(torch.tensor_split(t, self.size)[self.rank] for t in tensors)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (and returned); the identity in one process."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


@contextlib.contextmanager
def process_group(device: torch.device, world: World | None = None) -> Iterator[World]:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA) for the block.

    Does nothing in one process, or when a group is already initialized (then that group is used and
    left alone); a group created here is destroyed at the end.
    """
    if dist.is_available() and dist.is_initialized():
        yield World.current()
        return
    world = world or World.from_environment()
    if not world.distributed:
        yield world
        return
    if not dist.is_available():
        raise SamatError("this torch build has no torch.distributed; run with one process")
    backend = BACKENDS.get(device.type)
    if backend is None:
        raise ParameterError("device", str(device), "cpu or cuda for distributed training")
    if device.type == "cuda":
        torch.cuda.set_device(world.device(device))
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)
    try:
        yield world
    finally:
        dist.destroy_process_group()


class ShardWeight:
    """The share n_r / N of the global batch on this rank: what its gradient is weighted by when summed."""

    def __init__(self, world: World) -> None:
        self.value = 1.0 / world.size

    def set(self, local: int, total: int) -> None:
        self.value = local / total


def _weighted_allreduce(state, bucket):  # (ShardWeight, dist.GradBucket) -> Future[Tensor]; DDP checks
    # real annotations, which ``from __future__ import annotations`` would turn into strings
    """DDP comm hook: Σ_r (n_r / N) g_r, the mean gradient over the global batch (g_r: rank r's mean)."""
    buffer = bucket.buffer()
    buffer.mul_(state.value)
    future = dist.all_reduce(buffer, op=dist.ReduceOp.SUM, async_op=True).get_future()
    return future.then(lambda fut: fut.value()[0])


def wrap(model: nn.Module, device: torch.device, world: World) -> tuple[nn.Module, ShardWeight]:
    """``model`` in DDP, with gradients weighted by shard size and no per-forward buffer broadcast."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    options: dict = {"device_ids": [device.index] if device.type == "cuda" else None}
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:  # torch >= 2.13
        options["forward_sync_buffers"] = False
    else:
        options["broadcast_buffers"] = False
    ddp = DDP(model, **options)
    weight = ShardWeight(world)
    ddp.register_comm_hook(weight, _weighted_allreduce)
    return ddp, weight


def ascent_gradients(ddp: nn.Module, mode: str) -> Callable[[], contextlib.AbstractContextManager]:
    """The context of SAM's first forward-backward: DDP's ``no_sync`` for "local", a plain one for "allreduce"
    (``mode`` is TrainConfig.sam_gradients, validated there)."""
    return ddp.no_sync if mode == "local" else contextlib.nullcontext


@torch.no_grad()
def average_batchnorm_statistics(model: nn.Module, world: World) -> None:
    """Replace every BatchNorm running mean and variance by its mean over the replicas."""
    if not world.distributed:
        return
    buffers = [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               for b in (m.running_mean, m.running_var) if b is not None]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    world.sum(flat).div_(world.size)
    torch._foreach_copy_(buffers, list(flat.split([b.numel() for b in buffers])))


def agree(world: World, message: str | None) -> None:
    """Raise ``message`` (a SamatError) on every rank when rank 0 has one, so that no rank waits forever."""
    if not world.distributed:
        if message:
            raise SamatError(message)
        return
    box = [message if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    if box[0]:
        raise SamatError(box[0])


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
