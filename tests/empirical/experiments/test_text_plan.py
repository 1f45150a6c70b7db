"""The Table 10 grid as the packaged file holds it, and `samat experiment plan` pricing a text grid: training on
token batches, and each TextAttack recipe per sentence between a model that any substitution fools and one that
none does."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import pytest
import torch

from samat.core.errors import SamatError
from samat.empirical.evaluation.cost import BOUNDS
from samat.empirical.evaluation.text_cost import TextAttackCost
from samat.empirical.experiments import catalog
from samat.empirical.experiments import plan as plan_module
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.experiments.plan import (
    Calibration,
    _architecture_stand_in,
    _text_world,
    _TextWorld,
    format_plan,
    plan_experiment,
    synthetic_tokens,
)
from samat.empirical.training.throughput import StepTiming
from samat.empirical.vocabulary import DatasetName, Method, Optimizer, Task
from tests.text import MAX_LENGTH, needs_text, text_cfg

pytestmark = needs_text


def test_the_table_10_grid_has_the_papers_settings_and_numbers(tmp_path):
    exp = load_experiment(catalog.resolve("text"), runs_dir=tmp_path)
    assert exp.task is Task.TEXT and exp.columns == ("natural", "pso", "iga") and exp.n_eval == 1066
    st, sam = (exp.runs_for(label)[0] for label in exp.labels)
    for run in (st, sam):
        cfg = run.config
        assert cfg.dataset is DatasetName.ROTTEN_TOMATOES and cfg.text_spec.model == "distilbert-base-uncased"
        assert cfg.optimizer_name is Optimizer.ADAMW and cfg.learning_rate == 5e-5 and cfg.epochs == 3
    assert st.config.method is Method.ADAMW and sam.config.method is Method.SAM and sam.config.rho == 0.05
    assert st.paper == {"D Table 10": {"natural": 84.4, "pso": 22.7, "iga": 84.1}}
    assert sam.paper == {"D Table 10": {"natural": 84.6, "pso": 17.1, "iga": 74.5}}


def test_plan_prices_training_and_both_recipes_between_their_bounds(standins, tiny_model, tmp_path):
    exp = load_experiment(catalog.resolve("text_default"), runs_dir=tmp_path,
                          overrides={"text": {"model": str(tiny_model), "max_length": MAX_LENGTH}, "device": "cpu"})
    exp = dataclasses.replace(exp, n_eval=10)
    plan = plan_experiment(exp, torch.device("cpu"), calibration=Calibration(warmup=1, steps=1, eval_batches=1))
    low, high = BOUNDS
    assert [r.label for r in plan.runs] == list(exp.labels)
    for run in plan.runs:  # times are measured, not compared (no timed tests): each bound is priced
        assert run.train_seconds > 0 and run.eval_seconds[low] > 0 and run.eval_seconds[high] > 0
    assert len(plan.training) == 2  # AdamW and SAM steps are timed apart
    for recipe in ("pso", "iga"):
        cost = plan.attacks[recipe]
        assert cost.sentences == 1 and cost.scale == 1.0  # the run's own sentences: nothing scaled
        # the search runs to its end only where nothing fools the model (PSO: 20 iterations of 60 particles)
        assert cost.queries[high] > 5 * cost.queries[low] > 0
    text = format_plan(plan)
    assert "10 test sentences" in text and "per sentence" in text and "Stand-ins" not in text


@pytest.mark.gpu
def test_a_text_run_trains_and_is_attacked_on_cuda(standins, tiny_model, tmp_path):
    """The CUDA path of the text task (bf16 autocast in training, the attack's queries on the GPU)."""
    from samat.empirical.evaluation.run import evaluate_path
    from samat.empirical.training.loop import train
    from tests.text import text_cfg

    summary = train(text_cfg(tiny_model, device="cuda", epochs=3), tmp_path / "run", progress=False)
    assert summary["device"].startswith("cuda") and summary["test_acc"] > 0.8
    result = evaluate_path(tmp_path / "run", ["pso"], n_eval=4, seed=0, device="cuda", progress=False)
    assert result["sanity_passed"] and result["attacks"]["pso"]["successful"] + \
        result["attacks"]["pso"]["failed"] + result["attacks"]["pso"]["skipped"] == 4


def test_synthetic_tokens_have_the_shape_asked_for_and_nothing_else():
    """n_train training rows and n_test rows in each of validation and test (three different draws), every row
    ``length`` ids from 5 (after the special tokens) to vocabulary - 1, labels 0 or 1, no padding; the same seed the
    same batches, another seed others."""
    data = synthetic_tokens(300, 40, 9, 12, seed=3)
    assert (data.train_x.shape, data.validation_x.shape, data.test_x.shape) == ((300, 9), (40, 9), (40, 9))
    assert (len(data.train_y), len(data.validation_y), len(data.test_y)) == (300, 40, 40)
    assert {s: len(t) for s, t in data.texts.items()} == {"train": 300, "validation": 40, "test": 40}
    everything = torch.cat([data.train_x, data.validation_x, data.test_x])
    assert set(everything.unique().tolist()) == set(range(5, 12))  # 3,420 draws of 7 ids: each one drawn
    assert set(torch.cat([data.train_y, data.validation_y, data.test_y]).unique().tolist()) == {0, 1}
    assert data.num_classes == 2 and data.pad_id == 0 and data.max_length == 9
    assert not torch.equal(data.validation_x, data.test_x) and not torch.equal(data.train_x[:40], data.test_x)
    again, other = synthetic_tokens(300, 40, 9, 12, seed=3), synthetic_tokens(300, 40, 9, 12, seed=4)
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)
    assert not torch.equal(other.train_x, data.train_x)
    one = synthetic_tokens(1, 1, 2, 6)  # the smallest: one row each, two tokens
    assert one.train_x.shape == one.validation_x.shape == one.test_x.shape == (1, 2)


