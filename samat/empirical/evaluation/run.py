"""``samat eval``: evaluate a run folder (or a checkpoint in one) and keep the result in its ``eval.json``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from samat.core.errors import ParameterError, SamatError
from samat.core.numbers import SEED_RANGE, is_seed
from samat.core.results import check_writable_folder, provenance, write_json
from samat.empirical.attacks.crosscheck import crosscheck_autoattack
from samat.empirical.attacks.specs import PAPER_COLUMNS, Algorithm
from samat.empirical.data import as_inputs
from samat.empirical.evaluation.columns import NATURAL, SANITY, column_spec, column_specs
from samat.empirical.evaluation.evaluate import evaluate
from samat.empirical.evaluation.segmentation import SEGMENTATION_COLUMNS, evaluate_segmentation_path
from samat.empirical.evaluation.store import reusable_evaluation
from samat.empirical.evaluation.trained import eval_indices, load_trained, locate, trained_config
from samat.empirical.training.runs import EVALUATION, file_sha256
from samat.empirical.training.setup import resolve_device
from samat.empirical.vocabulary import Task

DEFAULT_N_EVAL = 1000


def evaluate_path(path: str | Path, columns: list[str] | None, *, n_eval: int = DEFAULT_N_EVAL, seed: int = 0,
                  batch_size: int = 256, device: str = "auto", data_dir: str | None = None,
                  model: str | None = None, dataset: str | None = None, crosscheck: bool = False,
                  overwrite: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Evaluate a run (or checkpoint) and write ``eval.json`` in its run directory.

    An existing evaluation of the same weights with the same settings is extended: only columns it lacks are
    attacked (and nothing is loaded when it has them all); the checks across columns are recomputed over the
    union. One of other weights (the run trained on since, or another checkpoint) is redone. The run folder is
    locked meanwhile: an evaluation that meets another waits for it and then extends its result; one that meets
    training is refused. A segmentation run is evaluated by :func:`~.segmentation.evaluate_segmentation_path`
    (mIoU, per-class IoU). ``columns`` None: the duality paper's (Table 2's attacks; for segmentation Tables 8-9's
    PGD columns).
    """
    if columns is not None:
        column_specs(columns)  # bad columns are refused before the path is looked at
    if not is_seed(seed):
        raise ParameterError("seed", seed, SEED_RANGE)
    run, weights = locate(path)
    check_writable_folder(run.path, "run directory")
    resolve_device(device)
    segmenting = _segmentation(path, data_dir, model, dataset)
    if segmenting and crosscheck:
        raise SamatError("--crosscheck runs AutoAttack, which has no segmentation version")
    lock = run.lock(EVALUATION, hint="evaluate it once training ends",
                    wait=lambda holder: holder is not None and holder.purpose == EVALUATION,
                    on_wait=lambda holder: log(f"waiting for {holder.describe()} to finish with {run.path}"))
    options = dict(n_eval=n_eval, seed=seed, batch_size=batch_size, device=device, data_dir=data_dir, model=model,
                   dataset=dataset, overwrite=overwrite, progress=progress, log=log)
    with lock:
        if segmenting:
            return evaluate_segmentation_path(path, columns or list(SEGMENTATION_COLUMNS), **options)
        specs = column_specs(columns or [s.label for s in PAPER_COLUMNS])
        return _evaluate_locked(run, weights, path, specs, crosscheck=crosscheck, **options)


def _segmentation(path, data_dir, model, dataset) -> bool:
    """Whether the weights at ``path`` are a segmentation network's (False when its configuration cannot be read:
    the classification path reports that, after what it checks first)."""
    try:
        return trained_config(path, data_dir=data_dir, model=model, dataset=dataset).model.task is Task.SEGMENTATION
    except SamatError:
        return False


def _evaluate_locked(run, weights: Path, path, specs, *, n_eval, seed, batch_size, device, data_dir, model, dataset,
                     crosscheck, overwrite, progress, log) -> dict:
    out = run.path / "eval.json"
    settings = {"n_eval": n_eval, "seed": seed}
    sha = file_sha256(weights)
    previous = reusable_evaluation(out, weights, sha, settings, overwrite=overwrite, log=log)
    todo = list(specs)
    if previous is not None:  # columns of an evaluation without per-image hits (older files) are redone
        earlier = previous.get("columns") or [c for c in previous["accuracy"] if c != NATURAL and SANITY not in c]
        todo = [c for c in dict.fromkeys([*earlier, *specs]) if c not in previous.get("correct", {})]
        if not todo and not crosscheck:
            log(f"{out}: all {len(specs)} columns already evaluated for these weights (--overwrite redoes them)")
            return previous
    dev = resolve_device(device)
    loaded = load_trained(path, device=dev, data_dir=data_dir, model=model, dataset=dataset)
    if crosscheck and loaded.x.dim() != 4:
        raise SamatError(f"--crosscheck runs AutoAttack, which attacks images; {loaded.description} has vectors")
    idx = eval_indices(len(loaded.y), n_eval, seed).to(loaded.y.device)
    x, y = loaded.x[idx], loaded.y[idx]
    titles = ", ".join(column_spec(c).title for c in todo) or "cross-check only"
    log(f"evaluating {loaded.description} on {len(y)} test images: {titles}")
    result = evaluate(loaded.model, x, y, todo, num_classes=loaded.num_classes, seed=seed, batch_size=batch_size,
                      progress=progress, log=log, previous=previous)
    if crosscheck:
        result["crosscheck"] = _crosscheck(loaded.model, as_inputs(x), y, specs, seed, batch_size, log)
    elif previous is not None and "crosscheck" in previous:
        result["crosscheck"] = previous["crosscheck"]
    result["settings"] = settings
    result["model"] = loaded.description
    record = provenance({"weights": {"file": weights.name, "sha256": sha}, "settings": settings})
    write_json(out, result, provenance_record=record, indent=2)
    return result | {"provenance": record}


def _crosscheck(model, x, y, specs, seed: int, batch_size: int, log) -> dict:
    """AutoAttack from torchattacks against the reference, at the budget of the evaluation's AutoAttack column
    (ℓ2 32/255 without one)."""
    aa = next((s for s in specs.values() if s.algorithm is Algorithm.AUTOATTACK), None)
    eps = aa.eps if aa else 32 / 255
    norm = aa.norm.value if aa else "l2"
    log(f"cross-checking AutoAttack ({norm}, eps {eps:.4g}) against the reference implementation")
    return crosscheck_autoattack(model, x, y, eps=eps, norm=norm, seed=seed, batch_size=batch_size)
