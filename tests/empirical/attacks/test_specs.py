"""Threat models as data (samat.empirical.attacks.specs): the papers' columns, names, parsing and bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.attacks.pgd import pgd
from samat.empirical.attacks.specs import (
    PAPER_COLUMNS,
    REGISTRY,
    SAM_ALONE_COLUMNS,
    Algorithm,
    AttackSpec,
    expand,
    parse_attack,
    parse_eps,
    spec,
)
from samat.empirical.vocabulary import Norm

# ---------------------------------------------------------------------------------------------------------
# Specs, names and parsing
# ---------------------------------------------------------------------------------------------------------


def test_paper_columns_are_tables_2_and_3():
    assert [s.label for s in PAPER_COLUMNS] == [
        "fgsm_linf@1/255", "pgd10_linf@1/255", "pgd10_l2@32/255", "autoattack_l2@32/255", "stadv@1.0",
        "fab_l2@32/255", "pixle",
    ]
    assert [s.label for s in SAM_ALONE_COLUMNS] == [
        "pgd10_linf@1/255", "pgd10_linf@2/255", "pgd10_l2@16/255", "pgd10_l2@32/255"]
    fab = spec("fab_l2")
    assert (fab.norm, fab.eps, fab.steps) == (Norm.L2, 32 / 255, 10)
    assert (spec("pixle").steps, spec("stadv").tau) == (5, 0.05)


def test_pgd_step_size_is_madry_2_5_eps_over_steps():
    (s1, s2) = parse_attack("pgd10_linf@1/255,2/255")
    assert (s1.eps, s2.eps) == (1 / 255, 2 / 255)
    assert s1.step_size == pytest.approx(2.5 * (1 / 255) / 10, rel=1e-15)
    assert s2.step_size == pytest.approx(2 * s1.step_size, rel=1e-15)
    assert spec("fgsm_linf").step_size == spec("fgsm_linf").eps
    s = spec("pgd50_l2")
    assert (s.steps, s.norm, s.eps, s.algorithm) == (50, Norm.L2, 32 / 255, Algorithm.PGD)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_label_parses_back_to_the_same_spec(name):
    for s in expand(name, None if REGISTRY[name].eps is None else [REGISTRY[name].eps, 0.3, "7/255"]):
        assert parse_attack(s.label) == (s,)


@given(st.integers(0, 1020), st.sampled_from(["pgd10_linf", "pgd10_l2", "fgsm_linf", "autoattack_l2"]))
def test_eps_fractions_parse_once_and_round_trip(k, name):
    (s,) = parse_attack(f"{name}@{k}/255")
    assert s.eps == k / 255 and isinstance(s.eps, float)
    assert parse_attack(s.label) == (s,)


def test_parse_attack_flattens_and_specs_are_frozen():
    specs = [s for text in ["fgsm_linf", "pgd10_l2@16/255,32/255", "stadv@0.5"] for s in parse_attack(text)]
    assert [s.label for s in specs] == ["fgsm_linf@1/255", "pgd10_l2@16/255", "pgd10_l2@32/255", "stadv@0.5"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        specs[0].eps = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: spec("pgd_linf"), "attack"),
        (lambda: parse_attack("deepfool@1/255"), "attack"),
        (lambda: parse_attack("pgd0_l2"), "attack"),
        (lambda: parse_attack("pgd10_linf@-1/255"), "eps"),
        (lambda: parse_attack("pgd10_linf@8/0"), "eps"),
        (lambda: parse_attack("pgd10_linf@eight"), "eps"),
        (lambda: parse_eps(float("nan")), "eps"),
        (lambda: spec("pgd10_l2").at(-0.5), "eps"),
        (lambda: parse_attack("pixle@1/255"), "eps"),
        (lambda: AttackSpec("x", Algorithm.PGD, Norm.LINF, -1.0, 10), "eps"),
        (lambda: pgd(nn.Identity(), torch.zeros(1, 2), torch.zeros(1).long(), norm="l1", eps=0.1, step_size=0.1,
                     steps=1), "norm"),
        (lambda: pgd(nn.Identity(), torch.zeros(1, 2), torch.zeros(1).long(), norm="linf", eps=-0.1, step_size=0.1,
                     steps=1), "eps"),
    ],
)
def test_bad_input_is_a_one_line_parameter_error(call, name):
    with pytest.raises(ParameterError) as info:
        call()
    assert info.value.name == name
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{name}=")
