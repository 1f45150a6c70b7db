"""``samat experiment plan``: the predicted device time of a grid is the arithmetic of its calibration, the table
is readable, and bad input is one line."""

from __future__ import annotations

import pytest
import torch

from samat.cli.main import main
from samat.empirical.evaluation.cost import BOUNDS, AlwaysRobust, AttackTiming
from samat.empirical.experiments import plan as plan_module
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.experiments.plan import EVAL_BATCH, _at_size, duration, format_plan, plan_experiment
from samat.empirical.training.throughput import StepTiming
from tests.empirical.helpers import GAUSSIAN_GRID_BASE, SGD_RUN, write_grid

# The grid tests' Gaussian base with 128 steps per epoch and 1024 test images; SGD and PGD-AT.
BASE = GAUSSIAN_GRID_BASE.replace("train_size = 512, test_size = 512", "train_size = 8192, test_size = 1024")
RUNS = SGD_RUN + """
[[run]]
label = "AT"
method = "pgd_at"
at_eps = 0.1
at_steps = 3
"""
assert BASE != GAUSSIAN_GRID_BASE


# A fake clock: what each timed thing "takes" is a fixed part plus a part proportional to its size, as on a CPU
# (so the planner's measure-then-extrapolate is exact and every figure below follows by hand).
STEP = {False: (0.002, 1e-4), True: (0.005, 4e-4)}  # (seconds, seconds per example) of a step, by adversarial
WARMUP_OVERHEAD = 0.3  # compilation and the like, once per run
TEST_PASS = (0.01, 2e-5)  # (seconds, seconds per image) of the epoch's test pass
ATTACK = {BOUNDS[0]: 0.01, BOUNDS[1]: 0.05}  # seconds per batch by bound, plus ATTACK_PER per image and step
ATTACK_PER = 1e-4


def step_seconds(adversarial: bool, batch: int) -> float:
    fixed, per = STEP[adversarial]
    return fixed + per * batch


def attack_batch_seconds(bound: str, steps: int, batch: int) -> float:
    return ATTACK[bound] + ATTACK_PER * steps * batch


@pytest.fixture
def fake_clock(monkeypatch):
    """The planner's timers replaced by the fake clock; returns the attacks timed, as (label, bound, batch)."""
    timed = []

    def time_steps(cfg, data, *, warmup, steps, notice=None):
        one = step_seconds(cfg.method.adversarial, cfg.batch_size)
        return StepTiming(steps, steps * one, warmup, warmup * one + WARMUP_OVERHEAD, cfg.batch_size, None, False,
                          False, False)

    def time_attack(label, s, model, x, y, *, num_classes, batch_size):
        bound = BOUNDS[1] if isinstance(model, AlwaysRobust) else BOUNDS[0]
        timed.append((label, bound, batch_size))
        batches = len(x) // batch_size
        return AttackTiming(label, len(x), batch_size, batches * attack_batch_seconds(bound, s.steps, batch_size), 0.0)

    monkeypatch.setattr(plan_module, "time_steps", time_steps)
    monkeypatch.setattr(plan_module, "build", lambda cfg, data: None)
    monkeypatch.setattr(plan_module, "time_test_pass", lambda setup, n: TEST_PASS[0] + TEST_PASS[1] * n)
    monkeypatch.setattr(plan_module, "time_attack", time_attack)
    return timed


def test_plan_adds_up_the_calibrated_costs(tmp_path, fake_clock):
    """Every run's predicted training and evaluation time is the arithmetic of the module's docstring on the fake
    clock's costs: epochs x (steps per epoch x seconds per step + test pass) + the warm-up's overhead, and per
    attack ceil(images / 256) x seconds per batch of 256; each distinct step and each attack of a distinct cost
    (FGSM and PGD: algorithm, norm, steps) is calibrated once for the grid. (How close such a plan comes to the
    run it plans on a real machine is measured by bench/plan_accuracy.py: no timed unit tests.)"""
    exp = load_experiment(write_grid(tmp_path, 'name = "p"\nseeds = [0, 1]\ncolumns = ["natural", "pgd10_linf@0.1"]\n'
                                               "n_eval = 600", RUNS, BASE), runs_dir=tmp_path / "runs")
    plan = plan_experiment(exp, torch.device("cpu"))

    steps_per_epoch, epochs = 8192 // 64, 2
    test_pass = 2 * (TEST_PASS[0] + TEST_PASS[1] * 512)  # 1024 test images in evaluation batches of 512
    attacks = {"pgd10_linf@0.1": 10, "pgd20_linf@0.1 (sanity)": 20, "pgd20_linf@0.5 (sanity)": 20}  # and steps
    for run, adversarial in zip(plan.runs, (False, True), strict=True):
        assert (run.seeds, run.finished, run.epochs) == (2, 0, epochs)
        expected = epochs * (steps_per_epoch * step_seconds(adversarial, 64) + test_pass) + WARMUP_OVERHEAD
        assert run.train_seconds == pytest.approx(expected, rel=1e-12)
        for bound in BOUNDS:
            expected = sum(3 * attack_batch_seconds(bound, k, EVAL_BATCH) for k in attacks.values())  # 600 images
            assert run.eval_seconds[bound] == pytest.approx(expected, rel=1e-12)
            assert run.total(bound) == pytest.approx(2 * (run.train_seconds + run.eval_seconds[bound]), rel=1e-12)
    assert plan.total(BOUNDS[1]) == pytest.approx(sum(r.total(BOUNDS[1]) for r in plan.runs), rel=1e-12)
    # Calibrated once each: the two steps (SGD, AT) and two attack costs (PGD-10, PGD-20), shared by both runs.
    assert len(plan.training) == 2 and set(plan.attacks) == set(attacks)
    assert {label for label, _, _ in fake_clock} == {"pgd10_linf@0.1", "pgd20_linf@0.1 (sanity)"}
    # On a CPU an attack is first timed on one image, then on four times as many while affordable, up to 256.
    assert [b for label, bound, b in fake_clock if (label, bound) == ("pgd10_linf@0.1", BOUNDS[0])] == \
        [1, 4, 16, 64, 256]
    # the table names every run and the whole grid, in readable durations
    table = format_plan(plan)
    assert "| SGD | 2 | 2 |" in table and "| AT | 2 | 2 |" in table and "**whole grid** | 4 runs" in table
    assert "pgd10_linf@0.1" in table and "pgd20_linf@0.5 (sanity)" in table


