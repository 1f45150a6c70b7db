"""``samat eval``: evaluate a run folder (or a checkpoint in one) and keep the result in its ``eval.json``.

One path for every task: the weights are located once (:func:`~.trained.locate`), loaded with their whole test split,
cut to the seeded evaluation subset, scored by the task's :class:`~.scorer.Scorer` in the one evaluation loop
(:func:`~.evaluate.evaluate`), and written with the files the scorer keeps beside eval.json. A task is one row of
:data:`TASKS`: its default columns and how its scorer is made from the loaded model and subset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from samat.core.errors import ParameterError, SamatError
from samat.core.numbers import SEED_RANGE, is_seed
from samat.core.results import atomic_write_bytes, check_writable_folder, provenance, write_json
from samat.empirical.attacks.crosscheck import crosscheck_autoattack
from samat.empirical.attacks.specs import PAPER_COLUMNS, Algorithm, AttackSpec, check_budgets
from samat.empirical.data import as_inputs, input_shape_of
from samat.empirical.evaluation.classification import Hits
from samat.empirical.evaluation.columns import column_specs
from samat.empirical.evaluation.evaluate import evaluate
from samat.empirical.evaluation.scorer import Scorer
from samat.empirical.evaluation.segmentation import SEGMENTATION_COLUMNS, Confusions
from samat.empirical.evaluation.store import kept_columns, reusable_evaluation
from samat.empirical.evaluation.text import TEXT_COLUMNS, WordSubstitutions
from samat.empirical.evaluation.trained import (
    Loaded,
    Trained,
    eval_indices,
    evaluation_of,
    load_trained,
    locate,
    read_weights,
)
from samat.empirical.training.runs import EVALUATION, file_sha256
from samat.empirical.training.setup import resolve_device
from samat.empirical.vocabulary import Task

DEFAULT_N_EVAL = 1000
Log = Callable[[str], None]


@dataclass(frozen=True)
class Subset:
    """What a scorer is made from: the loaded model and data, the evaluation subset's indices, and how to attack."""

    loaded: Loaded
    indices: torch.Tensor  # into the test split, on the CPU
    trained: Trained
    seed: int
    batch_size: int
    progress: bool
    settings: dict  # the evaluation's settings, as eval.json records them
    log: Log = print  # where a scorer says what it does beside the loop's lines (text: resumed, progress)


def _classification(s: Subset) -> Scorer:
    on = s.indices.to(s.loaded.y.device)
    return Hits(s.loaded.model, s.loaded.x[on], s.loaded.y[on], num_classes=s.loaded.num_classes, seed=s.seed,
                batch_size=s.batch_size, progress=s.progress)


def _segmentation(s: Subset) -> Scorer:
    """Batches of at most the run's ``eval_batch_size`` images (large images need smaller batches than classes)."""
    on = s.indices.to(s.loaded.y.device)
    return Confusions(s.loaded.model, s.loaded.x[on], s.loaded.y[on], s.loaded.sizes[s.indices],
                      num_classes=s.loaded.num_classes, class_names=s.loaded.class_names, seed=s.seed,
                      batch_size=min(s.batch_size, s.trained.config.eval_batch_size), progress=s.progress)


def _text(s: Subset) -> Scorer:
    """Each sentence attacked on its own by TextAttack's recipes, its outcome kept in the run folder as soon as it
    is known (an interrupted evaluation resumes at the next sentence)."""
    on = s.indices.to(s.loaded.y.device)
    return WordSubstitutions(s.loaded.model, s.loaded.x[on], s.loaded.y[on],
                             [s.loaded.texts[i] for i in s.indices.tolist()], s.indices.tolist(),
                             config=s.trained.config, folder=s.trained.run.path,
                             resume={"weights": file_sha256(s.trained.weights), "settings": s.settings},
                             seed=s.seed, batch_size=s.batch_size, progress=s.progress, log=s.log)


@dataclass(frozen=True)
class TaskEvaluation:
    """How a task is evaluated: its columns when none are asked for, and its scorer."""

    default_columns: tuple[str, ...]
    scorer: Callable[[Subset], Scorer]


TASKS: dict[Task, TaskEvaluation] = {
    # D Table 2's attacks
    Task.CLASSIFICATION: TaskEvaluation(tuple(s.label for s in PAPER_COLUMNS), _classification),
    # D Tables 8-9's PGD columns
    Task.SEGMENTATION: TaskEvaluation(SEGMENTATION_COLUMNS, _segmentation),
    # D Table 10's TextAttack recipes
    Task.TEXT: TaskEvaluation(TEXT_COLUMNS, _text),
}


def evaluate_path(path: str | Path, columns: list[str] | None, *, device: str = "auto",
                  data_dir: str | None = None, model: str | None = None, dataset: str | None = None,
                  **options) -> dict:
    """:func:`evaluate_run` from text, each value resolved once here: the columns, the weights at ``path`` (with
    ``data_dir``, ``model`` and ``dataset`` in place of their run's), the device."""
    specs = column_specs(columns) if columns is not None else None  # bad columns are refused before the path
    trained = locate(path, data_dir=data_dir, model=model, dataset=dataset)
    return evaluate_run(trained, specs, device=resolve_device(device), **options)


