"""``samat study``: theory meets training, linear models trained on the Gaussian model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samat.core.errors import SamatError
from samat.core.results import check_writable_folder, publish


def add_command(sub) -> None:
    study = sub.add_parser("study", help="theory meets training: linear models trained on the Gaussian model",
                           description="Train linear classifiers on samples of D(p, eta, n) with SGD, SAM, ASAM "
                           "and PGD-AT, measure W_R and exact accuracies, compare with the population optima of "
                           "theory (0-1 and logistic losses), and draw the figures of docs/findings.md.")
    study.add_argument("--out", type=Path, default=Path("results/gaussian-study"), metavar="DIR",
                       help="where the runs, measurements, figures and verdicts go (default results/gaussian-study; "
                       "an interrupted study resumes there)")
    study.add_argument("--quick", action="store_true", help="a small grid (a minute): for smoke runs")
    study.add_argument("--report-only", action="store_true", help="only summarize and plot stored measurements")
    study.add_argument("--publish", type=Path, metavar="DIR",
                       help="also copy the figures, summary.json and verdicts.md to DIR (e.g. docs/study)")
    study.add_argument("--force", action="store_true", help="with --publish: replace files already in DIR")
    study.add_argument("--duality", action="store_true",
                       help="instead: the duality map on the Gaussian model (ST, a ladder of SAM radii and of AT "
                       "budgets, trained and measured exactly, beside theory's curves) into DIR/duality")
    study.set_defaults(func=cmd_study)


def _check_outputs(args: argparse.Namespace) -> None:
    """--out and --publish, before the study: it writes them when it is done."""
    check_writable_folder(args.out, "--out")
    if args.publish:
        check_writable_folder(args.publish, "--publish")


def cmd_study(args: argparse.Namespace) -> int:
    from samat.gaussian_study.driver import run
    from samat.gaussian_study.figures import figures
    from samat.gaussian_study.grid import StudyGrid
    from samat.gaussian_study.report import write
    from samat.gaussian_study.summary import summarize

    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.publish and args.publish.is_dir() and any(args.publish.iterdir()) and not args.force:
        raise SamatError(f"--publish {args.publish} is not empty; pass --force to replace its files")
    if args.duality:
        _check_outputs(args)
        return _duality(args, say)
    measurements = args.out / "measurements.json"
    if args.report_only and not measurements.exists():
        raise SamatError(f"{measurements} does not exist: run `samat study --out {args.out}` first")
    _check_outputs(args)
    if not args.report_only:
        measurements = run(StudyGrid.quick() if args.quick else StudyGrid(), args.out, log=say)
    summary = summarize(measurements, log=say)
    paths = figures(summary, args.out)
    paths += write(summary, args.out)
    paths.append(args.out / "summary.json")
    print(f"wrote {len(paths)} files in {args.out}/: the verdicts are in {args.out / 'verdicts.md'}")
    if args.publish:
        publish(paths, args.publish)
        print(f"copied them to {args.publish}/")
    return 0


def _duality(args: argparse.Namespace, say) -> int:
    from samat.gaussian_study.duality import DualityGrid, run, summarize
    from samat.gaussian_study.duality_figure import write

    out = args.out / "duality"
    grid = DualityGrid.quick() if args.quick else DualityGrid()
    measurements = out / "measurements.json"
    if not args.report_only:
        measurements = run(grid, out, log=say)
    elif not measurements.exists():
        raise SamatError(f"{measurements} does not exist: run `samat study --duality --out {args.out}` first")
    paths = write(summarize(grid, measurements), out, measurements)
    print((out / "duality.md").read_text())
    print(f"wrote {len(paths)} files in {out}/")
    if args.publish:
        publish(paths, args.publish)
        print(f"copied them to {args.publish}/")
    return 0
