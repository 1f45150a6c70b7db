"""Evaluation runs: eval.json, the sanity checks (which must be able to fail), bad input, and reports."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil

import pytest
import torch
from torch import nn

from samat.cli.main import main
from samat.core.errors import ParameterError, SamatError
from samat.core.results import dumps
from samat.empirical.data.fashion_mnist import FASHION_MNIST_DIR
from samat.empirical.evaluation import classification as classification_module
from samat.empirical.evaluation.checks import exceeds, robust_within_clean
from samat.empirical.evaluation.classification import Hits
from samat.empirical.evaluation.columns import NATURAL, attack_columns, column_spec, column_specs
from samat.empirical.evaluation.evaluate import evaluate
from samat.empirical.evaluation.run import evaluate_path
from samat.empirical.evaluation.store import unpack_mask
from samat.empirical.evaluation.trained import Loaded, eval_indices, load_trained, locate
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.experiments.report.tables import write_report
from samat.empirical.experiments.runner import run_experiment
from samat.empirical.models import build_model
from samat.empirical.training.loop import train
from tests.empirical.helpers import SGD_RUN, run_cli, tiny_cfg, tiny_images, write_grid

CHEAP = ["fgsm_linf@2/255", "pgd10_linf@2/255", "pgd10_linf@8/255", "pgd10_l2@64/255"]

FAMILY_CHECK = "accuracy does not increase with eps"  # the name the family check has in eval.json


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train(tiny_cfg(epochs=4), root / "st", progress=False, data=tiny_images())
    return root / "st"


def _load(run_dir):
    return load_trained(locate(run_dir, dataset="tiny"), device=torch.device("cpu"))


def test_eval_json_holds_numbers_and_passing_sanity_checks(trained_run, monkeypatch):
    monkeypatch.setattr("samat.empirical.evaluation.run.load_trained", _patched_loader)
    result = evaluate_path(trained_run, CHEAP, n_eval=64, seed=0, progress=False, log=lambda m: None)
    saved = json.loads((trained_run / "eval.json").read_text())
    assert saved["accuracy"] == result["accuracy"]
    assert all(isinstance(v, float) for v in saved["accuracy"].values())
    assert saved["settings"] == {"n_eval": 64, "seed": 0}
    clean = unpack_mask(saved["correct"][NATURAL], 64)
    assert saved["accuracy"][NATURAL] == float(clean.double().mean())
    for column in CHEAP:  # the raw hits, before any combination with the clean mask: none on a clean miss
        hits = unpack_mask(saved["correct"][column], 64)
        assert not (hits & ~clean).any()
        assert saved["accuracy"][column] == float((hits & clean).double().mean())
    assert saved["sanity_passed"], [c for c in saved["sanity"] if not c["passed"]]
    names = " ".join(c["check"] for c in saved["sanity"])
    for needle in ("robust <= clean", "within budget", "does not increase with eps", "more PGD steps",
                   "large attack"):
        assert needle in names


def test_existing_evaluation_is_extended_not_redone(trained_run, monkeypatch):
    monkeypatch.setattr("samat.empirical.evaluation.run.load_trained", _patched_loader)
    evaluate_path(trained_run, CHEAP[:1], n_eval=64, seed=0, overwrite=True, progress=False, log=lambda m: None)
    first = json.loads((trained_run / "eval.json").read_text())
    calls = []
    evaluate_path(trained_run, CHEAP[:2], n_eval=64, seed=0, progress=False, log=calls.append)
    second = json.loads((trained_run / "eval.json").read_text())
    assert second["accuracy"][CHEAP[0]] == first["accuracy"][CHEAP[0]] and CHEAP[1] in second["accuracy"]
    new, old = column_spec(CHEAP[1]).title, column_spec(CHEAP[0]).title  # the log names attacks by their titles
    assert any(new in c and old not in c for c in calls if c.startswith("evaluating"))
    with pytest.raises(SamatError, match="--overwrite"):
        evaluate_path(trained_run, CHEAP[:1], n_eval=32, seed=0, progress=False, log=lambda m: None)


def _patched_loader(trained, *, device):
    """The tiny dataset is not a registered one: load it by hand, the way load_trained would."""
    data = tiny_images()
    run = trained.run
    net = build_model("small_cnn", input_shape=data.input_shape, num_classes=4, mean=data.mean, std=data.std)
    net.load_state_dict(torch.load(run.weights))
    return Loaded(net.eval(), data.test_x, data.test_y, 4, "small_cnn on tiny")


def classify(model, x, y, columns, *, num_classes, seed=0, batch_size=256, previous=None):
    """The evaluation loop with classification's scorer, as ``samat eval`` runs it on (x, y)."""
    scorer = Hits(model, x, y, num_classes=num_classes, seed=seed, batch_size=batch_size)
    return evaluate(scorer, column_specs(columns), previous=previous)