def test_cpu_measurements_grow_while_affordable_then_follow_the_line():
    """On a CPU: measured at growing sizes while the next stays under AFFORDABLE_SECONDS (4 s), then
    extrapolated along the line through the last two measurements (exact for fixed + proportional costs)."""
    seen = []

    def fixed_plus_linear(fixed: float, per_item: float):
        def measure(n: int) -> float:
            seen.append(n)
            return fixed + per_item * n
        return measure

    # cheap all the way: measured at the full size
    assert _at_size(fixed_plus_linear(0.1, 0.01), 1, 256, cuda=False) == (pytest.approx(2.66), 256)
    assert seen == [1, 4, 16, 64, 256]
    seen.clear()
    # a large fixed part (an attack's 100 iterations): two points, and the line through them
    assert _at_size(fixed_plus_linear(1.0, 0.1), 1, 256, cuda=False) == (pytest.approx(26.6), 16)
    assert seen == [1, 2, 4, 8, 16]  # doubling while affordable: 4 images first estimated at 4.4 s, 32 at 5.2 s
    seen.clear()
    # dear from the start (the arithmetic dominates): in proportion from one point
    assert _at_size(fixed_plus_linear(0.0, 50.0), 1, 256, cuda=False) == (pytest.approx(12_800), 1)
    seen.clear()
    assert _at_size(fixed_plus_linear(0.0, 1.0), 8, 128, cuda=True)[1] == 128 and seen == [128]


def test_durations_read_like_a_person_writes_them():
    assert [duration(s) for s in (0.42, 38, 720, 3 * 3600 + 5 * 60, 2.4 * 86400)] == \
        ["0.4 s", "38 s", "12 min", "3 h 05 min", "2.4 days"]


@pytest.mark.parametrize(("args", "needle"), [
    (["experiment", "plan", "no_such_grid"], "experiment file no_such_grid not found; packaged experiments:"),
    (["experiment", "plan", "fashion_mnist_default", "--device", "cuda:7"],
     "device=cuda:7 is invalid: device must be auto or cpu on this machine"),
    (["experiment", "plan", "fashion_mnist_default", "--device", "tpu"], "device=tpu is invalid"),
])
def test_plan_bad_input_is_one_line(capsys, args, needle):
    if torch.cuda.is_available() and "cuda:7" in args:
        pytest.skip("this machine has CUDA")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("samat experiment plan: error:") and needle in err, err


def test_each_calibration_compiles_afresh_and_nothing_piles_up_in_dynamos_cache(tmp_path, monkeypatch):
    """The plan calibrates several steps and batch sizes in one process. Each measurement starts from an empty
    dynamo cache for the model's forward (no entries left by the ones before: past the recompile limit dynamo
    would run the model eagerly and the figure would be eager's), and each one really ran compiled."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from samat.empirical.models.linear import LinearClassifier

    forward = LinearClassifier.forward.__code__
    entries_before, timings, real = [], [], plan_module.time_steps

    def counting(cfg, data, **kw):
        entries_before.append(len(_debug_get_cache_entry_list(forward)))
        timings.append(real(cfg, data, **kw))
        return timings[-1]

    monkeypatch.setattr(plan_module, "time_steps", counting)
    torch._dynamo.reset()
    try:
        exp = load_experiment(write_grid(tmp_path, 'name = "p"\nseeds = [0]', RUNS), runs_dir=tmp_path / "runs",
                              overrides={"compile": "aot_eager", "device": "cpu"})
        plan_experiment(exp, torch.device("cpu"))
        after = len(_debug_get_cache_entry_list(forward))
    finally:
        torch._dynamo.reset()
    assert len(entries_before) >= 4 and entries_before == [0] * len(entries_before)  # 2 steps x 2 or more batches
    assert all(t.step_path == "compiled" and t.compile == "aot_eager" for t in timings)
    assert 1 <= after <= 2  # the last calibration's variants only (AT: its attack's pass and the training pass)
