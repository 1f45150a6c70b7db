"""``samat train``: one training run into ``runs/<name>/``.

torch is imported only when the command runs (``samat theory`` never imports it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from samat.cli.argtypes import arg_seed, integer, number, overrides
from samat.cli.runtime import use_cpu_threads


def add_command(sub) -> None:
    train = sub.add_parser("train", help="train one model (any method) into runs/<name>/",
                           description="Train one model into RUNS_DIR/NAME (config.json, metrics.jsonl, checkpoint.pt "
                           "after every epoch, then model.pt and final.json). Every TrainConfig field can be set "
                           "with --set key=value (see samat/empirical/training/config.py); the common ones have flags. "
                           "The run folder is locked while it trains: a second writer is refused.")
    train.add_argument("--config", type=Path, metavar="FILE", help="a JSON or TOML file of TrainConfig fields")
    for flag, kind, helptext in (
        ("--dataset", str, "cifar10, cifar100, fashion_mnist, tinyimagenet or gaussian; for segmentation "
         "fashion_scenes, stanford_background or voc2012; for text rotten_tomatoes or generated_reviews"),
        ("--data-dir", str, "where the dataset lives (default: the dataset's usual place)"),
        ("--model", str, "prn18, wrn28_10, deit_tiny, small_cnn or linear (linear for gaussian); for segmentation "
         "deeplabv3_resnet50, deeplabv3_mobilenetv2 or deeplabv3_small; for text transformer (the network named by "
         "--set text={\"model\": NAME_OR_FOLDER}, default distilbert-base-uncased)"),
        ("--method", str, "sgd, adam, adamw, sam, asam, esam or pgd_at (sam around AdamW: --set base_optimizer=adamw)"),
        ("--rho", number, "SAM radius (default 0.1)"),
        ("--at-norm", str, "adversarial training's norm: linf or l2"),
        ("--at-eps", number, "adversarial training's budget in pixel units, e.g. 8/255 or 1.5/255 (ℓ∞: below 1)"),
        ("--at-steps", integer, "PGD steps of adversarial training (1 to 10,000; default 10)"),
        ("--at-step-size", number, "PGD's step size in pixel units (default 2.5 at_eps / at_steps)"),
        ("--epochs", integer, "epochs (default 100)"),
        ("--iterations", integer, "train this many iterations instead of epochs (tested every eval_every)"),
        ("--batch-size", integer, "batch size (default 128)"),
        ("--lr", number, "learning rate (default 0.1 for SGD, 1e-3 for Adam)"),
        ("--seed", arg_seed, "seed of the initialization, subsets and batches, in [0, 2**63 - 1] (default 0)"),
        ("--train-subset", integer, "train on this many examples (a seeded, class-balanced subset)"),
        ("--test-subset", integer, "test on this many examples"),
        ("--device", str, "auto (default: cuda if available), cpu, cuda or cuda:N"),
    ):
        train.add_argument(flag, type=kind, help=helptext)
    train.add_argument("--compile", action="store_true", help="torch.compile the model (on by default for CUDA)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any configuration field, e.g. --set lr_decay=0.2 (repeatable)")
    train.add_argument("--runs-dir", type=Path, default=Path("runs"), help="parent of run directories (default runs)")
    train.add_argument("--name", help="run folder name inside --runs-dir (default: derived from the configuration)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run where it stopped")
    train.add_argument("--overwrite", action="store_true",
                       help="replace an existing run: the old one is deleted once the new one has its first "
                       "checkpoint")
    train.add_argument("--no-progress", action="store_true",
                       help="no progress bar (without a terminal there is none: one line per epoch instead)")
    train.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from samat.core.results import check_writable_folder
    from samat.empirical.training.config import TrainConfig, read_document
    from samat.empirical.training.distributed import World
    from samat.empirical.training.loop import train
    from samat.empirical.training.runs import RunDir, run_path
    from samat.empirical.training.segmentation import backbone_note
    from samat.empirical.training.setup import fast_path, resolve_device
    from samat.empirical.vocabulary import DatasetName, Task

    values = read_document(args.config, "config file") if args.config else {}
    for key in ("dataset", "data_dir", "model", "method", "rho", "at_norm", "at_eps", "at_steps", "at_step_size",
                "epochs", "iterations", "batch_size", "lr", "seed", "train_subset", "test_subset", "device"):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if args.compile:
        values["compile"] = True
    values |= overrides(args.set)
    # Every value resolved once, here, and passed down: the configuration, the run folder, the device, torchrun's
    # processes
    cfg = TrainConfig.from_dict(values)
    DatasetName.parse(cfg.dataset, "dataset")  # a name the command line can load (code may pass its own data)
    run = RunDir(run_path(args.runs_dir, args.name or cfg.default_name()))
    device = resolve_device(cfg.device)  # a device this machine lacks fails here, before anything is said or written
    world = World.from_environment()
    path = fast_path(cfg, device, world)  # and a CUDA graph where none can be taken
    check_writable_folder(args.runs_dir, "--runs-dir")
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    use_cpu_threads(say)
    length = f"{cfg.epochs} epochs" if cfg.iterations is None else f"{cfg.iterations} iterations"
    say(f"training {run.path} ({cfg.method} on {cfg.dataset}/{cfg.model}, {length}; {path.describe()})")
    if cfg.model.task is Task.SEGMENTATION and (note := backbone_note(cfg.model, cfg.segmentation_spec)):
        say(note)
    summary = train(cfg, run, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                    log=say, device=device, world=world)
    if not world.is_main:  # under torchrun, one process reports
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    score = (f"test mIoU {100 * summary['test_miou']:.2f} %" if "test_miou" in summary
             else f"test accuracy {100 * summary['test_acc']:.2f} %")
    print(f"{run.path}: {score} after {length} ({summary['seconds']:.0f} s)")
    return 0
