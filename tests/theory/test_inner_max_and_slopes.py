"""The SAM inner maximum where it lies inside the interval, and the risk's slope with an attack on x1.

For the papers' classifier risk(w1) = p Φ(a) + (1-p) Φ(b) with a = (-w1 - c)/√n, b = (w1 - c)/√n and c = (η - ε) n.
Its only critical point solves p φ(a) = (1-p) φ(b), i.e. w1 = n ln(p/(1-p)) / (2c): a minimum for c > 0 (then the
maximum over an interval is at an end), a maximum for c < 0 (an attack stronger than η), where the SAM inner
maximum lies strictly inside the interval and only the refinement between grid nodes finds it. References are
computed with mpmath at 50 digits from these definitions, not from the code under test.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from samat.theory.objectives import log_risk, risk_slope, sam_inner_max

U = np.finfo(float).eps / 2


@pytest.fixture(autouse=True)
def fifty_digits():
    """The references at 50 digits, without changing mpmath's precision for the tests that follow."""
    with mpmath.workdps(50):
        yield


def _mp_risk(w1, p, eta, n, eps, eps_x1=0):
    """P(error) of the papers' classifier under the worst attack: eps on x2..x_{n+1}, eps_x1 on x1."""
    w1, p, eta, n, eps, eps_x1 = (mpmath.mpf(v) for v in (w1, p, eta, n, eps, eps_x1))
    shift = eps_x1 * abs(w1) - (eta - eps) * n
    a, b = (-w1 + shift) / mpmath.sqrt(n), (w1 + shift) / mpmath.sqrt(n)
    return p * mpmath.ncdf(a) + (1 - p) * mpmath.ncdf(b)


# (p, eta, n, attack): c = (eta - attack) n < 0, so the risk has one interior maximum at n ln(p/(1-p)) / (2c)
STRONG_ATTACKS = [(0.7, 0.5, 4, 0.75), (0.9, 0.3, 9, 0.45), (0.6, 1.0, 2, 1.6)]


@pytest.mark.parametrize(("p", "eta", "n", "attack"), STRONG_ATTACKS)
# the peak at δ = -offset: between two middle nodes, just past the second and the second-to-last node, and between an
# end node and its neighbour (the 17 nodes are -1 + k/8)
@pytest.mark.parametrize("offset", [0.3, -0.55, 0.89, -0.89, 0.95, -0.95])
def test_an_interior_inner_maximum_is_found_between_the_grid_nodes(p, eta, n, attack, offset):
    c = (eta - attack) * n
    peak = n * math.log(p / (1 - p)) / (2 * c)
    w1, sam_eps = peak + offset, 1.0  # the peak lies inside [w1 - 1, w1 + 1], off the grid nodes
    inner = sam_inner_max(w1, p, eta, n, sam_eps, attack)
    top = _mp_risk(peak, p, eta, n, attack)
    assert abs(inner.log_value - float(mpmath.log(top))) <= inner.error + 4 * U * abs(inner.log_value)
    # the argmax δ: the log-risk is flat to second order at its peak, so δ is known to sqrt(2 error / curvature)
    curvature = -float(mpmath.diff(lambda w: mpmath.log(_mp_risk(w, p, eta, n, attack)), peak, 2))
    best = inner.candidates[np.argmax(inner.candidate_log_values)]
    assert curvature > 0
    assert abs(best - (peak - w1)) <= math.sqrt(2 * (inner.error + 4 * U * abs(inner.log_value)) / curvature)


def test_the_inner_maximum_broadcasts_as_separate_calls_and_its_candidates_carry_their_slopes():
    p, eta, n, attack = STRONG_ATTACKS[0]
    peak = n * math.log(p / (1 - p)) / (2 * (eta - attack) * n)
    w1 = np.array([peak + 0.3, peak - 0.55, 2.0, -1.0])
    eps = np.array([1.0, 1.0, 0.4, 0.2])
    together = sam_inner_max(w1, p, eta, n, eps, attack)
    for i in range(len(w1)):
        alone = sam_inner_max(w1[i], p, eta, n, eps[i], attack)
        assert together.log_value[i] == alone.log_value and together.error[i] == alone.error
        assert np.array_equal(together.candidates[i], alone.candidates)
    slopes = risk_slope(w1[:, None] + together.candidates, p, eta, n, attack)
    assert np.array_equal(together.candidate_slopes.value, slopes.value)
    assert np.array_equal(together.candidate_slopes.error, slopes.error)
    assert np.array_equal(together.candidate_log_values, log_risk(w1[:, None] + together.candidates, p, eta, n,
                                                                  attack).value)


