"""The study's verdicts written for people (verdicts.md) and as data (verdicts.json)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from samat.core.results import atomic_write_text, write_json
from samat.gaussian_study.verdicts import CLAIMS, Verdict, verdicts


def markdown(found: list[Verdict]) -> str:
    lines = ["Computed by `samat.gaussian_study.verdicts` from the study's summary.json: a theory verdict within the "
             "solver's accuracy; a trained one with t-intervals over seeds at family-wise 95% (Bonferroni over "
             "every comparison of the same claim and setting in the study; the ± below are those intervals).", ""]
    for claim, statement in CLAIMS.items():
        rows = [v for v in found if v.claim == claim]
        if not rows:
            continue
        lines += [f"### {claim}: {statement}", "", "| setting | model | verdict | evidence |", "|---|---|---|---|"]
        for v in rows:
            verdict = v.verdict if v.verdict == "holds" else f"**{v.verdict}**"
            lines.append(f"| {v.setting} | {v.model} | {verdict} | {v.evidence} |")
        lines.append("")
    return "\n".join(lines)


def write(summary: dict[str, Any], out: Path, summary_path: Path | None = None) -> tuple[Path, Path]:
    """verdicts.md and verdicts.json in ``out`` from the study's summary."""
    found = verdicts(summary)
    md, js = Path(out) / "verdicts.md", Path(out) / "verdicts.json"
    atomic_write_text(md, markdown(found))
    write_json(js, {"verdicts": [asdict(v) for v in found]},
               inputs={"summary": str(summary_path or Path(out) / "summary.json")})
    return md, js
