"""The ``samat`` command.

    samat theory solve|verify|plot   the Gaussian model: optima, Theorems 1-5, figures (no torch)
    samat train                      train one model with SGD, Adam, SAM, ASAM, ESAM or PGD-AT
    samat eval                       clean and robust accuracy of a trained model (eval.json)
    samat experiment run|report      the papers' experiment grids (configs/)
    samat study                      theory meets training: linear models on the Gaussian model
    samat demo                       the main job on the embedded default data

Errors a user can fix are one line on stderr with exit code 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import sys

from core.errors import SamatError
from samat import (
    __version__,
    demo,
    eval_command,
    experiment_commands,
    study_command,
    theory_commands,
    train_command,
)
from samat.argtypes import OneLineParser


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="samat", description=__doc__.split("\n\n")[0])
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SamatError as err:
        print(f"samat: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("samat: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