def test_the_architecture_stand_in_is_distilbert_base_randomly_initialized(tmp_path):
    """DistilBERT-base's architecture (Sanh et al. 2019: 6 layers, width 768, 12 heads, BERT's 30,522 WordPiece
    vocabulary; 66 M parameters, with a 2-label head), the same weights every time (seed 0, under either of its
    names) without touching the global random state; another model not here is a one-line error."""
    from safetensors import safe_open

    state = torch.random.get_rng_state()
    first = _architecture_stand_in("distilbert-base-uncased", tmp_path / "a")
    assert torch.equal(torch.random.get_rng_state(), state)
    config = json.loads((tmp_path / "a" / "architecture" / "config.json").read_text())
    assert first == str(tmp_path / "a" / "architecture")
    assert config["model_type"] == "distilbert"
    assert (config["n_layers"], config["dim"], config["n_heads"], config["vocab_size"]) == (6, 768, 12, 30522)
    weights = tmp_path / "a" / "architecture" / "model.safetensors"
    with safe_open(weights, "pt") as f:
        parameters = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        assert f.get_slice("classifier.weight").get_shape() == [2, 768]
    assert 66e6 < parameters < 67.5e6
    torch.manual_seed(1)  # another global state: the same weights all the same
    second = _architecture_stand_in("distilbert/distilbert-base-uncased", tmp_path / "b")
    torch.random.set_rng_state(state)
    assert second == str(tmp_path / "b" / "architecture")
    for name in ("classifier.weight", "distilbert.transformer.layer.5.ffn.lin2.weight"):
        with safe_open(weights, "pt") as a, safe_open(tmp_path / "b" / "architecture" / "model.safetensors", "pt") as b:
            assert torch.equal(a.get_tensor(name), b.get_tensor(name))
    with pytest.raises(SamatError, match="text.model bert-large-cased is not on this machine"):
        _architecture_stand_in("bert-large-cased", tmp_path / "c")
    assert not (tmp_path / "c").exists()


def _sentence(words: int) -> str:
    from samat.empirical.data.text.generated import vocabulary

    lexicon = vocabulary()  # one WordPiece token per word in the tiny model's vocabulary
    return " ".join(lexicon[i % len(lexicon)] for i in range(words))


