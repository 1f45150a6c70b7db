"""A trained model and its evaluation images: a run folder (or a model.pt / checkpoint.pt in one) loaded back
with the data it was trained on, and the seeded test subset that every model of a dataset is evaluated on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from samat.core.errors import ParameterError, SamatError
from samat.empirical.data import load_dataset
from samat.empirical.models import build_model
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.runs import RunDir, load_torch
from samat.empirical.vocabulary import DatasetName, Task


@dataclasses.dataclass
class Loaded:
    model: nn.Module
    x: torch.Tensor  # the test split (uint8 images or float vectors), on the device
    y: torch.Tensor  # labels (N,), or segmentation masks (N, H, W)
    num_classes: int
    where: Path  # the run directory (eval.json goes here)
    description: str
    task: Task = Task.CLASSIFICATION
    sizes: torch.Tensor | None = None  # segmentation: each test image's own (H, W), on the CPU
    class_names: tuple[str, ...] = ()


def locate(path: str | Path) -> tuple[RunDir, Path]:
    """The run directory of ``path`` (a run directory, or a model.pt / checkpoint.pt) and the weights to load;
    nothing is read."""
    path = Path(path)
    if not path.exists():
        raise SamatError(f"{path} does not exist: give a run directory (runs/<name>) or a model.pt/checkpoint.pt")
    run = RunDir(path if path.is_dir() else path.parent)
    if not path.is_dir():
        return run, path
    weights = run.weights if run.weights.exists() else run.checkpoint
    if not weights.exists():
        raise SamatError(f"{path} holds no model.pt or checkpoint.pt: train it first (samat train)")
    return run, weights


def trained_config(path: str | Path, *, data_dir: str | None = None, model: str | None = None,
                   dataset: str | None = None) -> TrainConfig:
    """The configuration a run (or a checkpoint in one) was trained with, or the one ``model``/``dataset`` name."""
    run, _ = locate(path)
    cfg = run.load_config() if run.config.exists() else None
    values = cfg.to_dict() if cfg else {}
    values |= {k: v for k, v in (("model", model), ("dataset", dataset), ("data_dir", data_dir)) if v is not None}
    if "model" not in values or "dataset" not in values:
        raise SamatError(f"{path} is not inside a run directory: say which --model and --dataset it is")
    return TrainConfig.from_dict(values)


def load_trained(path: str | Path, *, device: torch.device, data_dir: str | None = None,
                 model: str | None = None, dataset: str | None = None) -> Loaded:
    """A run directory, or a model.pt / checkpoint.pt inside one, or a bare state_dict with ``model``/``dataset``."""
    run, weights = locate(path)
    cfg = trained_config(path, data_dir=data_dir, model=model, dataset=dataset)
    gaussian = cfg.gaussian_spec if cfg.dataset == DatasetName.GAUSSIAN else None
    data = load_dataset(cfg.dataset, cfg.data_dir, gaussian=gaussian)
    segmenting = data.task is Task.SEGMENTATION
    net = build_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, mean=data.mean,
                      std=data.std, options=cfg.segmentation_spec.model_options if segmenting else None)
    fix = ("train the run again (samat train --overwrite)" if weights.name == run.weights.name else
           "evaluate another file, or train the run again (samat train --overwrite)")
    state = load_torch(weights, fix)
    if isinstance(state, dict) and "model" in state and "optimizer" in state:
        state = state["model"]  # a training checkpoint
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, ValueError) as err:
        first = str(err).strip().splitlines()[0 if not str(err).startswith("Error(s)") else -1].strip()
        raise SamatError(f"{weights} does not fit model {cfg.model} on {cfg.dataset} "
                         f"({data.input_shape}, {data.num_classes} classes): {first}") from None
    net = net.to(device).eval()
    loaded = Loaded(net, data.test_x.to(device), data.test_y.to(device), data.num_classes, run.path,
                    f"{cfg.model} on {cfg.dataset} ({weights.name})")
    if segmenting:
        loaded.task, loaded.sizes, loaded.class_names = Task.SEGMENTATION, data.test_sizes, data.class_names
    return loaded


def eval_indices(n_test: int, n_eval: int, seed: int) -> torch.Tensor:
    """The same seeded subset of the test set for every model of a dataset (sorted)."""
    if n_eval < 1:
        raise ParameterError("n_eval", n_eval, "an integer >= 1")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_test, generator=g)[: min(n_eval, n_test)].sort().values


# --- The evaluation -----------------------------------------------------------------------------------------
