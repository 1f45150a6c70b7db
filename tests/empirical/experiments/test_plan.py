"""``samat experiment plan``: the predicted device time of a grid is the arithmetic of its calibration, each step
and attack is timed as the run would run it (its configuration on this device, synthetic data of its dataset's
shape, the calibration's batches; on CUDA at full size), the table is readable, and bad input is one line."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from samat.cli.main import main
from samat.empirical.evaluation.cost import BOUNDS, AlwaysRobust, AttackTiming
from samat.empirical.experiments import plan as plan_module
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.experiments.plan import (
    EVAL_BATCH,
    AttackCost,
    Calibration,
    GridPlan,
    RunPlan,
    TrainingCost,
    _at_size,
    duration,
    format_plan,
    plan_experiment,
)
from samat.empirical.training.throughput import StepTiming
from samat.empirical.vocabulary import Task
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

    # (rel=1e-12: a few float operations, each rounding by 2**-53)
    # cheap all the way: measured at the full size
    assert _at_size(fixed_plus_linear(0.1, 0.01), 1, 256, cuda=False) == (pytest.approx(2.66, rel=1e-12), 256)
    assert seen == [1, 4, 16, 64, 256]
    seen.clear()
    # a large fixed part (an attack's 100 iterations): two points, and the line through them
    assert _at_size(fixed_plus_linear(1.0, 0.1), 1, 256, cuda=False) == (pytest.approx(26.6, rel=1e-12), 16)
    assert seen == [1, 2, 4, 8, 16]  # doubling while affordable: 4 images first estimated at 4.4 s, 32 at 5.2 s
    seen.clear()
    # dear from the start (the arithmetic dominates): in proportion from one point
    assert _at_size(fixed_plus_linear(0.0, 50.0), 1, 256, cuda=False) == (pytest.approx(12_800, rel=1e-12), 1)
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


# --- what each timer is given -----------------------------------------------------------------------------------

# Fashion-MNIST's shape (nothing is loaded), subsets, a data folder and a compiler: the calibration keeps the run's
# step (its compiler, its augmentation) and drops what concerns the data.
IMAGES = """[base]
dataset = "fashion_mnist"
data_dir = "nowhere"
model = "small_cnn"
epochs = 1
batch_size = 64
train_subset = 1024
test_subset = 512
compile = "aot_eager"
"""
IMAGE_RUNS = SGD_RUN + """
[[run]]
label = "AT"
method = "pgd_at"
at_eps = 0.1
at_steps = 3
augment = "crop"
"""
FAST_PATH_OFF = "the fast path is off (simulated)"


@pytest.fixture
def recorded(monkeypatch, fake_clock):
    """The fake clock, recording what each timer is given; the steps' timer reports the fast path off each time."""
    calls = SimpleNamespace(steps=[], builds=[], test_passes=[], attacks=[])
    fake_steps, fake_attack = plan_module.time_steps, plan_module.time_attack

    def time_steps(cfg, data, *, warmup, steps, notice=None):
        calls.steps.append(SimpleNamespace(cfg=cfg, data=data, warmup=warmup, steps=steps))
        notice(FAST_PATH_OFF)
        return fake_steps(cfg, data, warmup=warmup, steps=steps)

    def build(cfg, data):
        calls.builds.append(SimpleNamespace(cfg=cfg, data=data))
        return calls.builds[-1]  # the setup the test pass is timed on

    def time_test_pass(setup, n):
        calls.test_passes.append((setup, n))
        return TEST_PASS[0] + TEST_PASS[1] * n

    def time_attack(label, s, model, x, y, *, num_classes, batch_size):
        calls.attacks.append(SimpleNamespace(label=label, model=model, x=x, y=y, num_classes=num_classes,
                                             batch_size=batch_size))
        return fake_attack(label, s, model, x, y, num_classes=num_classes, batch_size=batch_size)

    monkeypatch.setattr(plan_module, "time_steps", time_steps)
    monkeypatch.setattr(plan_module, "build", build)
    monkeypatch.setattr(plan_module, "time_test_pass", time_test_pass)
    monkeypatch.setattr(plan_module, "time_attack", time_attack)
    return calls


