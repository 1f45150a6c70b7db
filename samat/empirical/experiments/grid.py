"""Experiment grids: a TOML file of runs x seeds and the tables their results go into, read and checked here (the
runner, :mod:`.runner`, trains and evaluates them; :mod:`.results` and :mod:`.report.tables` gather them into tables
shaped like the papers', with the papers' numbers beside ours).

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
``kind = "duality"`` makes the runs from a ``[duality]`` table of SAM radii and AT budgets instead of ``[[run]]``
entries (:mod:`.duality_grid`), and its report adds the duality map (:mod:`.duality`).
Everything is validated when the file is loaded, before any run trains.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samat.core.errors import ParameterError, SamatError
from samat.core.numbers import SEED_RANGE, is_seed, repeated_seed
from samat.empirical.attacks.specs import GRADIENT_ALGORITHMS, TEXT_ALGORITHMS, AttackSpec, check_budgets
from samat.empirical.data import input_shape_of
from samat.empirical.evaluation.columns import AVERAGE, NATURAL, column_specs
from samat.empirical.evaluation.run import DEFAULT_N_EVAL
from samat.empirical.experiments.duality_grid import KIND, KINDS, DualityLadder, read_ladder
from samat.empirical.training.config import TrainConfig, read_document
from samat.empirical.training.runs import RunDir
from samat.empirical.vocabulary import DatasetName, Task


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
    duality: DualityLadder | None = None  # kind = "duality": the ladders the runs were made from (.duality_grid)
    attacks: dict[str, AttackSpec] = field(default_factory=dict)  # every attack column's attack, parsed once

    def with_columns(self, columns: tuple[str, ...]) -> Experiment:
        """The same experiment with ``columns`` in every table (each parsed once, here)."""
        tables, attacks = _Reader(self.source).attacks(tuple(dataclasses.replace(t, columns=columns)
                                                             for t in self.tables))
        return dataclasses.replace(self, tables=tables, attacks=attacks)

    def column_title(self, column: str) -> str:
        """A column for people: "Natural", "Average", "PGD-10 ℓ∞ 1/255"; a text attack's column reports its success
        rate: "PSO ASR"."""
        titled = {NATURAL: "Natural", AVERAGE: "Average"}.get(column)
        if titled:
            return titled
        s = self.attacks[column]
        return f"{s.title} ASR" if s.algorithm in TEXT_ALGORITHMS else s.title

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column of every table, in order of first appearance (what evaluation must produce)."""
        return tuple(dict.fromkeys(c for t in self.tables for c in t.columns))

    @property
    def eval_settings(self) -> dict[str, int]:
        """The settings an evaluation of this experiment is made with (as eval.json records them)."""
        return {"n_eval": self.n_eval, "seed": self.eval_seed}

    def runs_for(self, label: str) -> list[RunSpec]:
        return [r for r in self.runs if r.label == label]

    @property
    def task(self) -> Task:
        """Classification or segmentation (every run of a grid has the same; see :func:`load_experiment`)."""
        return self.runs[0].config.model.task

    def finished(self, label: str) -> list[RunDir]:
        """The finished runs (seeds) of ``label`` that were trained as the experiment asks now; stale ones (trained
        with another configuration) are left out (:meth:`stale` lists them)."""
        return [RunDir(r.run_dir) for r in self.runs_for(label) if trained_as_asked(r)]

    def stale(self) -> list[tuple[RunSpec, str]]:
        """The finished runs trained with another configuration than the experiment asks now, each with what
        differs. A run whose record cannot be read is a SamatError naming the file."""
        out = []
        for r in self.runs:
            if RunDir(r.run_dir).finished:
                why = staleness(r, strict=True)
                if why:
                    out.append((r, why))
        return out


UNREADABLE = "its record cannot be read"


def staleness(spec: RunSpec, *, strict: bool = False) -> str:
    """What differs between a run's recorded configuration and the one it is asked to have ("epochs 1 -> 2"), or
    why it cannot be told (``strict``: raise that SamatError instead); "" when nothing differs."""
    try:
        diff = RunDir(spec.run_dir).differences(spec.config)
    except SamatError as err:
        if strict:
            raise
        return f"{UNREADABLE}: {err}"
    return ", ".join(f"{k} {_show(old)} -> {_show(new)}" for k, (old, new) in diff.items())


def trained_as_asked(spec: RunSpec) -> bool:
    """A finished run whose recorded configuration is the one the experiment asks for."""
    return RunDir(spec.run_dir).finished and not staleness(spec)


