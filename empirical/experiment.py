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

Without ``tables``, one table of ``columns`` (default: natural accuracy only) is written. ``n_eval`` (default
1000) and ``eval_seed`` (default 0) in ``[experiment]`` choose the evaluation's test subset and attack seed.
Everything is validated when the file is loaded, before any run trains.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empirical.config import TrainConfig, read_document
from empirical.evaluate import AVERAGE, DEFAULT_N_EVAL, NATURAL, column_specs, read_evaluation
from empirical.runs import RunDir
from theory.errors import ParameterError, SamatError


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
    n_eval: int = DEFAULT_N_EVAL  # test images of the evaluation
    eval_seed: int = 0  # seed of the evaluation's subset and attacks
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column of every table, in order of first appearance (what evaluation must produce)."""
        return tuple(dict.fromkeys(c for t in self.tables for c in t.columns))

    def runs_for(self, label: str) -> list[RunSpec]:
        return [r for r in self.runs if r.label == label]

    def finished(self, label: str) -> list[RunDir]:
        """The finished runs (seeds) of ``label``."""
        return [run for run in (RunDir(r.run_dir) for r in self.runs_for(label)) if run.finished]


def slug(text: str) -> str:
    text = text.replace("ρ", "rho").replace("ε", "eps").replace("ℓ∞", "linf").replace("ℓ2", "l2").replace("∞", "inf")
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def load_experiment(path: str | Path, *, runs_dir: str | Path = "runs", overrides: dict[str, Any] | None = None,
                    seeds: tuple[int, ...] | None = None) -> Experiment:
    """Read and validate an experiment file; ``overrides`` (from --set) apply to every run.

    Everything a run would trip over later is checked here: the structure of the file (a malformed one is a
    :class:`SamatError` naming the key), the attack columns (also against vector datasets, which only FGSM and
    PGD attack), ``n_eval``, ``eval_seed`` and every run's configuration.
    """
    from empirical.attacks import GRADIENT_METHODS

    path = Path(path)
    doc = read_document(path, "experiment file", " (see configs/ for the papers' grids)")

    def malformed(key: str, valid: str) -> SamatError:
        return SamatError(f"{path}: {key} must be {valid}")

    def columns_of(value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise malformed(key, 'a list of column names, e.g. ["natural", "pgd10_linf@1/255"]')
        return tuple(value)

    head = doc.get("experiment", {})
    if not isinstance(head, dict):
        raise malformed("[experiment]", "a table")
    name = head.get("name") or path.stem
    title = head.get("title", name)
    for key, value in (("name", name), ("title", title)):
        if not isinstance(value, str):
            raise malformed(f"[experiment] {key}", "a string")
    if seeds is None:
        seeds = head.get("seeds", [0])
        if not isinstance(seeds, list) or not seeds or not all(_is_int(s, 0) for s in seeds):
            raise malformed("[experiment] seeds", "a non-empty list of integers >= 0, e.g. [0, 1, 2]")
    seeds = tuple(seeds)
    entries = head.get("tables", [])
    if not isinstance(entries, list) or not all(isinstance(t, dict) for t in entries):
        raise malformed("[experiment] tables", 'a list of tables, e.g. [{ title = "T", columns = ["natural"] }]')
    tables = []
    for i, t in enumerate(entries, 1):
        if not isinstance(t.get("title"), str) or not t["title"]:
            raise malformed(f"[experiment] tables[{i}].title", "a non-empty string (every table needs a title)")
        tables.append(Table(t["title"], columns_of(t.get("columns", [NATURAL]), f"tables[{i}].columns"), True))
    if not tables:
        tables = [Table(title, columns_of(head.get("columns", [NATURAL]), "[experiment] columns"), False)]
    for key, minimum, default in (("n_eval", 1, DEFAULT_N_EVAL), ("eval_seed", 0, 0)):
        if not _is_int(head.get(key, default), minimum):
            raise ParameterError(key, head[key], f"an integer >= {minimum} (in [experiment] of {path})")
    try:
        attacks = column_specs(c for t in tables for c in t.columns)
    except ParameterError as err:
        raise ParameterError(err.name, err.value, f"{err.valid} (in [experiment] of {path})") from None
    image_only = [c for c, s in attacks.items() if s.method not in GRADIENT_METHODS]

    base = doc.get("base", {})
    if not isinstance(base, dict):
        raise malformed("[base]", "a table of configuration fields")
    entries = doc.get("run", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise malformed("run", "a list of [[run]] tables")
    if not entries:
        raise SamatError(f"{path} defines no [[run]] entries")
    runs, labels = [], []
    for entry in entries:
        entry = dict(entry)
        label = entry.pop("label", None)
        if not label or not isinstance(label, str):
            raise SamatError(f"{path}: every [[run]] needs a label (a non-empty string)")
        if label in labels:
            raise SamatError(f"{path}: the label {label!r} appears twice")
        labels.append(label)
        paper = _paper_numbers(entry.pop("paper", {}), f"run {label!r}", malformed)
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
            if cfg.dataset == "gaussian" and image_only:
                raise SamatError(f"{path}: column {image_only[0]!r} attacks images, but run {label!r} trains on "
                                 "vectors (dataset gaussian): only fgsm and pgd columns apply to it")
            runs.append(RunSpec(label, cfg, paper, Path(runs_dir) / name / f"{slug(label)}-seed{seed}"))
    return Experiment(name, title, seeds, tuple(tables), tuple(labels), tuple(runs), path,
                      head.get("n_eval", DEFAULT_N_EVAL), head.get("eval_seed", 0),
                      {k: v for k, v in head.items()
                       if k not in ("name", "title", "seeds", "tables", "columns", "n_eval", "eval_seed")})


def _paper_numbers(paper: Any, where: str, malformed) -> dict[str, dict[str, float]]:
    """A run's ``paper`` table: table title -> column -> the paper's number."""
    if not isinstance(paper, dict):
        raise malformed(f"{where} paper", 'tables of numbers, e.g. [run.paper."D Table 2"] natural = 94.5')
    out = {}
    for table, numbers in paper.items():
        if not isinstance(numbers, dict):
            raise malformed(f"{where} paper.{table!r}", "a table of column = number")
        for column, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise malformed(f"{where} paper.{table!r}.{column!r}", f"a number (percent), not {value!r}")
        out[table] = {column: float(value) for column, value in numbers.items()}
    return out


def evaluate_run(exp: Experiment, spec: RunSpec, *, progress: bool = True, log=print) -> dict | None:
    """Evaluate a finished run on the experiment's attack columns (what eval.json already has is kept)."""
    from empirical.evaluate import evaluate_path

    if not column_specs(exp.columns):
        return None
    return evaluate_path(spec.run_dir, list(exp.columns), n_eval=exp.n_eval, seed=exp.eval_seed,
                         device=spec.config.device, data_dir=spec.config.data_dir, progress=progress, log=log)


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
        finished = exp.finished(label)
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
            mean, std = mean_std(values[c])
            row[c] = {"mean": mean, "std": std, "n": len(values[c]), "paper": paper.get(c)}
        rows.append(row)
    return rows


def run_results(run: RunDir) -> dict[str, Any]:
    """Accuracies of a finished run as fractions, and its failed sanity checks.

    With an evaluation (eval.json), every column including natural comes from it, so that natural and
    robust accuracy are measured on the same images; without one, natural is the final test accuracy.
    A file that cannot be read is a :class:`SamatError` naming it.
    """
    try:
        final = json.loads(run.final.read_text())
        results: dict[str, Any] = {NATURAL: float(final["test_acc"])}
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, ValueError) as err:
        raise SamatError(f"{run.final} is not a finished run's summary ({type(err).__name__}: {err}): train the "
                         "run again (samat train --overwrite)") from None
    evaluation = read_evaluation(run.path / "eval.json")
    if evaluation is not None:
        results.update({k: float(v) for k, v in evaluation["accuracy"].items()})
        results["failed_checks"] = [c["check"] for c in evaluation.get("sanity", []) if not c["passed"]]
    return results


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean (None without values) and sample standard deviation (None with fewer than two)."""
    mean = sum(values) / len(values) if values else None
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


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
