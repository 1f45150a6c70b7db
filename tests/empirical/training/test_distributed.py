"""Data-parallel training (empirical.training.distributed) on CPU: two gloo processes.

What would be false if the code were wrong:

* with sam_gradients="allreduce", two replicas training on halves of each global batch end with the
  weights of one process training on the whole batch (a BatchNorm-free model, so that nothing but the
  order of floating-point sums differs), including an uneven last batch (21 + 20 examples);
* with "local", each replica climbs along its own gradient: the weights differ from "allreduce" by far
  more than rounding, yet the run still learns;
* in every mode and method the replicas' weights and (averaged) BatchNorm statistics stay identical;
* ``torchrun ... -m samat train`` (the environment-variable launch) gives the same run as one process.

One spawn of two processes serves the tests that need replicas (about 10 s on 2 cores).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from samat.core.errors import ParameterError
from samat.empirical.data import Dataset, GaussianSpec, load_dataset
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.distributed import World, average_batchnorm_statistics
from samat.empirical.training.loop import train
from samat.empirical.training.setup import build
from samat.empirical.training.steps import STEPS
from samat.theory.objectives import accuracy, linear_log_risk
from tests.empirical.helpers import REPO, tiny_images

WORLD_SIZE = 2
# 297 = 4 x 64 + 41: the last global batch splits 21 / 20, so the shards' gradients must be weighted 21/41, 20/41.
GAUSSIAN = {"p": 0.8, "eta": 0.3, "n": 6, "train_size": 297, "test_size": 200}
LINEAR = dict(dataset="gaussian", model="linear", epochs=2, batch_size=64, lr=0.5, rho=0.5, gaussian=GAUSSIAN,
              device="cpu")
# Two computations that differ only in the order of float32 sums: each gradient is a sum of B = 64 terms, with
# relative error at most (B - 1) u (u = 2^-24) either way, and T = 10 steps of a convex problem add at most T
# such errors: T B u = 3.8e-5 relative. rtol 1e-4 holds that with room; atol covers weights near zero.
RTOL, ATOL = 1e-4, 1e-6
REPLICA_METHODS = ("sam", "esam", "pgd_at")


def linear_cfg(**kw) -> TrainConfig:
    return TrainConfig.from_dict(LINEAR | kw)


def gaussian_data() -> Dataset:
    return load_dataset("gaussian", gaussian=GaussianSpec(**GAUSSIAN))


def _worker(rank: int, out: str) -> None:
    """One replica: the linear runs through train(), then a few DDP steps of a BatchNorm CNN per method/mode."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=WORLD_SIZE)
    try:
        data = gaussian_data()
        for mode in ("allreduce", "local"):
            for method in ("sgd", "sam"):
                train(linear_cfg(method=method, sam_gradients=mode), Path(out) / f"{method}-{mode}", progress=False,
                      data=data)
        images = tiny_images(n_train=96, n_test=32)  # three batches of 32
        for method in REPLICA_METHODS:
            for mode in ("allreduce", "local"):
                cfg = TrainConfig.from_dict(dict(dataset="tiny", model="small_cnn", method=method, sam_gradients=mode,
                                                 batch_size=32, at_steps=2, lr=0.05, device="cpu"))
                setup = build(cfg, images)
                gen = torch.Generator().manual_seed(1)
                setup.model.train()
                for i in range(3):
                    x = images.train_x[32 * i:32 * (i + 1)].float() / 255
                    y = images.train_y[32 * i:32 * (i + 1)]
                    x, y = setup.world.shard(x, y)
                    STEPS[method](setup.ctx, x, y, gen)
                average_batchnorm_statistics(setup.model, setup.world)
                torch.save(setup.model.state_dict(), Path(out) / f"replica-{method}-{mode}-{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(str(out),), nprocs=WORLD_SIZE, join=True, start_method="spawn")
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt")


def _max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())