def test_each_step_and_attack_is_timed_as_the_run_runs_it(tmp_path, recorded):
    """On a CPU, with two batches per attack: the steps run the run's configuration on this device at the measured
    batches (its compiler, not its data folder or subsets), on synthetic images of the dataset's shape with the
    run's augmentation (crop and flip where it names none) and as many examples as the warm-up and timed steps
    use; the test pass runs eagerly on as many test images as are timed; each attack runs on the calibration
    models on this device, two batches of each measured size. The figures are per batch and per step, whatever the
    number of batches; the fast path's notice is said once; the lines say what is calibrated."""
    exp = load_experiment(write_grid(tmp_path, 'name = "p"\nseeds = [0]\ncolumns = ["natural", "pgd10_linf@0.1"]\n'
                                               "n_eval = 300", IMAGE_RUNS, IMAGES), runs_dir=tmp_path / "runs")
    said: list[str] = []
    start = time.perf_counter()
    plan = plan_experiment(exp, torch.device("cpu"), calibration=Calibration(warmup=1, steps=2, eval_batches=2),
                           log=said.append)
    assert 0 < plan.calibration_seconds <= time.perf_counter() - start and plan.device == "CPU"

    sgd, at = "small CNN 1x28x28, SGD, batch 64", "small CNN 1x28x28, PGD-AT (3 PGD steps), batch 64"
    assert list(plan.training) == [sgd, at]
    assert [c.cfg.batch_size for c in recorded.steps] == [8, 32, 64] * 2  # from CPU_BATCH, four times, then full
    for call, augment in zip(recorded.steps, ["crop_flip"] * 3 + ["crop"] * 3, strict=True):
        cfg, data = call.cfg, call.data
        assert (cfg.device, cfg.data_dir, cfg.train_subset, cfg.test_subset, cfg.compile) == ("cpu", None, None,
                                                                                            None, "aot_eager")
        assert (call.warmup, call.steps) == (1, 2)
        assert tuple(data.train_x.shape) == (3 * cfg.batch_size, 1, 28, 28) and len(data.test_x) == 1
        assert data.augment == augment and data.num_classes == 10
    assert [n for _, n in recorded.test_passes] == [32, 128, 512] * 2  # 4 CPU batches, then four times, up to 512
    for (setup, n), build in zip(recorded.test_passes, recorded.builds, strict=True):
        assert setup is build and len(build.data.test_x) == n and len(build.data.train_x) == 1
        assert (build.cfg.compile, build.cfg.cuda_graph, build.cfg.batch_size, build.cfg.device) == (False, False,
                                                                                                     64, "cpu")
    for cost in plan.training.values():
        assert cost.batch_size == 64 and cost.timing.batch_size == 64  # the last measurement, at the run's batch
        assert cost.test_seconds == pytest.approx(TEST_PASS[0] + TEST_PASS[1] * 512, rel=1e-12)

    assert [a.batch_size for a in recorded.attacks if a.label == "pgd10_linf@0.1"] == [1, 4, 16, 64, 256] * 2
    for a in recorded.attacks:
        assert len(a.x) == len(a.y) == 2 * a.batch_size and a.num_classes == 10 and a.x.device.type == "cpu"
        assert tuple(a.x.shape[1:]) == (1, 28, 28)
    assert {type(a.model) is AlwaysRobust for a in recorded.attacks} == {True, False}  # both bounds
    for run in plan.runs:
        for bound in BOUNDS:
            # 300 images, 2 batches of 256, for PGD-10 and the two sanity attacks of 20 steps
            expected = sum(2 * attack_batch_seconds(bound, k, EVAL_BATCH) for k in (10, 20, 20))
            assert run.eval_seconds[bound] == pytest.approx(expected, rel=1e-12)
    assert all(a.measured_batch == EVAL_BATCH for a in plan.attacks.values())

    assert said.count(FAST_PATH_OFF) == 1
    assert said.index(f"calibrating training: {sgd}") < said.index(f"calibrating training: {at}")
    assert "calibrating evaluation: pgd10_linf@0.1 on small CNN" in said
    low = 2 * attack_batch_seconds(BOUNDS[0], 10, EVAL_BATCH) / 2
    assert f"  pgd10_linf@0.1, {BOUNDS[0]}: {low:.2f} s per batch of 256" in said


def test_a_step_measured_below_the_runs_batch_is_scaled_and_said(tmp_path, recorded, monkeypatch):
    """Where the next size is no longer affordable the attack's last measurement is below a batch of 256: its
    line and its cost say so."""
    monkeypatch.setattr(plan_module, "AFFORDABLE_SECONDS", 0.05)
    exp = load_experiment(write_grid(tmp_path, 'name = "p"\nseeds = [0]\ncolumns = ["pgd10_linf@0.1"]\nn_eval = 300',
                                     SGD_RUN, IMAGES), runs_dir=tmp_path / "runs")
    said: list[str] = []
    plan = plan_experiment(exp, torch.device("cpu"), log=said.append)
    measured = plan.attacks["pgd10_linf@0.1"].measured_batch
    assert measured < EVAL_BATCH
    assert any(line.startswith("  pgd10_linf@0.1, ") and line.endswith(f" (timed on {measured} images, scaled)")
               for line in said)


