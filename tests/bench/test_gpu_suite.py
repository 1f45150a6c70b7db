"""bench/gpu_suite.py: a pytest it stops at its time limit names the test it was in; a GPU test skipped for its data
(not by its marker) fails the tests part; and end to end, as a dry run on the CPU (tiny sizes; minutes, so behind
--run-slow), every part runs and leaves its files under the names a GPU run uses."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.empirical.helpers import REPO

_spec = importlib.util.spec_from_file_location("gpu_suite", REPO / "bench" / "gpu_suite.py")
suite = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("gpu_suite", suite)  # its dataclasses look their module up there
_spec.loader.exec_module(suite)

TESTS = '''
import time
import pytest

@pytest.mark.gpu
def test_on_the_gpu():
    pass

def test_with_its_data():
    pytest.skip("needs Fashion-MNIST in /nowhere (apt-get install dataset-fashion-mnist)")

def test_that_hangs():
    time.sleep(600)
'''


def _pytest(tmp_path, *extra: str) -> list[str]:
    """pytest on the tests above with the project's conftest (its markers and its running-test file)."""
    (tmp_path / "test_some.py").write_text(TESTS)
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "tests.conftest",
            "--rootdir", str(tmp_path), f"--junitxml={tmp_path / 'tests.xml'}", str(tmp_path / "test_some.py"), *extra]


def test_a_pytest_stopped_at_its_limit_names_the_test_it_was_in(tmp_path):
    part = suite.Part("tests", _pytest(tmp_path, "-k", "hangs"))
    suite.run_part(part, dict(os.environ, PYTHONPATH=str(REPO)), 12, tmp_path)
    assert part.outcome["status"].startswith("stopped at its time limit (12 s) in ")
    assert "test_some.py::test_that_hangs (after " in part.outcome["status"]


def test_a_gpu_test_skipped_for_its_data_fails_the_tests_part(tmp_path):
    done = subprocess.run(_pytest(tmp_path, "-k", "not hangs"), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    judged = suite.judge_tests(tmp_path / "tests.xml")
    assert judged["tests"] == {"passed": 0, "skipped": 2, "failed": 0}
    assert judged["status"].startswith("failed (1 GPU test(s) skipped: ") and "needs Fashion-MNIST" in judged["status"]
    done = subprocess.run(_pytest(tmp_path, "-k", "on_the_gpu"), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "status" not in suite.judge_tests(tmp_path / "tests.xml")  # skipped by its marker: the dry run's case


def _bench(name: str):
    """A bench script as a module (they import ``common`` from their own folder)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "bench"))


class Stopped(Exception):
    """What a part stopped at its limit looks like from inside: the work ends in the middle."""


def test_the_training_bench_writes_each_method_as_it_ends(tmp_path, monkeypatch):
    bench = _bench("train_throughput")
    timed = []

    def time_ours(method, args, data, device, steps, loop="ours"):
        if method == "sam":
            raise Stopped
        timed.append(method)
        return {"steps": steps, "seconds": 0.5, "warmup_seconds": 2.0, "bf16": False, "channels_last": False,
                "compile": "inductor", "cuda_graph": True, "step_path": "graph", "fast_path_off": None}

    monkeypatch.setattr(bench, "time_ours", time_ours)
    monkeypatch.setattr(bench, "count_flops", lambda method, args: 1e9)
    out = tmp_path / "train.json"
    with pytest.raises(Stopped):
        bench.main(["--device", "cpu", "--quick", "--methods", "st,sam", "--loops", "ours", "--skip-accuracy",
                    "--warmup", "1", "--steps", "2", "--json", str(out)])
    record = json.loads(out.read_text())
    assert timed == ["st"] and record["complete"] is False and [r["method"] for r in record["rows"]] == ["st"]
    assert record["rows"][0]["setup_seconds"] == 2.0 - 1 * 0.5 / 2  # the warm-up beyond one steady-state step


def test_the_evaluation_bench_writes_each_attack_as_it_ends(tmp_path, monkeypatch):
    bench = _bench("eval_throughput")
    from samat.empirical.evaluation.cost import AttackTiming

    def time_attack(label, s, model, x, y, *, num_classes, batch_size, seed):
        if label.startswith("pixle"):
            raise Stopped
        return AttackTiming(label, len(y), batch_size, 1.5, 0.25)

    monkeypatch.setattr(bench, "time_attack", time_attack)
    out = tmp_path / "eval.json"
    with pytest.raises(Stopped):
        bench.main(["--device", "cpu", "--quick", "--bounds", "falls at once", "--columns", "fgsm_linf@1/255",
                    "pixle", "--json", str(out)])
    record = json.loads(out.read_text())
    assert record["complete"] is False
    assert list(record["bounds"]["falls at once"]["attacks"]) == ["fgsm_linf@1/255"]


@pytest.mark.slow
@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_gpu_suite_runs_every_part_on_the_cpu(tmp_path, quick):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "bench/gpu_suite.py", str(out), "--device", "cpu", "--budget", "1800"]
                          + ["--quick"] * quick, cwd=REPO, capture_output=True, text=True, timeout=2000)
    assert done.returncode == 0, done.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(p.is_file() for p in out.iterdir())  # what a GPU machine can send back
    parts = suite.QUICK_PARTS if quick else suite.PARTS
    expected = {"summary.md", "suite.json", "train.json"} if quick else set(suite.FILES)
    assert files == sorted(expected)
    record = json.loads((out / "suite.json").read_text())
    assert [p["part"] for p in record["parts"]] == list(parts) and all(p["status"] == "ok" for p in record["parts"])
    assert record["mode"] == ("quick" if quick else "full") + " dry run on the CPU"
    tests = next(p for p in record["parts"] if p["part"] == "tests")
    assert tests["tests"]["skipped"] > 0 and tests["tests"]["failed"] == 0 and not tests["skipped_unexpectedly"]
    train = json.loads((out / "train.json").read_text())
    assert train["complete"] and all(r["setup_seconds"] >= 0 for r in train["rows"])
    summary = (out / "summary.md").read_text()
    assert "| Method | Loop | images/s" in summary and "compile + capture" in summary
    if not quick:
        assert "**whole grid**" in summary and "busy / wall" in summary