def _show(value: Any) -> str:
    return "(absent)" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


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
    reader = _Reader(Path(path))
    doc = read_document(reader.path, "experiment file", " (see configs/ for the papers' grids)")
    head = doc.get("experiment", {})
    if not isinstance(head, dict):
        raise reader.malformed("[experiment]", "a table")
    name, title = reader.names(head)
    if seeds is not None and (why := repeated_seed(seeds)) is not None:
        raise ParameterError("seeds", list(seeds), f"distinct ({why})")
    seeds = tuple(seeds) if seeds is not None else reader.seeds(head)
    tables, attacks = reader.attacks(reader.tables(head, title))
    ladder, doc = reader.kind(head, doc, tables, attacks)
    runs, labels = reader.runs(doc, tables, seeds, overrides or {}, attacks, Path(runs_dir) / name)
    tasks = {r.config.model.task for r in runs}
    if len(tasks) > 1:
        raise SamatError(f"{reader.path} mixes {' and '.join(sorted(t.value for t in tasks))} runs: put them in "
                         "separate files")
    reader.check_task_columns(attacks, tasks.pop())
    return Experiment(name, title, seeds, tables, labels, runs, reader.path,
                      head.get("n_eval", DEFAULT_N_EVAL), head.get("eval_seed", 0),
                      {k: v for k, v in head.items()
                       if k not in ("name", "title", "seeds", "tables", "columns", "n_eval", "eval_seed", "kind")},
                      ladder, attacks)


