"""Experiment grids: a TOML file of runs x seeds, trained (and evaluated) with finished runs skipped,
then aggregated into tables shaped like the papers', with the papers' numbers beside ours.

    [experiment]
    name = "cifar10"                      # runs go to <runs_dir>/<name>/<label>-seed<k>
    seeds = [0, 1, 2]
    tables = [                            # one output table each; columns: "natural" and attacks
      { title = "D Table 2", columns = ["natural", "pgd10_linf@1/255"] },
    ]

    [base]                                # TrainConfig fields shared by every run
    dataset = "cifar10"
    model = "prn18"

    [[run]]
    label = "SAM (ρ=0.1)"
    method = "sam"
    rho = 0.1
    [run.paper."D Table 2"]               # the paper's numbers for this row, in percent
    natural = 95.4

Without ``tables``, one table of ``columns`` (default: natural accuracy only) is written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empirical.config import TrainConfig
from empirical.runs import RunDir
from theory.errors import ParameterError, SamatError

NATURAL, AVERAGE = "natural", "average"  # "average": the mean of a table's attack columns (D Tables 2-3)


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    from_paper: bool  # whether the runs carry the paper's numbers for it


@dataclass(frozen=True)
class RunSpec:
    label: str
    config: TrainConfig
    paper: dict[str, dict[str, float]]  # table title -> column -> the paper's number (percent)
    run_dir: Path


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    seeds: tuple[int, ...]
    tables: tuple[Table, ...]
    labels: tuple[str, ...]
    runs: tuple[RunSpec, ...]
    source: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column of every table, in order of first appearance (what evaluation must produce)."""
        return tuple(dict.fromkeys(c for t in self.tables for c in t.columns))

    def runs_for(self, label: str) -> list[RunSpec]:
        return [r for r in self.runs if r.label == label]


def slug(text: str) -> str:
    text = text.replace("ρ", "rho").replace("ε", "eps").replace("ℓ∞", "linf").replace("ℓ2", "l2").replace("∞", "inf")
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def load_experiment(path: str | Path, *, runs_dir: str | Path = "runs", overrides: dict[str, Any] | None = None,
                    seeds: tuple[int, ...] | None = None) -> Experiment:
    """Read and validate an experiment file; ``overrides`` (from --set) apply to every run."""
    path = Path(path)
    if not path.exists():
        raise SamatError(f"experiment file {path} not found (see configs/ for the papers' grids)")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SamatError(f"{path} is not valid TOML: {err}") from None
    head = doc.get("experiment", {})
    name = head.get("name") or path.stem
    seeds = tuple(seeds if seeds is not None else head.get("seeds", [0]))
    tables = tuple(Table(t["title"], tuple(t.get("columns", [NATURAL])), True) for t in head.get("tables", []))
    if not tables:
        tables = (Table(head.get("title", name), tuple(head.get("columns", [NATURAL])), False),)
    base = dict(doc.get("base", {}))
    entries = doc.get("run", [])
    if not entries:
        raise SamatError(f"{path} defines no [[run]] entries")
    runs, labels = [], []
    for entry in entries:
        entry = dict(entry)
        label = entry.pop("label", None)
        if not label:
            raise SamatError(f"{path}: every [[run]] needs a label")
        if label in labels:
            raise SamatError(f"{path}: the label {label!r} appears twice")
        labels.append(label)
        paper = {table: {k: float(v) for k, v in numbers.items()} for table, numbers in entry.pop("paper", {}).items()}
        unknown = sorted(set(paper) - {t.title for t in tables})
        if unknown:
            raise SamatError(f"{path}: run {label!r} gives numbers for {unknown[0]!r}, "
                             "which is not in [experiment] tables")
        for seed in seeds:
            values = base | entry | (overrides or {}) | {"seed": seed}
            try:
                cfg = TrainConfig.from_dict(values)
            except ParameterError as err:
                raise ParameterError(err.name, err.value, f"{err.valid} (in run {label!r} of {path})") from None
            runs.append(RunSpec(label, cfg, paper, Path(runs_dir) / name / f"{slug(label)}-seed{seed}"))
    return Experiment(name, head.get("title", name), seeds, tables, tuple(labels), tuple(runs), path,
                      {k: v for k, v in head.items() if k not in ("name", "title", "seeds", "tables", "columns")})


