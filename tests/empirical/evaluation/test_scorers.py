"""One evaluation loop, a scorer per task: segmentation's attacks built by build_attack on the per-pixel loss (the
same x_adv as PGD called by hand), the attack success rate as TextAttack counts it, and a scorer of a third kind
(attacks of its own, no budget, no gradient) plugged into the loop."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.attacks.build import build_attack
from samat.empirical.attacks.pgd import pgd
from samat.empirical.attacks.specs import spec
from samat.empirical.data import IMAGE_BOX, as_inputs
from samat.empirical.evaluation.classification import Hits, attack_success_rate
from samat.empirical.evaluation.columns import NATURAL, column_specs
from samat.empirical.evaluation.evaluate import evaluate
from samat.empirical.evaluation.scorer import Attacked
from samat.empirical.evaluation.segmentation import Confusions, summed_pixel_loss
from samat.empirical.pixelwise import confusion, logits_of, pixel_loss


def _scenes(n=5, size=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, k, (n, size, size), generator=g)
    sizes = torch.tensor([[size, size]] * (n - 2) + [[size - 2, size - 3]] * 2)  # two images of another size
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, k, 3, padding=1)).eval()
    return model, x, y, sizes


@pytest.mark.parametrize("column", ["pgd10_linf@8/255", "pgd10_l2@0.5", "fgsm_linf@4/255"])
def test_segmentation_attacks_through_build_attack_are_pgd_on_the_summed_pixel_loss(column):
    """Every image is attacked at its own size, by the PGD of the attacks' module on the per-pixel loss, seeded per
    batch with the evaluation's seed: the confusion matrices are those of PGD called by hand."""
    model, x, y, sizes = _scenes()
    s = column_specs([column])[column]
    scorer = Confusions(model, x, y, sizes, num_classes=3, seed=7, batch_size=2)
    scorer.clean()
    got = scorer.attack(column, s).outcome
    expected = torch.zeros_like(got)
    by_size: dict[tuple[int, int], list[int]] = {}  # batches of 2 images of one size, in order
    for i, (h, w) in enumerate(sizes.tolist()):
        by_size.setdefault((h, w), []).append(i)
    for (h, w), members in by_size.items():
        for start in range(0, len(members), 2):
            idx = torch.tensor(members[start:start + 2])
            xb, yb = as_inputs(x[idx][:, :, :h, :w]), y[idx][:, :h, :w]
            gen = torch.Generator().manual_seed(7)
            x_adv = pgd(model, xb, yb, norm=s.norm.value, eps=s.eps, step_size=s.step_size, steps=s.steps,
                        random_start=s.algorithm.value == "pgd", generator=gen, box=IMAGE_BOX,
                        loss_fn=lambda out, target: pixel_loss(out, target, "sum"))
            expected[idx] = confusion(logits_of(model(x_adv)).argmax(1), yb, 3)
    assert torch.equal(got, expected)
    assert not torch.equal(got, scorer.natural)  # the attack moved some predictions


def test_a_loss_of_the_tasks_own_attacks_every_example_and_only_fgsm_or_pgd_take_one():
    """With a loss, no example is left unattacked (a per-pixel task has no single "wrong" bit per image)."""
    model, x, y, _ = _scenes()
    inputs = as_inputs(x)
    attack = build_attack(spec("fgsm_linf").at(0.1), model, num_classes=3, seed=0, device="cpu", box=IMAGE_BOX,
                          loss=summed_pixel_loss)
    x_adv = attack(inputs, y)
    assert (x_adv - inputs).flatten(1).abs().amax(1).min() > 0  # every image moved
    with pytest.raises(ParameterError, match="attack=stadv"):
        build_attack(spec("stadv"), model, num_classes=3, seed=0, device="cpu", loss=summed_pixel_loss)