@pytest.mark.parametrize(("batch_size", "expected"), [(1, (3 + 5 + 9 + 12 + 32) / 5), (64, 32.0)])
def test_the_text_world_of_a_run_whose_model_and_data_are_here(tiny_model, tmp_path, monkeypatch, batch_size,
                                                                 expected):
    """With the run's model and data here, the calibration runs on them: the corpus's sizes, its test sentences
    (nearest the mean word count first) and their mean word count, and the mean over the run's batches of the
    longest sentence in tokens ([CLS] + one token a word + [SEP], truncated to max_length): with batches of one,
    the mean length; with one batch, the longest. Nothing is said to stand in."""
    lengths = [1, 3, 7, 10, 40]  # words of the training sentences: 3, 5, 9, 12 and 42 -> 32 tokens
    test = [_sentence(n) for n in (2, 9, 5, 6)]  # 5.5 words on average: 5 and 6 nearest, then 2 and 9
    corpus = SimpleNamespace(name="a small corpus", sizes=lambda: {"train": 5, "validation": 3, "test": 4},
                             texts={"train": [_sentence(n) for n in lengths], "test": test})
    asked = []
    monkeypatch.setattr(plan_module, "load_dataset", lambda name, folder: asked.append((name, folder)) or corpus)
    said = []
    cfg = text_cfg(tiny_model, batch_size=batch_size, data_dir=str(tmp_path / "data"))
    world = _text_world(cfg, tmp_path / "world", said.append)
    assert asked == [(cfg.dataset, str(tmp_path / "data"))]
    assert world.model == str(tiny_model) and world.tokenizer.vocab_size == len(_vocabulary_file(tiny_model))
    assert world.sizes == {"train": 5, "validation": 3, "test": 4}
    assert set(world.texts[:2]) == set(test[2:]) and set(world.texts[2:]) == set(test[:2])
    assert world.words == pytest.approx(5.5, rel=1e-15)
    assert world.batch_tokens == pytest.approx(expected, rel=1e-15)
    assert world.notes == [] and said == ["calibrating on a small corpus's test sentences"]


def test_the_batch_length_is_the_mean_of_each_shuffled_batchs_longest(tiny_model, tmp_path, monkeypatch):
    """Batches of two of the training sentences in the order of a seed-0 shuffle: the mean of each batch's longest
    (the last batch holds one)."""
    lengths = [1, 3, 7, 10, 20]
    tokens = [n + 2 for n in lengths]
    corpus = SimpleNamespace(name="c", sizes=lambda: {"train": 5, "validation": 1, "test": 1},
                             texts={"train": [_sentence(n) for n in lengths], "test": [_sentence(4)]})
    monkeypatch.setattr(plan_module, "load_dataset", lambda name, folder: corpus)
    order = torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()
    batches = [order[0:2], order[2:4], order[4:5]]
    expected = sum(max(tokens[i] for i in b) for b in batches) / 3
    world = _text_world(text_cfg(tiny_model, batch_size=2), tmp_path / "world", lambda m: None)
    assert world.batch_tokens == pytest.approx(expected, rel=1e-15)


def _vocabulary_file(model) -> list[str]:
    return (model / "vocab.txt").read_text().split()


def test_the_text_world_where_the_dataset_is_not_here(tiny_model, tmp_path):
    """Rotten Tomatoes not in the data folder: its split sizes (8,530 / 1,066 / 1,066) and 20 words a sentence
    (Kim 2014, Table 1) stand for it, batches are assumed 64 tokens long, and the attacks are calibrated on the
    generated corpus's test sentences with the lexicon's tokenizer; both stand-ins are said."""
    from samat.empirical.data.text.generated import generate

    said = []
    cfg = text_cfg(tiny_model, dataset="rotten_tomatoes", data_dir=str(tmp_path / "empty"))
    world = _text_world(cfg, tmp_path / "world", said.append)
    assert world.model == str(tiny_model)  # the model is here: its own weights
    assert world.sizes == {"train": 8530, "validation": 1066, "test": 1066}
    assert world.words == 20.0 and world.batch_tokens == 64.0
    assert sorted(world.texts) == sorted(generate().texts["test"])
    assert world.tokenizer("the music is great")["input_ids"] == world.tokenizer.convert_tokens_to_ids(
        ["[CLS]", "the", "music", "is", "great", "[SEP]"])
    assert said == world.notes and len(world.notes) == 2
    assert world.notes[0].startswith("rotten_tomatoes is not here: batches assumed 64 tokens long, sentences 20 words")
    assert world.notes[1].startswith("TextAttack's recipes timed with stand-ins for their resources")