def evaluate_run(exp: Experiment, spec: RunSpec, *, progress: bool = True, log=print) -> dict | None:
    """Evaluate a finished run on the experiment's attack columns (what eval.json already has is kept)."""
    from empirical.evaluate import DEFAULT_N_EVAL, attack_columns, evaluate_path

    columns = attack_columns(exp.columns)
    if not columns:
        return None
    return evaluate_path(spec.run_dir, columns, n_eval=int(exp.extra.get("n_eval", DEFAULT_N_EVAL)),
                         seed=int(exp.extra.get("eval_seed", 0)), device=spec.config.device,
                         data_dir=spec.config.data_dir, progress=progress, log=log)


def run_experiment(exp: Experiment, *, progress: bool = True, evaluate: bool = True, log=print) -> list[dict]:
    """Train every unfinished run (resuming interrupted ones), then evaluate it on the experiment's attack
    columns; finished runs and finished evaluations are skipped, not redone."""
    from empirical.train import load_data, train

    outcomes, cache = [], {}
    todo = [r for r in exp.runs if not RunDir(r.run_dir).finished]
    log(f"{exp.name}: {len(exp.runs)} runs, {len(exp.runs) - len(todo)} already finished")
    for i, spec in enumerate(exp.runs, 1):
        run = RunDir(spec.run_dir)
        if run.finished:
            outcomes.append({"run": str(spec.run_dir), "status": "skipped (finished)"})
        else:
            key = (spec.config.dataset, spec.config.data_dir, spec.config.train_subset, spec.config.test_subset,
                   spec.config.seed, json.dumps(spec.config.gaussian, sort_keys=True))
            if key not in cache:
                cache.clear()  # keep one dataset in memory at a time
                cache[key] = load_data(spec.config)
            log(f"[{i}/{len(exp.runs)}] {spec.label}, seed {spec.config.seed} -> {spec.run_dir} ({run.status()})")
            summary = train(spec.config, spec.run_dir, resume=True, progress=progress, data=cache[key])
            outcomes.append({"run": str(spec.run_dir), "status": "trained", "test_acc": summary["test_acc"]})
        if evaluate:
            evaluate_run(exp, spec, progress=progress, log=log)
    return outcomes


# --- Aggregation ----------------------------------------------------------------------------------


def collect(exp: Experiment, table: Table) -> list[dict[str, Any]]:
    """One row per label: mean, std and count over finished seeds of each column, and the paper's number."""
    rows = []
    for label in exp.labels:
        values: dict[str, list[float]] = {c: [] for c in table.columns}
        specs = exp.runs_for(label)
        finished = [RunDir(s.run_dir) for s in specs if RunDir(s.run_dir).finished]
        attacks = [c for c in table.columns if c not in (NATURAL, AVERAGE)]
        warnings: list[str] = []
        for run in finished:
            results = run_results(run)
            if AVERAGE in table.columns and attacks and all(c in results for c in attacks):
                results[AVERAGE] = sum(results[c] for c in attacks) / len(attacks)
            for c in table.columns:
                if c in results:
                    values[c].append(100.0 * results[c])
            warnings += [f"{run.name}: {w}" for w in results.get("failed_checks", [])]
        row: dict[str, Any] = {"label": label, "seeds_done": len(finished), "seeds": len(specs),
                               "failed_checks": warnings}
        paper = specs[0].paper.get(table.title, {})
        for c in table.columns:
            v = values[c]
            row[c] = {"mean": sum(v) / len(v) if v else None, "std": _std(v), "n": len(v), "paper": paper.get(c)}
        rows.append(row)
    return rows


def run_results(run: RunDir) -> dict[str, Any]:
    """Accuracies of a finished run as fractions, and its failed sanity checks.

    With an evaluation (eval.json), every column including natural comes from it, so that natural and
    robust accuracy are measured on the same images; without one, natural is the final test accuracy.
    """
    results: dict[str, Any] = {NATURAL: float(run.read_final()["test_acc"])}
    eval_path = run.path / "eval.json"
    if eval_path.exists():
        evaluation = json.loads(eval_path.read_text())
        results.update({k: float(v) for k, v in evaluation.get("accuracy", {}).items() if v is not None})
        results["failed_checks"] = [c["check"] for c in evaluation.get("sanity", []) if not c["passed"]]
    return results


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


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
          f"Experiment `{exp.name}` from `{exp.source}`: accuracy in percent, mean ± std over the finished seeds "
          "(the last column counts them); the paper's numbers stand beside ours where the table is the paper's.", ""]
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
        from empirical.plots import plot_experiment

        figures = [p for p in plot_experiment(exp, out) if p.suffix == ".png"]
        md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
        paths |= {f"figure {p.stem}": p for p in figures}
    paths["markdown"].write_text("\n".join(md))
    paths["csv"].write_text(buffer.getvalue())
    paths["json"].write_text(json.dumps(dump, indent=2))
    return paths
