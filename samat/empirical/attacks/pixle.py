"""Pixle (Pomponi et al. 2022, "Pixle: a fast and effective black-box attack based on rearranging pixels"), every
image of a batch at once on its device.

The algorithm is torchattacks' ``Pixle`` (3.5.1) with its defaults for the papers' column (random pixel mapping,
the attacked image updated after each restart): for each image, ``restarts`` rounds of ``max_iterations``
candidates. A candidate copies a random patch of the *clean* image (top-left corner uniform over
``[0, W - 2] x [0, H - 2]``, width and height uniform integers in ``x_dimensions`` and ``y_dimensions``, cut at
the border) onto as many random pixel positions (each row and column uniform over ``[0, size - 2]``) of the
round's starting image; it is kept as the best solution when it lowers the model's softmax probability of the
true class, and the attack stops for the image as soon as a candidate is misclassified. After a round the next
one starts from the best solution so far, or, if none ever lowered the probability, from the round's last
candidate.

torchattacks runs this image by image, moving every probability to the host (one forward pass of one image per
candidate: 100 synchronised passes per image for the papers' 20 x 5). Here every candidate of a round is made
for all images of the batch together and the still-unbroken ones go through the model as one batch: 100
passes per batch. The random draws differ (the device's generator, drawn for the whole batch, instead of numpy's
global one, image by image), so the two agree in distribution, not image by image: the tests check that their
success rates agree within the binomial interval. ``torchattacks.Pixle`` stays available as the reference
(attack ``pixle_torchattacks``).

Two details of torchattacks' code are kept as they are: several destinations may coincide (the patch's later
pixel wins, as the sequential assignment leaves it), and a destination never lies in the last row or column
(``int(u * (size - 1))``). Where torchattacks takes the row of a destination from the image's width and its
column from the height (the same thing for the square images of the papers), rows here come from the height.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchedPixle:
    """``attack(x, y) -> x_adv`` for images (N, C, H, W) in [0, 1]; all randomness from ``generator``.

    The model is called as it is (the caller sets eval mode and freezes parameters, as
    :func:`samat.empirical.attacks.build.build_attack` does).
    """

    def __init__(self, model: nn.Module, *, restarts: int = 20, max_iterations: int = 10,
                 x_dimensions: tuple[int, int] = (2, 10), y_dimensions: tuple[int, int] = (2, 10)) -> None:
        self.model, self.restarts, self.max_iterations = model, restarts, max_iterations
        self.x_dimensions, self.y_dimensions = x_dimensions, y_dimensions

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        clean = images.detach()
        best_image = clean.clone()
        best_p = self._true_probability(clean, labels)
        best_solution = clean.clone()
        has_solution = torch.zeros(len(labels), dtype=torch.bool, device=clean.device)
        done = torch.zeros_like(has_solution)
        for _ in range(self.restarts):
            last = best_image.clone()
            for _ in range(self.max_iterations):
                candidates = self._candidates(clean, best_image, generator)  # drawn for every image: fixed draws
                active = (~done).nonzero().squeeze(1)  # the one host synchronisation of an iteration
                if not len(active):
                    break
                pert, y = candidates[active], labels[active]
                logits = self.model(pert).float()
                p = torch.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
                improved = p < best_p[active]
                success = logits.argmax(1) != y
                keep = improved | success
                best_p[active] = torch.where(improved, p, best_p[active])
                best_solution[active] = torch.where(keep[:, None, None, None], pert, best_solution[active])
                has_solution[active] |= keep
                done[active] |= success
                last[active] = pert
            best_image = torch.where(has_solution[:, None, None, None], best_solution, last)
            if bool(done.all()):
                break
        return best_image

    def _true_probability(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x).float(), dim=1).gather(1, y[:, None]).squeeze(1)

    def _bounds(self, dims: tuple[int | float, int | float], size: int) -> tuple[int, int]:
        """torchattacks' patch-size bounds: integers as they are, fractions of the image side rounded, at least 1."""
        low, high = (max(1, d if isinstance(d, int) else round(size * d)) for d in dims)
        return low, high

    def _candidates(self, clean: torch.Tensor, start: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One candidate per image: a random patch of ``clean`` copied to random positions of ``start``."""
        n, c, h, w = clean.shape
        dev = clean.device
        (xlo, xhi), (ylo, yhi) = self._bounds(self.x_dimensions, w), self._bounds(self.y_dimensions, h)
        corner = torch.rand(n, 2, generator=gen, device=dev)
        x0 = (corner[:, 0] * (w - 1)).long()
        y0 = (corner[:, 1] * (h - 1)).long()
        width = torch.minimum(torch.randint(xlo, xhi + 1, (n,), generator=gen, device=dev), w - x0)
        height = torch.minimum(torch.randint(ylo, yhi + 1, (n,), generator=gen, device=dev), h - y0)
        slots = xhi * yhi  # the largest patch; slot k of an image is its k-th patch pixel, row-major
        k = torch.arange(slots, device=dev).expand(n, slots)
        used = k < (width * height)[:, None]
        row = y0[:, None] + k // width[:, None]
        col = x0[:, None] + k % width[:, None]
        source = torch.where(used, row * w + col, 0)  # flat pixel index in the clean image
        where = torch.rand(n, slots, 2, generator=gen, device=dev)
        target = (where[..., 0] * (h - 1)).long() * w + (where[..., 1] * (w - 1)).long()
        # The patch pixel written last wins a destination drawn twice: the largest slot index per destination.
        winner = torch.full((n, h * w + 1), -1, dtype=torch.long, device=dev)
        winner.scatter_reduce_(1, torch.where(used, target, h * w), k, reduce="amax")
        winner = winner[:, :h * w]
        pixel = source.gather(1, winner.clamp_min(0))  # the clean pixel each destination receives
        moved = clean.flatten(2).gather(2, pixel[:, None, :].expand(n, c, h * w))
        out = torch.where((winner >= 0)[:, None, :], moved, start.flatten(2))
        return out.view(n, c, h, w)
