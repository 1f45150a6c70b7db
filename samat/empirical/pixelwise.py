"""Per-pixel counting for semantic segmentation, shared by training and evaluation (what :mod:`.inference` is for
classification): the per-pixel cross-entropy with its ignore label, a model's per-pixel predictions on stored
images, confusion matrices, and the scores read from them: pixel accuracy, and IoU / mIoU as the duality paper
defines them (D eq. 15). Every score of a confusion matrix is computed here and nowhere else.

IoU of class c = TP / (TP + FN + FP) over all pixels of all images (D eq. 15); mIoU = the mean over the classes
that occur in the ground truth or the prediction: a class absent from both has no IoU (0/0) and is left out of
the mean, as torchmetrics' ``JaccardIndex`` and VainF/DeepLabV3Plus-Pytorch's ``StreamSegMetrics`` (nanmean) do.
Pixels labelled :data:`~empirical.data.IGNORE_INDEX` count nowhere. Counts are int64, accumulated on the device.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from samat.empirical.data import IGNORE_INDEX, as_inputs

Output = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # logits (N, K, H, W), or (logits, auxiliary logits)


def pixel_loss(output: Output, y: torch.Tensor, reduction: str = "mean", *, aux_weight: float = 0.0,
               ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy of every labelled pixel, in float32.

    ``reduction``: "mean" over the batch's labelled pixels (what the model trains on); "none" the mean over each
    image's own labelled pixels, (N,) (ESAM's per-example losses); "sum" over all labelled pixels (what PGD
    ascends). A batch or image without labelled pixels contributes 0, never 0/0. With auxiliary logits, their
    loss is added with weight ``aux_weight``.
    """
    if isinstance(output, tuple):
        main, aux = output
        loss = pixel_loss(main, y, reduction, ignore_index=ignore_index)
        return loss + aux_weight * pixel_loss(aux, y, reduction, ignore_index=ignore_index) if aux_weight else loss
    per_pixel = F.cross_entropy(output.float(), y, reduction="none", ignore_index=ignore_index)  # 0 where ignored
    if reduction == "sum":
        return per_pixel.sum()
    labelled = (y != ignore_index).flatten(1).sum(1)
    if reduction == "none":
        return per_pixel.flatten(1).sum(1) / labelled.clamp_min(1)
    if reduction == "mean":
        return per_pixel.sum() / labelled.sum().clamp_min(1)
    raise ValueError(f"reduction must be 'mean', 'none' or 'sum', not {reduction!r}")


def logits_of(output: Output) -> torch.Tensor:
    """The main logits of a model's output (the auxiliary head's, in training mode, are for the loss only)."""
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def pixel_accuracy_sum(output: Output, y: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Σ over the images of the fraction of their labelled pixels predicted right (a training batch's "correct",
    so that correct / images is the mean per-image pixel accuracy)."""
    labelled = y != ignore_index
    hits = ((logits_of(output).argmax(1) == y) & labelled).flatten(1).sum(1)
    return (hits / labelled.flatten(1).sum(1).clamp_min(1)).sum()


def confusion(pred: torch.Tensor, y: torch.Tensor, num_classes: int,
              ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per-image confusion matrices (N, K, K), int64: entry [n, t, p] counts image n's labelled pixels of true
    class t predicted as p."""
    n, k = y.shape[0], num_classes
    labelled = y != ignore_index
    image = torch.arange(n, device=y.device).view(n, *([1] * (y.dim() - 1))).expand_as(y)
    index = (image * k + y.clamp(0, k - 1)) * k + pred
    return torch.bincount(index[labelled], minlength=n * k * k).view(n, k, k)


def iou(matrix: torch.Tensor) -> torch.Tensor:
    """Per-class IoU (D eq. 15) of a confusion matrix (K, K), or of each of a stack (..., K, K): TP / (TP + FN + FP),
    float64, NaN for a class absent from both truth and prediction."""
    m = matrix.double()
    tp = m.diagonal(dim1=-2, dim2=-1)
    union = m.sum(-1) + m.sum(-2) - tp  # TP + FN (row) + FP (column)
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def pixel_accuracy(matrix: torch.Tensor) -> torch.Tensor:
    """Pixel accuracy of a confusion matrix (K, K), or of each of a stack (..., K, K): the fraction of labelled
    pixels predicted right, float64; 0 where no pixel is labelled."""
    return matrix.diagonal(dim1=-2, dim2=-1).sum(-1).double() / matrix.sum((-2, -1)).clamp_min(1).double()


def mean_iou(matrix: torch.Tensor) -> torch.Tensor:
    """mIoU of a confusion matrix (K, K) or a stack (..., K, K): the mean IoU over the classes present in truth or
    prediction (NaN when no pixel is labelled)."""
    return iou(matrix).nanmean(-1)


def miou_score(matrix: torch.Tensor) -> float:
    """The mIoU of a confusion matrix (K, K) as a score for tables and logs: 0 when no pixel is labelled."""
    value = float(mean_iou(matrix))
    return value if math.isfinite(value) else 0.0


def size_batches(sizes: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, int, int]]:
    """Batches of images that share a size: (indices, height, width), sizes in order of first appearance, so
    that every image is seen at its own size (sizes: int64 (N, 2) on the CPU)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (h, w) in enumerate(sizes.tolist()):
        groups.setdefault((h, w), []).append(i)
    for (h, w), members in groups.items():
        for start in range(0, len(members), batch_size):
            yield torch.tensor(members[start:start + batch_size], dtype=torch.int64), h, w


@torch.no_grad()
def predicted_confusion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sizes: torch.Tensor, num_classes: int, *,
                        batch_size: int = 64, bf16: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Per-image confusion matrices (N, K, K) of ``model``'s predictions on stored images (uint8 on a canvas, each
    cut to its own size from ``sizes``), in eval mode, batched by size, on y's device; the mode is restored."""
    was_training = model.training
    model.eval()
    autocast = torch.autocast(y.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out = torch.zeros(len(y), num_classes, num_classes, dtype=torch.int64, device=y.device)
    try:
        for idx, h, w in size_batches(sizes, batch_size):
            on = idx.to(y.device)
            xb = as_inputs(x[on][:, :, :h, :w])
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast:
                pred = logits_of(model(xb)).argmax(1)
            out[on] = confusion(pred, y[on][:, :h, :w].long(), num_classes)
    finally:
        model.train(was_training)
    return out
