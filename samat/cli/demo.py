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
import sys
import time
from pathlib import Path

from samat.cli.runtime import chosen_threads, use_cpu_threads
from samat.core.errors import SamatError
from samat.core.replacement import replacing
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
    from samat.empirical.experiments.report.tables import terminal_text

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
        with _replacing_part(out / "text", force=args.force):
            table = _text_experiment(out / "text")
        print(terminal_text(table.read_text()).strip() + f"\n\nexperiment report: {table} (with figures); the corpus "
              "is generated, not Rotten Tomatoes: these numbers say nothing about D Table 10")
        print(f"done in {time.perf_counter() - t0:.0f} s")
        return 0
    if args.task == "segmentation":
        with _replacing_part(out / "segmentation", force=args.force):
            table = _experiment(out / "segmentation", segmentation=True)
        print(terminal_text(table.read_text()).strip() + f"\n\nexperiment report: {table} (with figures)")
        print(f"done in {time.perf_counter() - t0:.0f} s")
        return 0
    with _replacing_part(out / "theory", force=args.force):
        theory_md = _theory(out / "theory")
    lines = [_theory_summary(out / "theory" / "verification.json"), f"theory report: {theory_md}"]
    if not args.theory_only:
        with _replacing_part(out / "fashion-mnist", force=args.force):
            table = _experiment(out / "fashion-mnist")
        runs = out / "fashion-mnist" / "runs"
        lines += ["", terminal_text(table.read_text()).strip(), "",
                  f"experiment report: {table} (with figures); its runs: samat experiment status "
                  f"fashion_mnist_default --runs-dir {runs}"]
    print("\n".join(lines))
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def _replacing_part(part: Path, *, force: bool):
    """The demo's work on one of its parts (OUT/theory, OUT/fashion-mnist, OUT/segmentation or OUT/text), replaced
    only once the new results are complete (:func:`samat.core.replacement.replacing`); the other parts are never
    touched."""
    return replacing(part, force=force, log=lambda m: _say(f"[demo] {m}"), what="samat demo")


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
    """The packaged default (or the segmentation default) run into ``exp_dir`` by the library, with the demo's
    threads and log; returns the report's Markdown file (the keywords shrink it: the tests)."""
    from samat.empirical.experiments.defaults import run_default

    def threads() -> None:
        if segmentation and chosen_threads() is None:
            import torch

            # One thread: the small network's convolutions gain little from a second one, and lose 3x when the two
            # cores are shared with other work (docs/BENCHMARKS.md); SAMAT_THREADS chooses otherwise.
            torch.set_num_threads(1)
        use_cpu_threads(_say)

    return run_default(exp_dir, segmentation=segmentation, overrides=overrides, n_eval=n_eval, columns=columns,
                       progress=sys.stderr.isatty(), log=_say, on_start=threads)


def _check_text_extra() -> None:
    """The text demo's libraries are installed (without importing them), or one line naming the extra."""
    from samat.empirical.libraries import TEXT_EXTRA, missing_text_libraries

    if missing := missing_text_libraries():
        raise SamatError(f"--task text needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                         f"installed: {TEXT_EXTRA}")


def _text_experiment(exp_dir: Path, *, n_eval: int | None = None, overrides: dict | None = None,
                     resources: Path | None = None) -> Path:
    """The text default run into ``exp_dir`` by the library, with the demo's threads and log."""
    from samat.empirical.experiments.defaults import run_text_default

    return run_text_default(exp_dir, n_eval=n_eval, overrides=overrides, resources=resources,
                            progress=sys.stderr.isatty(), log=_say, on_start=lambda: use_cpu_threads(_say))
