"""StAdv (samat.empirical.attacks.stadv): the warp, the flow's smoothness, and the attack within its bound."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from samat.empirical.attacks.meter import UNIT_ROUNDOFF
from samat.empirical.attacks.specs import spec
from samat.empirical.attacks.stadv import StAdv, bilinear_warp, flow_smoothness
from tests.empirical.attacks.helpers import N_EVAL, ULP1, accuracy

# ---------------------------------------------------------------------------------------------------------
# StAdv
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(3, 2, 9, 11, generator=torch.Generator().manual_seed(2))


def uniform_flow(x: torch.Tensor, u: float, v: float) -> torch.Tensor:
    n, _, h, w = x.shape
    return torch.tensor([u, v]).view(1, 2, 1, 1).expand(n, 2, h, w).clone()


def test_zero_flow_is_the_identity_exactly(image):
    assert torch.equal(bilinear_warp(image, torch.zeros(3, 2, 9, 11)), image)


@pytest.mark.parametrize(("u", "v"), [(1, 0), (0, 1), (2, -1), (-3, 2)])
def test_integer_flow_shifts_the_image(image, u, v):
    out = bilinear_warp(image, uniform_flow(image, u, v))
    h, w = image.shape[-2:]
    rows = slice(max(0, -v), h - max(0, v))  # interior: the source row i + v and column j + u exist
    cols = slice(max(0, -u), w - max(0, u))
    src_rows = slice(rows.start + v, rows.stop + v)
    src_cols = slice(cols.start + u, cols.stop + u)
    assert torch.equal(out[..., rows, cols], image[..., src_rows, src_cols])


def test_half_pixel_flow_averages_neighbours(image):
    out = bilinear_warp(image, uniform_flow(image, 0.5, 0.0))
    torch.testing.assert_close(out[..., :-1], (image[..., :-1] + image[..., 1:]) / 2, rtol=0, atol=ULP1)
    assert torch.equal(out[..., -1], image[..., -1])  # border padding: the last column samples itself
    out = bilinear_warp(image, uniform_flow(image, 0.5, 0.5))
    quad = (image[..., :-1, :-1] + image[..., :-1, 1:] + image[..., 1:, :-1] + image[..., 1:, 1:]) / 4
    torch.testing.assert_close(out[..., :-1, :-1], quad, rtol=0, atol=2 * ULP1)


def test_warp_equals_grid_sample_with_border_padding(image):
    flow = 3 * torch.randn(3, 2, 9, 11, generator=torch.Generator().manual_seed(4))
    h, w = image.shape[-2:]
    gy, gx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    grid = torch.stack([2 * (gx + flow[:, 0]) / (w - 1) - 1, 2 * (gy + flow[:, 1]) / (h - 1) - 1], dim=-1)
    expected = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    # grid_sample's normalise/unnormalise round trip moves positions by a few ulps of the image size
    torch.testing.assert_close(bilinear_warp(image, flow), expected, rtol=0, atol=1e-5)


@given(st.floats(-5, 5), st.floats(-5, 5), st.floats(-3, 3), st.floats(-3, 3), st.integers(1, 4), st.integers(1, 5))
def test_flow_smoothness_of_a_bump_on_a_constant_flow(u, v, a, b, i, j):
    """Xiao et al. 2018, eq. (4): a constant flow (u, v) costs exactly 0; a bump (a, b) on it at one interior
    pixel differs from its 4 neighbours by the same (du, dv), each pair counted from both ends: 8 (sqrt(du² + dv² +
    δ) - sqrt(δ)), with du, dv as the float32 flow holds them (not a, b). The reference is computed in float32, as
    the terms are: a float64 one differs from them by their float32 rounding. Zeros and equal terms add up exactly
    (t + t, 2t + 2t); 8u relative allows for a summation that rounds anyway."""
    flow = uniform_flow(torch.zeros(2, 1, 6, 7), u, v)
    assert torch.equal(flow_smoothness(flow), torch.zeros(2))
    flow[1, 0, i, j] += a
    flow[1, 1, i, j] += b
    du, dv = flow[1, :, i, j] - flow[1, :, 0, 0]  # the differences as the float32 flow holds them
    delta = torch.tensor(1e-8, dtype=torch.float32)
    term = (du * du + dv * dv + delta).sqrt() - delta.sqrt()
    got = flow_smoothness(flow)
    assert got[0].item() == 0.0
    assert got[1].item() == pytest.approx(8 * term.item(), rel=8 * UNIT_ROUNDOFF, abs=1e-30)


def test_stadv_output_is_the_warp_by_its_flow_within_bound(trained, paper_runs):
    model, x, y = trained
    x, y = x[:N_EVAL], y[:N_EVAL]
    x_adv, flow = paper_runs["stadv"]
    assert flow is not None and flow.shape == (N_EVAL, 2, 28, 28)
    torch.testing.assert_close(x_adv, bilinear_warp(x, flow).clamp(0, 1), rtol=0, atol=0)
    assert flow.abs().max() <= spec("stadv").eps
    unattacked = ~accuracy(model, x, y)
    assert torch.equal(flow[unattacked], torch.zeros_like(flow[unattacked]))


def test_stadv_respects_a_tighter_bound(trained):
    model, x, y = trained
    x, y = x[:32], y[:32]
    attack = StAdv(model, max_flow=0.3, steps=30)
    x_adv = attack(x, y)
    assert attack.last_flow.abs().max() <= 0.3
    torch.testing.assert_close(x_adv, bilinear_warp(x, attack.last_flow).clamp(0, 1), rtol=0, atol=0)
    fooled = ~accuracy(model, x_adv, y)
    assert fooled.any()
