"""The objectives' building blocks (theory.objectives) at points worked out by hand, and the SAM loss against a
brute-force maximum. Tolerances: float64 rounding of a few operations (rel=1e-12; the log-risk's own error bound is
~1e-15 here), and for the brute force the grid's resolution (the SAM loss is at least the best of 4,001 δ's and
above it by at most the largest step between neighbouring δ's)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from scipy.stats import norm

from samat.theory.backend import mp_backend
from samat.theory.objectives import (
    Bounded,
    InnerMax,
    accuracy,
    class_thresholds,
    linear_log_risk,
    log_risk,
    risk,
    sam_accuracy,
    sam_inner_max,
    sam_log_risk,
)

REL = 1e-12


def test_class_thresholds_are_the_standardized_worst_margins():
    # w1 = 1, eta = 1/2, n = 4, eps = 1/4: the non-robust part of the margin is N((eta - eps) n, n) = N(1, 4)
    a, b = class_thresholds(1.0, 0.75, 0.5, 4, 0.25)
    assert (a, b) == pytest.approx((-1.0, 0.0), rel=REL, abs=REL)
    a0, b0 = class_thresholds(1.0, 0.75, 0.5, 4)  # clean by default
    assert (a0, b0) == pytest.approx((-1.5, -0.5), rel=REL)


def _risk_by_hand(w1, p, eta, w_sum, w_l2, w_l1, eps, eps_x1):
    shift = eps_x1 * abs(w1) - eta * w_sum + eps * w_l1
    return p * norm.cdf((-w1 + shift) / w_l2) + (1 - p) * norm.cdf((w1 + shift) / w_l2)


@pytest.mark.parametrize(("w1", "w_sum", "w_l2", "w_l1", "eps", "eps_x1"), [
    (0.7, 3.0, 2.0, 4.0, 0.1, 0.0), (-0.4, 5.0, 3.0, 6.0, 0.2, 0.3), (1.5, 2.0, 1.0, 2.5, 0.0, 0.1)])
def test_linear_log_risk_is_the_error_of_any_linear_classifier(w1, w_sum, w_l2, w_l1, eps, eps_x1):
    got = linear_log_risk(w1, w_sum, w_l2, w_l1, 0.8, 0.6, eps, eps_x1)
    assert math.exp(got.value) == pytest.approx(_risk_by_hand(w1, 0.8, 0.6, w_sum, w_l2, w_l1, eps, eps_x1),
                                                rel=1e-12)
    assert 0 < got.error < 1e-12


def test_linear_log_risk_defaults_to_no_attack_and_log_risk_is_its_papers_case():
    by_default = linear_log_risk(0.7, 3.0, 2.0, 4.0, 0.8, 0.6).value
    assert math.exp(by_default) == pytest.approx(_risk_by_hand(0.7, 0.8, 0.6, 3.0, 2.0, 4.0, 0.0, 0.0), rel=REL)
    n = 9
    paper = log_risk(0.7, 0.8, 0.6, n, 0.2).value
    assert paper == pytest.approx(linear_log_risk(0.7, n, 3.0, n, 0.8, 0.6, 0.2).value, rel=REL)


def test_risk_and_accuracy_default_to_the_clean_error():
    clean = _risk_by_hand(0.7, 0.8, 0.6, 4, 2.0, 4, 0.0, 0.0)
    assert risk(0.7, 0.8, 0.6, 4) == pytest.approx(clean, rel=REL)
    assert accuracy(0.7, 0.8, 0.6, 4) == pytest.approx(1 - clean, rel=REL)


@pytest.mark.parametrize(("w1", "eps", "attack"), [(0.3, 0.5, 0.0), (2.0, 0.8, 0.1), (-1.0, 0.3, 0.2)])
def test_sam_loss_is_the_worst_risk_over_the_interval(w1, eps, attack):
    p, eta, n = 0.8, 0.6, 4
    deltas = np.linspace(-eps, eps, 4001)
    grid = log_risk(w1 + deltas, p, eta, n, attack)
    values = grid.value
    got = sam_log_risk(w1, p, eta, n, eps, attack)
    # at least the grid's best (up to both rounding bounds); above it by at most the largest change between
    # neighbouring nodes (the smooth risk cannot rise further within one cell), so no δ outside the interval counts
    rounding = got.error + grid.error[np.argmax(values)]
    assert values.max() - rounding <= got.value <= values.max() + np.abs(np.diff(values)).max() + rounding
    if attack == 0:
        assert sam_accuracy(w1, p, eta, n, eps) == pytest.approx(1 - math.exp(got.value), rel=REL)


def test_near_argmax_marks_the_maximum_and_not_the_far_lower_candidates():
    inner = sam_inner_max(0.3, 0.8, 0.6, 4, 0.5)
    near = inner.near_argmax()
    best = np.argmax(inner.candidate_log_values)
    assert near[best]
    far = inner.candidate_log_values < inner.log_value - 1e-6
    assert far.any() and not near[far].any()


def test_near_argmax_is_every_candidate_within_both_rounding_bounds_of_the_maximum():
    # Danskin's active set: v_i >= max - err(max) - err_i, the bound itself included
    err = 1e-10
    values = np.array([0.0, -1.5e-10, -2e-10, -2.5e-10, -1e-9])  # -2e-10 = 0 - err - err exactly in float64
    inner = InnerMax(np.array(0.0), np.array(err), np.zeros(5), values, np.full(5, err),
                     Bounded(np.zeros(5), np.zeros(5)))
    assert inner.near_argmax().tolist() == [True, True, True, False, False]


def test_risk_accuracy_and_the_sam_loss_compute_in_the_backend_they_are_given():
    # n = 100, eta = 1, w1 = 0: both classes err w.p. Phi(-10) ~ 7.6e-24, which 1 - accuracy loses in float64
    bk = mp_backend(50)
    with bk.context():
        tail = mpmath.ncdf(-10)
        assert abs(risk(0.0, 0.75, 1.0, 100, bk=bk) / tail - 1) < 1e-40
        # 1 - accuracy cancels 24 of the 50 digits: good to ~1e-26 relative, where float64 keeps none
        assert abs((1 - accuracy(0.0, 0.75, 1.0, 100, bk=bk)) / tail - 1) < 1e-20
        sam = sam_log_risk(0.0, 0.75, 1.0, 100, 0.5, bk=bk)
        assert np.asarray(sam.value).dtype == object  # mpf, not float64
        assert abs(float(sam.value) - float(sam_log_risk(0.0, 0.75, 1.0, 100, 0.5).value)) < 1e-12
        assert 0 < float(sam.error) < 1e-40
        worst = 1 - sam_accuracy(0.0, 0.75, 1.0, 100, 0.5, bk=bk)
        assert abs(worst / mpmath.exp(np.asarray(sam.value).item()) - 1) < 1e-20
    assert 0 < float(sam_log_risk(0.0, 0.75, 1.0, 100, 0.5).error) < 1e-12
