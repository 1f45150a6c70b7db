"""``samat experiment run | status | report | plan``: the papers' experiment grids."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samat.cli.argtypes import arg_positive_int, number, overrides, seeds
from samat.cli.runtime import use_cpu_threads
from samat.core.errors import SamatError

DEMO_RUNS = Path("results/demo/fashion-mnist/runs")  # where `samat demo` keeps the default experiment's runs


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_command(sub) -> None:
    exp = sub.add_parser("experiment", help="run, follow and report the papers' experiment grids (configs/)",
                         description="Experiment grids: a TOML file of runs x seeds (see configs/; a packaged name "
                         "such as cifar10 works from any folder).")
    esub = exp.add_subparsers(dest="experiment_command", required=True, metavar="{run,status,report,plan}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("config", type=Path, metavar="CONFIG",
                        help="experiment TOML file or packaged name, e.g. configs/cifar10.toml or cifar10")
    common.add_argument("--runs-dir", type=Path, default=Path("runs"),
                        help="parent of the experiment's run folders (default runs)")
    common.add_argument("--seeds", type=seeds, help="override the seeds, e.g. 0 or 0,1,2")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field in every run (e.g. epochs=5; repeatable)")
    run = esub.add_parser("run", parents=[common], help="train (and evaluate) every unfinished run",
                          description="Train and evaluate every run that is not finished. Several processes may run "
                          "one grid at once (one per GPU with CUDA_VISIBLE_DEVICES, or one per node on a shared "
                          "filesystem): each claims the runs no other holds. With --launcher slurm the grid goes "
                          "to Slurm as a job array, one task per run.")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bars (without a terminal there are none: one line per epoch and attack)")
    run.add_argument("--no-eval", action="store_true", help="train only; evaluate later with the next run")
    run.add_argument("--overwrite", action="store_true",
                     help="retrain the runs trained with another configuration than the file asks for now (stale)")
    run.add_argument("--report", type=Path, metavar="DIR", help="write the report into DIR when done")
    cluster = run.add_argument_group("cluster", "with --launcher slurm (needs pip install 'samat[slurm]')")
    cluster.add_argument("--launcher", choices=("here", "slurm", "local"), default="here",
                         help="here: train in this process (default); slurm: submit a job array, one task per "
                         "run; local: the same array as background processes on this machine (submitit's local "
                         "executor, to try it out)")
    cluster.add_argument("--partition", help="Slurm partition")
    cluster.add_argument("--gpus", type=int, default=None, metavar="N", help="GPUs per task (default 1 on Slurm)")
    cluster.add_argument("--cpus", type=arg_positive_int, default=8, metavar="N", help="CPUs per task (default 8)")
    cluster.add_argument("--mem", type=number, metavar="GB", help="memory per task in GB (default: the partition's)")
    cluster.add_argument("--time", default="240", metavar="TIME",
                         help="time limit per task: minutes or [days-]hours:minutes[:seconds] (default 240)")
    cluster.add_argument("--account", help="Slurm account to charge")
    cluster.add_argument("--qos", help="Slurm quality of service")
    cluster.add_argument("--constraint", help="Slurm node features, e.g. a100")
    cluster.add_argument("--max-parallel", type=arg_positive_int, metavar="N",
                         help="at most N tasks at once (--array=...%%N)")
    cluster.add_argument("--jobs-dir", type=Path, metavar="DIR",
                         help="submitit's folder for job scripts and logs (default RUNS_DIR/NAME/jobs)")
    run.set_defaults(func=cmd_experiment_run)
    report = esub.add_parser("report", parents=[common], help="aggregate finished runs into tables and figures",
                             description="Tables (Markdown, CSV, JSON) and figures from the finished runs; stale "
                             "runs and evaluations are left out and listed.")
    report.add_argument("--out", type=Path, metavar="DIR", help="output directory (default results/<name>)")
    report.set_defaults(func=cmd_experiment_report)
    status = esub.add_parser("status", parents=[common], help="list the runs: new, partial, running, queued, "
                             "finished or stale",
                             description="Where each run stands: new, partial (resumable), running (and who runs "
                             "it), queued or failed (a launched job), finished (with its evaluation), or stale "
                             "(trained with another configuration than the file asks for now).")
    status.set_defaults(func=cmd_experiment_status)
    plan = esub.add_parser("plan", parents=[common], help="predict the device time of every run and of the grid",
                           description="Predict the device time of every run (training and evaluation) and of the "
                           "whole grid on this machine, from a short calibration: a few timed steps of each method "
                           "and a few batches of each attack.")
    plan.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the runs' device)")
    plan.set_defaults(func=cmd_experiment_plan)


def _experiment(args: argparse.Namespace):
    from samat.empirical.experiments.catalog import resolve
    from samat.empirical.experiments.grid import load_experiment

    return load_experiment(resolve(args.config), runs_dir=args.runs_dir, overrides=overrides(args.set),
                           seeds=args.seeds)


def cmd_experiment_run(args: argparse.Namespace) -> int:
    from samat.core.results import check_writable_folder
    from samat.empirical.experiments.report.tables import terminal_text, write_report
    from samat.empirical.experiments.runner import failures, run_experiment

    if args.launcher != "here":
        if args.report is not None:
            raise SamatError(f"--report goes with --launcher here: the tasks of --launcher {args.launcher} finish "
                             "later; write the report then with samat experiment report")
        resources = _resources(args)  # before the grid is read: a bad request is refused at once
    elif args.gpus is not None or args.mem is not None or args.partition or args.account or args.qos \
            or args.constraint or args.max_parallel:
        raise SamatError("--partition, --gpus, --mem, --account, --qos, --constraint and --max-parallel go with "
                         "--launcher slurm")
    exp = _experiment(args)
    check_writable_folder(exp.runs[0].run_dir.parent, "--runs-dir")
    if args.report is not None:  # before the work: the report is written when the grid is done
        check_writable_folder(args.report, "--report")
    if args.launcher != "here":
        return _launch(args, exp, resources)
    use_cpu_threads(_say)
    outcomes = run_experiment(exp, progress=not args.no_progress, evaluate=not args.no_eval,
                              overwrite=args.overwrite, log=_say)
    if args.report and any(exp.finished(label) for label in exp.labels):
        paths = write_report(exp, args.report, log=_say)
        print(terminal_text(paths["markdown"].read_text()))
    if failed := failures(outcomes):
        raise failed
    return 0


def _resources(args: argparse.Namespace):
    """What each task of the array asks for (each request checked in its range)."""
    from samat.empirical.experiments.launch import Resources, parse_time

    return Resources(time_min=parse_time(args.time), gpus=args.gpus if args.gpus is not None else
                     (1 if args.launcher == "slurm" else 0), cpus=args.cpus, mem_gb=args.mem,
                     partition=args.partition, account=args.account, qos=args.qos, constraint=args.constraint,
                     max_parallel=args.max_parallel)


def _launch(args: argparse.Namespace, exp, resources) -> int:
    from samat.empirical.experiments.catalog import resolve
    from samat.empirical.experiments.launch import GridRef, submit

    ref = GridRef(str(resolve(args.config).resolve()), str(args.runs_dir.resolve()), overrides(args.set),
                  args.seeds, evaluate=not args.no_eval, overwrite=args.overwrite)
    if not args.overwrite:
        from samat.empirical.experiments.runner import stale_error

        stale = exp.stale()
        if stale:
            raise stale_error(exp, stale)
    submit(exp, ref, launcher=args.launcher, resources=resources, folder=args.jobs_dir, log=_say)
    return 0


def _where_to_look(exp, runs_dir: Path) -> str:
    """A hint when no run exists under --runs-dir: the demo keeps the default experiment elsewhere."""
    from samat.empirical.training.runs import RunDir

    if any(RunDir(spec.run_dir).path.exists() for spec in exp.runs):
        return ""
    demo = DEMO_RUNS / exp.name
    if demo.is_dir() and runs_dir.resolve() != DEMO_RUNS.resolve():
        return f"; `samat demo` keeps this experiment's runs in {DEMO_RUNS}: add --runs-dir {DEMO_RUNS}"
    return ""


def cmd_experiment_report(args: argparse.Namespace) -> int:
    from samat.core.results import check_writable_folder
    from samat.empirical.experiments.report.tables import terminal_text, write_report

    exp = _experiment(args)
    stale = exp.stale()  # a run whose record cannot be read fails here, in one line naming the file
    # A duality grid's report needs every run evaluated: write_report says which are not, before it writes.
    if exp.duality is None and not any(exp.finished(label) for label in exp.labels):
        why = (f"; {len(stale)} are stale (trained with another configuration): samat experiment run "
               f"{args.config} --overwrite retrains them" if stale else "")
        raise SamatError(f"nothing to report: none of the {len(exp.runs)} runs of {exp.name} is finished under "
                         f"{exp.runs[0].run_dir.parent}{why}{_where_to_look(exp, args.runs_dir)}")
    if exp.duality is not None:
        from samat.empirical.experiments.duality import readiness

        readiness(exp)  # every run trained and evaluated, or one line naming those that are not
    out = check_writable_folder(args.out or Path("results") / exp.name, "--out")  # before the results are read
    paths = write_report(exp, out, log=_say)
    print(terminal_text(paths["markdown"].read_text()))
    _say(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_experiment_status(args: argparse.Namespace) -> int:
    from samat.empirical.experiments.launch import job_states
    from samat.empirical.experiments.state import run_states

    exp = _experiment(args)
    states = run_states(exp, job_states(exp))
    width = max(len(s.status) for s in states)
    for s in states:
        print(f"{s.status:{width}s}  {s.spec.run_dir}" + (f"  ({s.detail})" if s.detail else ""))
    counts: dict[str, int] = {}
    for s in states:
        counts[s.status] = counts.get(s.status, 0) + 1
    _say(f"{exp.name}: " + ", ".join(f"{n} {status}" for status, n in counts.items())
         + _where_to_look(exp, args.runs_dir))
    return 0


def cmd_experiment_plan(args: argparse.Namespace) -> int:
    from samat.empirical.experiments.plan import format_plan, plan_experiment
    from samat.empirical.training.setup import resolve_device

    exp = _experiment(args)
    device = resolve_device(args.device or exp.runs[0].config.device)
    use_cpu_threads(_say)
    plan = plan_experiment(exp, device, log=_say)
    print(format_plan(plan))
    return 0
