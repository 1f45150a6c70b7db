"""Table columns: "natural", "average", and one attack each ("pgd10_linf@1/255", "stadv", ...)."""

from __future__ import annotations

from collections.abc import Iterable

from samat.core.errors import ParameterError
from samat.empirical.attacks.specs import AttackSpec, parse_attack

NATURAL, AVERAGE = "natural", "average"  # the table columns that are not attacks ("average": of a table's attacks)
SANITY = " (sanity)"  # suffix of the columns of the sanity attacks


def column_spec(column: str) -> AttackSpec:
    """The one attack a table column names ("pgd10_linf@1/255", "stadv", ...)."""
    specs = parse_attack(column)
    if len(specs) != 1:
        raise ParameterError("attack", column, "a single attack with at most one budget, e.g. pgd10_linf@8/255")
    return specs[0]


def column_specs(columns: Iterable[str]) -> dict[str, AttackSpec]:
    """The attack of every column that needs one (not natural, not the average), by column name, each parsed
    once: "pgd10_linf@1/255,2/255" becomes two columns, a single attack keeps the user's name."""
    out: dict[str, AttackSpec] = {}
    for c in columns:
        if c in (NATURAL, AVERAGE):
            continue
        specs = parse_attack(c)
        for label, s in [(c, specs[0])] if len(specs) == 1 else [(s.label, s) for s in specs]:
            out.setdefault(label, s)
    return out


def attack_columns(columns: Iterable[str]) -> list[str]:
    """The columns that need an attack, in order, without repeats (see :func:`column_specs`)."""
    return list(column_specs(columns))
