"""Segmentation training and evaluation: a schedule counted in iterations with polynomial decay, exact resume of an
iteration-counted run, PGD on the per-pixel loss within its budget and lowering mIoU on a trained model, and the
segmentation demo's pipeline (train, attack, tabulate, draw) on a tiny setting."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samat.core.errors import ParameterError, SamatError
from samat.empirical.attacks.meter import norm_tolerance
from samat.empirical.data import IGNORE_INDEX, SegmentationDataset
from samat.empirical.evaluation.columns import column_specs
from samat.empirical.evaluation.evaluate import evaluate
from samat.empirical.evaluation.segmentation import Confusions
from samat.empirical.models import build_model
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.loop import train
from samat.empirical.training.runs import RunDir
from samat.empirical.training.setup import build
from samat.empirical.training.steps import STEPS
from samat.empirical.vocabulary import Norm
from tests.empirical.data.helpers import write_fashion
from tests.empirical.helpers import tiny_images
from tests.empirical.training.test_fast import CAPTURE_FAILED, ERROR_RATIO, assert_fell_back, simulate_a_failing_capture

SEG = {"width": 0.5, "aspp_channels": 8, "atrous_rates": [1, 2], "output_stride": 8}  # dropout 0.1 stays on


def tiny_segmentation(n_train: int = 64, n_test: int = 16, size: int = 32, seed: int = 0) -> SegmentationDataset:
    """Grey images with a bright square (class 1) and a dim bar (class 2) on dark noise (class 0), each a few
    cells of the network's output stride 8 wide; the last row of each mask is unlabelled."""
    g = torch.Generator().manual_seed(seed)
    side, bar = size // 2, size // 4

    def split(n):
        x = torch.randint(0, 60, (n, 1, size, size), generator=g, dtype=torch.uint8)
        y = torch.zeros(n, size, size, dtype=torch.uint8)
        for i in range(n):
            r, c = torch.randint(0, size - side + 1, (2,), generator=g).tolist()
            x[i, 0, r:r + side, c:c + side] += 180
            y[i, r:r + side, c:c + side] = 1
            col = int(torch.randint(0, size - bar + 1, (1,), generator=g))
            x[i, 0, :, col:col + bar] = 110
            y[i, :, col:col + bar] = 2
        y[:, -1] = IGNORE_INDEX
        return x, y

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return SegmentationDataset("tiny_seg", xtr, ytr, xte, yte, 3, (0.3,), (0.3,), "scale_crop_flip",
                               class_names=("dark", "square", "bar"), scale=(0.75, 1.25))


def seg_cfg(**kw) -> TrainConfig:
    base = dict(dataset="tiny_seg", model="deeplabv3_small", iterations=6, eval_every=2, batch_size=8, lr=0.05,
                lr_schedule="poly", weight_decay=1e-4, at_eps=8 / 255, at_steps=2, segmentation=SEG)
    return TrainConfig.from_dict(base | kw)