class GradientMasked(nn.Module):
    """Logits that carry no gradient: a gradient attack cannot move them (obfuscated gradients)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        return 10 * nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float() + 0 * logits


def test_sanity_checks_catch_gradient_masking(trained_run):
    data = tiny_images()
    net = build_model("small_cnn", input_shape=data.input_shape, num_classes=4, mean=data.mean, std=data.std)
    net.load_state_dict(torch.load(trained_run / "model.pt"))
    result = classify(GradientMasked(net.eval()), data.test_x[:64], data.test_y[:64], CHEAP[1:2], num_classes=4)
    failed = [c["check"] for c in result["sanity"] if not c["passed"]]
    assert any("large attack" in c for c in failed) and not result["sanity_passed"]


def test_same_subset_for_every_model():
    a, b = eval_indices(10_000, 500, seed=3), eval_indices(10_000, 500, seed=3)
    assert torch.equal(a, b) and len(torch.unique(a)) == 500
    assert not torch.equal(a, eval_indices(10_000, 500, seed=4))


def test_attack_columns_parse_lists_and_reject_bad_ones():
    assert attack_columns(["natural", "pgd10_linf@1/255,2/255", "stadv", "average"]) == [
        "pgd10_linf@1/255", "pgd10_linf@2/255", "stadv"]
    with pytest.raises(ParameterError, match="attack=pgd_bogus"):
        attack_columns(["pgd_bogus"])
    with pytest.raises(ParameterError, match="eps"):
        attack_columns(["pgd10_linf@-1/255"])


@pytest.mark.parametrize(("extra", "needle"), [
    (["--attacks", "fgsm_bogus"], "attack=fgsm_bogus is invalid"),
    (["--attacks", "pgd10_linf@-2/255"], "eps="),
])
def test_eval_cli_bad_input_is_one_line(tmp_path, extra, needle):
    """Columns are checked before the path: no run is needed to refuse them."""
    out = run_cli("eval", str(tmp_path / "nowhere"), "--n-eval", "16", "--no-progress", *extra)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("samat")


def test_checkpoint_of_another_architecture_is_one_line(tmp_path):
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"needs Fashion-MNIST in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    cfg = tiny_cfg(epochs=1).replace(dataset="fashion_mnist", train_subset=256, test_subset=64)
    train(cfg, tmp_path / "run")
    (tmp_path / "bare").mkdir()  # the weights outside their run directory, where --model says what they are
    shutil.copyfile(tmp_path / "run" / "model.pt", tmp_path / "bare" / "model.pt")
    for arch in ("prn18", "deit_tiny"):
        out = run_cli("eval", str(tmp_path / "bare" / "model.pt"), "--model", arch, "--dataset", "fashion_mnist",
                      "--n-eval", "16")
        assert out.returncode == 2 and f"does not fit model {arch} on fashion_mnist" in out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    out = run_cli("eval", str(tmp_path / "run" / "model.pt"), "--model", "prn18", "--n-eval", "16")
    assert out.returncode == 2 and "--model prn18 contradicts" in out.stderr and out.stderr.count("\n") == 1


def test_missing_checkpoint_is_one_line(tmp_path):
    out = run_cli("eval", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "does not exist" in out.stderr and out.stderr.count("\n") == 1


def test_experiment_report_fills_robust_columns_and_plots(tmp_path):
    config = write_grid(tmp_path, """
