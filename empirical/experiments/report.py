"""An experiment's report: table.md (one table per paper table, the paper's numbers beside ours), table.csv
(long format, numbers as numbers) and table.json, with the figures of :mod:`.plots`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from core.results import write_json
from empirical.evaluation.columns import AVERAGE, NATURAL
from empirical.experiments.grid import Experiment, Table
from empirical.experiments.plots import plot_experiment
from empirical.experiments.results import collect, report_inputs


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "—"
    text = f"{stat['mean']:.1f}"
    if stat["std"] is not None:
        text += f" ± {stat['std']:.1f}"
    return text


def markdown_table(table: Table, rows: list[dict]) -> str:
    """Ours (mean ± std over seeds), with the paper's number beside it in each column that has one."""
    with_paper = [c for c in table.columns if table.from_paper and any(r[c]["paper"] is not None for r in rows)]
    header = ["Method"]
    for c in table.columns:
        header += [column_title(c)] + (["paper"] if c in with_paper else [])
    header.append("seeds")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["label"] + (" ⚠" if r["failed_checks"] else "")]
        for c in table.columns:
            cells.append(_cell(r[c]))
            if c in with_paper:
                cells.append("—" if r[c]["paper"] is None else f"{r[c]['paper']:.1f}")
        cells.append(f"{r['seeds_done']}/{r['seeds']}")
        lines.append("| " + " | ".join(cells) + " |")
    flagged = [w for r in rows for w in r["failed_checks"]]
    if flagged:
        lines += ["", "⚠ failed sanity checks (the numbers of these rows are suspect):"]
        lines += [f"- {w}" for w in dict.fromkeys(flagged)]
    return "\n".join(lines)


def csv_rows(table: Table, rows: list[dict]) -> list[list]:
    out = []
    for r in rows:
        for c in table.columns:
            s = r[c]
            out.append([table.title, r["label"], c, s["mean"], s["std"], s["n"], s["paper"]])
    return out


def column_title(column: str) -> str:
    return {NATURAL: "Natural", AVERAGE: "Average"}.get(column, column)


def write_report(exp: Experiment, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """table.md (one table per paper table), table.csv (long format: numbers as numbers), table.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {exp.title}", "",
          f"Experiment `{exp.name}` from `{exp.source}`: {exp.task.metric} in percent, mean ± std over the finished "
          "seeds (the last column counts them); the paper's numbers stand beside ours where the table is the "
          "paper's.", ""]
    records, dump = [], {}
    for table in exp.tables:
        rows = collect(exp, table)
        md += [f"## {table.title}", "", markdown_table(table, rows), ""]
        records += csv_rows(table, rows)
        dump[table.title] = rows
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["table", "label", "column", "mean", "std", "n", "paper"])
    writer.writerows([["" if v is None else v for v in rec] for rec in records])
    paths = {"markdown": out / "table.md", "csv": out / "table.csv", "json": out / "table.json"}
    if plots:
        figures = [p for p in plot_experiment(exp, out) if p.suffix == ".png"]
        md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
        paths |= {f"figure {p.stem}": p for p in figures}
    paths["markdown"].write_text("\n".join(md))
    paths["csv"].write_text(buffer.getvalue())
    write_json(paths["json"], {"tables": dump}, inputs=report_inputs(exp), indent=2)
    return paths
