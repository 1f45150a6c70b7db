"""mIoU (D eq. 15) against hand-computed cases (ignored pixels, classes absent from truth and prediction), per
image on a stack of matrices, mIoU as a score (0 without labelled pixels), the per-pixel loss and its reductions
(with an auxiliary head, with a single labelled pixel), a model's per-image confusions on stored images of several
sizes, and the paired "beyond noise" comparison of two attacks' mIoU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from samat.empirical.data import IGNORE_INDEX
from samat.empirical.evaluation.segmentation import miou_exceeds
from samat.empirical.pixelwise import (
    confusion,
    iou,
    logits_of,
    mean_iou,
    miou_score,
    pixel_accuracy,
    pixel_accuracy_sum,
    pixel_loss,
    predicted_confusion,
    size_batches,
)

IGN = IGNORE_INDEX


def test_miou_by_hand_with_an_ignored_pixel_and_an_absent_class():
    # 4 classes; class 3 is predicted only at the ignored pixel, so it is absent from truth and prediction.
    y = torch.tensor([[[0, 0, 1], [1, IGN, 2]]])
    pred = torch.tensor([[[0, 1, 1], [1, 3, 2]]])
    m = confusion(pred, y, 4).sum(0)
    assert m.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    # class 0: TP 1, FN 1, FP 0 -> 1/2; class 1: TP 2, FP 1 -> 2/3; class 2: 1/1; class 3: 0/0, left out
    per_class = iou(m)
    assert per_class[:3].tolist() == pytest.approx([1 / 2, 2 / 3, 1.0], rel=1e-15) and math.isnan(per_class[3])
    assert float(mean_iou(m)) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3, rel=1e-15)
    assert float(pixel_accuracy(m)) == 4 / 5  # 4 of the 5 labelled pixels right; the ignored one counts nowhere


def test_miou_as_a_score_is_the_mean_iou_and_zero_without_labelled_pixels():
    # IoU of class 0: 3 / (3 + 1 + 2) = 1/2, of class 1: 4 / (4 + 2 + 1) = 4/7
    assert miou_score(torch.tensor([[3, 1], [2, 4]])) == pytest.approx((1 / 2 + 4 / 7) / 2, rel=1e-15)
    score = miou_score(torch.zeros(3, 3, dtype=torch.int64))
    assert score == 0.0 and isinstance(score, float)


def test_pixel_accuracy_per_image_and_of_an_image_without_labelled_pixels():
    y = torch.tensor([[[0, 1], [1, 1]], [[IGN, IGN], [IGN, IGN]], [[2, 2], [IGN, 0]]])
    pred = torch.tensor([[[0, 0], [1, 1]], [[0, 1], [2, 0]], [[2, 1], [0, 1]]])
    per_image = pixel_accuracy(confusion(pred, y, 3))
    assert per_image.dtype == torch.float64 and per_image.tolist() == [3 / 4, 0.0, 1 / 3]


def test_a_class_only_predicted_counts_zero_and_nothing_labelled_is_nan():
    y = torch.tensor([[[0, 0], [0, 0]]])
    pred = torch.tensor([[[0, 0], [0, 2]]])
    m = confusion(pred, y, 3).sum(0)
    # class 0: TP 3, FN 1 -> 3/4; class 2: FP 1 -> 0 (it counts: it was predicted); class 1 absent
    assert float(mean_iou(m)) == pytest.approx((3 / 4 + 0) / 2, rel=1e-15)
    assert math.isnan(float(mean_iou(confusion(pred, torch.full_like(y, IGN), 3).sum(0))))


def test_per_image_confusions_are_counted_like_a_loop():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (3, 7, 9), generator=g)
    y[torch.rand(y.shape, generator=g) < 0.2] = IGN
    pred = torch.randint(0, 5, (3, 7, 9), generator=g)
    m = confusion(pred, y, 5)
    expected = torch.zeros(3, 5, 5, dtype=torch.int64)
    for n, t, p in zip(*torch.nonzero(y != IGN, as_tuple=True)[0:1], y[y != IGN], pred[y != IGN], strict=True):
        expected[n, t, p] += 1
    assert torch.equal(m, expected) and int(m.sum()) == int((y != IGN).sum())


def test_pixel_loss_reductions_and_the_ignore_label():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 3, 5, generator=g)
    y = torch.randint(0, 4, (2, 3, 5), generator=g)
    y[0, 0] = IGN
    torch.testing.assert_close(pixel_loss(logits, y), F.cross_entropy(logits, y, ignore_index=IGN))
    per_pixel = F.cross_entropy(logits, y, ignore_index=IGN, reduction="none")
    torch.testing.assert_close(pixel_loss(logits, y, "sum"), per_pixel.sum())
    expected = torch.stack([per_pixel[0].sum() / 10, per_pixel[1].sum() / 15])  # image 0 has 5 ignored pixels
    torch.testing.assert_close(pixel_loss(logits, y, "none"), expected)
    nothing = torch.full_like(y, IGN)
    assert pixel_loss(logits, nothing).item() == 0.0 and pixel_loss(logits, nothing, "none").tolist() == [0.0, 0.0]
    aux = torch.randn(2, 4, 3, 5, generator=g)
    torch.testing.assert_close(pixel_loss((logits, aux), y, aux_weight=0.5),
                               pixel_loss(logits, y) + 0.5 * pixel_loss(aux, y))
    hits = (logits.argmax(1) == y) & (y != IGN)
    expected_acc = hits[0].sum() / 10 + hits[1].sum() / 15
    torch.testing.assert_close(pixel_accuracy_sum(logits, y), expected_acc.float())


def _per_image(correct_fraction: list[float], pixels: int = 100, k: int = 2) -> torch.Tensor:
    """Per-image confusions of images of class 0 with the given fractions of pixels predicted right."""
    out = torch.zeros(len(correct_fraction), k, k, dtype=torch.int64)
    for n, f in enumerate(correct_fraction):
        right = round(f * pixels)
        out[n, 0, 0], out[n, 0, 1] = right, pixels - right
    return out


def test_the_paired_miou_comparison_flags_only_what_is_beyond_noise():
    same = _per_image([0.8, 0.6, 0.9, 0.7] * 5)
    assert not miou_exceeds(same, same)[0]
    weaker, stronger = _per_image([0.5] * 20), _per_image([0.6] * 20)
    assert miou_exceeds(weaker, stronger)[0] and not miou_exceeds(stronger, weaker)[0]
    # 12 images up and 8 down by one pixel: within the sign test's noise (12 - 8 <= 2 sqrt(20)), however many
    # pixels the images hold
    base = [0.5] * 20
    mixed = [0.51] * 12 + [0.49] * 8
    assert not miou_exceeds(_per_image(base), _per_image(mixed))[0]
    # 17 up, 3 down: beyond it (14 > 2 sqrt(20) = 8.9), and the mIoU rises
    assert miou_exceeds(_per_image(base), _per_image([0.51] * 17 + [0.49] * 3))[0]
    # many images up a little, a few down a lot: more images gain, but the mIoU falls, so nothing is flagged
    assert not miou_exceeds(_per_image(base), _per_image([0.51] * 17 + [0.1] * 3))[0]


def test_scores_of_a_stack_are_each_matrixs_own():
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 4, (3, 5, 6), generator=g)
    pred = torch.randint(0, 4, (3, 5, 6), generator=g)
    pred[1] = y[1]  # one image predicted perfectly: its IoU is 1 for each class it holds
    stack = confusion(pred, y, 4)
    for score in (iou, mean_iou, pixel_accuracy):
        torch.testing.assert_close(score(stack), torch.stack([score(m) for m in stack]), equal_nan=True, rtol=0,
                                   atol=0)
    assert float(mean_iou(stack[1])) == 1.0 and float(mean_iou(stack).max()) == 1.0


def test_the_loss_of_one_labelled_pixel_and_the_auxiliary_heads_reductions():
    """One labelled pixel: its own loss, not half of it; with auxiliary logits each reduction applies to both
    heads, and their weight is 0 unless given."""
    g = torch.Generator().manual_seed(3)
    logits, aux = torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 3, 2, 2, generator=g)
    y = torch.full((2, 2, 2), IGN)
    y[0, 1, 0] = 2
    alone = F.cross_entropy(logits[:1, :, 1, 0], torch.tensor([2]))
    torch.testing.assert_close(pixel_loss(logits, y), alone)
    torch.testing.assert_close(pixel_loss(logits, y, "none"), torch.stack([alone, torch.tensor(0.0)]))
    y[1] = torch.tensor([[0, 1], [IGN, 2]])
    for reduction in ("mean", "none", "sum"):
        torch.testing.assert_close(pixel_loss((logits, aux), y, reduction, aux_weight=0.4),
                                   pixel_loss(logits, y, reduction) + 0.4 * pixel_loss(aux, y, reduction))
        torch.testing.assert_close(pixel_loss((logits, aux), y, reduction), pixel_loss(logits, y, reduction))
    with pytest.raises(ValueError, match=r"^reduction must be 'mean', 'none' or 'sum', not 'max'$"):
        pixel_loss(logits, y, "max")
    # another ignore label (class 0 here) applies to both heads
    y0 = y.clamp_max(2)
    for reduction in ("mean", "sum"):
        torch.testing.assert_close(
            pixel_loss((logits, aux), y0, reduction, aux_weight=0.4, ignore_index=0),
            F.cross_entropy(logits, y0, ignore_index=0, reduction=reduction)
            + 0.4 * F.cross_entropy(aux, y0, ignore_index=0, reduction=reduction))
    one = torch.full((1, 2, 2), IGN)
    one[0, 0, 1] = 2
    assert float(pixel_accuracy(confusion(torch.full((1, 2, 2), 2), one, 3))) == 1.0  # its one pixel right


def test_the_main_logits_of_a_models_output():
    main, aux = torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3)
    assert logits_of((main, aux)) is main and logits_of(main) is main


def test_size_batches_group_images_by_size_in_order_of_first_appearance():
    sizes = torch.tensor([[4, 6], [5, 5], [4, 6], [4, 6], [5, 5], [4, 6], [3, 3]])
    batches = [(idx.tolist(), h, w, idx.dtype) for idx, h, w in size_batches(sizes, 3)]
    assert batches == [([0, 2, 3], 4, 6, torch.int64), ([5], 4, 6, torch.int64), ([1, 4], 5, 5, torch.int64),
                       ([6], 3, 3, torch.int64)]


class _PixelClassifier(torch.nn.Module):
    """Class 0 where a pixel's first channel is dark, 1 where bright, 2 where the second channel is bright; an
    auxiliary output in training mode, as DeepLab's; records the inputs it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.autocast: list[bool] = []

    def forward(self, x):
        self.seen.append(x)
        self.autocast.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        logits = torch.stack([1 - x[:, 0], x[:, 0], 2 * x[:, 1]], 1) * 10
        return (logits, -logits) if self.training else logits


