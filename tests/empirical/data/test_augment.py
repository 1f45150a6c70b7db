"""Augmentation on the device (samat.empirical.data.batching): crops, flips and their reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samat.core.errors import ParameterError
from samat.empirical import data as D
from samat.empirical.data import (
    BatchStream,
    augment_batch,
    to_float_images,
)
from tests.empirical.data.helpers import Z

# --------------------------------------------------------------------------------------------------
# Augmentation


def images(n: int = 16, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_as_inputs_gives_float32_model_inputs():
    x = torch.tensor([[[[0, 51, 255]]]], dtype=torch.uint8)
    assert torch.equal(D.as_inputs(x), torch.tensor([[[[0.0, 0.2, 1.0]]]]))
    v = torch.randn(4, 3, dtype=torch.float64)
    assert D.as_inputs(v).dtype == torch.float32 and torch.equal(D.as_inputs(v), v.float())
    f = torch.rand(2, 3)
    assert D.as_inputs(f) is f  # float32 passes through without a copy


def test_to_float_images_divides_by_255():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    out = to_float_images(x)
    assert out.dtype == torch.float32 and out.min() == 0 and out.max() == 1
    assert torch.equal(out * 255, x.float())


@pytest.mark.parametrize("mode", ["none", "crop", "crop_flip"])
def test_augment_keeps_shape_and_range(mode):
    x = images()
    out = augment_batch(x, mode, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    if mode == "none":
        assert out is x


@pytest.mark.parametrize("mode", ["crop", "crop_flip"])
def test_each_output_is_a_window_of_the_reflect_padded_image(mode):
    """Every output equals some 32x32 window of the 4-pixel reflect-padded input (flipped or not for
    crop_flip), and across the batch several offsets and both flip states occur."""
    x = images(n=64)
    out = augment_batch(x, mode, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    seen_offsets, seen_flips = set(), set()
    for i in range(len(x)):
        windows = {(dy, dx): padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)}
        matches = [(dy, dx, flip) for (dy, dx), w in windows.items() for flip in (False, True)
                   if torch.equal(out[i], w.flip(2) if flip else w)]
        assert matches, f"output {i} is no window of the padded image"
        seen_offsets.update((dy, dx) for dy, dx, _ in matches)
        seen_flips.update(flip for *_, flip in matches)
    assert len(seen_offsets) > 20
    assert seen_flips == ({False, True} if mode == "crop_flip" else {False})


def test_reflect_padding_not_zero_padding():
    """A constant-1 image stays all ones under any crop: reflect padding invents no zeros."""
    out = augment_batch(torch.ones(32, 3, 32, 32), "crop_flip", torch.Generator().manual_seed(0))
    assert torch.all(out == 1)


def test_flip_really_flips():
    """Crop offsets equal to the padding leave the image in place, so the output is x or x mirrored."""
    x = images(n=200, h=8, w=8)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, "crop_flip", g)
    g.manual_seed(0)
    offsets = torch.randint(0, 9, (2, 200), generator=g)  # the draws augment_batch makes first
    flips = torch.rand(200, generator=g) < 0.5
    centred = (offsets == 4).all(0)
    assert centred.sum() >= 1
    for i in torch.nonzero(centred).flatten().tolist():
        assert torch.equal(out[i], x[i].flip(2) if flips[i] else x[i])
    # Half the coins come up flip.
    assert abs(flips.double().mean().item() - 0.5) <= Z * 0.5 / np.sqrt(200)


def test_augment_is_reproducible_from_the_generator():
    x = images()
    a = augment_batch(x, "crop_flip", torch.Generator().manual_seed(7))
    b = augment_batch(x, "crop_flip", torch.Generator().manual_seed(7))
    c = augment_batch(x, "crop_flip", torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_augment_mode_is_a_parameter_error():
    with pytest.raises(ParameterError, match="augment=rotate"):
        augment_batch(images(), "rotate", None)
    with pytest.raises(ParameterError, match="augment=crop"):
        BatchStream(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), 2, shuffle=False, augment="crop")
