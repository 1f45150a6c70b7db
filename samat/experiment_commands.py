"""``samat experiment run | report | status | plan``: the papers' experiment grids."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samat.argtypes import overrides, seeds


def add_command(sub) -> None:
    exp = sub.add_parser("experiment", help="run and report the papers' experiment grids (configs/)",
                         description="Experiment grids: a TOML file of runs x seeds (see configs/).")
    esub = exp.add_subparsers(dest="experiment_command", required=True, metavar="{run,report,status,plan}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("config", type=Path, help="experiment TOML file, e.g. configs/cifar10.toml")
    common.add_argument("--runs-dir", type=Path, default=Path("runs"), help="parent of run directories (runs)")
    common.add_argument("--seeds", type=seeds, help="override the seeds, e.g. 0 or 0,1,2")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field in every run (e.g. epochs=5)")
    run = esub.add_parser("run", parents=[common], help="train (and evaluate) every unfinished run")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--no-eval", action="store_true", help="train only; evaluate later with the next run")
    run.add_argument("--report", type=Path, metavar="DIR", help="write the report into DIR when done")
    run.set_defaults(func=cmd_experiment_run)
    report = esub.add_parser("report", parents=[common], help="aggregate finished runs into Markdown/CSV tables")
    report.add_argument("--out", type=Path, metavar="DIR", help="output directory (default results/<name>)")
    report.set_defaults(func=cmd_experiment_report)
    status = esub.add_parser("status", parents=[common], help="list the runs and whether they are done")
    status.set_defaults(func=cmd_experiment_status)
    plan = esub.add_parser("plan", parents=[common], help="predict the device time of every run and of the grid",
                           description="Predict the device time of every run (training and evaluation) and of the "
                           "whole grid on this machine, from a short calibration: a few timed steps of each method "
                           "and a few batches of each attack.")
    plan.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the runs' device)")
    plan.set_defaults(func=cmd_experiment_plan)


def _experiment(args: argparse.Namespace):
    from empirical.experiments.catalog import resolve
    from empirical.experiments.grid import load_experiment

    return load_experiment(resolve(args.config), runs_dir=args.runs_dir, overrides=overrides(args.set),
                           seeds=args.seeds)


def cmd_experiment_run(args: argparse.Namespace) -> int:
    from empirical.experiments.report import write_report
    from empirical.experiments.runner import run_experiment

    exp = _experiment(args)
    run_experiment(exp, progress=not args.no_progress, evaluate=not args.no_eval,
                   log=lambda m: print(m, file=sys.stderr))
    if args.report:
        paths = write_report(exp, args.report)
        print(paths["markdown"].read_text())
    return 0


def cmd_experiment_report(args: argparse.Namespace) -> int:
    from empirical.experiments.report import write_report

    exp = _experiment(args)
    out = args.out or Path("results") / exp.name
    paths = write_report(exp, out)
    print(paths["markdown"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def cmd_experiment_status(args: argparse.Namespace) -> int:
    from empirical.training.runs import RunDir

    exp = _experiment(args)
    for spec in exp.runs:
        print(f"{RunDir(spec.run_dir).status():9s} {spec.run_dir}")
    return 0


def cmd_experiment_plan(args: argparse.Namespace) -> int:
    from empirical.experiments.plan import format_plan, plan_experiment
    from empirical.training.setup import resolve_device

    exp = _experiment(args)
    device = resolve_device(args.device or exp.runs[0].config.device)
    plan = plan_experiment(exp, device, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_plan(plan))
    return 0
