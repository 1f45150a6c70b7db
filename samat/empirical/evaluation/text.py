"""Text classification's scorer (D Section 5.3, Table 10): natural accuracy, and per TextAttack recipe (PSOZang2020,
IGAWang2019) its attack success rate, the accuracy under attack, the average queries and words changed, as
TextAttack's metrics define them (:func:`~samat.empirical.attacks.text.recipes.summarize`).

:class:`WordSubstitutions` is classification's scorer (:class:`~.classification.Hits`) with its own attacks: an
example stays a hit when the recipe fails on it, is not one when the recipe succeeds, and the recipe leaves the
examples the model gets wrong unattacked (skipped), so that the loop's "robust <= clean" holds example by example
and the success rate successful / (successful + failed) is :func:`~.classification.attack_success_rate` of the
clean and attacked hits. The report's columns are natural accuracy and each recipe's success rate (eval.json's
``table``); TextAttack's own counts and metrics, and every sentence's outcome, are in each attack's record.

Every sentence is attacked on its own, its random draws seeded from (seed, its index in the test split). Its outcome
is appended to ``attacks/<column>.jsonl`` in the run folder as soon as it is known: an evaluation interrupted after
any sentence resumes at the next one and ends with what an uninterrupted one gives (the file's first line names the
weights and settings; a file of others is started afresh). The files go once eval.json is written.

The task's own checks, per column: the sentences TextAttack skips are those samat's inference gets wrong (both
tokenize alike; a difference means the attack saw another model than the one scored), and every successful
attack's text is misclassified when the model is asked again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from samat.empirical.attacks.specs import TEXT_ALGORITHMS, AttackSpec
from samat.empirical.attacks.text.recipes import (
    PAPERS,
    RECIPES,
    SKIPPED,
    SUCCESSFUL,
    ExampleResult,
    attack_example,
    build_recipe,
    classifier_wrapper,
    example_seed,
    summarize,
)
from samat.empirical.attacks.text.resources import check_resources
from samat.empirical.evaluation.classification import Hits, attack_success_rate
from samat.empirical.evaluation.columns import NATURAL
from samat.empirical.evaluation.scorer import Attacked
from samat.empirical.models.transformer import load_tokenizer
from samat.empirical.training.config import TrainConfig

TEXT_COLUMNS = ("pso", "iga")  # D Table 10
PROGRESS_DIR = "attacks"  # in the run folder: one file of outcomes per column while the evaluation runs
LOG_SECONDS = 60.0  # without a terminal, a progress line at most this often per column
ONLY = "pso or iga (TextAttack's recipes PSOZang2020 and IGAWang2019) for a text model"


class Progress:
    """A column's outcomes on disk, one JSON line each after a header naming what they belong to."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.header = path, header

    def read(self) -> dict[int, ExampleResult]:
        """The outcomes recorded for these weights and settings (none for another header; a line cut by a kill
        is dropped)."""
        if not self.path.exists():
            return {}
        lines = self.path.read_text().splitlines()
        try:
            if not lines or json.loads(lines[0]) != self.header:
                return {}
        except json.JSONDecodeError:
            return {}
        done = {}
        for line in lines[1:]:
            try:
                record = ExampleResult(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            done[record.index] = record
        return done

    def start(self, done: dict[int, ExampleResult]) -> None:
        """Rewrite the file with the header and the outcomes kept (dropping a torn line or another header's)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(self.header)] + [json.dumps(r.to_json()) for r in done.values()]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.path)

    def append(self, record: ExampleResult) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record.to_json()) + "\n")
            f.flush()


class WordSubstitutions(Hits):
    """The text scorer of ``model`` on token ids ``x`` (the sentences ``texts``, at ``indices`` of the test split)
    with labels ``y``; ``config`` names the tokenizer, ``folder`` the run folder that keeps the progress files, and
    ``resume`` what they must belong to (the weights' SHA-256 and the evaluation's settings)."""

    task, metric, chance_name = "text", "accuracy", "chance"

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, texts: list[str], indices: list[int], *,
                 config: TrainConfig, folder: Path, resume: dict[str, Any], seed: int, batch_size: int = 256,
                 progress: bool = False, log=None) -> None:
        super().__init__(model, x, y, num_classes=config.text_spec.num_labels, seed=seed, batch_size=batch_size,
                         progress=progress)
        self.texts, self.indices, self.folder, self.resume = list(texts), list(indices), Path(folder), resume
        self.max_length = config.text_spec.max_length
        self.tokenizer = load_tokenizer(config.text_spec.model, self.max_length)
        self.wrapper = classifier_wrapper(model, self.tokenizer, self.max_length, y.device)
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.records: dict[str, list[ExampleResult]] = {}
        self.stores: list[Progress] = []

    def supports(self, spec: AttackSpec) -> str | None:
        if spec.algorithm not in TEXT_ALGORITHMS:
            return ONLY
        check_resources([spec.algorithm])  # what TextAttack would download: named in one line, before any work
        return None

    def attack(self, label: str, spec: AttackSpec) -> Attacked:
        store = Progress(self.folder / PROGRESS_DIR / f"{label}.jsonl", self.resume | {"attack": spec.name})
        self.stores.append(store)
        done = store.read()
        store.start(done)
        attack = build_recipe(spec, self.wrapper)
        title = f"{spec.title} ({RECIPES[spec.algorithm]})"
        if done:
            self.log(f"  {title}: {len(done)} of {self.n} sentences done before, resuming")
        bar = tqdm(total=self.n, initial=len(done), desc=title, unit="sentence",
                   disable=not (self.progress and sys.stderr.isatty()), leave=False)
        last = time.perf_counter()
        for i in (i for i in range(self.n) if i not in done):
            record = attack_example(attack, self.texts[i], int(self.y[i]), index=i,
                                    seed=example_seed(self.seed, self.indices[i]), model=self.model)
            store.append(record)
            done[i] = record
            bar.update(1)
            if bar.disable and time.perf_counter() - last > LOG_SECONDS:
                last = time.perf_counter()
                self.log(f"  {title}: {len(done)}/{self.n} sentences, success rate so far "
                         f"{100 * summarize(list(done.values()))['attack_success_rate']:.1f} %")
        bar.close()
        records = self.records[label] = [done[i] for i in range(self.n)]
        hits = torch.tensor([r.status not in (SUCCESSFUL, SKIPPED) for r in records], dtype=torch.bool,
                            device=self.y.device)
        summary = summarize(records)
        self.log(f"  {title}: success rate {100 * summary['attack_success_rate']:.1f} %, "
                 f"{summary['average_queries'] or 0:.0f} queries per sentence")
        return Attacked(hits, None, {"recipe": RECIPES[spec.algorithm], "paper": PAPERS[spec.algorithm],
                                     "iterations": spec.steps, **summary,
                                     "examples": [r.to_json() for r in records]})

    def checks(self, label: str, outcome: torch.Tensor) -> list[tuple[str, bool, str]]:
        records = self.records.get(label)
        if records is None:  # kept from an earlier evaluation: checked then
            return []
        skipped = torch.tensor([r.status == SKIPPED for r in records], dtype=torch.bool)
        wrong = ~self.hits.cpu()
        differ = int((skipped != wrong).sum())
        won = [r for r in records if r.status == SUCCESSFUL]
        still_right = 0
        if won:
            predicted = self.wrapper([r.perturbed for r in won]).argmax(1)
            still_right = int((predicted == torch.tensor([int(self.y[r.index]) for r in won])).sum())
        return [("skipped = misclassified", differ == 0,
                 f"TextAttack skipped {int(skipped.sum())} sentences, the model gets {int(wrong.sum())} wrong; "
                 f"{differ} differ"),
                ("successful attacks are misclassified", still_right == 0,
                 f"{len(won)} successful attacks, {still_right} of their texts classified correctly when asked "
                 "again")]

    def record(self, outcomes: dict[str, torch.Tensor]) -> dict[str, Any]:
        rates = {label: attack_success_rate(self.hits, hits) or 0.0 for label, hits in outcomes.items()
                 if label != NATURAL}
        return super().record(outcomes) | {
            "attack_success_rate": rates,
            # what a report tabulates per column (D Table 10): natural accuracy, each recipe's success rate
            "table": {NATURAL: self.value(outcomes[NATURAL])} | rates}

    def written(self) -> None:
        for store in self.stores:
            store.path.unlink(missing_ok=True)
        folder = self.folder / PROGRESS_DIR
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
