"""The ``samat`` command.

commands:
  samat theory solve|verify|plot   the Gaussian model: optima, Theorems 1-5, figures (no torch)
  samat train                      train one model with SGD, Adam, SAM, ASAM, ESAM or PGD-AT into runs/<name>/
  samat eval                       a trained model's scores clean and under the papers' attacks (eval.json):
                                   accuracy, mIoU for segmentation, attack success rates for text
  samat experiment run|status|report|plan
                                   the papers' experiment grids (configs/): train and evaluate what is missing,
                                   on this machine, across several processes or as a Slurm job array; where each
                                   run stands; tables and figures; the predicted device time of a grid
  samat study                      theory meets training: linear models trained on the Gaussian model
  samat demo                       the main job on the embedded default (theory, then Fashion-MNIST on the CPU;
                                   --task segmentation or text for the other defaults)

`samat COMMAND --help` describes each command and its options. Errors a user can fix are one line on stderr
naming the command, with exit code 2 (130 when interrupted); nothing prints a traceback for them. On the CPU,
torch's threads wait passively, so that a machine that others share does not stall them (SAMAT_THREADS=N sets
their number; see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from samat import __version__
from samat.cli import (
    demo,
    eval_command,
    experiment_commands,
    study_command,
    theory_commands,
    train_command,
)
from samat.cli.argtypes import OneLineParser
from samat.cli.runtime import prepare_process
from samat.core.errors import DiskFull, SamatError, is_disk_full


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="samat", description=__doc__.split("\n", 1)[1].strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"samat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{theory,train,eval,experiment,study,demo}",
                                parser_class=OneLineParser)

    theory = sub.add_parser("theory", help="the papers' Gaussian model: optima, Theorems 1-5, figures",
                            description="The papers' robust/non-robust Gaussian model.")
    theory_commands.add_commands(theory)
    train_command.add_command(sub)
    experiment_commands.add_command(sub)
    eval_command.add_command(sub)
    study_command.add_command(sub)
    demo.add_command(sub)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command records its name ("samat train"), so that an error after parsing names it too."""
    parser.set_defaults(prog=parser.prog)
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its subparsers here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in dict.fromkeys(action.choices.values()):
                _name_commands(child)


def main(argv: list[str] | None = None) -> int:
    prepare_process()
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would name only "samat": the command they were given to says which options it has
        parser.exit(2, f"{args.prog}: error: unrecognized arguments: {' '.join(unknown)} (see {args.prog} "
                    "--help)\n")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *rest, **kw: print(f"{args.prog}: warning: {message}",
                                                                      file=sys.stderr, flush=True)
            return int(args.func(args) or 0)
    except SamatError as err:
        print(f"{args.prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # a write that no layer expected to fail: the disk is full all the same
        if not is_disk_full(err):
            raise
        full = DiskFull(err.filename or "a file", kept="the command stopped")
        print(f"{args.prog}: error: {full}", file=sys.stderr)
        return full.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
