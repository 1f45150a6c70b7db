"""The model, its sampler, and the exact objectives against Monte Carlo and high precision."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samat.core.errors import ParameterError
from samat.theory.backend import mp_backend
from samat.theory.model import GaussianModel, check_parameters, robust_feature_weight, sample_accuracy
from samat.theory.objectives import (
    accuracy,
    class_thresholds,
    golden_section_max,
    log_risk,
    risk,
    risk_slope,
    sam_inner_max,
    sam_per_sample_log_risk,
    sam_per_sample_slope,
)
from tests.theory import strategies as S

MC_SAMPLES = 40_000
Z = 5.0  # standard errors: a false alarm has probability ~6e-7 per comparison
U = np.finfo(float).eps / 2  # float64's unit roundoff


@given(S.p, S.eta, S.small_n, S.w1, st.integers(0, 2**31 - 1))
@settings(max_examples=25)
def test_monte_carlo_accuracy_matches_u(p, eta, n, w1, seed):
    model = GaussianModel(p, eta, n)
    x, y = model.sample(MC_SAMPLES, seed=seed)
    mc = sample_accuracy(model.weights(w1), x, y)
    exact = float(accuracy(w1, p, eta, n))
    se = np.sqrt(exact * (1 - exact) / MC_SAMPLES)
    assert abs(mc - exact) <= Z * se + 1 / MC_SAMPLES


@given(S.p, S.eta, S.small_n, S.w1, S.at_fraction, st.integers(0, 2**31 - 1))
@settings(max_examples=25)
def test_at_objective_is_accuracy_under_the_worst_linf_attack(p, eta, n, w1, frac, seed):
    """v(w1) (W eq. 13) equals the Monte Carlo accuracy after the attack δ_i = -ε y on x2..x_{n+1}."""
    eps = frac * eta
    model = GaussianModel(p, eta, n)
    x, y = model.sample(MC_SAMPLES, seed=seed)
    x_adv = x.copy()
    x_adv[:, 1:] -= eps * y[:, None]
    mc = sample_accuracy(model.weights(w1), x_adv, y)
    exact = float(accuracy(w1, p, eta, n, eps))
    assert abs(mc - exact) <= Z * np.sqrt(exact * (1 - exact) / MC_SAMPLES) + 1 / MC_SAMPLES


@given(S.p, S.eta, S.small_n, st.floats(-5.0, 10.0), S.sam_eps, st.integers(0, 2**31 - 1))
@settings(max_examples=25)
def test_per_sample_sam_objective_is_the_mean_of_each_samples_worst_loss(p, eta, n, w1, eps, seed):
    """SAM as W eq. (15) / D eq. (11) print it, from its definition: each sample's 0-1 loss maximized over a grid of
    δ in [-ε, ε] (ends included, 41 nodes, no shape assumed), then averaged, against the exact objective."""
    model = GaussianModel(p, eta, n)
    x, y = model.sample(MC_SAMPLES // 4, seed=seed)
    margins = y[:, None] * ((w1 + eps * np.linspace(-1, 1, 41))[None, :] * x[:, :1] + x[:, 1:].sum(1, keepdims=True))
    mc = np.mean((margins <= 0).any(axis=1))
    exact = float(np.exp(sam_per_sample_log_risk(w1, p, eta, n, eps).value))
    assert abs(mc - exact) <= Z * np.sqrt(exact * (1 - exact) / (MC_SAMPLES // 4)) + 4 / MC_SAMPLES


@given(S.p, S.eta, S.small_n, st.floats(-10, 30), S.sam_eps)
@settings(max_examples=30)
def test_per_sample_slope_has_the_sign_of_the_derivative(p, eta, n, w1, eps):
    s = sam_per_sample_slope(w1, p, eta, n, eps)
    bk = mp_backend(40)
    with bk.context():
        h = mpmath.mpf("1e-12")
        ends = [bk.exp(sam_per_sample_log_risk(bk.asarray(w1) + k * h, p, eta, n, eps, bk).value) for k in (1, -1)]
        d = float(ends[0] - ends[1])
    if abs(float(s.value)) > float(s.error) and d != 0:  # d == 0: flat beyond 40 digits, nothing to compare
        assert np.sign(float(s.value)) == np.sign(d)


@given(S.p, S.eta, st.integers(1, 10), S.w1, S.at_fraction, st.integers(0, 2**31 - 1))
@settings(max_examples=25)
def test_the_attack_is_the_worst_point_of_the_whole_linf_box(p, eta, n, w1, frac, seed):
    """Hölder, both ways: no perturbation in the box [-ε, ε]^n of the non-robust features (its 2^n corners and
    random points inside) errs more than the attack of size ε, and the worst of them errs exactly as much."""
    eps = frac * eta
    rng = np.random.default_rng(seed)
    corners = np.array(np.meshgrid(*[[-eps, eps]] * n)).reshape(n, -1).T
    box = np.concatenate([corners, rng.uniform(-eps, eps, (200, n))])
    # With δ_i = c_i y the sum of non-robust features has mean (η n + Σ c_i) and variance n: the clean error
    # with η + Σc/n in place of η.
    brute = log_risk(w1, p, eta + box.sum(1) / n, n)
    attacked = log_risk(w1, p, eta, n, eps)
    worst = int(np.argmax(brute.value))
    # Rounding: both values' own bounds, and η + Σc/n against η - ε formed in another order (a few ulps of η + ε,
    # moving the standardized thresholds a, b by 4u (η + ε) √n, and log Φ by at most 1 + |a| per unit).
    a, b = class_thresholds(w1, p, eta, n, eps)
    slack = float(brute.error[worst] + attacked.error) + (2 + abs(a) + abs(b)) * 4 * U * (eta + eps) * np.sqrt(n)
    assert np.all(brute.value <= float(attacked.value) + float(attacked.error) + brute.error + slack)
    assert abs(float(brute.value[worst]) - float(attacked.value)) <= slack


@given(S.p, S.eta, S.n, st.floats(-50, 200), st.floats(0, 0.99))
@settings(max_examples=40)
def test_log_risk_is_within_its_rounding_bound_of_a_40_digit_value(p, eta, n, w1, frac):
    eps = frac * eta
    got = log_risk(w1, p, eta, n, eps)
    with mpmath.workdps(40):
        mu = mpmath.mpf(eta) - mpmath.mpf(eps)
        rn = mpmath.sqrt(n)
        exact = mpmath.log(p * mpmath.ncdf((-w1 - mu * n) / rn) + (1 - mpmath.mpf(p)) * mpmath.ncdf((w1 - mu * n) / rn))
    assert abs(float(got.value) - float(exact)) <= float(got.error)


@given(S.p, S.eta, S.small_n, st.floats(-10, 30), st.floats(0, 0.9))
@settings(max_examples=40)
def test_risk_slope_has_the_sign_of_the_derivative(p, eta, n, w1, frac):
    eps = frac * eta
    s = risk_slope(w1, p, eta, n, eps)
    bk = mp_backend(40)
    with bk.context():
        h = mpmath.mpf("1e-12")
        d = (bk.exp(log_risk(bk.asarray(w1) + h, p, eta, n, eps, bk).value)
             - bk.exp(log_risk(bk.asarray(w1) - h, p, eta, n, eps, bk).value))
        d = float(d)
    if abs(float(s.value)) > float(s.error) and d != 0:  # d == 0: flat beyond 40 digits, nothing to compare
        assert np.sign(float(s.value)) == np.sign(d)


def test_golden_section_search_finds_an_interior_maximum():
    """A bump inside the interval: the search that refines sam_inner_max's grid finds it, not just the ends."""

    def bump(d):
        return -((d - 0.0123) ** 2)

    best = golden_section_max(bump, np.array([-1.0]), np.array([1.0]), 80)
    assert abs(best[0] - 0.0123) < 1e-8


