"""``samat demo``: the main job on the embedded default, end to end.

1. the theory: figures and the verification of Theorems 1-5 (seconds);
2. the embedded default experiment (configs/fashion_mnist_default.toml): ST, SAM and AT of a small CNN on
   real Fashion-MNIST, trained, attacked and tabulated with plots (minutes on 2 CPU cores).

``samat demo --task segmentation`` runs the segmentation default instead (configs/segmentation_default.toml):
ST, SAM and AT of a small DeepLabv3 on scenes of Fashion-MNIST items, scored by mIoU clean and under PGD, with
a figure of predictions (minutes on 2 CPU cores, on one thread; no theory part).

Finished parts are kept: a second run only redoes what is missing (or everything with --force).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

from core.errors import SamatError


def add_command(sub) -> None:
    demo = sub.add_parser("demo", help="run the main job on the embedded default (theory, then Fashion-MNIST)",
                          description="Verify Theorems 1-5 with figures, then train, attack and tabulate the "
                          "default Fashion-MNIST experiment; everything goes to OUT/ (default results/demo).")
    demo.add_argument("--out", type=Path, default=Path("results/demo"), metavar="DIR", help="output directory")
    demo.add_argument("--theory-only", action="store_true", help="skip the training experiment")
    demo.add_argument("--task", choices=("classification", "segmentation"), default="classification",
                      help="classification (default: theory, then Fashion-MNIST) or segmentation (the Fashion-MNIST "
                      "scenes experiment only)")
    demo.add_argument("--force", action="store_true", help="redo and overwrite finished parts")
    demo.set_defaults(func=cmd_demo)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    out: Path = args.out
    if args.task == "segmentation" and args.theory_only:
        raise SamatError("--theory-only and --task segmentation exclude each other (the segmentation demo has no "
                         "theory part)")
    if args.force and out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    if args.task == "segmentation":
        import torch

        # One thread: the small network's convolutions gain little from a second one, and lose 3x when the two
        # cores are shared with other work (docs/BENCHMARKS.md).
        torch.set_num_threads(1)
        table = _experiment(out / "segmentation", segmentation=True)
        print(table.read_text().split("## ", 1)[-1] + f"\nexperiment report: {table}")
        print(f"done in {time.perf_counter() - t0:.0f} s")
        return 0
    theory_md = _theory(out / "theory")
    lines = [_theory_summary(out / "theory" / "verification.json"), f"theory report: {theory_md}"]
    if not args.theory_only:
        table = _experiment(out / "fashion-mnist")
        lines += ["", table.read_text().split("## ", 1)[-1], f"experiment report: {table}"]
    print("\n".join(lines))
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def _theory(theory_dir: Path) -> Path:
    from theory import plots, report, verify

    figures = theory_dir / "figures"
    md = theory_dir / "verification.md"
    if plots.existing_outputs(figures):
        _say(f"[theory] figures already in {figures}/ (kept)")
    else:
        _say(f"[theory] drawing figures into {figures}/")
        plots.make_all(figures, progress=lambda m: _say(f"  {m}"))
    if md.exists() and (theory_dir / "verification.json").exists():
        _say(f"[theory] report already in {theory_dir}/ (kept)")
    else:
        _say(f"[theory] verifying Theorems 1-5 into {theory_dir}/")
        t1 = time.perf_counter()
        reports = verify.run(verify.Grid(), progress=lambda m: _say(f"  {m}"))
        report.write_verification_json(reports, theory_dir / "verification.json", verify.Grid())
        report.write_markdown(reports, md, verify.Grid(), figures, time.perf_counter() - t1)
    return md


def _theory_summary(json_path: Path) -> str:
    import json

    rows = json.loads(json_path.read_text())["claims"]
    lines = [f"{'claim':6s}{'verdict':9s}{'max rel. error':>16s}  corrected statement"]
    for r in rows:
        err = r["max_rel_error"]
        corrected = f"{r['corrected']}  [{r['corrected_verdict']}]" if r["corrected"] else "—"
        lines.append(f"{r['theorem']:6s}{r['verdict']:9s}{'—' if err is None else f'{err:.3g}':>16s}  {corrected}")
    return "\n".join(lines)


def _experiment(exp_dir: Path, *, segmentation: bool = False, overrides: dict | None = None,
                n_eval: int | None = None) -> Path:
    """Run the packaged default experiment (or the segmentation default) into ``exp_dir`` and write its report;
    returns the report's Markdown file. ``overrides`` (configuration fields) apply to every run, ``n_eval``
    replaces the experiment's number of evaluation images (the tests run a tiny setting)."""
    from empirical.data import FASHION_MNIST_DIR, FASHION_MNIST_FILES
    from empirical.experiments import catalog
    from empirical.experiments.grid import load_experiment
    from empirical.experiments.report import write_report
    from empirical.experiments.runner import run_experiment

    # The files' presence only (as the loader finds them, gzipped or not): training loads the data once, later.
    folder = Path((overrides or {}).get("data_dir") or FASHION_MNIST_DIR)
    missing = [f"{stem}.gz" for stem in FASHION_MNIST_FILES.values()
               if not any((folder / name).is_file() for name in (f"{stem}.gz", stem))]
    if missing:
        raise SamatError(f"the default experiment needs Fashion-MNIST (missing {', '.join(missing)} in "
                         f"{folder}); install it with `apt-get install dataset-fashion-mnist` "
                         "(bash .ci/setup does)" + ("" if segmentation else " or use --theory-only"))
    name = catalog.SEGMENTATION_DEFAULT if segmentation else catalog.DEFAULT
    exp = load_experiment(catalog.resolve(name), runs_dir=exp_dir / "runs", overrides=overrides)
    if n_eval is not None:
        exp = dataclasses.replace(exp, n_eval=n_eval)
    _say(f"[experiment] {exp.title}: {len(exp.runs)} runs into {exp_dir}/runs")
    run_experiment(exp, progress=sys.stderr.isatty(), log=_say)
    paths = write_report(exp, exp_dir)
    return paths["markdown"]
