"""Segmentation's scorer piece by piece: the loss its attacks ascend, the paired comparison of two attacks (images
as the units), eval.json's part, the examples file, the progress bar and the defaults."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn
from tqdm import tqdm

from samat.core.errors import ParameterError
from samat.empirical.data import as_inputs
from samat.empirical.evaluation.columns import NATURAL, SANITY, column_specs
from samat.empirical.evaluation.evaluate import evaluate
from samat.empirical.evaluation.segmentation import (
    EXAMPLES,
    Confusions,
    miou_exceeds,
    summed_pixel_loss,
)
from samat.empirical.pixelwise import IGNORE_INDEX, confusion, logits_of

COLUMN = "pgd10_linf@8/255"


def _stack(*images: list[list[int]]) -> torch.Tensor:
    """Per-image confusion matrices (N, K, K) from rows [true class][predicted class]."""
    return torch.tensor(images, dtype=torch.int64)


def _scenes(n: int = 6, size: int = 8, k: int = 3, seed: int = 0):
    """n random images with masks (some pixels unlabelled); the second one is smaller and not square."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, k, (n, size, size), generator=g)
    y[:, 0, :2] = IGNORE_INDEX
    sizes = torch.tensor([[size, size]] * n)
    sizes[1] = torch.tensor([size - 2, size - 3])
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, k, 3, padding=1)).eval()
    return model, x, y, sizes


def test_the_attacks_ascend_the_cross_entropy_summed_over_the_labelled_pixels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    y = torch.randint(0, 3, (2, 4, 5), generator=g)
    y[0, 0] = IGNORE_INDEX
    exact = logits.double()  # the 35 labelled pixels' cross-entropy summed in float64
    by_hand = -sum(torch.log_softmax(exact[n, :, i, j], 0)[y[n, i, j]] for n in range(2) for i in range(4)
                   for j in range(5) if y[n, i, j] != IGNORE_INDEX)
    loss = summed_pixel_loss(logits, y)
    assert loss.dtype == torch.float32  # float32 per pixel: 35 roundings of 2^-24 relative at most, within 1e-5
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


# Ten images of 4 pixels, 3 of class 0 and 1 of class 1; each scores 3/4 under both attacks (all ties), and the sum
# over the images has mIoU (20/30 + 10/20) / 2 = 7/12 under the first and (30/40 + 0/10) / 2 = 3/8 under the second.
TIED_HIGH = _stack(*[[[2, 1], [0, 1]]] * 10)
TIED_LOW = _stack(*[[[3, 0], [1, 0]]] * 10)
# Ten images of 10 pixels of class 0: one error each, or nine right and one all wrong (the same sum: equal mIoU).
ONE_ERROR_EACH = _stack(*[[[9, 1], [0, 0]]] * 10)
NINE_RIGHT_ONE_WRONG = _stack(*[[[10, 0], [0, 0]]] * 9, [[0, 10], [0, 0]])
ALL_RIGHT = _stack(*[[[10, 0], [0, 0]]] * 10)


def test_a_higher_miou_is_not_evidence_when_every_image_scores_the_same():
    """Ties say nothing: the paired sign test counts only images that score higher or lower."""
    assert miou_exceeds(TIED_LOW, TIED_HIGH) == (
        False, "mIoU +20.83 points; 0 images score higher under the stronger attack, 0 lower")


def test_more_images_scoring_higher_is_not_enough_without_a_higher_miou():
    """9 images higher, 1 lower is beyond noise (9 - 1 > 2 √10), but the mIoU is the same to the last pixel."""
    assert miou_exceeds(ONE_ERROR_EACH, NINE_RIGHT_ONE_WRONG) == (
        False, "mIoU +0.00 points; 9 images score higher under the stronger attack, 1 lower")