@given(S.p, S.eta, S.small_n, st.floats(-5.0, 30.0), S.sam_eps, st.floats(0.0, 0.9))
@settings(max_examples=40)
def test_sam_inner_max_equals_the_max_over_a_dense_grid_of_the_whole_interval(p, eta, n, w1, eps, frac):
    """max_{|δ| <= ε} risk_{ε_AT}(w1 + δ) (W eq. 15, 19), both ways, against 4001 nodes spanning [-ε, ε] (ends
    included), with and without an attack: not above it by more than the objective moves between two nodes, and
    found at a δ inside the interval."""
    attack = frac * eta
    inner = sam_inner_max(w1, p, eta, n, eps, attack)
    nodes = eps * np.linspace(-1, 1, 4001)
    dense = log_risk(w1 + nodes, p, eta, n, attack)
    top = int(np.argmax(dense.value))
    rounding = float(inner.error + dense.error[top])
    # The maximum lies within half a node spacing of a node: it exceeds the best node by at most the largest
    # change between neighbours.
    between = float(np.max(np.abs(np.diff(dense.value))))
    assert float(dense.value[top]) - rounding <= float(inner.log_value) <= float(dense.value[top]) + between + rounding
    assert np.all(np.abs(inner.candidates) <= eps)  # every δ it tried lies in the interval
    best = int(np.argmax(inner.candidate_log_values))  # its argmax, recomputed: the reported value is the risk there
    at_best = log_risk(w1 + inner.candidates[best], p, eta, n, attack)
    assert abs(float(at_best.value) - float(inner.log_value)) <= float(at_best.error + inner.error)


def test_risk_and_accuracy_broadcast():
    w = np.linspace(0, 3, 7)[:, None]
    n = np.array([1, 5, 50])[None, :]
    assert risk(w, 0.8, 0.5, n).shape == (7, 3)
    assert np.allclose(risk(w, 0.8, 0.5, n) + accuracy(w, 0.8, 0.5, n), 1)


def test_sampler_is_seeded_and_shaped():
    model = GaussianModel(0.7, 0.3, 6)
    x1, y1 = model.sample(500, seed=3)
    x2, y2 = model.sample(500, seed=3)
    assert x1.shape == (500, 7) and set(np.unique(y1)) <= {-1.0, 1.0}
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert set(np.unique(np.abs(x1[:, 0]))) == {1.0}
    assert robust_feature_weight(3.0, 6) == 0.5


@pytest.mark.parametrize(
    ("kwargs", "name", "valid"),
    [({"p": 0.5}, "p", "(0.5, 1)"), ({"p": 1.0}, "p", "(0.5, 1)"), ({"eta": 0.0}, "eta", "> 0"),
     ({"n": 0}, "n", "integer >= 1"), ({"n": 2.5}, "n", "integer >= 1"), ({"eps": -0.1}, "eps", ">= 0"),
     ({"p": float("nan")}, "p", "(0.5, 1)"), ({"eps": np.array([0.1, -1.0])}, "eps", ">= 0")],
)
def test_invalid_parameters_name_the_parameter_and_range(kwargs, name, valid):
    with pytest.raises(ParameterError) as err:
        check_parameters(**kwargs)
    message = str(err.value)
    assert message.startswith(f"{name}=") and valid in message and "\n" not in message


def test_model_rejects_bad_sizes():
    with pytest.raises(ParameterError, match="size"):
        GaussianModel(0.8, 0.5, 3).sample(0)
