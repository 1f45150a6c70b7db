"""Joint augmentation of images and masks on the device: random scale, crop and horizontal flip, a whole
batch at once (one ``grid_sample`` per tensor), with all randomness drawn from one generator.

Each sample is scaled by s ~ U[lo, hi], then a crop window of the output size is placed uniformly at random:
inside the scaled image where the image is larger, the image inside the window where it is smaller (the rest is
padding: black pixels, masks :data:`~.dataset.IGNORE_INDEX`), and the result is flipped left-right with
probability 1/2. Images are resampled bilinearly, masks with the nearest neighbour, so a mask never holds a class
that is not in the original. This is DeepLab's training augmentation (random scale 0.5-2, crop 513, flip, as in
VainF/DeepLabV3Plus-Pytorch), computed on the GPU instead of in DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samat.core.errors import ParameterError
from samat.empirical.data.segmentation.dataset import IGNORE_INDEX


@dataclass(frozen=True)
class JointAugment:
    """Random scale, crop and flip of (images, masks); ``crop`` is the output (H, W), ``scale`` the range of s."""

    crop: tuple[int, int]
    scale: tuple[float, float] = (1.0, 1.0)
    flip: bool = True
    sizes: torch.Tensor | None = None  # int64 (N, 2): each stored image's own (H, W) on its canvas; None: the canvas

    def __post_init__(self) -> None:
        if len(self.crop) != 2 or not all(isinstance(c, int) and c >= 1 for c in self.crop):
            raise ParameterError("crop", self.crop, "two integers >= 1 (height, width)")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ParameterError("scale", self.scale, "two numbers 0 < low <= high")

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None,
                 index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images (N, C, H, W) in [0, 1] and int64 masks (N, H, W) -> the augmented batch, on x's device.
        ``index``: the batch's rows of ``sizes``, so that each window is placed on its image, not on the canvas.

        Draws, in order: the scale factors (N,), the window offsets (2, N) as fractions of their range, and the
        flip coins (N,).
        """
        n, _, height, width = x.shape
        out_h, out_w = self.crop
        dev = x.device
        extent = torch.tensor([[height, width]], dtype=torch.float32, device=dev).expand(n, 2)
        if self.sizes is not None and index is not None:
            extent = self.sizes[index.to(self.sizes.device)].to(dev, torch.float32)
        lo, hi = self.scale
        s = lo + (hi - lo) * torch.rand(n, generator=generator, device=dev)
        u = torch.rand(2, n, generator=generator, device=dev)
        flip = torch.rand(n, generator=generator, device=dev) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool,
                                                                                                     device=dev)
        # The window's top-left corner in scaled pixels, uniform between the two extreme placements.
        slack_y, slack_x = s * extent[:, 0] - out_h, s * extent[:, 1] - out_w
        oy = torch.minimum(slack_y, torch.zeros_like(s)) + u[0] * slack_y.abs()
        ox = torch.minimum(slack_x, torch.zeros_like(s)) + u[1] * slack_x.abs()
        rows = torch.arange(out_h, device=dev, dtype=torch.float32) + 0.5  # output pixel centres
        cols = torch.arange(out_w, device=dev, dtype=torch.float32) + 0.5
        cols = torch.where(flip[:, None], out_w - cols, cols)  # (N, W): a flipped window reads right to left
        # Source coordinates in input pixels, normalized for grid_sample (align_corners=False: -1 and 1 are the
        # outer edges of the border pixels).
        gy = 2 * ((oy[:, None] + rows) / s[:, None]) / height - 1  # (N, H)
        gx = 2 * ((ox[:, None] + cols) / s[:, None]) / width - 1  # (N, W)
        grid = torch.stack([gx[:, None, :].expand(n, out_h, out_w), gy[:, :, None].expand(n, out_h, out_w)], dim=-1)
        images = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # Masks: sample class + 1 so that the zero padding reads as "outside", then map outside to the ignore label.
        shifted = F.grid_sample((y + 1).to(torch.float32)[:, None], grid, mode="nearest", padding_mode="zeros",
                                align_corners=False)[:, 0]
        masks = torch.where(shifted > 0, shifted.round().long() - 1, torch.full_like(shifted, IGNORE_INDEX).long())
        return images.clamp_(0, 1), masks
