"""``samat train``: one training run into ``runs/<name>/``.

torch is imported only when the command runs (``samat theory`` never imports it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from samat.argtypes import integer, number, overrides


def add_command(sub) -> None:
    train = sub.add_parser("train", help="train one model (any method) into runs/<name>/",
                           description="Train one model. Every TrainConfig field can be set with --set key=value "
                           "(see empirical/config.py); the common ones have flags.")
    train.add_argument("--config", type=Path, help="a JSON or TOML file of TrainConfig fields")
    for flag, kind, helptext in (
        ("--dataset", str, "cifar10, cifar100, fashion_mnist, tinyimagenet or gaussian; for segmentation "
         "fashion_scenes, stanford_background or voc2012"),
        ("--data-dir", str, "where the dataset lives"),
        ("--model", str, "prn18, wrn28_10, deit_tiny, small_cnn or linear; for segmentation deeplabv3_resnet50 "
         "or deeplabv3_mobilenetv2"),
        ("--method", str, "sgd, adam, sam, asam, esam or pgd_at"),
        ("--rho", number, "SAM radius"),
        ("--at-norm", str, "linf or l2"),
        ("--at-eps", number, "AT budget, e.g. 8/255"),
        ("--at-steps", integer, "PGD steps"),
        ("--epochs", integer, "epochs"),
        ("--iterations", integer, "train this many iterations instead of epochs (tested every eval_every)"),
        ("--batch-size", integer, "batch size"),
        ("--lr", number, "learning rate (default 0.1 for SGD, 1e-3 for Adam)"),
        ("--seed", integer, "seed"),
        ("--train-subset", integer, "train on this many examples"),
        ("--test-subset", integer, "test on this many examples"),
        ("--device", str, "auto, cpu, cuda or cuda:N"),
    ):
        train.add_argument(flag, type=kind, help=helptext)
    train.add_argument("--compile", action="store_true", help="torch.compile the model (on by default for CUDA)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config field")
    train.add_argument("--runs-dir", type=Path, default=Path("runs"), help="parent of run directories (runs)")
    train.add_argument("--name", help="run name (default: derived from the configuration)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run where it stopped")
    train.add_argument("--overwrite", action="store_true", help="discard an existing run and start again")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from empirical.training.config import TrainConfig, read_document
    from empirical.training.distributed import World
    from empirical.training.loop import train
    from empirical.training.segmentation import backbone_note
    from empirical.vocabulary import Task

    values = read_document(args.config, "config file") if args.config else {}
    for key in ("dataset", "data_dir", "model", "method", "rho", "at_norm", "at_eps", "at_steps", "epochs",
                "iterations", "batch_size", "lr", "seed", "train_subset", "test_subset", "device"):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if args.compile:
        values["compile"] = True
    values |= overrides(args.set)
    cfg = TrainConfig.from_dict(values)
    run_dir = args.runs_dir / (args.name or cfg.default_name())
    length = f"{cfg.epochs} epochs" if cfg.iterations is None else f"{cfg.iterations} iterations"
    print(f"training {run_dir} ({cfg.method} on {cfg.dataset}/{cfg.model}, {length})", file=sys.stderr)
    if cfg.model.task is Task.SEGMENTATION and (note := backbone_note(cfg.model, cfg.segmentation_spec)):
        print(note, file=sys.stderr)
    summary = train(cfg, run_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if not World.from_environment().is_main:  # under torchrun, one process reports
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    score = (f"test mIoU {summary['test_miou']:.4f}" if "test_miou" in summary
             else f"test accuracy {summary['test_acc']:.4f}")
    print(f"{run_dir}: {score} after {length} ({summary['seconds']:.0f} s)")
    return 0