def test_predicted_confusion_cuts_each_image_to_its_size_and_restores_the_mode():
    """Images of two sizes on a canvas (the padding outside each image would be predicted as another class): each
    is predicted at its own size, in eval mode, in batches of one size, on uint8 inputs scaled to [0, 1]; channels
    last changes nothing, and bf16 runs the model under bf16 autocast; the model's mode is given back."""
    g = torch.Generator().manual_seed(4)
    n, k = 5, 3
    x = torch.zeros(n, 2, 6, 7, dtype=torch.uint8)
    x[:, 1] = 255  # the canvas outside the images: class 2
    sizes = torch.tensor([[6, 7], [4, 5], [6, 7], [4, 5], [4, 5]])
    y = torch.full((n, 6, 7), IGN)
    for i, (h, w) in enumerate(sizes.tolist()):
        x[i, 0, :h, :w] = torch.randint(0, 2, (h, w), generator=g) * 255
        x[i, 1, :h, :w] = 0
        y[i, :h, :w] = (x[i, 0, :h, :w] > 0).long()
        y[i, 0, 0] = 1 - y[i, 0, 0]  # one wrong pixel per image
    model = _PixelClassifier().train()
    expected = torch.stack([confusion((x[i:i + 1, 0, :h, :w] > 0).long(), y[i:i + 1, :h, :w], k)[0]
                            for i, (h, w) in enumerate(sizes.tolist())])
    for channels_last, bf16 in ((False, False), (True, False), (False, True)):
        model.seen, model.autocast = [], []
        out = predicted_confusion(model, x, y, sizes, k, batch_size=2, channels_last=channels_last, bf16=bf16)
        assert torch.equal(out, expected) and out.dtype == torch.int64 and model.training
        assert model.autocast == [bf16] * 3
        assert [tuple(t.shape) for t in model.seen] == [(2, 2, 6, 7), (2, 2, 4, 5), (1, 2, 4, 5)]
        assert all(t.dtype == torch.float32 and float(t.max()) == 1.0 for t in model.seen)
        assert all(t.is_contiguous(memory_format=torch.channels_last) == channels_last for t in model.seen)
    assert [int(m.trace()) for m in out] == [int(s.prod()) - 1 for s in sizes]  # all right but the flipped pixel
