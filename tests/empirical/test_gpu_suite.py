"""bench/gpu_suite.py end to end, as a dry run on the CPU (tiny sizes; minutes, so behind --run-slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.empirical.helpers import REPO


@pytest.mark.slow
def test_gpu_suite_runs_every_part_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "bench/gpu_suite.py", str(out), "--device", "cpu", "--quick",
                           "--budget", "1800"], cwd=REPO, capture_output=True, text=True, timeout=2000)
    assert done.returncode == 0, done.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(p.is_file() for p in out.iterdir())  # what a GPU machine can send back
    assert files == ["accuracy.json", "eval.json", "experiment.md", "profile.json", "suite.json", "summary.md",
                     "train.json"]
    suite = json.loads((out / "suite.json").read_text())
    assert [p["part"] for p in suite["parts"]] == ["tests", "train", "eval", "experiment", "profile", "accuracy",
                                                   "plan"]
    assert all(p["status"] == "ok" for p in suite["parts"])
    summary = (out / "summary.md").read_text()
    assert "| Method | Loop | images/s" in summary and "**whole grid**" in summary and "busy / wall" in summary