@dataclass(frozen=True)
class _Reader:
    """The parts of an experiment file, each validated with an error that names the file and the key."""

    path: Path

    def malformed(self, key: str, valid: str) -> SamatError:
        return SamatError(f"{self.path}: {key} must be {valid}")

    def names(self, head: dict) -> tuple[str, str]:
        name = head.get("name") or self.path.stem
        title = head.get("title", name)
        for key, value in (("name", name), ("title", title)):
            if not isinstance(value, str):
                raise self.malformed(f"[experiment] {key}", "a string")
        return name, title

    def seeds(self, head: dict) -> tuple[int, ...]:
        seeds = head.get("seeds", [0])
        if not isinstance(seeds, list) or not seeds or not all(is_seed(s) for s in seeds):
            raise self.malformed("[experiment] seeds", "a non-empty list of integers in [0, 2**63 - 1], e.g. [0, 1, 2]")
        if (why := repeated_seed(seeds)) is not None:
            raise self.malformed("[experiment] seeds", f"distinct ({why})")
        return tuple(seeds)

    def columns(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise self.malformed(key, 'a list of column names, e.g. ["natural", "pgd10_linf@1/255"]')
        return tuple(value)

    def tables(self, head: dict, title: str) -> tuple[Table, ...]:
        entries = head.get("tables", [])
        if not isinstance(entries, list) or not all(isinstance(t, dict) for t in entries):
            raise self.malformed("[experiment] tables",
                                 'a list of tables, e.g. [{ title = "T", columns = ["natural"] }]')
        tables = []
        for i, t in enumerate(entries, 1):
            if not isinstance(t.get("title"), str) or not t["title"]:
                raise self.malformed(f"[experiment] tables[{i}].title",
                                     "a non-empty string (every table needs a title)")
            columns = self.columns(t.get("columns", [NATURAL]), f"tables[{i}].columns")
            tables.append(Table(t["title"], columns, True))
        if not tables:
            tables = [Table(title, self.columns(head.get("columns", [NATURAL]), "[experiment] columns"), False)]
        if not _is_int(head.get("n_eval", DEFAULT_N_EVAL), 1):
            raise ParameterError("n_eval", head["n_eval"], f"an integer >= 1 (in [experiment] of {self.path})")
        if not is_seed(head.get("eval_seed", 0)):
            raise ParameterError("eval_seed", head["eval_seed"], f"{SEED_RANGE} (in [experiment] of {self.path})")
        return tuple(tables)

    def kind(self, head: dict, doc: dict, tables: tuple[Table, ...],
             attacks: dict[str, AttackSpec]) -> tuple[DualityLadder | None, dict]:
        """A duality grid's ladders, and the document with the [[run]] entries they make (.duality_grid)."""
        kind = head.get("kind", KINDS[0])
        if kind not in KINDS:
            raise ParameterError("kind", kind, f"one of {', '.join(KINDS)} (in [experiment] of {self.path})")
        if kind != KIND:
            if "duality" in doc:
                raise SamatError(f'{self.path}: [duality] needs kind = "{KIND}" in [experiment]')
            return None, doc
        if doc.get("run"):
            raise SamatError(f"{self.path}: a duality experiment makes its runs from [duality] (rho and at_eps); "
                             "remove its [[run]] entries")
        if not attacks:
            raise ParameterError("columns", list(tables[0].columns), "at least one attack column besides natural, "
                                 f'e.g. ["natural", "pgd10_linf@1/255"] (in [experiment] of {self.path})')
        ladder = read_ladder(doc.get("duality"), self.path)
        return ladder, doc | {"run": [{"label": r.label} | r.fields for r in ladder.rungs]}

    def attacks(self, tables: tuple[Table, ...]) -> tuple[tuple[Table, ...], dict[str, AttackSpec]]:
        """The attack of every column, each column parsed here, once; the tables with a column of several budgets
        ("pgd10_linf@1/255,2/255") as one column per budget."""
        parsed: dict[str, dict[str, AttackSpec]] = {}
        for column in dict.fromkeys(c for t in tables for c in t.columns):
            try:
                parsed[column] = column_specs([column])
            except ParameterError as err:
                raise ParameterError(err.name, err.value, f"{err.valid} (in [experiment] of {self.path})") from None
        expanded = tuple(dataclasses.replace(t, columns=tuple(dict.fromkeys(
            label for c in t.columns for label in (parsed[c] or {c: None})))) for t in tables)
        return expanded, {label: s for specs in parsed.values() for label, s in specs.items()}

    def check_task_columns(self, attacks: dict[str, AttackSpec], task: Task) -> None:
        """Text runs take TextAttack's recipes (pso, iga) as columns, and only them; other runs never take them."""
        for column, s in attacks.items():
            if (s.algorithm in TEXT_ALGORITHMS) != (task is Task.TEXT):
                valid = ("pso or iga (TextAttack's recipes) for the text runs" if task is Task.TEXT else
                         f"an attack on images or vectors for the {task.display} runs (pso and iga attack sentences)")
                raise ParameterError("column", column, f"{valid} (in [experiment] of {self.path})")

    def runs(self, doc: dict, tables: tuple[Table, ...], seeds: tuple[int, ...], overrides: dict[str, Any],
             attacks: dict[str, AttackSpec], folder: Path) -> tuple[tuple[RunSpec, ...], tuple[str, ...]]:
        base = doc.get("base", {})
        if not isinstance(base, dict):
            raise self.malformed("[base]", "a table of configuration fields")
        entries = doc.get("run", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.malformed("run", "a list of [[run]] tables")
        if not entries:
            raise SamatError(f"{self.path} defines no [[run]] entries")
        runs, labels = [], []
        for entry in entries:
            entry = dict(entry)
            label = entry.pop("label", None)
            if not label or not isinstance(label, str):
                raise SamatError(f"{self.path}: every [[run]] needs a label (a non-empty string)")
            if label in labels:
                raise SamatError(f"{self.path}: the label {label!r} appears twice")
            labels.append(label)
            paper = _paper_numbers(entry.pop("paper", {}), f"run {label!r}", self.malformed)
            unknown = sorted(set(paper) - {t.title for t in tables})
            if unknown:
                raise SamatError(f"{self.path}: run {label!r} gives numbers for {unknown[0]!r}, "
                                 "which is not in [experiment] tables")
            for seed in seeds:
                cfg = self.config(base | entry | overrides | {"seed": seed}, label, attacks)
                runs.append(RunSpec(label, cfg, paper, folder / f"{slug(label)}-seed{seed}"))
        return tuple(runs), tuple(labels)

    def config(self, values: dict[str, Any], label: str, attacks: dict[str, AttackSpec]) -> TrainConfig:
        try:
            cfg = TrainConfig.from_dict(values)
        except ParameterError as err:
            raise ParameterError(err.name, err.value, f"{err.valid} (in run {label!r} of {self.path})") from None
        image_only = [c for c, s in attacks.items() if s.algorithm not in GRADIENT_ALGORITHMS]
        if cfg.dataset == DatasetName.GAUSSIAN and image_only:
            raise SamatError(f"{self.path}: column {image_only[0]!r} attacks images, but run {label!r} trains on "
                             "vectors (dataset gaussian): only fgsm and pgd columns apply to it")
        check_budgets(attacks, input_shape_of(cfg.dataset, cfg.gaussian_spec),
                      f" in [experiment] of {self.path}, on run {label!r}")
        return cfg


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
