"""Numbers from user text (samat.core.numbers): "8/255" parsed exactly once, bad text a one-line parameter error."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from samat.core.errors import ParameterError
from samat.core.numbers import SEED_MAX, is_int, is_seed, parse_number


@given(st.integers(-10**6, 10**6), st.integers(1, 10**6))
def test_a_fraction_is_the_float_nearest_its_exact_value(numerator, denominator):
    assert parse_number(f"{numerator}/{denominator}", "eps") == float(Fraction(numerator, denominator))


@pytest.mark.parametrize(("text", "value"), [("8/255", 8 / 255), (" 1.5 / 255 ", 1.5 / 255), ("1e-3", 1e-3),
                                              (0.25, 0.25), (3, 3.0), ("1e400/1", math.inf), ("-1e400/1", -math.inf)])
def test_numbers_and_fractions(text, value):
    assert parse_number(text, "eps") == value and isinstance(parse_number(text, "eps"), float)


@pytest.mark.parametrize("text", ["eight", "8/0", "1/2/3", "", True, None])
def test_bad_text_is_a_one_line_error_naming_the_parameter(text):
    with pytest.raises(ParameterError) as info:
        parse_number(text, "eps")
    assert info.value.name == "eps" and "\n" not in str(info.value) and str(info.value).startswith("eps=")


def test_integers_and_seeds():
    assert is_int(3) and not is_int(True) and not is_int(3.0)
    assert is_seed(0) and is_seed(SEED_MAX) and not is_seed(SEED_MAX + 1) and not is_seed(-1) and not is_seed(1.0)