def test_the_text_world_where_the_model_is_not_here(tiny_model, tmp_path, monkeypatch):
    """distilbert-base-uncased's weights not here: its architecture stands in (in the world's folder), the
    sentences are the generated corpus's whatever the run's data (its sizes and mean words per sentence, batches
    of at most 14 tokens), and both stand-ins are said."""
    from samat.empirical.data.text.generated import generate

    built = []
    monkeypatch.setattr(plan_module, "_architecture_stand_in",
                        lambda name, folder: built.append((name, folder)) or str(folder / "architecture"))
    cfg = text_cfg(tiny_model, text={"model": "distilbert-base-uncased", "max_length": MAX_LENGTH})
    world = _text_world(cfg, tmp_path / "world", lambda m: None)
    assert built == [("distilbert-base-uncased", tmp_path / "world")]
    assert world.model == str(tmp_path / "world" / "architecture")
    generated = generate()
    test = list(generated.texts["test"])
    assert world.sizes == generated.sizes() and sorted(world.texts) == sorted(test)
    assert world.words == pytest.approx(sum(len(t.split()) for t in test) / len(test), rel=1e-12)
    longest = max(len(ids) for ids in world.tokenizer(test)["input_ids"])
    assert longest <= world.batch_tokens == 14.0
    assert world.notes[0].startswith("distilbert-base-uncased's weights are not here: timed on a randomly initialized")
    assert len(world.notes) == 2 and world.notes[1].startswith("TextAttack's recipes timed with stand-ins")


def test_the_text_world_where_the_data_is_here_and_the_model_is_not(tiny_model, tmp_path, monkeypatch):
    """Rotten Tomatoes here, distilbert-base-uncased's weights not: the sizes and words per sentence are the data's
    (the plan said the dataset was not here and used Kim 2014's), the batch length is assumed (no tokenizer)."""
    test = [_sentence(n) for n in (2, 9, 5, 6)]
    corpus = SimpleNamespace(name="rotten_tomatoes", sizes=lambda: {"train": 5, "validation": 3, "test": 4},
                             texts={"train": [_sentence(3)] * 5, "test": test})
    monkeypatch.setattr(plan_module, "load_dataset", lambda name, folder: corpus)
    monkeypatch.setattr(plan_module, "_architecture_stand_in", lambda name, folder: str(folder / "architecture"))
    cfg = text_cfg(tiny_model, dataset="rotten_tomatoes",
                   text={"model": "distilbert-base-uncased", "max_length": MAX_LENGTH})
    world = _text_world(cfg, tmp_path / "world", lambda m: None)
    assert world.sizes == {"train": 5, "validation": 3, "test": 4}
    assert world.words == 5.5 and world.batch_tokens == plan_module.ASSUMED_BATCH_TOKENS
    assert not any("is not here: batches" in n for n in world.notes)
    assert any(n.startswith("rotten_tomatoes is here but not the model's tokenizer") for n in world.notes)


# A fake clock for the text planner (as test_plan.py's for images): fixed + proportional costs, so that every
# figure of the plan follows by hand.
TEXT_STEP = {"adamw": (0.003, 2e-4), "sam": (0.005, 4e-4)}  # (seconds, seconds per sentence) of a step
TEXT_OVERHEAD = 0.25
TEXT_TEST_PASS = (0.02, 3e-5)
RECIPE = {"pso": {BOUNDS[0]: 0.5, BOUNDS[1]: 40.0}, "iga": {BOUNDS[0]: 0.2, BOUNDS[1]: 3.0}}  # s per sentence
RECIPE_SCALE = 1.5


