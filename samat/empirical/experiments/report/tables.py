"""An experiment's report: table.md (one table per paper table, the paper's numbers beside ours), table.csv
(long format, numbers as numbers) and table.json, with the figures of :mod:`.plots`.

Columns carry readable titles ("PGD-10 ℓ∞ 1/255"); table.csv keeps the machine-readable column id beside the
title. Only runs trained as the experiment asks for count, and only evaluations of their final weights; the
others are listed under the tables, never shown as current.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from samat.core.results import atomic_write_text, write_json
from samat.empirical.evaluation.columns import NATURAL
from samat.empirical.experiments.catalog import display_path
from samat.empirical.experiments.duality import duality_map, readiness
from samat.empirical.experiments.grid import Experiment, Table
from samat.empirical.experiments.report import duality as duality_report
from samat.empirical.experiments.report.plots import plot_experiment
from samat.empirical.experiments.results import TEXT_DETAILS, collect, report_inputs, text_attack_details
from samat.empirical.vocabulary import Task

CSV_DECIMALS = 4  # percentages in table.csv: accuracies over n images are multiples of 100/n, means over seeds


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "—"
    text = f"{stat['mean']:.1f}"
    if stat["std"] is not None:
        text += f" ± {stat['std']:.1f}"
    return text


def _measured(exp: Experiment) -> str:
    """What the tables hold, for the report's first paragraph."""
    if exp.task is Task.TEXT:
        return ("natural accuracy and the attacks' success rate (ASR: successful / (successful + failed), the "
                "sentences already misclassified left out; lower is more robust)")
    return exp.task.metric


def markdown_table(exp: Experiment, table: Table, rows: list[dict]) -> str:
    """Ours (mean ± std over seeds), with the paper's number beside it in each column that has one."""
    with_paper = [c for c in table.columns if table.from_paper and any(r[c]["paper"] is not None for r in rows)]
    header = ["Method"]
    for c in table.columns:
        header += [exp.column_title(c)] + (["paper"] if c in with_paper else [])
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


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, CSV_DECIMALS)


def csv_rows(exp: Experiment, table: Table, rows: list[dict]) -> list[list]:
    out = []
    for r in rows:
        for c in table.columns:
            s = r[c]
            out.append([table.title, r["label"], c, exp.column_title(c), _round(s["mean"]), _round(s["std"]), s["n"],
                        _round(s["paper"])])
    return out


def text_details_table(exp: Experiment) -> tuple[str, list[dict]]:
    """TextAttack's other metrics per method and recipe (Markdown, and the rows)."""
    rows = text_attack_details(exp)
    header = ["Method", "Attack"] + [title for _, title, _ in TEXT_DETAILS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["label"], exp.column_title(r["column"]).removesuffix(" ASR")]
        cells += [_cell(r[key]) for key, _, _ in TEXT_DETAILS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), rows


def _left_out(exp: Experiment, rows: list[dict]) -> list[str]:
    """The lines under the tables that list what does not count: stale runs and evaluations."""
    lines = []
    stale = exp.stale()
    if stale:
        lines += ["", f"Not counted: {len(stale)} run(s) trained with another configuration than the experiment "
                  "asks for now (stale); `samat experiment run --overwrite` retrains them:"]
        lines += [f"- `{spec.run_dir.name}`: {why}" for spec, why in stale]
    evaluations = list(dict.fromkeys(w for r in rows for w in r["stale_evaluations"]))
    if evaluations:
        lines += ["", "Columns not counted (their evaluation is not of the weights model.pt holds now, or not with "
                  "the experiment's settings):"]
        lines += [f"- {w}" for w in evaluations]
    replaced = list(dict.fromkeys(w for r in rows for w in r.get("replaced_weights", [])))
    if replaced:
        lines += ["", "Runs whose model.pt is not the weights they trained (their numbers are of the weights they "
                  "hold now):"]
        lines += [f"- {w}" for w in replaced]
    return lines


def write_report(exp: Experiment, out_dir: str | Path, *, plots: bool = True,
                 log: Callable[[str], None] = lambda m: None) -> dict[str, Path]:
    """table.md (one table per paper table), table.csv (long format: numbers as numbers), table.json, figures.
    What is left out (stale runs, stale evaluations) is listed in table.md and told to ``log``. A duality grid adds
    its map (:mod:`.duality`: a section of table.md, duality.json and its figure); it needs every run
    evaluated, which is checked before anything is written."""
    if exp.duality is not None:
        readiness(exp)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {exp.title}", "",
          f"Experiment `{exp.name}` from `{display_path(exp.source)}`: {_measured(exp)} in percent, mean ± std over "
          "the finished seeds (the last column counts them); the paper's numbers stand beside ours where the table "
          "is the paper's.", ""]
    records, dump, all_rows = [], {}, []
    single = len(exp.tables) == 1 and exp.tables[0].title == exp.title
    for table in exp.tables:
        rows = collect(exp, table)
        md += ([] if single else [f"## {table.title}", ""]) + [markdown_table(exp, table, rows), ""]
        records += csv_rows(exp, table, rows)
        dump[table.title] = rows
        all_rows += rows
    duality: dict[str, Path] = {}
    if exp.duality is not None:
        section, duality = duality_report.write(duality_map(exp), exp.runs[0].config.dataset, out, exp.title,
                                                report_inputs(exp), plots=plots)
        md += [section]
    if exp.task is Task.TEXT and any(c != NATURAL for c in exp.columns):
        details, dump["attack details"] = text_details_table(exp)
        md += ["## Attack details", "", "TextAttack's other metrics, mean ± std over the seeds: accuracy under attack "
               "(failed / all sentences), queries per attacked sentence, words changed by the successful attacks.",
               "", details, ""]
    left_out = _left_out(exp, all_rows)
    if left_out:
        md += left_out[1:] + [""]
        log(f"{out / 'table.md'} lists runs or evaluations that are stale and not counted")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", "label", "column", "title", "mean", "std", "n", "paper"])
    writer.writerows(records)
    paths = {"markdown": out / "table.md", "csv": out / "table.csv", "json": out / "table.json"}
    paths |= {k: p for k, p in duality.items() if not k.startswith("figure")}
    if plots:
        figures = [p for p in plot_experiment(exp, out) if p.suffix == ".png"]
        figures += [p for k, p in duality.items() if k.startswith("figure")]
        md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
        paths |= {f"figure {p.stem}": p for p in figures}
    atomic_write_text(paths["markdown"], "\n".join(md))
    atomic_write_text(paths["csv"], buffer.getvalue())
    write_json(paths["json"], {"tables": dump}, inputs=report_inputs(exp), indent=2)
    return paths


def terminal_text(markdown: str) -> str:
    """table.md for a terminal: the tables and notes, without the figures' image links (the files are listed
    apart)."""
    head, _, _ = markdown.partition("\n## Figures")
    return head.rstrip() + "\n"