def test_a_grid_without_attack_columns_times_no_attack(tmp_path, recorded):
    exp = load_experiment(write_grid(tmp_path, 'name = "p"\nseeds = [0]\ncolumns = ["natural"]', SGD_RUN, IMAGES),
                          runs_dir=tmp_path / "runs")
    plan = plan_experiment(exp, torch.device("cpu"))
    assert recorded.attacks == [] and plan.attacks == {} and [r.eval_seconds for r in plan.runs] == [{}]
    assert "Evaluation: natural accuracy only (no attack columns)." in format_plan(plan)


def test_on_cuda_everything_is_measured_once_at_full_size(tmp_path, recorded, monkeypatch):
    """A GPU runs a batch in parallel: the steps, the test pass and the attacks are each timed at their full size,
    with CUDA's calibration (2 warm-up and 5 timed steps, 2 batches per attack), on the run's device, whose name
    heads the plan. (The device is never touched: every timer is faked, and so are the calibration models.)"""
    device = torch.device("cuda", 1)
    named = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: named.append(d) or "a fake GPU")
    monkeypatch.setattr(plan_module, "calibration_model",
                        lambda arch, shape, k, dev, *, bound: SimpleNamespace(bound=bound, device=dev))
    monkeypatch.setattr(plan_module, "calibration_images",
                        lambda model, n, shape, dev, *, bound: (torch.zeros(n, *shape), torch.zeros(n).long()))
    exp = load_experiment(write_grid(tmp_path, 'name = "p"\nseeds = [0]\ncolumns = ["pgd10_linf@0.1"]', SGD_RUN,
                                     IMAGES), runs_dir=tmp_path / "runs")
    plan = plan_experiment(exp, device)
    assert plan.device == "a fake GPU" and named == [device]
    assert [(c.cfg.batch_size, c.cfg.device, c.warmup, c.steps) for c in recorded.steps] == [(64, "cuda:1", 2, 5)]
    assert [n for _, n in recorded.test_passes] == [512]
    assert [a.batch_size for a in recorded.attacks] == [EVAL_BATCH] * 4  # PGD-10 and PGD-20, at both bounds
    assert all(a.model.device == device and len(a.x) == 2 * EVAL_BATCH for a in recorded.attacks)
    assert {a.model.bound for a in recorded.attacks} == set(BOUNDS)


def test_the_calibration_is_shorter_on_a_cpu():
    assert Calibration.for_device(torch.device("cuda")) == Calibration(warmup=2, steps=5, eval_batches=2)
    assert Calibration.for_device(torch.device("cpu")) == Calibration(warmup=1, steps=2, eval_batches=1)


def test_at_size_edges():
    """Measured once where the small size is the full one; a next size whose estimate is exactly the affordable
    limit is still measured; one dear measurement at a small size is scaled in proportion."""
    seen = []

    def measure(per_item: float):
        def run(n: int) -> float:
            seen.append(n)
            return per_item * n
        return run

    assert _at_size(measure(1.0), 8, 8, cuda=False) == (8.0, 8) and seen == [8]
    seen.clear()
    assert _at_size(measure(1.0), 1, 16, cuda=False) == (16.0, 4) and seen == [1, 4]  # 4 s at 4: affordable
    seen.clear()
    assert _at_size(measure(3.0), 2, 64, cuda=False) == (pytest.approx(192.0, rel=1e-12), 2) and seen == [2]


def test_run_and_grid_totals_count_the_seeds_left():
    low, high = BOUNDS
    run = RunPlan("SGD", seeds=3, finished=1, epochs=1, train_seconds=10.0, eval_seconds={low: 2.0})
    assert run.total(low) == 36.0 and run.total(low, remaining=True) == 24.0 and run.total(high) == 30.0
    plain = RunPlan("ST", seeds=2, finished=0, epochs=1, train_seconds=1.0, eval_seconds={})
    grid = GridPlan(SimpleNamespace(), "CPU", [run, plain])
    assert grid.total(low) == 38.0 and grid.total(low, remaining=True) == 26.0


def test_durations_round_at_each_unit():
    assert [duration(s) for s in (9.96, 10, 89.4, 90, 3000, 3599, 3600, 172_799, 172_800, 2.05 * 86400 + 1)] == \
        ["10.0 s", "10 s", "89 s", "2 min", "50 min", "60 min", "1 h 00 min", "48 h 00 min", "2.0 days", "2.1 days"]


# --- the table, written out -------------------------------------------------------------------------------------

def _timing(batch: int, compile_: str | None, graph: bool, path: str) -> StepTiming:
    return StepTiming(5, 1.0, 2, 2.0, batch, compile_, graph, False, False, path)