def test_plan_text_adds_up_the_calibrated_costs(standins, tiny_model, tmp_path, monkeypatch):
    """A text grid's plan is the arithmetic of its calibration: per seed, epochs x (ceil(training sentences /
    batch) x seconds per step + the test pass over the validation and test splits, in evaluation batches) + the
    warm-up's overhead, and per recipe min(n_eval, test sentences) x seconds per sentence x the scale to the run's
    words per sentence. Each step is timed on token batches of the world's mean batch length; each recipe once
    for the grid, on the world's first sentence (one on a CPU), its model and tokenizer."""
    from samat.empirical.models.transformer import load_tokenizer

    world = _TextWorld(model=str(tiny_model), tokenizer=load_tokenizer(str(tiny_model), MAX_LENGTH),
                       texts=["a", "b", "c"], sizes={"train": 1000, "validation": 30, "test": 40}, words=17.0,
                       batch_tokens=9.6, notes=["a stand-in"])
    worlds, timed_steps, recipes, nets = [], [], [], []

    def text_world(cfg, folder, log):
        worlds.append(cfg)
        return world

    def fake_time_steps(cfg, data, *, warmup, steps, notice=None):
        fixed, per = TEXT_STEP[cfg.method.value]
        one = fixed + per * cfg.batch_size
        timed_steps.append((cfg.method.value, cfg.batch_size, tuple(data.train_x.shape), cfg.text_spec.model))
        assert int(data.train_x.max()) < world.tokenizer.vocab_size
        return StepTiming(steps, steps * one, warmup, warmup * one + TEXT_OVERHEAD, cfg.batch_size, None, False,
                          False, False)

    def fake_time_recipe(s, net, tokenizer, max_length, texts, *, device, words, source):
        recipes.append((s.name, texts, words, source, max_length, tokenizer is world.tokenizer))
        return TextAttackCost(dict(RECIPE[s.name]), {b: 1.0 for b in BOUNDS}, len(texts), 1.0, RECIPE_SCALE, source)

    def fake_build_model(name, *, input_shape, num_classes, options):
        nets.append((input_shape, num_classes, options))
        return torch.nn.Identity()

    monkeypatch.setattr(plan_module, "_text_world", text_world)
    monkeypatch.setattr(plan_module, "time_steps", fake_time_steps)
    monkeypatch.setattr(plan_module, "build", lambda cfg, data: data)
    monkeypatch.setattr(plan_module, "time_test_pass", lambda data, n: TEXT_TEST_PASS[0] + TEXT_TEST_PASS[1] * n)
    monkeypatch.setattr(plan_module, "time_recipe", fake_time_recipe)
    monkeypatch.setattr(plan_module, "build_model", fake_build_model)

    exp = load_experiment(catalog.resolve("text_default"), runs_dir=tmp_path, seeds=(0, 1, 2),
                          overrides={"text": {"model": "distilbert-base-uncased", "max_length": MAX_LENGTH},
                                     "device": "cpu", "eval_batch_size": 64})  # the world stands in for its weights
    exp = dataclasses.replace(exp, n_eval=50)  # more than the 40 test sentences: 40 are attacked
    plan = plan_experiment(exp, torch.device("cpu"), calibration=Calibration(warmup=1, steps=2, eval_batches=1))

    epochs, batch = 3, 32
    per_epoch = math.ceil(1000 / batch)  # 32 steps
    test_pass = 2 * (TEXT_TEST_PASS[0] + TEXT_TEST_PASS[1] * 64)  # 70 sentences: two evaluation batches of 64
    assert plan.device == "CPU" and plan.notes == ["a stand-in"] and len(worlds) == 1  # one world for both runs
    for run, method in zip(plan.runs, ("adamw", "sam"), strict=True):
        fixed, per = TEXT_STEP[method]
        assert (run.seeds, run.finished, run.epochs) == (3, 0, epochs)
        expected = epochs * (per_epoch * (fixed + per * batch) + test_pass) + TEXT_OVERHEAD
        assert run.train_seconds == pytest.approx(expected, rel=1e-12)
        for bound in BOUNDS:
            expected = sum(40 * RECIPE[r][bound] * RECIPE_SCALE for r in RECIPE)
            assert run.eval_seconds[bound] == pytest.approx(expected, rel=1e-12)
            assert run.total(bound) == pytest.approx(3 * (run.train_seconds + run.eval_seconds[bound]), rel=1e-12)
    # Each step timed at batch 8 then at the run's 32, on (batch x (warm-up + timed steps)) rows of round(9.6) ids,
    # with the world's model; keyed by the run's model name and that length.
    assert timed_steps == [(m, b, (b * 3, 10), str(tiny_model)) for m in ("adamw", "sam") for b in (8, batch)]
    assert list(plan.training) == [f"distilbert-base-uncased (10 tokens per batch), {t}, batch 32"
                                   for t in ("AdamW", "SAM")]
    # Each recipe timed once, on the first sentence, against the world's model (its pad id) and tokenizer.
    assert recipes == [(name, ["a"], 17.0, "on generated sentences with stand-in resources", MAX_LENGTH, True)
                       for name in ("pso", "iga")]
    assert nets == [((MAX_LENGTH,), 2, {"model": str(tiny_model), "pad_id": world.tokenizer.pad_token_id})] * 2
    assert set(plan.attacks) == {"pso", "iga"}