def evaluate_run(trained: Trained, specs: dict[str, AttackSpec] | None, *, device: torch.device,
                 n_eval: int = DEFAULT_N_EVAL, seed: int = 0, batch_size: int = 256, crosscheck: bool = False,
                 overwrite: bool = False, progress: bool = True, log: Log = print) -> dict:
    """Evaluate trained weights on the columns ``specs`` (None: their task's default columns) and write ``eval.json``
    in their run directory.

    An existing evaluation of the same weights with the same settings is extended: only columns it lacks are
    attacked (and nothing is loaded when it has them all); the checks across columns are recomputed over the
    union. One of other weights (the run trained on since, or another checkpoint) is redone. The run folder is
    locked meanwhile: an evaluation that meets another waits for it and then extends its result; one that meets
    training is refused.
    """
    cfg = trained.config
    task = cfg.model.task
    if specs is None:
        specs = column_specs(TASKS[task].default_columns)
    check_budgets({label: s for label, s in specs.items() if isinstance(s, AttackSpec)},
                  input_shape_of(cfg.dataset, cfg.gaussian_spec))  # before the weights or the data are read
    if not is_seed(seed):
        raise ParameterError("seed", seed, SEED_RANGE)
    check_writable_folder(trained.run.path, "run directory")
    if crosscheck and task is not Task.CLASSIFICATION:
        raise SamatError(f"--crosscheck runs AutoAttack, which has no {task.display} version")
    run = trained.run
    lock = run.lock(EVALUATION, hint="evaluate it once training ends",
                    wait=lambda holder: holder is not None and holder.purpose == EVALUATION,
                    on_wait=lambda holder: log(f"waiting for {holder.describe()} to finish with {run.path}"))
    with lock:
        return _evaluate_locked(trained, specs, device=device, n_eval=n_eval, seed=seed, batch_size=batch_size,
                                crosscheck=crosscheck, overwrite=overwrite, progress=progress, log=log)


def _evaluate_locked(trained: Trained, specs: dict[str, AttackSpec], *, device: torch.device, n_eval: int,
                     seed: int, batch_size: int, crosscheck: bool, overwrite: bool, progress: bool, log: Log) -> dict:
    out = trained.run.path / "eval.json"
    settings = {"n_eval": n_eval, "seed": seed}
    of = evaluation_of(trained, settings)
    previous = reusable_evaluation(out, of, overwrite=overwrite, log=log)
    if previous is not None and set(specs) <= kept_columns(previous) and not crosscheck:
        read_weights(trained.run, trained.weights)  # weights that diverged are refused, even with an evaluation
        log(f"{out}: all {len(specs)} columns already evaluated for these weights (--overwrite redoes them)")
        return previous
    loaded = load_trained(trained, device=device)
    if crosscheck and loaded.x.dim() != 4:
        raise SamatError(f"--crosscheck runs AutoAttack, which attacks images; {loaded.description} has vectors")
    indices = eval_indices(len(loaded.y), n_eval, seed)
    scorer = TASKS[loaded.task].scorer(Subset(loaded, indices, trained, seed, batch_size, progress, settings, log))
    result = evaluate(scorer, specs, device=device, previous=previous, log=log, subject=loaded.description)
    if crosscheck:
        on = indices.to(loaded.y.device)
        result["crosscheck"] = _crosscheck(loaded.model, as_inputs(loaded.x[on]), loaded.y[on], specs, seed,
                                           batch_size, log)
    elif previous is not None and "crosscheck" in previous:
        result["crosscheck"] = previous["crosscheck"]
    result["settings"] = settings
    result["model"] = loaded.description
    inputs = of.inputs()
    if files := scorer.attachments():  # written before eval.json, which names them with their SHA-256
        for name, write in files.items():
            atomic_write_bytes(trained.run.path / name, _opened(write))
        result["files"] = list(files)
        inputs["files"] = {name: file_sha256(trained.run.path / name) for name in files}
    record = provenance(inputs)
    write_json(out, result, provenance_record=record, indent=2)
    scorer.written()  # eval.json holds every outcome now: what was kept to resume goes
    return result | {"provenance": record}


def _opened(write: Callable) -> Callable[[Path], None]:
    """A writer of a file object as atomic_write_bytes calls it (with the temporary path)."""

    def to_path(tmp: Path) -> None:
        with tmp.open("wb") as f:
            write(f)

    return to_path


def _crosscheck(model, x, y, specs, seed: int, batch_size: int, log) -> dict:
    """AutoAttack from torchattacks against the reference, at the budget of the evaluation's AutoAttack column
    (ℓ2 32/255 without one)."""
    aa = next((s for s in specs.values() if s.algorithm is Algorithm.AUTOATTACK), None)
    eps = aa.eps if aa else 32 / 255
    norm = aa.norm.value if aa else "l2"
    log(f"cross-checking AutoAttack ({norm}, eps {eps:.4g}) against the reference implementation")
    return crosscheck_autoattack(model, x, y, eps=eps, norm=norm, seed=seed, batch_size=batch_size)
