"""``samat demo``: the main job on the embedded default, end to end.

1. the theory: figures and the verification of Theorems 1-5 (seconds);
2. the embedded default experiment (configs/fashion_mnist_default.toml): ST, SAM and AT of a small CNN on
   real Fashion-MNIST, trained, attacked and tabulated with plots (minutes on 2 CPU cores).

``samat demo --task segmentation`` runs the segmentation default instead (configs/segmentation_default.toml):
ST, SAM and AT of a small DeepLabv3 on scenes of Fashion-MNIST items, scored by mIoU clean and under PGD, with
a figure of predictions (minutes on 2 CPU cores, on one thread; no theory part).

``samat demo --task text`` runs the text default (configs/text_default.toml, with ``pip install 'samat[text]'``):
ST and SAM of a tiny DistilBERT on a generated corpus of movie-review sentences (not the paper's data), attacked by
TextAttack's PSO and IGA recipes on stand-ins for their resources, with a table and figures (minutes on 2 CPU
cores; no theory part).

Finished parts are kept: a second run only redoes what is missing (or, with --force, the parts it runs: each part's
earlier results are kept until its new ones are complete, and an interrupted replacement is continued by the next
``--force`` or put back by the next plain run).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from samat.cli.runtime import chosen_threads, use_cpu_threads
from samat.core.errors import Interrupted, SamatError
from samat.core.results import check_writable_folder


def add_command(sub) -> None:
    demo = sub.add_parser("demo", help="run the main job on the embedded default (theory, then Fashion-MNIST)",
                          description="Verify Theorems 1-5 with figures, then train, attack and tabulate the "
                          "default Fashion-MNIST experiment; everything goes to OUT/ (default results/demo).")
    demo.add_argument("--out", type=Path, default=Path("results/demo"), metavar="DIR", help="output directory")
    demo.add_argument("--theory-only", action="store_true", help="skip the training experiment")
    demo.add_argument("--task", choices=("classification", "segmentation", "text"), default="classification",
                      help="classification (default: theory, then Fashion-MNIST), segmentation (the Fashion-MNIST "
                      "scenes experiment only) or text (a tiny DistilBERT on a generated corpus under TextAttack's "
                      "PSO and IGA; needs pip install 'samat[text]')")
    demo.add_argument("--force", action="store_true",
                      help="redo the parts this demo runs (the theory and Fashion-MNIST, or the segmentation or text "
                      "demo); their earlier results are kept until the new ones are done, the other parts are not "
                      "touched")
    demo.set_defaults(func=cmd_demo)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from samat.empirical.experiments.report import terminal_text

    out: Path = args.out
    if args.task != "classification" and args.theory_only:
        raise SamatError(f"--theory-only and --task {args.task} exclude each other (the {args.task} demo has no "
                         "theory part)")
    if args.task == "text":
        _check_text_extra()
    check_writable_folder(out, "--out")
    legacy = out.with_name(f".{out.name}.replaced")  # where earlier versions' --force set all of OUT aside
    if legacy.is_dir():
        _say(f"[demo] {legacy} holds earlier results that an interrupted `samat demo --force` of an earlier version "
             f"set aside; they stay there: move them back into {out} or delete them")
    t0 = time.perf_counter()
    if args.task == "text":
        with _replacing(out / "text", force=args.force):
            table = _text_experiment(out / "text")
        print(terminal_text(table.read_text()).strip() + f"\n\nexperiment report: {table} (with figures); the corpus "
              "is generated, not Rotten Tomatoes: these numbers say nothing about D Table 10")
        print(f"done in {time.perf_counter() - t0:.0f} s")
        return 0
    if args.task == "segmentation":
        with _replacing(out / "segmentation", force=args.force):
            table = _experiment(out / "segmentation", segmentation=True)
        print(terminal_text(table.read_text()).strip() + f"\n\nexperiment report: {table} (with figures)")
        print(f"done in {time.perf_counter() - t0:.0f} s")
        return 0
    with _replacing(out / "theory", force=args.force):
        theory_md = _theory(out / "theory")
    lines = [_theory_summary(out / "theory" / "verification.json"), f"theory report: {theory_md}"]
    if not args.theory_only:
        with _replacing(out / "fashion-mnist", force=args.force):
            table = _experiment(out / "fashion-mnist")
        runs = out / "fashion-mnist" / "runs"
        lines += ["", terminal_text(table.read_text()).strip(), "",
                  f"experiment report: {table} (with figures); its runs: samat experiment status "
                  f"fashion_mnist_default --runs-dir {runs}"]
    print("\n".join(lines))
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


@contextlib.contextmanager
def _replacing(part: Path, *, force: bool) -> Iterator[None]:
    """The demo's work on one of its parts (OUT/theory, OUT/fashion-mnist, OUT/segmentation or OUT/text): with
    ``force``, the part's earlier results are set aside (OUT/.PART.replaced) until its new ones are complete, then
    deleted; the other parts are never touched.

    A replacement that fails gives the earlier results back. One that is interrupted (Ctrl-C, or a process killed
    where nothing can clean up) keeps both: the next ``samat demo --force`` continues it (its runs resume), and
    the next ``samat demo`` puts the earlier results back, saying so.
    """
    aside = part.with_name(f".{part.name}.replaced")
    done = part.with_name(f".{part.name}.done")  # earlier results on their way out: the new ones are complete
    if done.exists():
        shutil.rmtree(done)
    if aside.exists() and force:
        _say(f"[demo] continuing the interrupted replacement of {part} (its earlier results stay in {aside} until "
             "it is done)")
    elif aside.exists():
        _put_back(part, aside)
        _say(f"[demo] an interrupted `samat demo --force` had set the earlier results of {part} aside: they are "
             "back (its unfinished new results are deleted)")
    elif force and part.exists():
        os.replace(part, aside)
    try:
        yield
    except (KeyboardInterrupt, Interrupted):
        if aside.exists():
            _say(f"[demo] the earlier results of {part} stay in {aside} until the replacement is done: `samat demo "
                 "--force` continues it, `samat demo` puts them back")
        raise
    except BaseException:
        if aside.exists():
            _put_back(part, aside)
            _say(f"[demo] the earlier results are back in {part}")
        raise
    if aside.exists():
        os.replace(aside, done)  # at once: a process killed while deleting them leaves only .done to finish
        shutil.rmtree(done)


def _put_back(part: Path, aside: Path) -> None:
    """The earlier results set aside in ``aside`` return to ``part`` (whatever the unfinished replacement left
    there is deleted)."""
    if part.exists():
        shutil.rmtree(part)
    os.replace(aside, part)


def _theory(theory_dir: Path) -> Path:
    from samat.theory import plots
    from samat.theory.claims import Grid
    from samat.theory.claims.report import JSON_NAME, MARKDOWN_NAME, verify_into

    figures = theory_dir / "figures"
    md = theory_dir / MARKDOWN_NAME
    existing = plots.existing_outputs(figures)
    if len(existing) == len(plots.outputs(figures)):
        _say(f"[theory] figures already in {figures}/ (kept)")
    else:  # none yet, or some: an interrupted demo drew only the first figures
        _say(f"[theory] drawing figures into {figures}/" + (" (some were missing)" if existing else ""))
        plots.make_all(figures, progress=lambda m: _say(f"  {m}"))
    if md.exists() and (theory_dir / JSON_NAME).exists():
        _say(f"[theory] report already in {theory_dir}/ (kept)")
    else:
        _say(f"[theory] verifying Theorems 1-5 into {theory_dir}/")
        verify_into(theory_dir, Grid(), figures_dir=figures, progress=lambda m: _say(f"  {m}"))
    return md


def _theory_summary(json_path: Path) -> str:
    """The verdicts in words (the library's), one line per claim."""
    import json

    from samat.theory.claims.report import verdict_lines

    return "\n".join(verdict_lines(json.loads(json_path.read_text())["claims"]))


def _experiment(exp_dir: Path, *, segmentation: bool = False, overrides: dict | None = None,
                n_eval: int | None = None, columns: tuple[str, ...] | None = None) -> Path:
    """Run the packaged default experiment (or the segmentation default) into ``exp_dir`` and write its report;
    returns the report's Markdown file. ``overrides`` (configuration fields) apply to every run, ``n_eval``
    replaces the experiment's number of evaluation images and ``columns`` its table's columns (the tests run a
    tiny setting)."""
    from samat.empirical.data import FASHION_MNIST_DIR
    from samat.empirical.data.fashion_mnist import missing_fashion_mnist
    from samat.empirical.experiments import catalog
    from samat.empirical.experiments.grid import load_experiment
    from samat.empirical.experiments.report import write_report
    from samat.empirical.experiments.runner import failures, run_experiment

    # The files' presence only (as the loader finds them, gzipped or not): training loads the data once, later.
    folder = Path((overrides or {}).get("data_dir") or FASHION_MNIST_DIR)
    if missing := missing_fashion_mnist(folder):
        raise SamatError(f"the default experiment needs Fashion-MNIST (missing {', '.join(missing)} in "
                         f"{folder}); install it with `apt-get install dataset-fashion-mnist` "
                         "(bash .ci/setup does)" + ("" if segmentation else " or use --theory-only"))
    name = catalog.SEGMENTATION_DEFAULT if segmentation else catalog.DEFAULT
    exp = load_experiment(catalog.resolve(name), runs_dir=exp_dir / "runs", overrides=overrides)
    if n_eval is not None:
        exp = dataclasses.replace(exp, n_eval=n_eval)
    if columns is not None:
        exp = exp.with_columns(columns)
    _say(f"[experiment] {exp.title}: {len(exp.runs)} runs into {exp_dir}/runs")
    if segmentation and chosen_threads() is None:
        import torch

        # One thread: the small network's convolutions gain little from a second one, and lose 3x when the two
        # cores are shared with other work (docs/BENCHMARKS.md); SAMAT_THREADS chooses otherwise.
        torch.set_num_threads(1)
    use_cpu_threads(_say)
    outcomes = run_experiment(exp, progress=sys.stderr.isatty(), log=_say)
    if (failed := failures(outcomes)) and any(exp.finished(label) for label in exp.labels):
        write_report(exp, exp_dir, log=_say)  # what did finish
    if failed:
        raise failed
    paths = write_report(exp, exp_dir, log=_say)
    return paths["markdown"]


TEXT_PACKAGES = ("transformers", "datasets", "textattack", "flair", "nltk")


def _check_text_extra() -> None:
    """The text demo's libraries are installed (without importing them), or one line naming the extra."""
    from importlib.util import find_spec

    missing = [name for name in TEXT_PACKAGES if find_spec(name) is None]
    if missing:
        raise SamatError(f"--task text needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                         "installed: pip install 'samat[text]'")


def _text_experiment(exp_dir: Path, *, n_eval: int | None = None, overrides: dict | None = None,
                     resources: Path | None = None) -> Path:
    """The text default (configs/text_default.toml) into ``exp_dir``: the tiny model and the stand-ins for
    TextAttack's resources (in ``resources``, by default ``exp_dir/resources``) are written first (kept when
    present), then the grid runs and its report is written; returns the report's Markdown file. ``n_eval`` and
    ``overrides`` shrink it further (the tests)."""
    from samat.empirical.attacks.specs import TEXT_ALGORITHMS
    from samat.empirical.attacks.text.resources import missing_resources, use_resources

    resources = resources or exp_dir / "resources"
    use_resources(resources)  # before TextAttack, flair or NLTK load: each reads its folder then
    from samat.empirical.attacks.text.standins import write_standins
    from samat.empirical.data.text.generated import vocabulary
    from samat.empirical.experiments import catalog
    from samat.empirical.experiments.grid import load_experiment
    from samat.empirical.experiments.report import write_report
    from samat.empirical.experiments.runner import run_experiment
    from samat.empirical.models.transformer import write_tiny_model

    if any(missing_resources(a) for a in TEXT_ALGORITHMS):
        _say(f"[text] writing stand-ins for TextAttack's resources into {resources}/ (made from the generated "
             "corpus's lexicon: not the real ones)")
        write_standins(resources)
    model = exp_dir / "tiny-distilbert"
    if not (model / "config.json").is_file():
        _say(f"[text] writing a tiny DistilBERT (2 layers, width 32, the lexicon's vocabulary) into {model}/")
        write_tiny_model(model, vocabulary())
    settings = (overrides or {}) | {"text": {"model": str(model.resolve()), "max_length": 32}}
    exp = load_experiment(catalog.resolve(catalog.TEXT_DEFAULT), runs_dir=exp_dir / "runs", overrides=settings)
    if n_eval is not None:
        exp = dataclasses.replace(exp, n_eval=n_eval)
    _say(f"[experiment] {exp.title}: {len(exp.runs)} runs into {exp_dir}/runs")
    use_cpu_threads(_say)
    run_experiment(exp, progress=sys.stderr.isatty(), log=_say)
    return write_report(exp, exp_dir, log=_say)["markdown"]
