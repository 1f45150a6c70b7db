"""``samat eval``: clean and robust accuracy of a trained model, into its eval.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samat.argtypes import arg_positive_int, integer


def add_command(sub) -> None:
    ev = sub.add_parser("eval", help="clean and robust accuracy of a trained model; writes eval.json",
                        description="Evaluate a run directory (or a model.pt / checkpoint.pt) under the papers' "
                        "attacks, on a seeded subset of the test set, with sanity checks; writes eval.json in "
                        "the run directory.")
    ev.add_argument("path", type=Path, metavar="RUN_DIR|CHECKPOINT")
    ev.add_argument("--attacks", nargs="+", metavar="ATTACK",
                    help="attacks as name[@eps[,eps...]], e.g. pgd10_linf@1/255,2/255 autoattack_l2 stadv "
                    "(default: the duality paper's Table 2 columns; for segmentation, Tables 8-9's "
                    "pgd10_linf@1/255 and pgd10_l2@1)")
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
    from empirical.evaluation.run import evaluate_path

    result = evaluate_path(args.path, args.attacks, n_eval=args.n_eval, seed=args.seed, batch_size=args.batch_size,
                           device=args.device, data_dir=args.data_dir, model=args.model, dataset=args.dataset,
                           crosscheck=args.crosscheck, overwrite=args.overwrite, progress=not args.no_progress,
                           log=lambda m: print(m, file=sys.stderr))
    scores = result.get("miou", result["accuracy"])  # segmentation: mIoU (D eq. 15)
    width = max(len(k) for k in scores)
    if "miou" in result:
        print(f"{'mIoU':{width}s}  {'':6s}    pixel accuracy")
    for key, value in scores.items():
        extra = f"  {100 * result['accuracy'][key]:6.2f} %" if "miou" in result else ""
        print(f"{key:{width}s}  {100 * value:6.2f} %{extra}")
    failed = [c for c in result["sanity"] if not c["passed"]]
    print(f"sanity checks: {len(result['sanity']) - len(failed)}/{len(result['sanity'])} passed"
          + "".join(f"\n  FAILED {c['check']}: {c['detail']}" for c in failed))
    if "crosscheck" in result:
        cc = result["crosscheck"]
        print(f"AutoAttack cross-check on {cc['n']} images: torchattacks "
              f"{100 * cc['robust_accuracy_torchattacks']:.2f} %, reference "
              f"{100 * cc['robust_accuracy_reference']:.2f} % ({cc['disagreements']} images disagree)")
    return 0