def test_a_higher_miou_with_more_images_scoring_higher_beyond_noise_exceeds():
    # mIoU (9/10 + 0) / 2 = 0.45 -> 1 (class 1 absent from truth and prediction): +55 points; 10 - 0 > 2 √10
    assert miou_exceeds(ONE_ERROR_EACH, ALL_RIGHT) == (
        True, "mIoU +55.00 points; 10 images score higher under the stronger attack, 0 lower")
    assert miou_exceeds(ALL_RIGHT, ONE_ERROR_EACH)[0] is False  # one direction only


def test_the_scorers_comparisons_are_the_paired_ones():
    model, x, y, sizes = _scenes(n=10, size=2, k=2)
    scorer = Confusions(model, x, y, sizes, num_classes=2, seed=0)
    assert scorer.exceeds(ONE_ERROR_EACH, ALL_RIGHT) == miou_exceeds(ONE_ERROR_EACH, ALL_RIGHT)
    assert scorer.exceeds(ALL_RIGHT, ONE_ERROR_EACH) == miou_exceeds(ALL_RIGHT, ONE_ERROR_EACH)
    scorer.natural = ONE_ERROR_EACH  # what clean() measured
    assert scorer.within_clean(ONE_ERROR_EACH) == (
        True, "mIoU +0.00 points; 0 images score higher under the stronger attack, 0 lower")
    assert scorer.within_clean(ALL_RIGHT) == (  # an attack that leaves a higher mIoU than no attack at all
        False, "mIoU +55.00 points; 10 images score higher under the stronger attack, 0 lower")


def test_eval_jsons_part_is_each_columns_miou_pixel_accuracy_iou_and_summed_confusion():
    model, x, y, sizes = _scenes(n=2, k=3)
    scorer = Confusions(model, x, y, sizes, num_classes=3, class_names=("sky", "road", "car"), seed=0)
    attacked = _stack([[2, 1, 0], [0, 3, 0], [0, 0, 0]], [[1, 0, 0], [1, 2, 0], [0, 0, 0]])  # car absent
    record = scorer.record({NATURAL: attacked, COLUMN: torch.zeros(2, 3, 3, dtype=torch.int64)})
    assert list(record) == ["classes", "miou", "accuracy", "iou", "confusion"]
    assert record["classes"] == ["sky", "road", "car"]
    # the sum [[3, 1, 0], [1, 5, 0], [0, 0, 0]]: IoU 3 / (4 + 4 - 3) = 3/5, 5 / (6 + 6 - 5) = 5/7; 8 of 10 right
    assert record["miou"] == {NATURAL: pytest.approx((3 / 5 + 5 / 7) / 2, rel=1e-15), COLUMN: 0.0}
    assert record["accuracy"] == {NATURAL: pytest.approx(0.8, rel=1e-15), COLUMN: 0.0}
    assert record["iou"][NATURAL][:2] == pytest.approx([3 / 5, 5 / 7], rel=1e-15)
    assert record["iou"][NATURAL][2] is None and record["iou"][COLUMN] == [None, None, None]  # JSON has no NaN
    assert record["confusion"] == {NATURAL: [[3, 1, 0], [1, 5, 0], [0, 0, 0]], COLUMN: [[0] * 3] * 3}


def _examples(scorer: Confusions) -> dict[str, np.ndarray]:
    buffer = io.BytesIO()
    scorer.attachments()["examples.npz"](buffer)
    buffer.seek(0)
    return dict(np.load(buffer))


def _predictions(model: nn.Module, x: torch.Tensor, sizes: torch.Tensor) -> np.ndarray:
    """The clean predictions by hand, image by image at its own size, 255 outside it."""
    out = np.full((len(x), *x.shape[2:]), 255, dtype=np.uint8)
    for i, (h, w) in enumerate(sizes[:len(x)].tolist()):
        out[i, :h, :w] = logits_of(model(as_inputs(x[i:i + 1, :, :h, :w]))).argmax(1)[0].numpy()
    return out