def test_attack_success_rate_leaves_skipped_examples_out():
    """TextAttack's count: successful / (successful + failed); an example wrong before the attack is skipped."""
    clean = torch.tensor([True, True, True, True, False, False])
    hits = torch.tensor([True, False, False, False, False, False])  # 3 successes, 1 failure, 2 skipped
    assert attack_success_rate(clean, hits) == 3 / 4
    assert attack_success_rate(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)) is None


# --- A third kind of task: columns of an accuracy and an attack success rate, attacks of its own -----------------


@dataclass(frozen=True)
class Substitution:
    """A stand-in for a word-substitution attack: no budget, no gradient; it flips the first ``flips`` examples it
    attacks and spends ``queries`` model calls on each."""

    name: str
    flips: int
    queries: int

    @property
    def label(self) -> str:
        return self.name

    @property
    def title(self) -> str:
        return self.name.upper()


class Sentences(Hits):
    """A text-like scorer: classification's hits, its own attacks, the success rate and the queries in the record."""

    def supports(self, s) -> str | None:
        return None if isinstance(s, Substitution) else "a word-substitution attack"

    def attack(self, label, s) -> Attacked:
        hits = self.hits.clone()
        flipped = torch.nonzero(hits).flatten()[:s.flips]
        hits[flipped] = False
        return Attacked(hits, None, {"queries": s.queries * int(self.hits.sum()),
                                     "success_rate": attack_success_rate(self.hits, hits)})


def test_a_scorer_of_a_third_kind_plugs_into_the_loop():
    x = torch.eye(3).repeat(4, 1)
    y = torch.arange(12) % 3
    y[:2] = (y[:2] + 1) % 3  # 10 of 12 right
    model = nn.Identity()
    scorer = Sentences(model, x, y, num_classes=3, seed=0)
    result = evaluate(scorer, {"pso": Substitution("pso", 2, 60), "iga": Substitution("iga", 5, 20)})
    assert result["task"] == "classification" and result["columns"] == ["pso", "iga"]
    assert result["accuracy"] == {NATURAL: 10 / 12, "pso": 8 / 12, "iga": 5 / 12}
    record = dict(result["attacks"]["pso"])
    seconds = record.pop("seconds")
    assert isinstance(seconds, float) and seconds >= 0
    assert record == {"name": "pso", "torch_threads": torch.get_num_threads(), "queries": 600, "success_rate": 2 / 10}
    names = [c["check"] for c in result["sanity"]]
    assert names == ["robust <= clean: pso", "robust <= clean: iga"]  # no budget, no PGD, no large gradient attack
    assert result["sanity_passed"]
    with pytest.raises(ParameterError, match="attack=pgd10_linf@0.1 is invalid: attack must be a word-substitution"):
        evaluate(scorer, column_specs(["pgd10_linf@0.1"]))


class CheckedSentences(Sentences):
    """A scorer with a check of its own per column: at most three examples flipped."""

    def checks(self, label, outcome):
        flipped = int(self.hits.sum() - outcome.sum())
        return [("at most 3 flipped", flipped <= 3, f"{flipped} flipped by {label}")]


def test_a_scorers_own_checks_are_run_on_each_column_and_recorded_with_the_metric():
    x = torch.eye(3).repeat(4, 1)
    y = torch.arange(12) % 3
    scorer = CheckedSentences(nn.Identity(), x, y, num_classes=3, seed=0)
    result = evaluate(scorer, {"pso": Substitution("pso", 2, 60), "iga": Substitution("iga", 5, 20)})
    assert result["metric"] == scorer.metric == "accuracy"
    own = [c for c in result["sanity"] if c["check"].startswith("at most 3 flipped")]
    assert own == [{"check": "at most 3 flipped: pso", "passed": True, "detail": "2 flipped by pso"},
                   {"check": "at most 3 flipped: iga", "passed": False, "detail": "5 flipped by iga"}]
    assert not result["sanity_passed"]  # the scorer's own failed check fails the evaluation's sanity