@pytest.mark.parametrize("method", ["sgd", "adam", "sam", "asam", "esam", "pgd_at"])
def test_an_interrupted_iteration_counted_run_resumes_to_the_same_weights(tmp_path, method):
    data = tiny_segmentation()
    cfg = seg_cfg(method=method)
    straight = train(cfg, tmp_path / "straight", progress=False, data=data)
    partial = train(cfg, tmp_path / "resumed", progress=False, stop_after=1, data=data)
    assert partial["status"] == "partial" and RunDir(tmp_path / "resumed").status() == "partial"
    resumed = train(cfg, tmp_path / "resumed", resume=True, progress=False, data=data)
    a, b = torch.load(tmp_path / "straight" / "model.pt"), torch.load(tmp_path / "resumed" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight["test_miou"] == resumed["test_miou"] and straight["iterations"] == 6
    rows = RunDir(tmp_path / "resumed").read_metrics()
    assert [(r["round"], r["step"]) for r in rows] == [(1, 2), (2, 4), (3, 6)]
    assert all(0 <= r["test_miou"] <= 1 and 0 <= r["train_acc"] <= 1 for r in rows)
    final = json.loads((tmp_path / "resumed" / "final.json").read_text())
    assert final["test_miou"] == resumed["test_miou"] and final["epochs"] is None


def test_polynomial_decay_is_set_every_iteration(tmp_path, monkeypatch):
    seen, sgd = [], STEPS["sgd"]

    def recording_step(ctx, x, y, gen):
        seen.append(ctx.optimizer.param_groups[0]["lr"])
        return sgd(ctx, x, y, gen)

    monkeypatch.setitem(STEPS, "sgd", recording_step)
    train(seg_cfg(lr_power=0.9), tmp_path / "run", progress=False, data=tiny_segmentation())
    # lr (1 - t)^0.9 at t = i / 6: one float64 power apart from this expression at most
    assert seen == pytest.approx([0.05 * (1 - i / 6) ** 0.9 for i in range(6)], rel=1e-12)


def test_a_segmentation_network_and_data_must_match(tmp_path):
    with pytest.raises(ParameterError, match="model=small_cnn is invalid: .* network for tiny_seg"):
        train(seg_cfg(model="small_cnn", segmentation={}), tmp_path / "a", progress=False, data=tiny_segmentation())
    with pytest.raises(ParameterError, match="model=deeplabv3_small is invalid: .* network for tiny"):
        train(seg_cfg(), tmp_path / "b", progress=False, data=tiny_images())
    with pytest.raises(ParameterError, match="model=small_cnn is invalid: model must be one of deeplabv3"):
        TrainConfig(dataset="voc2012", model="small_cnn")
    with pytest.raises(ParameterError, match="eval_every=4 is invalid: eval_every must be a divisor of iterations"):
        seg_cfg(eval_every=4)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small DeepLab trained on the tiny images (120 iterations, seconds on a CPU)."""
    data = tiny_segmentation(n_train=128, n_test=24)
    cfg = seg_cfg(iterations=120, eval_every=60, batch_size=16, lr=0.1)
    summary = train(cfg, tmp_path_factory.mktemp("seg") / "run", progress=False, data=data)
    model = build_model("deeplabv3_small", input_shape=(1, 32, 32), num_classes=3, mean=data.mean, std=data.std,
                        options=cfg.segmentation_spec.model_options)
    model.load_state_dict(torch.load(tmp_path_factory.getbasetemp() / "seg0" / "run" / "model.pt"))
    return model.eval(), data, summary


def test_pgd_on_the_per_pixel_loss_respects_its_budget_and_lowers_miou(trained):
    model, data, summary = trained
    assert summary["test_miou"] > 0.5  # it learned the task
    columns = ["pgd10_linf@4/255", "pgd10_linf@8/255", "pgd10_l2@1"]
    scorer = Confusions(model, data.test_x, data.test_y, data.test_sizes, num_classes=3,
                        class_names=data.class_names, seed=0, batch_size=8)
    result = evaluate(scorer, column_specs(columns))
    buffer = io.BytesIO()
    scorer.attachments()["examples.npz"](buffer)
    buffer.seek(0)
    examples = dict(np.load(buffer))
    miou = result["miou"]
    assert miou["natural"] == pytest.approx(summary["test_miou"], rel=1e-12)  # the same images, the same count
    for column, norm, eps in (("pgd10_linf@8/255", Norm.LINF, 8 / 255), ("pgd10_l2@1", Norm.L2, 1.0)):
        attack = result["attacks"][column]
        assert miou[column] < miou["natural"]
        assert attack["within_budget"] and attack["in_box"]
        assert attack["max_perturbation"] <= eps + norm_tolerance(norm, eps, 32 * 32)
    assert len(result["iou"]["natural"]) == 3 and result["classes"] == ["dark", "square", "bar"]
    assert np.array(result["confusion"]["natural"]).sum() == int((data.test_y != IGNORE_INDEX).sum())
    names = [c["check"] for c in result["sanity"]]
    assert {"robust <= clean: pgd10_linf@8/255", "more PGD steps are not weaker: pgd10_l2@1 vs 20 steps",
            "within budget and [0, 1]: pgd10_l2@1",
            "mIoU does not increase with eps: pgd10_linf@4/255 -> pgd10_linf@8/255"} <= set(names)
    assert miou["pgd10_linf@8/255"] <= miou["pgd10_linf@4/255"]
    assert any(n.startswith("a large attack") for n in names) and result["sanity_passed"], result["sanity"]
    assert examples["pred:natural"].shape == (4, 32, 32) and examples["pred:pgd10_l2@1"].shape == (4, 32, 32)
    with pytest.raises(ParameterError, match="fgsm or pgd for a segmentation model"):
        evaluate(scorer, column_specs(["stadv"]))


def test_the_segmentation_demo_trains_attacks_tabulates_and_draws(tmp_path):
    from samat.cli.demo import _experiment

    write_fashion(tmp_path / "fashion", gz=True)
    tiny = {"data_dir": str(tmp_path / "fashion"), "train_subset": 32, "test_subset": 8, "iterations": 2,
            "eval_every": 1, "batch_size": 8, "segmentation": {"width": 0.25, "aspp_channels": 4}}
    table = _experiment(tmp_path / "demo", segmentation=True, overrides=tiny, n_eval=6)
    text = table.read_text()
    assert "mIoU in percent" in text and "| ST (SGD) |" in text and "PGD-10 ℓ2 1 |" in text
    folder = table.parent
    assert (folder / "examples.png").exists() and (folder / "curves.png").exists()
    doc = json.loads((folder / "table.json").read_text())
    rows = next(iter(doc["tables"].values()))
    assert [r["seeds_done"] for r in rows] == [1, 1, 1]
    runs = sorted((tmp_path / "demo" / "runs").glob("*/*/eval.json"))
    assert len(runs) == 3
    evaluation = json.loads(runs[0].read_text())
    assert evaluation["task"] == "segmentation" and len(evaluation["iou"]["natural"]) == 11
    assert (runs[0].parent / "examples.npz").exists()
    again = _experiment(tmp_path / "demo", segmentation=True, overrides=tiny, n_eval=6)  # finished parts are kept
    assert again.read_text() == text
    with pytest.raises(SamatError, match="mixes classification and segmentation"):
        bad = tmp_path / "mixed.toml"
        bad.write_text('[base]\ndataset = "fashion_scenes"\nmodel = "deeplabv3_small"\n[[run]]\nlabel = "a"\n'
                       '[[run]]\nlabel = "b"\ndataset = "fashion_mnist"\nmodel = "small_cnn"\n')
        from samat.empirical.experiments.grid import load_experiment

        load_experiment(bad)


@pytest.mark.gpu
def test_segmentation_trains_on_the_gpu_with_bf16_and_channels_last(tmp_path):
    data = tiny_segmentation()
    summary = train(seg_cfg(device="cuda", method="pgd_at"), tmp_path / "run", progress=False, data=data)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["provenance"]["bf16"] and config["provenance"]["channels_last"]
    assert np.isfinite(summary["train_loss"]) and 0 <= summary["test_miou"] <= 1


def test_a_failed_capture_puts_back_the_dropout_draws_of_its_warm_up(monkeypatch, tmp_path):
    """DeepLab's dropout draws from the default generator (the CPU's here, the device's on CUDA): the warm-up's
    draws are undone with the rest, so the run falls back onto a plain run's weights, bit for bit."""
    simulate_a_failing_capture(monkeypatch)
    assert_fell_back(tmp_path, seg_cfg(method="sgd"), tiny_segmentation(), CAPTURE_FAILED)


def _weights_distance(a: Path, b: Path) -> float:
    x, y = torch.load(a / "model.pt"), torch.load(b / "model.pt")
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x if x[k].is_floating_point())


