"""A trained model and its evaluation images: a run folder (or a model.pt / checkpoint.pt in one) loaded back
with the data it was trained on, and the seeded test subset that every model of a dataset is evaluated on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from samat.core.errors import ParameterError, SamatError
from samat.empirical.evaluation.store import EvaluationOf
from samat.empirical.models.transformer import is_folder
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.runs import RunDir, file_sha256, load_torch, non_finite
from samat.empirical.training.setup import build_network, load_data
from samat.empirical.vocabulary import Architecture, DatasetName, Task


@dataclasses.dataclass(frozen=True)
class Trained:
    """Weights to evaluate, found once: their run folder (eval.json goes there), the weights file, and the
    configuration they were trained with."""

    run: RunDir
    weights: Path
    config: TrainConfig

    @property
    def description(self) -> str:
        cfg = self.config
        if cfg.model.task is Task.TEXT:  # the network's name (a folder by its own name)
            name = cfg.text_spec.model
            return f"{Path(name).name if is_folder(name) else name} on {cfg.dataset} ({self.weights.name})"
        return f"{cfg.model} on {cfg.dataset} ({self.weights.name})"


@dataclasses.dataclass
class Loaded:
    model: nn.Module
    x: torch.Tensor  # the test split (uint8 images or float vectors), on the device
    y: torch.Tensor  # labels (N,), or segmentation masks (N, H, W)
    num_classes: int
    description: str
    task: Task = Task.CLASSIFICATION
    sizes: torch.Tensor | None = None  # segmentation: each test image's own (H, W), on the CPU
    class_names: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()  # text: the test split's sentences, aligned with x


WEIGHTS_SUFFIXES = (".pt", ".pth")  # what torch.save's files are called: model.pt, checkpoint.pt, a bare .pth


def locate(path: str | Path, *, data_dir: str | None = None, model: str | None = None,
           dataset: str | None = None) -> Trained:
    """The weights at ``path`` (a run directory, or a model.pt / checkpoint.pt in one or anywhere), their run
    directory and their configuration: the run's config.json (read once, here), with ``model``, ``dataset`` and
    ``data_dir`` in place of its own where given; a file outside a run directory needs ``model`` and ``dataset``."""
    path = Path(path)
    if not path.exists():
        raise SamatError(f"{path} does not exist: give a run directory (runs/<name>) or a model.pt/checkpoint.pt")
    run = RunDir(path if path.is_dir() else path.parent)
    weights = path
    if path.is_dir():
        weights = run.weights if run.weights.exists() else run.checkpoint
        if not weights.exists():
            raise SamatError(f"{path} holds no model.pt or checkpoint.pt: train it first (samat train)")
    elif path.suffix not in WEIGHTS_SUFFIXES:  # config.json, metrics.jsonl...: not weights, whatever they hold
        hint = f"the run directory ({run.path}) or its model.pt" if run.config.exists() else "a model.pt"
        raise SamatError(f"{path} is not a weights file (samat eval reads {' or '.join(WEIGHTS_SUFFIXES)} files): "
                         f"give {hint}")
    given = {k: v for k, v in (("model", model), ("dataset", dataset), ("data_dir", data_dir)) if v is not None}
    if run.config.exists():
        cfg = run.load_config({"data_dir": data_dir} if data_dir is not None else None)
        for name, value, vocabulary in (("model", model, Architecture), ("dataset", dataset, DatasetName)):
            if value is not None and _parsed(vocabulary, value) != getattr(cfg, name):
                raise SamatError(f"--{name} {value} contradicts {run.config}: its weights are {cfg.model} on "
                                 f"{cfg.dataset} (--model and --dataset are for weights outside a run directory)")
        return Trained(run, weights, cfg)
    if "model" not in given or "dataset" not in given:
        raise SamatError(f"{path} is not inside a run directory: say which --model and --dataset it is")
    return Trained(run, weights, TrainConfig.from_dict(given))


def _parsed(vocabulary, text: str):
    """``text`` as a member of ``vocabulary``; itself when it names none (then it differs from every member)."""
    try:
        return vocabulary.parse(text, "value")
    except ParameterError:
        return text


def evaluation_of(trained: Trained, settings: dict) -> EvaluationOf:
    """What an evaluation of ``trained`` with ``settings`` is of: the weights' SHA-256 now, the architecture and the
    dataset they are evaluated as."""
    cfg = trained.config
    return EvaluationOf(trained.weights, file_sha256(trained.weights), str(cfg.model), str(cfg.dataset),
                        dict(settings))


def load_trained(trained: Trained, *, device: torch.device) -> Loaded:
    """The trained network with its weights, in eval mode, and its whole test split, on ``device``."""
    cfg, weights, run = trained.config, trained.weights, trained.run
    data = load_data(cfg, subsets=False)
    net = build_network(cfg, data)
    state = read_weights(run, weights)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, ValueError) as err:
        first = str(err).strip().splitlines()[0 if not str(err).startswith("Error(s)") else -1].strip()
        raise SamatError(f"{weights} does not fit model {cfg.model} on {cfg.dataset} "
                         f"({data.input_shape}, {data.num_classes} classes): {first}") from None
    net = net.to(device).eval()
    loaded = Loaded(net, data.test_x.to(device), data.test_y.to(device), data.num_classes, trained.description)
    if data.task is Task.SEGMENTATION:
        loaded.task, loaded.sizes, loaded.class_names = Task.SEGMENTATION, data.test_sizes, data.class_names
    if data.task is Task.TEXT:
        loaded.task, loaded.texts, loaded.class_names = Task.TEXT, data.texts["test"], data.label_names
    return loaded


def read_weights(run: RunDir, weights: Path) -> dict[str, torch.Tensor]:
    """The state_dict in ``weights`` (model.pt, or a training checkpoint's model), refused in one line when it
    cannot be read or holds a NaN or an infinity (a diverged training: its accuracy would mean nothing)."""
    fix = ("train the run again (samat train --overwrite)" if weights.name == run.weights.name else
           "evaluate another file, or train the run again (samat train --overwrite)")
    state = load_torch(weights, fix)
    if isinstance(state, dict) and "model" in state and "optimizer" in state:
        state = state["model"]  # a training checkpoint
    if isinstance(state, dict) and (name := non_finite(state)) is not None:
        raise SamatError(f"{weights} holds non-finite weights (NaN or inf in {name}): its training diverged, and "
                         "samat eval does not evaluate them; retrain it with a lower learning rate or rho (samat "
                         "train --overwrite)")
    return state


def eval_indices(n_test: int, n_eval: int, seed: int) -> torch.Tensor:
    """The same seeded subset of the test set for every model of a dataset (sorted)."""
    if n_eval < 1:
        raise ParameterError("n_eval", n_eval, "an integer >= 1")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_test, generator=g)[: min(n_eval, n_test)].sort().values