def test_the_inner_maximum_is_clean_by_default():
    """Without an attack, max over |δ| <= 0.3 of the clean risk; c = ηn > 0 puts it at an end of the interval. The
    reference is the definition's at 50 digits, and an attack of 0.3 moves it far beyond the tolerance (so a default
    that attacked, or ignored the attack, would fail)."""
    w1, p, eta, n, sam_eps = 0.8, 0.7, 0.5, 4, 0.3

    def reference(attack):
        return float(mpmath.log(max(_mp_risk(w1 - sam_eps, p, eta, n, attack), _mp_risk(w1 + sam_eps, p, eta, n,
                                                                                         attack))))

    by_default = sam_inner_max(w1, p, eta, n, sam_eps)
    tolerance = by_default.error + 4 * U * abs(by_default.log_value)
    assert abs(by_default.log_value - reference(0)) <= tolerance
    attacked = sam_inner_max(w1, p, eta, n, sam_eps, 0.3)
    assert abs(attacked.log_value - reference(0.3)) <= attacked.error + 4 * U * abs(attacked.log_value)
    assert abs(reference(0.3) - reference(0)) > 1e6 * tolerance


@pytest.mark.parametrize(("w1", "eps", "eps_x1"), [(0.8, 0.1, 0.3), (-0.6, 0.0, 0.2), (1.7, 0.2, 0.5),
                                                   (-2.5, 0.3, 0.1), (0.4, 0.0, 0.0)])
def test_the_slope_with_an_attack_on_x1_is_the_log_ratio_of_the_two_classes_derivatives(w1, eps, eps_x1):
    """risk_slope = log(d/dw1 of the class y x1 = -1's error) - log(-d/dw1 of the class y x1 = +1's error), each
    derivative taken numerically by mpmath from the risk's definition (|w1| in the x1 attack included)."""
    p, eta, n = 0.75, 0.6, 5
    w = mpmath.mpf(w1)
    scale = mpmath.sqrt(n)

    def threshold(sign):  # the class y x1 = sign errs when N(0,1) < (-sign w1 + eps_x1 |w1| - (eta - eps) n)/√n
        return lambda v: (-sign * v + eps_x1 * abs(v) - (mpmath.mpf(eta) - eps) * n) / scale

    up = mpmath.diff(lambda v: (1 - mpmath.mpf(p)) * mpmath.ncdf(threshold(-1)(v)), w)
    down = -mpmath.diff(lambda v: mpmath.mpf(p) * mpmath.ncdf(threshold(+1)(v)), w)
    expected = float(mpmath.log(up) - mpmath.log(down))
    got = risk_slope(w1, p, eta, n, eps, eps_x1=eps_x1)
    assert abs(got.value - expected) <= got.error + 4 * U * abs(expected)
    assert 0 < got.error < 1e-12
    # and the log-risk with the same attack is the definition's
    exact = float(mpmath.log(_mp_risk(w1, p, eta, n, eps, eps_x1)))
    lr = log_risk(w1, p, eta, n, eps, eps_x1=eps_x1)
    assert abs(lr.value - exact) <= lr.error + 4 * U * abs(exact)


def test_the_refinement_between_grid_nodes_computes_in_the_backend_it_is_given():
    """With mpmath at 40 digits the interior maximum's value is exact to far below float64's rounding."""
    from samat.theory.backend import mp_backend

    p, eta, n, attack = STRONG_ATTACKS[0]
    peak = n * math.log(p / (1 - p)) / (2 * (eta - attack) * n)
    bk = mp_backend(40)
    with bk.context():
        inner = sam_inner_max(mpmath.mpf(peak) + mpmath.mpf("0.3"), p, eta, n, 1.0, attack, bk)
        value = np.asarray(inner.log_value).item()
        assert isinstance(value, mpmath.mpf) and 0 < float(inner.error) < 1e-30
        # golden section to 0.618^40 of a cell ~ 1e-9 from the peak: the value is lower by ~ curvature x 1e-18 only
        assert abs(value - mpmath.log(_mp_risk(peak, p, eta, n, attack))) < 1e-15


def _mp_slope(w1, p, eta, n, eps):
    """log(d/dw1 of the class y x1 = -1's error) - log(-d/dw1 of the class y x1 = +1's error), by mpmath from the
    risk's definition (no attack on x1)."""
    c, scale = (mpmath.mpf(eta) - eps) * n, mpmath.sqrt(n)
    up = mpmath.diff(lambda v: (1 - mpmath.mpf(p)) * mpmath.ncdf((v - c) / scale), mpmath.mpf(w1))
    down = -mpmath.diff(lambda v: mpmath.mpf(p) * mpmath.ncdf((-v - c) / scale), mpmath.mpf(w1))
    return float(mpmath.log(up) - mpmath.log(down))


def test_the_slope_is_clean_by_default():
    """Without an attack, the clean risk's slope (the definition's, at 50 digits); an attack of 0.3 moves it far
    beyond the tolerance."""
    got = risk_slope(0.8, 0.7, 0.5, 4)
    tolerance = got.error + 4 * U * abs(got.value)
    assert abs(got.value - _mp_slope(0.8, 0.7, 0.5, 4, 0)) <= tolerance
    assert abs(_mp_slope(0.8, 0.7, 0.5, 4, 0.3) - _mp_slope(0.8, 0.7, 0.5, 4, 0)) > 1e6 * tolerance