# ---- fast: no processes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "size"), [(128, 2), (41, 2), (10, 3), (3, 4), (7, 1)])
def test_shards_partition_the_global_batch_in_order(n, size):
    x, y = torch.arange(n * 2).reshape(n, 2), torch.arange(n)
    parts = [World(rank, size).shard(x, y) for rank in range(size)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)
    sizes = [len(p[1]) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_world_comes_from_torchrun_environment():
    assert World.from_environment({}) == World(0, 1, 0)
    assert World.from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    assert World(1, 2, 1).device(torch.device("cuda")) == torch.device("cuda", 1)
    assert World().device(torch.device("cuda")) == torch.device("cuda")
    with pytest.raises(ParameterError, match="RANK=4"):
        World.from_environment({"RANK": "4", "WORLD_SIZE": "4"})


def test_sam_gradients_is_validated_and_named():
    assert linear_cfg().sam_gradients == "allreduce"
    with pytest.raises(ParameterError, match="sam_gradients=global is invalid.*one of allreduce, local"):
        linear_cfg(sam_gradients="global")
    assert linear_cfg(method="sam", sam_gradients="local").default_name().endswith("-rho0.5-local-seed0")


# ---- two gloo processes --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sgd", "sam"])
def test_allreduce_matches_one_process_on_the_same_global_batch(replicas, tmp_path, method):
    single = train(linear_cfg(method=method), tmp_path / "single", progress=False, data=gaussian_data())
    ddp = replicas / f"{method}-allreduce"
    a, b = _weights(ddp), _weights(tmp_path / "single")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=RTOL, atol=ATOL, msg=k)
    rows = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in single["history"]], rel=RTOL)
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in single["history"]]
    assert json.loads((ddp / "config.json").read_text())["provenance"]["world_size"] == WORLD_SIZE


def test_local_perturbations_differ_from_allreduce_but_still_train(replicas):
    local, shared = _weights(replicas / "sam-local"), _weights(replicas / "sam-allreduce")
    scale = max(float(v.abs().max()) for v in shared.values() if v.numel())
    assert _max_difference(local, shared) > 100 * (RTOL * scale + ATOL)  # not rounding: another algorithm
    # plain SGD has no ascent, so the mode must not matter there
    assert _max_difference(_weights(replicas / "sgd-local"), _weights(replicas / "sgd-allreduce")) == 0
    rows = [json.loads(line) for line in (replicas / "sam-local" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    # It learns what the data holds: the exact population accuracy of the final weights (theory; no sampling)
    # beats the best classifier that uses only one kind of feature: x1 alone (accuracy p = 0.8) or x2.. alone
    # (w1 = 0: Phi(eta sqrt(n)) = 0.77). The optimum (Theorem 1's w1*) reaches 0.846; measured: 0.838.
    p, eta, n = GAUSSIAN["p"], GAUSSIAN["eta"], GAUSSIAN["n"]
    w = local["weight"].double().numpy()
    population = 1 - float(np.exp(linear_log_risk(w[0], w[1:].sum(), np.linalg.norm(w[1:]), np.abs(w[1:]).sum(),
                                                  p, eta).value))
    assert population > max(p, float(accuracy(0.0, p, eta, n)))
    # The recorded test accuracy is that classifier's, on the independent test set (seed + 1) of 200 examples:
    # a binomial proportion around it, within Z = 5 standard errors (a false alarm has probability ~6e-7).
    size = GAUSSIAN["test_size"]
    assert abs(rows[-1]["test_acc"] - population) <= 5 * math.sqrt(population * (1 - population) / size)


@pytest.mark.parametrize("method", REPLICA_METHODS)
@pytest.mark.parametrize("mode", ["allreduce", "local"])
def test_replicas_keep_identical_weights_and_batchnorm_statistics(replicas, method, mode):
    states = [torch.load(replicas / f"replica-{method}-{mode}-{rank}.pt") for rank in range(WORLD_SIZE)]
    # Bit for bit: parameters get the same all-reduced gradients and updates; BatchNorm statistics are the same
    # sum over the replicas on both, divided by 2 (exact).
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_torchrun_launch_matches_one_process(tmp_path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(LINEAR | {"method": "sam"}))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD_SIZE}",
                          "--standalone", "-m", "samat", "train", "--config", str(config),
                          "--runs-dir", str(tmp_path), "--name", "ddp", "--no-progress"],
                         capture_output=True, text=True, cwd=REPO, timeout=120, env=env | {"OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("test accuracy") == 1  # rank 1 prints nothing
    train(linear_cfg(method="sam"), tmp_path / "single", progress=False, data=gaussian_data())
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "single")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=RTOL, atol=ATOL, msg=k)
