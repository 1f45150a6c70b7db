"""``samat train`` and ``samat experiment run | report | status``.

torch is imported only when one of these commands runs, never by ``samat theory``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samat.argtypes import integer, number, ranged

arg_positive_int = ranged("value", "an integer >= 1", lambda v: v >= 1, kind=integer)


def _seeds(text: str) -> tuple[int, ...]:
    problem = argparse.ArgumentTypeError(f"seeds='{text}' is invalid: seeds must be integers >= 0, e.g. 0,1,2")
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise problem from None
    if not seeds or min(seeds) < 0:
        raise problem
    return seeds


def add_commands(sub) -> None:
    train = sub.add_parser("train", help="train one model (any method) into runs/<name>/",
                           description="Train one model. Every TrainConfig field can be set with --set key=value "
                           "(see empirical/config.py); the common ones have flags.")
    train.add_argument("--config", type=Path, help="a JSON or TOML file of TrainConfig fields")
    for flag, kind, helptext in (
        ("--dataset", str, "cifar10, cifar100, fashion_mnist, tinyimagenet or gaussian"),
        ("--data-dir", str, "where the dataset lives"),
        ("--model", str, "prn18, wrn28_10, deit_tiny, small_cnn or linear"),
        ("--method", str, "sgd, adam, sam, asam, esam or pgd_at"),
        ("--rho", number, "SAM radius"),
        ("--at-norm", str, "linf or l2"),
        ("--at-eps", number, "AT budget, e.g. 8/255"),
        ("--at-steps", integer, "PGD steps"),
        ("--epochs", integer, "epochs"),
        ("--batch-size", integer, "batch size"),
        ("--lr", number, "learning rate (default 0.1 for SGD, 1e-3 for Adam)"),
        ("--seed", integer, "seed"),
        ("--train-subset", integer, "train on this many examples"),
        ("--test-subset", integer, "test on this many examples"),
        ("--device", str, "auto, cpu, cuda or cuda:N"),
    ):
        train.add_argument(flag, type=kind, help=helptext)
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config field")
    train.add_argument("--runs-dir", type=Path, default=Path("runs"), help="parent of run directories (runs)")
    train.add_argument("--name", help="run name (default: derived from the configuration)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run where it stopped")
    train.add_argument("--overwrite", action="store_true", help="discard an existing run and start again")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    exp = sub.add_parser("experiment", help="run and report the papers' experiment grids (configs/)",
                         description="Experiment grids: a TOML file of runs x seeds (see configs/).")
    esub = exp.add_subparsers(dest="experiment_command", required=True, metavar="{run,report,status}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("config", type=Path, help="experiment TOML file, e.g. configs/cifar10.toml")
    common.add_argument("--runs-dir", type=Path, default=Path("runs"), help="parent of run directories (runs)")
    common.add_argument("--seeds", type=_seeds, help="override the seeds, e.g. 0 or 0,1,2")
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


def add_eval_command(sub) -> None:
    ev = sub.add_parser("eval", help="clean and robust accuracy of a trained model; writes eval.json",
                        description="Evaluate a run directory (or a model.pt / checkpoint.pt) under the papers' "
                        "attacks, on a seeded subset of the test set, with sanity checks; writes eval.json in "
                        "the run directory.")
    ev.add_argument("path", type=Path, metavar="RUN_DIR|CHECKPOINT")
    ev.add_argument("--attacks", nargs="+", metavar="ATTACK",
                    help="attacks as name[@eps[,eps...]], e.g. pgd10_linf@1/255,2/255 autoattack_l2 stadv "
                    "(default: the duality paper's Table 2 columns)")
    ev.add_argument("--n-eval", type=arg_positive_int, default=1000, help="test images (default 1000)")
    ev.add_argument("--seed", type=integer, default=0, help="seed of the subset and the attacks (default 0)")
    ev.add_argument("--batch-size", type=arg_positive_int, default=256)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--data-dir", help="where the dataset lives (default: the run's)")
    ev.add_argument("--model", help="architecture, for a checkpoint outside a run directory")
    ev.add_argument("--dataset", help="dataset, for a checkpoint outside a run directory")
    ev.add_argument("--crosscheck", action="store_true",
                    help="also run the reference AutoAttack (pyautoattack) on the same images and compare")
    ev.add_argument("--overwrite", action="store_true", help="redo an existing evaluation")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from empirical.attacks import PAPER_COLUMNS
    from empirical.evaluate import evaluate_path

    columns = args.attacks or [s.label for s in PAPER_COLUMNS]
    result = evaluate_path(args.path, columns, n_eval=args.n_eval, seed=args.seed, batch_size=args.batch_size,
                           device=args.device, data_dir=args.data_dir, model=args.model, dataset=args.dataset,
                           crosscheck=args.crosscheck, overwrite=args.overwrite, progress=not args.no_progress,
                           log=lambda m: print(m, file=sys.stderr))
    width = max(len(k) for k in result["accuracy"])
    for key, value in result["accuracy"].items():
        print(f"{key:{width}s}  {100 * value:6.2f} %")
    failed = [c for c in result["sanity"] if not c["passed"]]
    print(f"sanity checks: {len(result['sanity']) - len(failed)}/{len(result['sanity'])} passed"
          + "".join(f"\n  FAILED {c['check']}: {c['detail']}" for c in failed))
    if "crosscheck" in result:
        cc = result["crosscheck"]
        print(f"AutoAttack cross-check on {cc['n']} images: torchattacks "
              f"{100 * cc['robust_accuracy_torchattacks']:.2f} %, reference "
              f"{100 * cc['robust_accuracy_reference']:.2f} % ({cc['disagreements']} images disagree)")
    return 0


def add_study_command(sub) -> None:
    study = sub.add_parser("study", help="theory meets training: linear models trained on the Gaussian model",
                           description="Train linear classifiers on samples of D(p, eta, n) with SGD, SAM, ASAM "
                           "and PGD-AT, measure W_R and exact accuracies, compare with the population optima of "
                           "theory (0-1 and logistic losses), and draw the figures of docs/findings.md.")
    study.add_argument("--out", type=Path, default=Path("results/gaussian-study"), metavar="DIR")
    study.add_argument("--quick", action="store_true", help="a small grid (a minute): for smoke runs")
    study.add_argument("--report-only", action="store_true", help="only summarize and plot stored measurements")
    study.add_argument("--publish", type=Path, metavar="DIR",
                       help="also copy the figures, summary.json and verdicts.md to DIR (e.g. docs/study)")
    study.add_argument("--force", action="store_true", help="with --publish: replace files already in DIR")
    study.set_defaults(func=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    import shutil

    from empirical import study_verdicts
    from empirical.gaussian_study import StudyGrid, figures, run, summarize
    from theory.errors import SamatError

    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.publish and args.publish.is_dir() and any(args.publish.iterdir()) and not args.force:
        raise SamatError(f"--publish {args.publish} is not empty; pass --force to replace its files")
    measurements = args.out / "measurements.json"
    if not args.report_only:
        measurements = run(StudyGrid.quick() if args.quick else StudyGrid(), args.out, log=say)
    elif not measurements.exists():
        raise SamatError(f"{measurements} does not exist: run `samat study --out {args.out}` first")
    summary = summarize(measurements, log=say)
    paths = figures(summary, args.out)
    paths += study_verdicts.write(summary, args.out)
    paths.append(args.out / "summary.json")
    print(f"wrote {len(paths)} files in {args.out}/: the verdicts are in {args.out / 'verdicts.md'}")
    if args.publish:
        args.publish.mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copyfile(path, args.publish / path.name)
        print(f"copied them to {args.publish}/")
    return 0


def _overrides(items: list[str]) -> dict:
    from empirical.config import parse_override

    return dict(parse_override(item) for item in items)


def _read_config_file(path: Path) -> dict:
    from empirical.config import read_document

    return read_document(path, "config file")


def cmd_train(args: argparse.Namespace) -> int:
    from empirical.config import TrainConfig
    from empirical.train import train

    values = _read_config_file(args.config) if args.config else {}
    for key in ("dataset", "data_dir", "model", "method", "rho", "at_norm", "at_eps", "at_steps", "epochs",
                "batch_size", "lr", "seed", "train_subset", "test_subset", "device"):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if args.compile:
        values["compile"] = True
    values |= _overrides(args.set)
    cfg = TrainConfig.from_dict(values)
    run_dir = args.runs_dir / (args.name or cfg.default_name())
    print(f"training {run_dir} ({cfg.method} on {cfg.dataset}/{cfg.model}, {cfg.epochs} epochs)", file=sys.stderr)
    summary = train(cfg, run_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"{run_dir}: test accuracy {summary['test_acc']:.4f} after {summary['epochs']} epochs "
          f"({summary['seconds']:.0f} s)")
    return 0


def _experiment(args: argparse.Namespace):
    from empirical.experiment import load_experiment

    return load_experiment(args.config, runs_dir=args.runs_dir, overrides=_overrides(args.set), seeds=args.seeds)


def cmd_experiment_run(args: argparse.Namespace) -> int:
    from empirical.experiment import run_experiment, write_report

    exp = _experiment(args)
    run_experiment(exp, progress=not args.no_progress, evaluate=not args.no_eval,
                   log=lambda m: print(m, file=sys.stderr))
    if args.report:
        paths = write_report(exp, args.report)
        print(paths["markdown"].read_text())
    return 0


def cmd_experiment_report(args: argparse.Namespace) -> int:
    from empirical.experiment import write_report

    exp = _experiment(args)
    out = args.out or Path("results") / exp.name
    paths = write_report(exp, out)
    print(paths["markdown"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def cmd_experiment_status(args: argparse.Namespace) -> int:
    from empirical.runs import RunDir

    exp = _experiment(args)
    for spec in exp.runs:
        print(f"{RunDir(spec.run_dir).status():9s} {spec.run_dir}")
    return 0
