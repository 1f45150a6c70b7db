"""``samat eval``: clean and robust accuracy of a trained model, into its eval.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samat.cli.argtypes import arg_positive_int, arg_seed
from samat.cli.runtime import use_cpu_threads


def add_command(sub) -> None:
    ev = sub.add_parser("eval", help="clean and robust accuracy of a trained model; writes eval.json",
                        description="Evaluate a run directory (or a model.pt / checkpoint.pt) under the papers' "
                        "attacks, on a seeded subset of the test set, with sanity checks; writes eval.json in "
                        "the run directory.")
    ev.add_argument("path", type=Path, metavar="RUN_DIR|CHECKPOINT",
                    help="a run directory (runs/<name>), or a model.pt / checkpoint.pt (eval.json goes beside it)")
    ev.add_argument("--attacks", nargs="+", metavar="ATTACK",
                    help="attacks as name[@eps[,eps...]], e.g. pgd10_linf@1/255,2/255 autoattack_l2 stadv "
                    "(default: the duality paper's Table 2 columns; for segmentation, Tables 8-9's "
                    "pgd10_linf@1/255 and pgd10_l2@1; for text, Table 10's TextAttack recipes pso and iga)")
    ev.add_argument("--n-eval", type=arg_positive_int, default=1000, help="test images (default 1000)")
    ev.add_argument("--seed", type=arg_seed, default=0,
                    help="seed of the test subset and the attacks, an integer in [0, 2**63 - 1] (default 0)")
    ev.add_argument("--batch-size", type=arg_positive_int, default=256,
                    help="images attacked at once (default 256; lower it if the GPU runs out of memory)")
    ev.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda or cuda:N")
    ev.add_argument("--data-dir", help="where the dataset lives (default: the run's)")
    ev.add_argument("--model", help="architecture, for a checkpoint outside a run directory")
    ev.add_argument("--dataset", help="dataset, for a checkpoint outside a run directory")
    ev.add_argument("--crosscheck", action="store_true",
                    help="also run the reference AutoAttack (pyautoattack) on the same images and compare")
    ev.add_argument("--overwrite", action="store_true", help="redo an existing evaluation")
    ev.add_argument("--no-progress", action="store_true",
                    help="no progress bars (without a terminal there are none: one line per attack instead)")
    ev.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from samat.empirical.evaluation.columns import NATURAL, SANITY, column_spec, column_specs
    from samat.empirical.evaluation.evaluate import attacks_run
    from samat.empirical.evaluation.run import TASKS, evaluate_run
    from samat.empirical.evaluation.trained import locate
    from samat.empirical.training.setup import resolve_device

    # Each value resolved once, here: bad attacks fail before the path is looked at, a missing run or a device
    # this machine lacks before anything is said
    specs = column_specs(args.attacks) if args.attacks else None
    trained = locate(args.path, data_dir=args.data_dir, model=args.model, dataset=args.dataset)
    if specs is None:
        specs = column_specs(TASKS[trained.config.model.task].default_columns)
    device = resolve_device(args.device)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    use_cpu_threads(say)
    result = evaluate_run(trained, specs, device=device, n_eval=args.n_eval, seed=args.seed,
                          batch_size=args.batch_size, crosscheck=args.crosscheck, overwrite=args.overwrite,
                          progress=not args.no_progress, log=say)
    known = attacks_run(specs)

    def title(key: str) -> str:
        if key == NATURAL:
            return "Natural"
        s = known.get(key) or column_spec(key.removesuffix(SANITY))  # an earlier column, read from eval.json
        return s.title + (SANITY if key.endswith(SANITY) else "")

    if result.get("task") == "text":
        _print_text(result, title)
    else:
        _print_scores(result, title)
    failed = [c for c in result["sanity"] if not c["passed"]]
    print(f"sanity checks: {len(result['sanity']) - len(failed)}/{len(result['sanity'])} passed"
          + "".join(f"\n  FAILED {c['check']}: {c['detail']}" for c in failed))
    if "crosscheck" in result:
        cc = result["crosscheck"]
        print(f"AutoAttack cross-check on {cc['n']} images: torchattacks "
              f"{100 * cc['robust_accuracy_torchattacks']:.2f} %, reference "
              f"{100 * cc['robust_accuracy_reference']:.2f} % ({cc['disagreements']} images disagree)")
    return 0


def _print_text(result: dict, title) -> None:
    """Natural accuracy, then per recipe TextAttack's metrics (D Table 10 reports the success rate)."""
    rows = [("", "accuracy", "success rate", "queries", "words changed")]
    rows.append((title("natural"), f"{100 * result['accuracy']['natural']:.2f} %", "", "", ""))
    for label, a in result["attacks"].items():
        words = ("—" if a["average_words_changed"] is None else
                 f"{a['average_words_changed']:.1f} ({a['average_words_changed_percent']:.1f} %)")
        rows.append((f"{title(label)} ({a['recipe']})", f"{100 * a['accuracy_under_attack']:.2f} %",
                     f"{100 * a['attack_success_rate']:.2f} %", f"{a['average_queries'] or 0:.0f}", words))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                        enumerate(zip(r, widths, strict=True))).rstrip())
    print(f"on {result['n']} test sentences; accuracy under attack: failed / all; success rate: successful / "
          "(successful + failed), the sentences already misclassified left out")


def _print_scores(result: dict, title) -> None:
    segmentation = "miou" in result
    scores = result["miou"] if segmentation else result["accuracy"]  # segmentation: mIoU (D eq. 15)
    rows = [(title(k), v, result["accuracy"].get(k)) for k, v in scores.items()]
    width = max(len(t) for t, _, _ in rows)
    if segmentation:
        print(f"{'':{width}s}  {'mIoU':>8s}  pixel accuracy")
    for name, value, pixels in rows:
        extra = f"  {100 * pixels:6.2f} %" if segmentation and pixels is not None else ""
        print(f"{name:{width}s}  {100 * value:6.2f} %{extra}")