name = "g"
seeds = [0]
n_eval = 128
tables = [ { title = "T", columns = ["natural", "pgd10_linf@0.05", "pgd10_linf@0.2", "average"] } ]
""", SGD_RUN + """[run.paper.T]
natural = 90.0
[[run]]
label = "AT (ε=0.1)"
method = "pgd_at"
at_eps = 0.1
""")
    exp = load_experiment(config, runs_dir=tmp_path / "runs")
    run_experiment(exp, progress=False, log=lambda m: None)
    paths = write_report(exp, tmp_path / "report")
    rows = json.loads(paths["json"].read_text())["tables"]["T"]
    for row in rows:
        a, b = row["pgd10_linf@0.05"]["mean"], row["pgd10_linf@0.2"]["mean"]
        assert a is not None and b is not None and b <= a <= row["natural"]["mean"]
        assert row["average"]["mean"] == pytest.approx((a + b) / 2)
    assert (tmp_path / "report" / "robust_vs_eps.png").exists() and (tmp_path / "report" / "tradeoff.png").exists()
    assert "![tradeoff](tradeoff.png)" in paths["markdown"].read_text()


def test_report_gives_the_sample_std_over_seeds_and_lists_the_failed_checks(tmp_path):
    """Three finished seeds with known accuracies (eval.json of their weights), one with a failed sanity check."""
    config = write_grid(tmp_path, 'name = "g"\nseeds = [0, 1, 2]\n'
                                  'tables = [ { title = "T", columns = ["natural", "pgd10_linf@0.1"] } ]')
    exp = load_experiment(config, runs_dir=tmp_path / "runs")
    natural, robust = [0.80, 0.85, 0.93], [0.50, 0.60, 0.40]
    failed = "a large attack (l-inf 0.5) drives accuracy below chance (0.5)"
    for i, (run, nat, rob) in enumerate(zip(exp.runs, natural, robust, strict=True)):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "model.pt").write_bytes(b"weights of seed %d" % i)
        weights = {"sha256": hashlib.sha256((run.run_dir / "model.pt").read_bytes()).hexdigest()}
        (run.run_dir / "final.json").write_text(dumps({"test_acc": 0.1, "provenance": {"inputs": {
            "config": run.config.identity(), "weights": weights}}}))
        sanity = [{"check": failed, "passed": i != 1, "detail": "0.9"}, {"check": "other", "passed": True,
                                                                         "detail": ""}]
        (run.run_dir / "eval.json").write_text(dumps({
            "n": 100, "columns": ["pgd10_linf@0.1"], "accuracy": {NATURAL: nat, "pgd10_linf@0.1": rob},
            "attacks": {}, "correct": {}, "sanity": sanity, "settings": exp.eval_settings,
            "provenance": {"inputs": {"weights": weights, "model": {"architecture": "linear",
                                                                    "dataset": "gaussian"}}}}))
    paths = write_report(exp, tmp_path / "report", plots=False)
    # mean 86 and 50 (percent); sample standard deviations (n - 1 = 2): √((36 + 1 + 49) / 2) = √43 = 6.557 and
    # √((0 + 100 + 100) / 2) = 10 (the population's would be √(86 / 3) = 5.354 and √(200 / 3) = 8.165).
    (row,) = json.loads(paths["json"].read_text())["tables"]["T"]
    assert row["natural"]["mean"] == pytest.approx(86.0, rel=1e-12) and row["natural"]["n"] == 3
    assert row["natural"]["std"] == pytest.approx(math.sqrt(43), rel=1e-12)
    assert row["pgd10_linf@0.1"]["mean"] == pytest.approx(50.0, rel=1e-12)
    assert row["pgd10_linf@0.1"]["std"] == pytest.approx(10.0, rel=1e-12)
    md = paths["markdown"].read_text()
    assert "| SGD ⚠ | 86.0 ± 6.6 | 50.0 ± 10.0 | 3/3 |" in md
    assert f"- {exp.runs[1].run_dir.name}: {failed}" in md.split("⚠ failed sanity checks")[1]
    assert exp.runs[0].run_dir.name + ":" not in md and "other" not in md  # only the check that failed, where
    rows = list(csv.reader(paths["csv"].read_text().splitlines()))
    assert rows[1][2:7] == ["natural", "Natural", "86.0", "6.5574", "3"]
    assert rows[2][4:7] == ["50.0", "10.0", "3"]


# --- The robust <= clean check sees the raw hits -----------------------------------------------------------


def test_robust_check_flags_a_hit_on_a_misclassified_image():
    clean = torch.tensor([True, False, True, False])
    assert robust_within_clean(clean, torch.tensor([True, False, False, False]))[0]
    passed, detail = robust_within_clean(clean, torch.tensor([True, True, False, False]))
    assert not passed and "1 of them wrong on the clean image" in detail


class FirstCoordinates(nn.Module):
    """Class = argmax of the first num_classes coordinates of a vector."""

    def forward(self, x):
        return x[:, :3]


def test_evaluation_fails_an_attack_that_fixes_misclassified_points(monkeypatch):
    """An attack that moves a misclassified point to its class's prototype is caught, although the robust
    accuracy (hits combined with the clean mask) can never exceed the clean one."""
    def cheating(s, model, *, num_classes, seed, device, box):
        return lambda x, y, clean=None: nn.functional.one_hot(y, x.shape[1]).float()

    monkeypatch.setattr(classification_module, "build_attack", cheating)
    x = torch.eye(3).repeat(4, 1)  # 12 points, x = one-hot(i % 3)
    y = torch.arange(12) % 3
    y[:4] = (y[:4] + 1) % 3  # the first 4 are misclassified
    result = classify(FirstCoordinates(), x, y, ["fgsm_linf@0.1"], num_classes=3)
    failed = {c["check"]: c["detail"] for c in result["sanity"] if not c["passed"]}
    assert "robust <= clean: fgsm_linf@0.1" in failed, failed
    assert "4 of them wrong on the clean image" in failed["robust <= clean: fgsm_linf@0.1"]
    assert result["accuracy"]["fgsm_linf@0.1"] == result["accuracy"][NATURAL] == 8 / 12


def test_evaluation_attacks_with_the_same_examples_whatever_ran_before(trained_run, monkeypatch):
    """torchattacks' PGD draws its random start from torch's global generator: the evaluation seeds it around every
    attack (and restores the caller's state), so two evaluations, with the columns in another order and after other
    draws from the global generator, attack with the very same examples."""
    loaded = _patched_loader(locate(trained_run), device=torch.device("cpu"))
    x, y = loaded.x[:32], loaded.y[:32]
    real, recorded = classification_module.build_attack, {}

    def recording(s, model, **kw):
        attack = real(s, model, **kw)

        def run(xb, yb, clean=None):
            recorded.setdefault(s.label, []).append(attack(xb, yb, clean=clean))
            return recorded[s.label][-1]
        return run

    monkeypatch.setattr(classification_module, "build_attack", recording)
    columns, runs = ["pgd10_linf@8/255", "pgd10_l2@0.5"], []
    for order, seed in ((columns, 1), (columns[::-1], 2)):
        recorded.clear()
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        classify(loaded.model, x, y, order, num_classes=4, batch_size=16)
        assert torch.equal(torch.get_rng_state(), state)
        runs.append(dict(recorded))
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) == 5  # 2 columns, 2 with twice the steps, 1 large
    for label, batches in runs[0].items():
        assert all(torch.equal(a, b) for a, b in zip(batches, runs[1][label], strict=True)), label


# --- The checks must be able to fail: crafted attacks that each one has to flag ----------------------------------


def _crafted(monkeypatch, make):
    """build_attack replaced by ``make(spec) -> (x, y) -> x_adv`` (the evaluation's own checks stay)."""
    def build(s, model, *, num_classes, seed, device, box):
        attack = make(s)
        return lambda x, y, clean=None: attack(x, y)

    monkeypatch.setattr(classification_module, "build_attack", build)


def _failed(result) -> dict[str, str]:
    return {c["check"]: c["detail"] for c in result["sanity"] if not c["passed"]}


MARGIN = 0.05  # FirstCoordinates' inputs: x = MARGIN one-hot(y), classified correctly by a margin MARGIN


def _break(x, y, eps):
    """The ℓ∞ move of size eps (> MARGIN) that makes FirstCoordinates pick class y + 1: every point wrong."""
    k = x.shape[1]
    return x + eps * (nn.functional.one_hot((y + 1) % 3, k) - nn.functional.one_hot(y, k)).float()


def _vectors(n=12):
    y = torch.arange(n) % 3
    return MARGIN * nn.functional.one_hot(y, 3).float(), y


@pytest.mark.parametrize(("images", "bad_move", "needle"), [
    (False, lambda x, eps: x + 2 * eps, "largest perturbation 0.2"),  # over the ℓ∞ budget 0.1
    (True, lambda x, eps: x + eps, "largest perturbation 0.1"),  # within budget, but out of [0, 1]
], ids=["over_budget", "out_of_box"])
def test_within_budget_check_fails_a_perturbation_over_budget_or_out_of_the_box(monkeypatch, images, bad_move,
                                                                                 needle):
    x, y = _vectors()
    model = FirstCoordinates()
    if images:  # (N, 1, 1, 3) images with pixels at 0.95 and 1.0: a move of +0.1 leaves [0, 1]
        x, model = (0.95 + x).view(-1, 1, 1, 3), nn.Sequential(nn.Flatten(), FirstCoordinates())
    _crafted(monkeypatch, lambda s: (lambda xb, yb: bad_move(xb, s.eps) if s.eps == 0.1 else xb))
    result = classify(model, x, y, ["fgsm_linf@0.1"], num_classes=3)
    failed = _failed(result)
    assert needle in failed["within budget and [0, 1]: fgsm_linf@0.1"] and not result["sanity_passed"]
    # the honest control: the same evaluation with an attack that stays in budget and box passes that check
    _crafted(monkeypatch, lambda s: (lambda xb, yb: xb))
    assert "within budget and [0, 1]: fgsm_linf@0.1" not in _failed(
        classify(model, x, y, ["fgsm_linf@0.1"], num_classes=3))


def test_within_budget_check_of_segmentation_fails_a_perturbation_over_budget(monkeypatch):
    """The check with segmentation's scorer, its attack replaced by a move of twice the budget."""
    from samat.empirical.evaluation import segmentation

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 100, (4, 1, 6, 6), dtype=torch.uint8, generator=g)  # pixels <= 0.4: +0.2 stays in [0, 1]
    y = torch.randint(0, 3, (4, 6, 6), generator=g)
    sizes = torch.tensor([[6, 6]] * 4)
    model = nn.Conv2d(1, 3, 1)
    monkeypatch.setattr(segmentation, "build_attack", lambda s, model, **kw: (lambda x, y: x + min(2 * s.eps, 0.2)))
    scorer = segmentation.Confusions(model, x, y, sizes, num_classes=3, seed=0)
    result = evaluate(scorer, column_specs(["fgsm_linf@0.1"]))
    assert not {c["check"]: c["passed"] for c in result["sanity"]}["within budget and [0, 1]: fgsm_linf@0.1"]
    assert result["attacks"]["fgsm_linf@0.1"]["max_perturbation"] == pytest.approx(0.2, rel=1e-6)


def test_exceeds_is_a_paired_test_in_one_direction():
    """b exceeds a when (#b-only - #a-only) > 2 √(#discordant): strictly, and never in the other direction."""
    def masks(only_stronger, only_weaker, both=3):
        weaker = torch.tensor([False] * only_stronger + [True] * only_weaker + [True] * both)
        stronger = torch.tensor([True] * only_stronger + [False] * only_weaker + [True] * both)
        return weaker, stronger

    for only_s, only_w, expected in [(5, 0, True), (4, 0, False), (10, 1, True), (9, 3, False), (0, 0, False),
                                     (0, 10, False), (3, 3, False), (30, 12, True)]:
        found = exceeds(*masks(only_s, only_w))
        assert found.exceeds is expected, (only_s, only_w)
        assert (found.only_stronger, found.only_weaker) == (only_s, only_w)
    # 5 - 0 > 2 √5 = 4.47 and 4 - 0 = 2 √4; 10 - 1 = 9 > 2 √11 = 6.63, 9 - 3 = 6 <= 2 √12 = 6.93;
    # 30 - 12 = 18 > 2 √42 = 12.96: the expectations above, from the formula.


@pytest.mark.parametrize("direction", ["flagged", "honest"])
def test_more_steps_check_flags_a_stronger_pgd_that_leaves_more_images_correct(monkeypatch, direction):
    """PGD-10 breaks all 12 points; its sanity twin PGD-20 breaks none ("flagged") or all ("honest")."""
    x, y = _vectors()
    _crafted(monkeypatch, lambda s: (lambda xb, yb: _break(xb, yb, s.eps)
                                     if s.steps == 10 or direction == "honest" else xb))
    result = classify(FirstCoordinates(), x, y, ["pgd10_linf@0.1"], num_classes=3)
    name = "more PGD steps are not weaker: pgd10_linf@0.1 vs 20 steps"
    assert name in {c["check"] for c in result["sanity"]}
    if direction == "flagged":
        assert _failed(result)[name] == "12 images survive only the stronger attack, 0 only the weaker"
    else:
        assert name not in _failed(result)


@pytest.mark.parametrize("direction", ["flagged", "honest"])
def test_accuracy_against_eps_check_flags_a_larger_budget_that_leaves_more_images_correct(monkeypatch, direction):
    """FGSM at ε = 0.1 breaks every point; at ε = 0.2 it breaks none ("flagged") or every one ("honest")."""
    x, y = _vectors()
    _crafted(monkeypatch, lambda s: (lambda xb, yb: _break(xb, yb, 0.1)
                                     if s.eps == 0.1 or (direction == "honest" and s.eps == 0.2) else xb))
    result = classify(FirstCoordinates(), x, y, ["fgsm_linf@0.2", "fgsm_linf@0.1"], num_classes=3)
    name = f"{FAMILY_CHECK}: fgsm_linf@0.1 -> fgsm_linf@0.2"
    assert name in {c["check"] for c in result["sanity"]}
    if direction == "flagged":
        assert _failed(result)[name] == "12 images survive only the stronger attack, 0 only the weaker"
    else:
        assert name not in _failed(result)


# --- Extending an evaluation ---------------------------------------------------------------------------------


def test_extending_an_evaluation_recomputes_the_checks_across_columns(trained_run, monkeypatch):
    """@2/255, then @8/255, then @4/255: the checks are those of one evaluation of all three, each once."""
    monkeypatch.setattr("samat.empirical.evaluation.run.load_trained", _patched_loader)
    columns = ["pgd10_linf@2/255", "pgd10_linf@8/255", "pgd10_linf@4/255"]
    for k in range(1, 4):
        evaluate_path(trained_run, columns[:k], n_eval=64, seed=0, overwrite=k == 1, progress=False,
                      log=lambda m: None)
    stepwise = json.loads((trained_run / "eval.json").read_text())
    loaded = _patched_loader(locate(trained_run), device=torch.device("cpu"))
    idx = eval_indices(len(loaded.y), 64, 0)
    at_once = classify(loaded.model, loaded.x[idx], loaded.y[idx], columns, num_classes=4)
    names = [c["check"] for c in stepwise["sanity"]]
    assert len(names) == len(set(names))  # replaced by name, never appended twice
    assert sorted(names) == sorted(c["check"] for c in at_once["sanity"])
    assert [n for n in names if n.startswith(FAMILY_CHECK)] == [
        f"{FAMILY_CHECK}: pgd10_linf@2/255 -> pgd10_linf@4/255",
        f"{FAMILY_CHECK}: pgd10_linf@4/255 -> pgd10_linf@8/255"]
    assert sum("large attack" in n for n in names) == 1
    verdicts = [{c["check"]: (c["passed"], c["detail"]) for c in r["sanity"]} for r in (stepwise, at_once)]
    assert verdicts[0] == verdicts[1]
    assert stepwise["accuracy"] == at_once["accuracy"] and stepwise["correct"] == at_once["correct"]
    assert stepwise["columns"] == columns


def test_a_complete_evaluation_loads_nothing(trained_run, monkeypatch):
    monkeypatch.setattr("samat.empirical.evaluation.run.load_trained", _patched_loader)
    first = evaluate_path(trained_run, CHEAP[:2], n_eval=64, seed=0, overwrite=True, progress=False,
                          log=lambda m: None)

    def refuse(*args, **kwargs):
        raise AssertionError("load_trained called for a complete evaluation")

    monkeypatch.setattr("samat.empirical.evaluation.run.load_trained", refuse)
    logged = []
    assert evaluate_path(trained_run, CHEAP[1:2], n_eval=64, seed=0, progress=False, log=logged.append) == first
    assert "already evaluated" in logged[0]


def test_corrupt_eval_json_is_one_line(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.pt", "config.json"):
        (run / name).write_bytes((trained_run / name).read_bytes())
    for text in ("{not json", "[1, 2]", '{"accuracy": {"natural": "high"}, "sanity": []}'):
        (run / "eval.json").write_text(text)
        assert main(["eval", str(run), "--model", "small_cnn", "--dataset", "tiny", "--attacks", "fgsm_linf",
                     "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "eval.json" in err and "--overwrite" in err, err


# --- Bad input is refused before any work ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("gaussian") / "run"
    cfg = tiny_cfg(epochs=1).replace(dataset="gaussian", model="linear", gaussian={"n": 4, "train_size": 64,
                                                                                 "test_size": 64})
    train(cfg, run)
    return run


@pytest.mark.parametrize("column", ["autoattack_l2", "stadv", "pixle", "fab_l2"])
def test_image_attacks_on_vectors_are_refused_before_attacking(gaussian_run, monkeypatch, column):
    def no_attack(*args, **kwargs):
        raise AssertionError("an attack was built before the columns were checked against the data")

    monkeypatch.setattr("samat.empirical.evaluation.classification.build_attack", no_attack)
    with pytest.raises(ParameterError, match=f"attack={column} is invalid.*vector data"):
        evaluate_path(gaussian_run, ["fgsm_linf@0.1", column], n_eval=16, progress=False, log=lambda m: None)
    with pytest.raises(SamatError, match="--crosscheck"):
        evaluate_path(gaussian_run, ["fgsm_linf@0.1"], n_eval=16, crosscheck=True, progress=False,
                      log=lambda m: None)
    assert not (gaussian_run / "eval.json").exists()


GRID = 'name = "g"\nseeds = [0]\ncolumns = ["natural", "pgd10_linf@0.1"]'


@pytest.mark.parametrize(("experiment", "runs", "needle"), [
    ('tables = [ { columns = ["natural"] } ]', SGD_RUN, "tables[1].title must be a non-empty string"),
    ('tables = "T"', SGD_RUN, "[experiment] tables must be a list of tables"),
    ('tables = [ { title = "T", columns = "natural" } ]', SGD_RUN, "tables[1].columns must be a list"),
    ('tables = [ { title = "T" } ]', SGD_RUN + '[run.paper.T]\nnatural = "high"\n',
     "run 'SGD' paper.'T'.'natural' must be a number (percent), not 'high'"),
    ('tables = [ { title = "T" } ]', SGD_RUN + "paper = 3\n", "run 'SGD' paper must be tables of numbers"),
    ("seeds = 3", SGD_RUN, "[experiment] seeds must be a non-empty list of integers"),
    ('seeds = [0]\nn_eval = "lots"', SGD_RUN, "n_eval=lots is invalid: n_eval must be an integer >= 1"),
    ("eval_seed = -1", SGD_RUN, "eval_seed=-1 is invalid"),
    ('columns = ["natural", "pgd10_bogus"]', SGD_RUN, "attack=pgd10_bogus is invalid"),
    ('columns = ["natural", "stadv"]', SGD_RUN, "column 'stadv' attacks images, but run 'SGD' trains on vectors"),
    ("", '[run]\nlabel = "SGD"\n', "run must be a list of [[run]] tables"),
    ("", "[[run]]\nmethod = 'sgd'\n", "every [[run]] needs a label"),
])
@pytest.mark.parametrize("command", ["status", "run", "report"])
def test_malformed_experiment_is_one_line_before_any_work(tmp_path, capsys, experiment, runs, needle, command):
    config = write_grid(tmp_path, experiment, runs)
    out = tmp_path / "report"
    args = ["experiment", command, str(config), "--runs-dir", str(tmp_path / "runs")]
    assert main(args + (["--out", str(out)] if command == "report" else [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"samat experiment {command}: error:") and needle in err, err
    assert not (tmp_path / "runs").exists() and not out.exists()  # nothing trained, nothing drawn


@pytest.mark.parametrize(("text", "needle"), [
    ("run = 3\n[experiment]\nseeds = [0]\n", "run must be a list of [[run]] tables"),
    ("experiment = 3\n[[run]]\nlabel = 'SGD'\n", "[experiment] must be a table"),
    ("[base]\nepochs = 1\n[base]\n", "is not valid TOML"),
])
def test_malformed_toml_structure_is_one_line(tmp_path, capsys, text, needle):
    config = tmp_path / "grid.toml"
    config.write_text(text)
    assert main(["experiment", "status", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err


def test_unreadable_run_files_make_the_report_fail_in_one_line_before_plotting(tmp_path, capsys):
    config = write_grid(tmp_path, GRID)
    exp = load_experiment(config, runs_dir=tmp_path / "runs")
    run = exp.runs[0].run_dir
    run.mkdir(parents=True)
    summary = dumps({"test_acc": 0.9, "provenance": {"inputs": {"config": exp.runs[0].config.identity()}}})
    for final, evaluation, needle in ((summary, "{oops", "eval.json is not valid JSON"),
                                      ("{oops", None, "final.json is corrupt"),
                                      ("{}", None, "final.json is corrupt")):
        (run / "final.json").write_text(final)
        if evaluation is not None:
            (run / "eval.json").write_text(evaluation)
        elif (run / "eval.json").exists():
            (run / "eval.json").unlink()
        out = tmp_path / "report"
        assert main(["experiment", "report", str(config), "--runs-dir", str(tmp_path / "runs"), "--out",
                     str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
        assert not (out / "curves.png").exists()


@pytest.mark.parametrize(("survivors", "passes"), [(3, True), (4, False), (6, False)])
def test_large_attack_check_needs_accuracy_strictly_below_chance(monkeypatch, survivors, passes):
    """12 points of 3 classes (chance 1/3 = 4 points): the large attack leaves ``survivors`` correct. 3 of 12 is
    below chance; exactly chance (4), or between chance and twice it (6), is what masked gradients look like."""
    x, y = _vectors()
    keep = torch.arange(len(y)) < survivors
    _crafted(monkeypatch, lambda s: (lambda xb, yb: torch.where(keep[:, None], xb, _break(xb, yb, 0.1))))
    result = classify(FirstCoordinates(), x, y, ["fgsm_linf@0.1"], num_classes=3)
    check = next(c for c in result["sanity"] if "large attack" in c["check"])
    assert check["passed"] is passes
    assert check["detail"] == f"{survivors / 12:.4f}"  # the accuracy it judged
    assert "below chance (0.333)" in check["check"]
    assert result["attacks"]["fgsm_linf@0.1"]["max_perturbation"] == pytest.approx(0.1, rel=1e-6)  # its record
    assert result["attacks"]["fgsm_linf@0.1"]["torch_threads"] == torch.get_num_threads()  # CPU floats depend on it


def test_accuracy_against_eps_compares_budgets_within_one_attack_and_norm(monkeypatch):
    """FGSM breaks every point at 0.1 and PGD-10 none at 0.2: two families, so no eps check spans them (one that
    did would flag PGD at 0.2 as stronger than FGSM at 0.1 yet leaving more points correct)."""
    x, y = _vectors()
    _crafted(monkeypatch, lambda s: (lambda xb, yb: _break(xb, yb, 0.1) if s.name.startswith("fgsm") else xb))
    result = classify(FirstCoordinates(), x, y, ["fgsm_linf@0.1", "pgd10_linf@0.2"], num_classes=3)
    assert not any(c["check"].startswith(FAMILY_CHECK) for c in result["sanity"])