def test_the_plan_reads_as_a_table_with_its_calibration():
    """A GPU plan with evaluations and a finished seed: each run's row, the whole grid, what is still to run, the
    evaluation's sentence, and each calibrated step (compiled and graphed; scaled from a smaller batch; the fast
    path given up) and attack (scaled from fewer images), figures worked out by hand."""
    low, high = BOUNDS
    runs = [RunPlan("SGD", 3, 1, 200, 5400.0, {low: 60.0, high: 600.0}),
            RunPlan("PGD-AT", 2, 0, 100, 7.5, {low: 30.0, high: 30.0})]
    plan = GridPlan(SimpleNamespace(title="D Table 2", n_eval=10_000, task=Task.CLASSIFICATION), "a fake GPU", runs,
                    calibration_seconds=95.0)
    plan.training = {
        "PreActResNet-18 3x32x32, SGD, batch 128": TrainingCost(128, 0.0123, 2.5, 40.0,
                                                                 _timing(128, "inductor", True, "graph")),
        "PreActResNet-18 3x32x32, PGD-AT (10 PGD steps), batch 128": TrainingCost(128, 0.25, 12.0, 0.0,
                                                                                 _timing(8, None, False, "eager")),
        "small CNN 1x28x28, SAM, batch 64": TrainingCost(64, 1.5, 100.0, 3.0, _timing(64, "inductor", False, "eager")),
        "small CNN 1x28x28, SGD, batch 64": TrainingCost(64, 0.002, 0.5, 1.0, _timing(64, None, True, "graph")),
    }
    plan.attacks = {"PGD-10 ℓ∞ 8/255": AttackCost({low: 0.5, high: 2.0}, EVAL_BATCH),
                    "Pixle": AttackCost({low: 1.0, high: 30.0}, 16)}
    assert format_plan(plan) == "\n".join([
        "D Table 2: predicted device time on this machine (a fake GPU)",
        "",
        "| Run | seeds | epochs | training per seed | evaluation per seed | all seeds |",
        "|---|---|---|---|---|---|",
        "| SGD | 3 (1 finished) | 200 | 1 h 30 min | 60 s – 10 min | 4 h 33 min – 5 h 00 min |",
        "| PGD-AT | 2 | 100 | 7.5 s | 30 s | 75 s |",
        "| **whole grid** | 5 runs | | 4 h 30 min | 4 min – 31 min | **4 h 34 min – 5 h 01 min** |",
        "| still to run | 4 runs | | | | 3 h 03 min – 3 h 21 min |",
        "",
        "Evaluation of 10,000 test images per run: from images that fall at once to images that never fall (the "
        "papers' adversarially trained models sit near the second).",
        "",
        "Calibration on this machine (2 min):",
        "",
        "- PreActResNet-18 3x32x32, SGD, batch 128: 12.3 ms per step (compiled (inductor) + CUDA graph); test pass "
        "2.5 s; warm-up overhead (compilation, capture) 40 s per run",
        "- PreActResNet-18 3x32x32, PGD-AT (10 PGD steps), batch 128: 250.0 ms per step (eager, timed at batch 8 and "
        "scaled); test pass 12 s; warm-up overhead (compilation, capture) 0.0 s per run",
        "- small CNN 1x28x28, SAM, batch 64: 1,500.0 ms per step (eager: the fast path was off); test pass 2 min; "
        "warm-up overhead (compilation, capture) 3.0 s per run",
        "- small CNN 1x28x28, SGD, batch 64: 2.0 ms per step (CUDA graph); test pass 0.5 s; warm-up overhead "
        "(compilation, capture) 1.0 s per run",
        "- PGD-10 ℓ∞ 8/255: 2.0 s – 8.0 s per 1,000 images (falls at once – never falls)",
        "- Pixle: 4.0 s – 2 min per 1,000 images (timed on 16 images per batch, scaled) (falls at once – never falls)",
    ])


def test_a_finished_grid_without_attacks_reads_nothing_left():
    plan = GridPlan(SimpleNamespace(title="A check", n_eval=1000, task=Task.CLASSIFICATION), "CPU",
                    [RunPlan("ST", 1, 1, 3, 12.0, {})], calibration_seconds=0.42)
    plan.training = {"linear 7, SGD, batch 64": TrainingCost(64, 0.001, 0.01, 0.0,
                                                             _timing(8, "aot_eager", False, "compiled"))}
    assert format_plan(plan) == "\n".join([
        "A check: predicted device time on this machine (CPU)",
        "",
        "| Run | seeds | epochs | training per seed | evaluation per seed | all seeds |",
        "|---|---|---|---|---|---|",
        "| ST | 1 (1 finished) | 3 | 12 s | none | 12 s |",
        "| **whole grid** | 1 runs | | 12 s | none | **12 s** |",
        "| still to run | 0 runs | | | | nothing |",
        "",
        "Evaluation: natural accuracy only (no attack columns).",
        "",
        "Calibration on this machine (0.4 s):",
        "",
        "- linear 7, SGD, batch 64: 1.0 ms per step (compiled (aot_eager), timed at batch 8 and scaled); test pass "
        "0.0 s; warm-up overhead (compilation, capture) 0.0 s per run",
    ])
