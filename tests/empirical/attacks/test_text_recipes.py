"""TextAttack's PSO and IGA on a samat text classifier: the recipes as TextAttack builds them (on stand-ins for
their downloaded resources, read by TextAttack's own loading code), seeded per sentence, their metrics as
TextAttack computes them, and one line naming what to place where when a resource is missing."""

from __future__ import annotations

import pytest
import torch

from samat.core.errors import SamatError
from samat.empirical.attacks.specs import Algorithm, spec
from samat.empirical.attacks.text.recipes import (
    SKIPPED,
    SUCCESSFUL,
    attack_example,
    build_recipe,
    classifier_wrapper,
    example_seed,
    record_of,
    summarize,
)
from samat.empirical.attacks.text.resources import check_resources, missing_resources
from samat.empirical.evaluation.trained import load_trained, locate
from samat.empirical.models.transformer import load_tokenizer
from tests.text import MAX_LENGTH, needs_text

pytestmark = needs_text

SENTENCES = 8  # of the test split, attacked by PSO (about a second each on one core)


@pytest.fixture(scope="module")
def victim(standins, trained_run, tiny_model):
    loaded = load_trained(locate(trained_run), device=torch.device("cpu"))
    wrapper = classifier_wrapper(loaded.model, load_tokenizer(str(tiny_model), MAX_LENGTH), MAX_LENGTH,
                                 torch.device("cpu"))
    return loaded, wrapper


def test_the_recipes_are_textattacks_with_the_papers_settings(victim):
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.constraints.pre_transformation import (
        InputColumnModification,
        RepeatModification,
        StopwordModification,
    )
    from textattack.constraints.semantics import WordEmbeddingDistance
    from textattack.goal_functions import UntargetedClassification
    from textattack.search_methods import ImprovedGeneticAlgorithm, ParticleSwarmOptimization
    from textattack.transformations import WordSwapEmbedding, WordSwapHowNet

    _, wrapper = victim
    pso = build_recipe(spec("PSO"), wrapper)
    assert isinstance(pso.search_method, ParticleSwarmOptimization)
    assert (pso.search_method.pop_size, pso.search_method.max_iters) == (60, 20)  # Zang et al. 2020
    assert isinstance(pso.transformation, WordSwapHowNet) and isinstance(pso.goal_function, UntargetedClassification)
    assert {type(c) for c in pso.pre_transformation_constraints} == {RepeatModification, StopwordModification,
                                                                     InputColumnModification}
    assert "film" in pso.transformation.candidates_bank  # the stand-in table, read by TextAttack from its cache
    iga = build_recipe(spec("IGAWang2019"), wrapper)
    search = iga.search_method
    assert isinstance(search, ImprovedGeneticAlgorithm)
    assert (search.pop_size, search.max_iters, search.max_replace_times_per_index) == (60, 20, 5)
    assert isinstance(iga.transformation, WordSwapEmbedding) and iga.transformation.max_candidates == 50
    words, = [c for c in iga.constraints if isinstance(c, MaxWordsPerturbed)]
    distance, = [c for c in iga.constraints if isinstance(c, WordEmbeddingDistance)]
    assert words.max_percent == 0.2 and distance.max_mse_dist == 0.5
    assert iga.transformation.embedding.word2index("film") == distance.embedding.word2index("film")


def test_pso_is_seeded_per_sentence_and_counted_as_textattack_counts(victim):
    from textattack.metrics import AttackQueries, AttackSuccessRate, WordsPerturbed

    loaded, wrapper = victim
    attack = build_recipe(spec("pso"), wrapper)
    texts, labels = list(loaded.texts[:SENTENCES]), [int(v) for v in loaded.y[:SENTENCES]]
    labels[0] = 1 - labels[0]  # a sentence the model gets "wrong": TextAttack skips it
    results, records = [], []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        seed = example_seed(0, i)
        records.append(attack_example(attack, text, label, index=i, seed=seed, model=loaded.model))
        with torch.random.fork_rng(devices=[]):
            from samat.empirical.attacks.build import seeded

            with seeded(seed, torch.device("cpu")):
                import random

                random.seed(seed)
                results.append(attack.attack(text, label))
    again = [record_of(r, i, 0.0) for i, r in enumerate(results)]
    assert [r.status for r in records] == [r.status for r in again]  # the same sentence, the same seed
    assert [(r.queries, r.perturbed) for r in records] == [(r.queries, r.perturbed) for r in again]
    assert records[0].status == SKIPPED and any(r.status == SUCCESSFUL for r in records)
    # one sentence alone, after others or not, is attacked the same
    alone = attack_example(attack, texts[3], labels[3], index=3, seed=example_seed(0, 3), model=loaded.model)
    assert (alone.status, alone.queries, alone.perturbed) == (records[3].status, records[3].queries,
                                                               records[3].perturbed)
    ours = summarize(records)
    rate = AttackSuccessRate().calculate(results)
    words = WordsPerturbed().calculate(results)
    queries = AttackQueries().calculate(results)
    assert (ours["successful"], ours["failed"], ours["skipped"]) == (
        rate["successful_attacks"], rate["failed_attacks"], rate["skipped_attacks"])
    assert round(100 * ours["attack_success_rate"], 2) == rate["attack_success_rate"]
    assert round(100 * ours["accuracy_under_attack"], 2) == rate["attack_accuracy_perc"]
    assert round(100 * ours["original_accuracy"], 2) == rate["original_accuracy"]
    assert round(ours["average_words_changed_percent"], 2) == words["avg_word_perturbed_perc"]
    assert round(ours["average_queries"], 2) == queries["avg_num_queries"]
    assert ours["attack_success_rate"] == ours["successful"] / (ours["successful"] + ours["failed"])


def test_missing_resources_are_named_with_their_folders(tmp_path):
    empty = dict(cache=tmp_path / "ta", flair=tmp_path / "flair", nltk=[tmp_path / "nltk"])
    iga = missing_resources(Algorithm.IGA, **empty)
    pso = missing_resources(Algorithm.PSO, **empty)
    lines = " ".join(m.line() for m in iga + pso)
    for needed in ("paragram.npy", "wordlist.pickle", "nn.npy", "mse_dist.p", "cos_sim.p",
                   str(tmp_path / "ta" / "word_embeddings" / "paragramcf"), "word_candidates_sense.pkl",
                   str(tmp_path / "ta" / "transformations" / "hownet"), "upos-english-fast",
                   str(tmp_path / "nltk" / "corpora" / "stopwords")):
        assert needed in lines, needed
    assert not any("hownet" in m.line() for m in iga) and not any("paragram" in m.line() for m in pso)


def test_a_missing_resource_stops_the_evaluation_in_one_line(standins, monkeypatch, tmp_path):
    import samat.empirical.attacks.text.resources as resources

    check_resources([Algorithm.PSO, Algorithm.IGA])  # the stand-ins are all in place
    monkeypatch.setattr(resources, "textattack_cache", lambda: tmp_path)
    with pytest.raises(SamatError) as err:
        check_resources([Algorithm.IGA])
    assert "\n" not in str(err.value) and "paragram.npy" in str(err.value) and str(tmp_path) in str(err.value)