def test_the_examples_file_holds_the_first_images_masks_sizes_and_every_columns_predictions():
    model, x, y, sizes = _scenes(n=6)
    scorer = Confusions(model, x, y, sizes, num_classes=3, class_names=("a", "b", "c"), seed=0, batch_size=2)
    scorer.clean()
    attacked = scorer.attack(COLUMN, column_specs([COLUMN])[COLUMN])
    scorer.attack(COLUMN + SANITY, column_specs([COLUMN])[COLUMN])  # the sanity attacks are not drawn
    examples = _examples(scorer)
    assert set(examples) == {"classes", "images", "masks", "sizes", f"pred:{NATURAL}", f"pred:{COLUMN}"}
    assert examples["classes"].tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(examples["images"], x[:EXAMPLES].numpy())
    np.testing.assert_array_equal(examples["masks"], y[:EXAMPLES].numpy())
    np.testing.assert_array_equal(examples["sizes"], sizes[:EXAMPLES].numpy())
    with torch.no_grad():
        np.testing.assert_array_equal(examples[f"pred:{NATURAL}"], _predictions(model, x[:EXAMPLES], sizes))
    under_attack = examples[f"pred:{COLUMN}"]
    assert under_attack.dtype == np.uint8 and under_attack.shape == (EXAMPLES, 8, 8)
    for i, (h, w) in enumerate(sizes[:EXAMPLES].tolist()):  # the predictions the outcome counted, 255 outside
        pred = torch.from_numpy(under_attack[i, :h, :w]).long()
        assert torch.equal(confusion(pred[None], y[i:i + 1, :h, :w], 3)[0], attacked.outcome[i])
        assert (under_attack[i, h:] == 255).all() and (under_attack[i, :, w:] == 255).all()
    assert not np.array_equal(under_attack, examples[f"pred:{NATURAL}"])  # the attack moved some predictions


def test_the_evaluation_says_the_masking_checks_threshold_and_checks_the_box():
    model, x, y, sizes = _scenes(n=4)
    result = evaluate(Confusions(model, x, y, sizes, num_classes=3, seed=0), column_specs([COLUMN]))
    assert result["attacks"][COLUMN]["in_box"] is True and result["attacks"][COLUMN]["within_budget"] is True
    names = [c["check"] for c in result["sanity"]]
    assert any(n.startswith("a large attack") and n.endswith("drives mIoU below 1/K (0.333)") for n in names), names
    with pytest.raises(ParameterError) as err:
        evaluate(Confusions(model, x, y, sizes, num_classes=3, seed=0), column_specs(["stadv"]))
    assert str(err.value).endswith("must be fgsm or pgd for a segmentation model (attacks on its per-pixel loss)")


def test_a_progress_bar_per_column_only_when_asked_and_cleared_when_done(capsys, monkeypatch):
    monkeypatch.setattr(tqdm, "monitor_interval", 0)  # no monitor thread left behind by the bar
    model, x, y, sizes = _scenes(n=4)
    s = column_specs([COLUMN])[COLUMN]
    quiet = Confusions(model, x, y, sizes, num_classes=3, seed=0)  # the default: no bar
    quiet.clean()
    quiet.attack(COLUMN, s)
    assert capsys.readouterr().err == ""
    shown = Confusions(model, x, y, sizes, num_classes=3, seed=0, progress=True)
    shown.clean()
    shown.attack(COLUMN, s)
    err = capsys.readouterr().err
    assert f"{COLUMN}: " in err and ("batch/s" in err or "s/batch" in err)  # the column's name, in batches
    assert err.endswith("\r") and "\n" not in err  # cleared, not left behind


def test_by_default_the_images_are_attacked_32_at_a_time():
    """Each batch's random start is drawn from the evaluation's seed, so the batches show in the outcome."""
    model, x, y, sizes = _scenes(n=40, size=4)
    s = column_specs(["pgd10_linf@32/255"])["pgd10_linf@32/255"]

    def outcome(**batch) -> torch.Tensor:
        scorer = Confusions(model, x, y, sizes, num_classes=3, seed=0, **batch)
        scorer.clean()
        return scorer.attack("pgd10_linf@32/255", s).outcome

    default = outcome()
    assert torch.equal(default, outcome(batch_size=32))
    assert not torch.equal(default, outcome(batch_size=33))  # the test can tell batches apart
