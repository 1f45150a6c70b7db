"""Benchmark: how close ``samat experiment plan``'s prediction comes to the run it plans, on this machine.

    python bench/plan_accuracy.py [EXPERIMENT] [--threads 1] [--json out.json]

Plans the experiment (a TOML file; default: a small grid of SGD and PGD-AT on the papers' Gaussian data, 128
steps per epoch, two attack columns), then runs it, moments later, into a temporary runs folder, and compares the
device time the runs record (training epochs in final.json, attacks in eval.json) with the prediction: training
against the predicted training time, training plus evaluation against the predicted range. The planner's target is
within a factor of two. The unit tests check the planner's arithmetic on a fake clock
(tests/empirical/experiments/test_plan.py); how well its calibration predicts a real machine is a measurement, so it
is here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import count, machine, output_file, run, write_record

SMALL_GRID = """[experiment]
name = "plan accuracy"
seeds = [0]
columns = ["natural", "pgd10_linf@0.1"]
n_eval = 512

[base]
dataset = "gaussian"
model = "linear"
epochs = 2
batch_size = 64
gaussian = { p = 0.8, eta = 0.3, n = 6, train_size = 8192, test_size = 1024 }

[[run]]
label = "SGD"
method = "sgd"

[[run]]
label = "AT"
method = "pgd_at"
at_eps = 0.1
at_steps = 3
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="?", help="an experiment TOML file (default: the small Gaussian grid)")
    parser.add_argument("--threads", type=count(1), default=1, help="torch's CPU threads (default 1)")
    parser.add_argument("--json", type=output_file, help="also write the figures here")
    args = parser.parse_args()
    import torch  # after the arguments, so that --help is instant

    from samat.empirical.evaluation.cost import BOUNDS
    from samat.empirical.experiments.grid import load_experiment
    from samat.empirical.experiments.plan import plan_experiment
    from samat.empirical.experiments.runner import run_experiment

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.experiment) if args.experiment else Path(tmp, "grid.toml")
        if not args.experiment:
            path.write_text(SMALL_GRID)
        exp = load_experiment(path, runs_dir=Path(tmp, "runs"))
        plan = plan_experiment(exp, torch.device("cpu"))
        run_experiment(exp, progress=False, log=lambda m: None)
        trained = sum(json.loads((r.run_dir / "final.json").read_text())["seconds"] for r in exp.runs)
        evaluations = [r.run_dir / "eval.json" for r in exp.runs]  # none where the grid has no attack columns
        attacked = sum(a["seconds"] for e in evaluations if e.exists()
                       for a in json.loads(e.read_text())["attacks"].values())
    predicted = sum(r.seeds * r.train_seconds for r in plan.runs)
    low, high = (plan.total(b) for b in BOUNDS)
    record = {"machine": machine(torch.device("cpu")), "experiment": exp.title, "training_seconds": trained,
              "predicted_training_seconds": predicted, "training_ratio": trained / predicted,
              "total_seconds": trained + attacked, "predicted_total_range": [low, high],
              "calibration_seconds": plan.calibration_seconds}
    print(f"training: {trained:.1f} s measured, {predicted:.1f} s predicted (ratio {trained / predicted:.2f}; "
          "target 0.5-2)")
    print(f"training + evaluation: {trained + attacked:.1f} s measured, {low:.1f}-{high:.1f} s predicted "
          f"(within 2x of the range: {0.5 * low <= trained + attacked <= 2 * high})")
    print(f"calibration: {plan.calibration_seconds:.1f} s; machine: {record['machine']}")
    if args.json:
        write_record(args.json, record)
    return 0


if __name__ == "__main__":
    run(main)