@pytest.mark.gpu
def test_the_captures_warm_up_leaves_the_default_cuda_generator_as_an_eager_step_leaves_it():
    """Finding 6, exactly: after the first full batch (warm-up, capture, first replay) and a second one, DeepLab's
    dropout has drawn from the device's default generator what two eager steps draw, no more."""
    data = tiny_segmentation()
    states = []
    for graph in (False, True):
        setup = build(seg_cfg(method="sgd", device="cuda", compile=False, cuda_graph=graph), data)
        setup.model.train()
        setup.set_learning_rate(setup.cfg.learning_rate)
        gen = torch.Generator(device="cuda").manual_seed(0)
        batches = iter(setup.train_stream(gen))
        torch.manual_seed(0)  # the default generators, CUDA's included
        for _ in range(2):
            setup.step(setup.ctx, *next(batches), gen)
        assert setup.step_path == ("graph" if graph else "eager")
        states.append(torch.cuda.get_rng_state())
    assert torch.equal(*states)


@pytest.mark.gpu
def test_a_resumed_segmentation_run_on_the_graph_path_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """Resumed after its first round, a run captures its step again at the second round's first batch; the
    warm-up's dropout draws are undone, so it ends where an uninterrupted run ends. Two uninterrupted runs differ
    by the GPU's nondeterministic sums (atomic adds in the backward of the upsampling): the resumed run may differ
    from one of them by ERROR_RATIO times that (another order of the same sums, see test_fast.py), and a resumed run
    whose warm-up draws are not undone (the finding) must be further off than that."""
    data = tiny_segmentation()
    cfg = seg_cfg(method="sgd", device="cuda", compile=False)  # the graph path; bf16 and channels_last as default

    def resumed(folder: Path) -> Path:
        train(cfg, folder, progress=False, stop_after=1, data=data)
        train(cfg, folder, resume=True, progress=False, data=data)
        return folder

    for name in ("straight", "again"):
        train(cfg, tmp_path / name, progress=False, data=data)
    fixed = resumed(tmp_path / "resumed")
    with monkeypatch.context() as patch:  # the warm-up's draws left in place, as before the fix
        from samat.empirical.training import fast

        patch.setattr(fast.torch.cuda, "set_rng_state", lambda state, device=None: None)
        broken = resumed(tmp_path / "broken")
    noise = _weights_distance(tmp_path / "straight", tmp_path / "again")
    scale = max(float(t.abs().max()) for t in torch.load(tmp_path / "straight" / "model.pt").values()
                if t.is_floating_point())
    allowed = ERROR_RATIO * max(noise, 2.0**-24 * scale)
    assert RunDir(fixed).read_final()["step_path"] == "graph"
    assert _weights_distance(fixed, tmp_path / "straight") <= allowed
    assert _weights_distance(broken, tmp_path / "straight") > allowed  # the test can tell the finding apart


@pytest.mark.parametrize(("name", "table", "rows"), [("stanford_background", "D Table 8", 11),
                                                     ("voc2012", "D Table 9", 12)])
def test_the_papers_segmentation_grids_load_with_their_numbers(tmp_path, name, table, rows):
    from samat.empirical.experiments import catalog
    from samat.empirical.experiments.grid import load_experiment

    exp = load_experiment(catalog.resolve(name), runs_dir=tmp_path)
    assert len(exp.labels) == rows and exp.columns == ("natural", "pgd10_linf@1/255", "pgd10_l2@1")
    assert all(set(r.paper[table]) == set(exp.columns) for r in exp.runs)
    cfg = exp.runs_for("SGD")[0].config
    assert (cfg.iterations, cfg.lr, cfg.weight_decay, cfg.momentum, cfg.lr_schedule) == (30000, 0.01, 1e-4, 0.9, "poly")
    assert [r.config.rho for r in exp.runs if r.config.method == "sam"] == [0.01, 0.02, 0.03, 0.04, 0.05]
    assert exp.runs_for("SGD")[0].paper[table]["natural"] == {"D Table 8": 64.0, "D Table 9": 66.9}[table]
