"""Pixle, batched (samat.empirical.attacks.pixle), against torchattacks' image-by-image original (in
distribution), and exactly against the algorithm stated image by image on the same random numbers: each candidate
(the patch, its clipping, its destinations, the later pixel winning) and the search (the best solution, the stop
on success, each round's start)."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math

import pytest
import torch
import torchattacks
from torch import nn

from samat.empirical.attacks.build import build_attack
from samat.empirical.attacks.pixle import BatchedPixle
from samat.empirical.attacks.specs import spec
from tests.empirical.attacks.helpers import accuracy

# ---------------------------------------------------------------------------------------------------------
# Pixle: batched against torchattacks' image-by-image original
# ---------------------------------------------------------------------------------------------------------

Z_PIXLE = 4  # standard errors: a false alarm has probability 6e-5 per comparison


def _pixle_outcomes(model, x, y, name: str, seeds: range, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Per attacked image and seed: whether the attack succeeded, and how many pixel positions it moved."""
    model, x, y = model.to(device), x.to(device), y.to(device)
    clean = accuracy(model, x, y)
    s = dataclasses.replace(spec(name), restarts=3, steps=3)  # breaks about 1 in 5 (the papers' 20 x 5: all)
    success, moved = [], []
    for seed in seeds:
        x_adv = build_attack(s, model, num_classes=10, seed=seed, device=device)(x, y)
        success.append(~accuracy(model, x_adv, y)[clean])
        moved.append((x_adv != x).any(1).flatten(1).sum(1)[clean])
    return torch.cat(success).double(), torch.cat(moved).double()


def test_batched_pixle_agrees_with_torchattacks(trained_200):
    """Same images, same seeds (each drawing its own random numbers): the success rates agree within Z_PIXLE
    standard errors of their difference, and so does the mean number of pixels moved (which tests the patches:
    their sizes, clipping and destinations). The standard errors are those of independent samples; the two
    attack the same images, which correlates them positively and only narrows the true spread."""
    model, x, y = trained_200
    (s_ours, m_ours), (s_ref, m_ref) = (_pixle_outcomes(model, x, y, name, range(3))
                                        for name in ("pixle", "pixle_torchattacks"))
    _assert_same_pixle((s_ours, m_ours), (s_ref, m_ref))


