"""The embedded defaults run end to end, what ``samat demo`` runs: the packaged Fashion-MNIST experiment (or its
segmentation twin on Fashion-MNIST scenes), or the text default on a generated corpus with a tiny DistilBERT, each
trained, evaluated and tabulated into one folder. Finished runs and evaluations are kept (the runner skips them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from samat.core.errors import SamatError
from samat.empirical.data import FASHION_MNIST_DIR
from samat.empirical.data.fashion_mnist import missing_fashion_mnist
from samat.empirical.experiments import catalog
from samat.empirical.experiments.grid import Experiment, load_experiment
from samat.empirical.experiments.report.tables import write_report
from samat.empirical.experiments.runner import failures, run_experiment

Log = Callable[[str], None]


def _nothing() -> None:
    pass


def run_default(exp_dir: Path, *, segmentation: bool = False, overrides: dict | None = None, n_eval: int | None = None,
                columns: tuple[str, ...] | None = None, progress: bool = False, log: Log = print,
                on_start: Callable[[], None] = _nothing) -> Path:
    """The packaged default experiment (or the segmentation default) into ``exp_dir``, and its report; returns the
    report's Markdown file. ``overrides`` (configuration fields) apply to every run, ``n_eval`` replaces the
    experiment's number of evaluation examples and ``columns`` its table's columns (the tests run a tiny setting).
    The Fashion-MNIST files are looked for before anything runs; ``on_start`` is called once the grid is read, just
    before its runs (the command line sets torch's threads there). A failed run is raised once the report of what
    did finish is written."""
    # The files' presence only (as the loader finds them, gzipped or not): training loads the data once, later.
    folder = Path((overrides or {}).get("data_dir") or FASHION_MNIST_DIR)
    if missing := missing_fashion_mnist(folder):
        raise SamatError(f"the default experiment needs Fashion-MNIST (missing {', '.join(missing)} in "
                         f"{folder}); install it with `apt-get install dataset-fashion-mnist` "
                         "(bash .ci/setup does)" + ("" if segmentation else " or use --theory-only"))
    name = catalog.SEGMENTATION_DEFAULT if segmentation else catalog.DEFAULT
    exp = _shrunk(load_experiment(catalog.resolve(name), runs_dir=exp_dir / "runs", overrides=overrides), n_eval,
                  columns)
    return _run_and_report(exp, exp_dir, progress, log, on_start)


def run_text_default(exp_dir: Path, *, n_eval: int | None = None, overrides: dict | None = None,
                     resources: Path | None = None, progress: bool = False, log: Log = print,
                     on_start: Callable[[], None] = _nothing) -> Path:
    """The text default (configs/text_default.toml) into ``exp_dir``: the tiny model and the stand-ins for
    TextAttack's resources (in ``resources``, by default ``exp_dir/resources``) are written first (kept when
    present), then the grid runs and its report is written; returns the report's Markdown file. ``n_eval`` and
    ``overrides`` shrink it further (the tests); ``on_start`` as for :func:`run_default`.

    The text modules are imported here, after the resources' folder is set: TextAttack, flair and NLTK read it when
    they load (and nothing imports them unless a text command runs)."""
    from samat.empirical.attacks.specs import TEXT_ALGORITHMS
    from samat.empirical.attacks.text.resources import missing_resources, use_resources

    resources = resources or exp_dir / "resources"
    use_resources(resources)  # before TextAttack, flair or NLTK load: each reads its folder then
    from samat.empirical.attacks.text.standins import write_standins
    from samat.empirical.data.text.generated import vocabulary
    from samat.empirical.models.transformer import write_tiny_model

    if any(missing_resources(a) for a in TEXT_ALGORITHMS):
        log(f"[text] writing stand-ins for TextAttack's resources into {resources}/ (made from the generated "
            "corpus's lexicon: not the real ones)")
        write_standins(resources)
    model = exp_dir / "tiny-distilbert"
    if not (model / "config.json").is_file():
        log(f"[text] writing a tiny DistilBERT (2 layers, width 32, the lexicon's vocabulary) into {model}/")
        write_tiny_model(model, vocabulary())
    settings = (overrides or {}) | {"text": {"model": str(model.resolve()), "max_length": 32}}
    exp = _shrunk(load_experiment(catalog.resolve(catalog.TEXT_DEFAULT), runs_dir=exp_dir / "runs",
                                  overrides=settings), n_eval, None)
    return _run_and_report(exp, exp_dir, progress, log, on_start)


def _run_and_report(exp: Experiment, exp_dir: Path, progress: bool, log: Log, on_start: Callable[[], None]) -> Path:
    """Run the grid and write its report; returns the report's Markdown file. A failed run is raised once the report
    of what did finish is written (so that demo --force keeps the earlier results)."""
    log(f"[experiment] {exp.title}: {len(exp.runs)} runs into {exp_dir}/runs")
    on_start()
    outcomes = run_experiment(exp, progress=progress, log=log)
    if (failed := failures(outcomes)) and any(exp.finished(label) for label in exp.labels):
        write_report(exp, exp_dir, log=log)  # what did finish
    if failed:
        raise failed
    return write_report(exp, exp_dir, log=log)["markdown"]


def _shrunk(exp: Experiment, n_eval: int | None, columns: tuple[str, ...] | None) -> Experiment:
    """The experiment with another number of evaluation examples and other columns, where given."""
    if n_eval is not None:
        exp = dataclasses.replace(exp, n_eval=n_eval)
    return exp.with_columns(columns) if columns is not None else exp