def _assert_same_pixle(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> None:
    (s_a, m_a), (s_b, m_b) = a, b
    n = len(s_a)
    pooled = float(torch.cat([s_a, s_b]).mean())
    assert 0.05 < pooled < 0.95  # a budget where the rate can differ
    assert abs(float(s_a.mean() - s_b.mean())) <= Z_PIXLE * math.sqrt(2 * pooled * (1 - pooled) / n)
    se = math.sqrt(float(m_a.var() + m_b.var()) / n)
    assert abs(float(m_a.mean() - m_b.mean())) <= Z_PIXLE * se


@pytest.mark.gpu
def test_batched_pixle_on_cuda_agrees_with_the_cpu(trained_200):
    """The device's generator and its scatter draw the same distribution of candidates as on the CPU."""
    model, x, y = trained_200
    model = copy.deepcopy(model)
    _assert_same_pixle(_pixle_outcomes(model, x, y, "pixle", range(3), "cuda"),
                       _pixle_outcomes(model, x, y, "pixle", range(3), "cpu"))


def test_torchattacks_pixle_stays_selectable_as_the_reference(trained):
    model, x, y = trained
    attack = build_attack(spec("pixle_torchattacks"), model, num_classes=10, seed=0, device="cpu")
    assert isinstance(attack._make_torchattack(), torchattacks.Pixle)
    assert spec("pixle_torchattacks").label == "pixle_torchattacks" and spec("pixle").restarts == 20


# ---------------------------------------------------------------------------------------------------------
# Pixle, exactly: the batched code against the algorithm written image by image, on the same random numbers
# ---------------------------------------------------------------------------------------------------------

def test_the_defaults_are_torchattacks_own():
    defaults = {k: v.default for k, v in inspect.signature(torchattacks.Pixle).parameters.items()}
    pixle = BatchedPixle(nn.Identity())
    assert (pixle.restarts, pixle.max_iterations, pixle.x_dimensions, pixle.y_dimensions) == (
        defaults["restarts"], defaults["max_iterations"], defaults["x_dimensions"], defaults["y_dimensions"])


def test_patch_bounds_take_integers_as_they_are_and_fractions_of_the_side():
    pixle = BatchedPixle(nn.Identity())
    assert pixle._bounds((2, 10), 32) == (2, 10) and pixle._bounds((1, 40), 8) == (1, 40)
    assert pixle._bounds((0.1, 0.5), 30) == (3, 15) and pixle._bounds((0.01, 0.2), 10) == (1, 2)  # at least 1


def _one_by_one(pixle: BatchedPixle, clean: torch.Tensor, start: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The candidates as the module's docstring states them, image by image, from the random numbers the batched
    code draws (in its order): the patch's corner, width and height (cut at the border), then a destination per
    patch pixel; the patch pixels are copied from the clean image in row-major order, a later one overwriting an
    earlier one at a destination drawn twice."""
    n, c, h, w = clean.shape
    (xlo, xhi), (ylo, yhi) = pixle._bounds(pixle.x_dimensions, w), pixle._bounds(pixle.y_dimensions, h)
    corner = torch.rand(n, 2, generator=gen)
    widths = torch.randint(xlo, xhi + 1, (n,), generator=gen)
    heights = torch.randint(ylo, yhi + 1, (n,), generator=gen)
    where = torch.rand(n, xhi * yhi, 2, generator=gen)
    out = start.clone()
    for i in range(n):
        x0, y0 = int((corner[i, 0] * (w - 1)).long()), int((corner[i, 1] * (h - 1)).long())
        width, height = min(int(widths[i]), w - x0), min(int(heights[i]), h - y0)
        for k in range(width * height):
            row, col = y0 + k // width, x0 + k % width
            to_row, to_col = int((where[i, k, 0] * (h - 1)).long()), int((where[i, k, 1] * (w - 1)).long())
            out[i, :, to_row, to_col] = clean[i, :, row, col]
    return out


@pytest.mark.parametrize("dims", [((2, 10), (2, 10)), ((1, 3), (4, 6)), ((0.2, 0.6), (0.1, 0.3))])
def test_each_candidate_is_the_patch_copied_pixel_by_pixel(dims):
    """Patches up to the image's size (clipped at the border, destinations drawn twice), narrow and tall ones,
    and sides given as fractions; images that are not square, so that rows and columns cannot be swapped."""
    pixle = BatchedPixle(nn.Identity(), x_dimensions=dims[0], y_dimensions=dims[1])
    g = torch.Generator().manual_seed(5)
    clean, start = torch.rand(16, 3, 9, 12, generator=g), torch.rand(16, 3, 9, 12, generator=g)
    for seed in range(3):
        batched = pixle._candidates(clean, start, torch.Generator().manual_seed(seed))
        assert torch.equal(batched, _one_by_one(pixle, clean, start, torch.Generator().manual_seed(seed)))
        assert (batched != start).any()


class _Counting(nn.Module):
    """Logits: sums of pixel values under small integer weights, in float64 (exact, so that a batch of images and
    each image alone give the same logits)."""

    def __init__(self, classes: int, shape: tuple[int, ...], seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randint(-3, 4, (classes, math.prod(shape)), generator=g).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).double() @ self.weight.T


def _search_one_by_one(pixle: BatchedPixle, clean: torch.Tensor, labels: torch.Tensor, gen: torch.Generator
                       ) -> tuple[torch.Tensor, list[bool]]:
    """Pixle's search as the module's docstring states it, image by image, on the batched candidates of each
    iteration: a candidate that lowers the true class's probability becomes the best solution, one that is
    misclassified too and ends the image's attack; each round starts from the best solution so far, or, if none
    ever lowered the probability, from the round's last candidate. Returns the images and which ones fell."""
    n = len(labels)

    def probability_and_class(x: torch.Tensor, i: int) -> tuple[float, int]:
        logits = pixle.model(x[None]).float()
        return float(torch.softmax(logits, 1)[0, labels[i]]), int(logits.argmax(1)[0])

    best_image = clean.clone()
    best_p = [probability_and_class(clean[i], i)[0] for i in range(n)]
    best_solution, has_solution, done = clean.clone(), [False] * n, [False] * n
    for _ in range(pixle.restarts):
        last = best_image.clone()
        for _ in range(pixle.max_iterations):
            candidates = pixle._candidates(clean, best_image, gen)
            if all(done):
                break
            for i in range(n):
                if done[i]:
                    continue
                p, predicted = probability_and_class(candidates[i], i)
                if p < best_p[i] or predicted != labels[i]:
                    best_solution[i], has_solution[i] = candidates[i], True
                best_p[i] = min(best_p[i], p)
                done[i] = predicted != labels[i]
                last[i] = candidates[i]
        for i in range(n):
            best_image[i] = best_solution[i] if has_solution[i] else last[i]
        if all(done):
            break
    return best_image, done


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_search_is_the_algorithm_image_by_image(seed):
    """Images in quarters of the unit, a model with exact logits, labels its own clean predictions; some images
    fall within the budget and some do not, and the batched search ends each one where the image-by-image one
    does, bit for bit."""
    shape = (2, 5, 6)
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 5, (12, *shape), generator=g) / 4
    model = _Counting(3, shape, seed)
    labels = model(clean).argmax(1)
    pixle = BatchedPixle(model, restarts=3, max_iterations=4, x_dimensions=(1, 3), y_dimensions=(1, 2))
    batched = pixle(clean, labels, torch.Generator().manual_seed(seed))
    expected, fell = _search_one_by_one(pixle, clean, labels, torch.Generator().manual_seed(seed))
    assert torch.equal(batched, expected)
    assert 0 < sum(fell) < len(fell)  # both outcomes are exercised
    assert torch.equal(model(batched).argmax(1) != labels, torch.tensor(fell))
