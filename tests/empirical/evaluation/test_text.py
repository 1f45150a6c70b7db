"""The text evaluation: eval.json with natural accuracy and each recipe's success rate (and TextAttack's other
metrics), its checks, and an interrupted evaluation resumed sentence by sentence to what an uninterrupted one
gives."""

from __future__ import annotations

import json
import shutil

import pytest

from samat.core.errors import ParameterError
from samat.empirical.attacks.text import recipes
from samat.empirical.evaluation import text as text_evaluation
from samat.empirical.evaluation.run import evaluate_path
from tests.text import needs_text

pytestmark = needs_text


def _evaluate(run, columns, n_eval, **kw):
    return evaluate_path(run, columns, n_eval=n_eval, seed=0, device="cpu", progress=False, **kw)


def test_eval_json_holds_the_success_rates_and_their_checks(standins, trained_run, tmp_path, monkeypatch):
    run = shutil.copytree(trained_run, tmp_path / "run")
    result = _evaluate(run, ["pso", "iga"], 4)
    saved = json.loads((run / "eval.json").read_text())
    assert saved["task"] == "text" and saved["columns"] == ["pso", "iga"] and saved["n"] == 4
    for column in ("pso", "iga"):
        a = saved["attacks"][column]
        assert a["successful"] + a["failed"] + a["skipped"] == 4
        asr = a["successful"] / (a["successful"] + a["failed"]) if a["successful"] + a["failed"] else 0.0
        assert saved["table"][column] == saved["attack_success_rate"][column] == asr
        assert saved["accuracy"][column] == a["failed"] / 4 <= saved["accuracy"]["natural"]
        assert len(a["examples"]) == 4
    # per column: robust <= clean, TextAttack's skips are the model's errors, its successes are misclassified
    assert saved["sanity_passed"] and len(saved["sanity"]) == 6
    assert saved["provenance"]["inputs"]["settings"] == {"n_eval": 4, "seed": 0}
    assert not (run / text_evaluation.PROGRESS_DIR).exists()  # every outcome is in eval.json now
    # kept, not attacked again (the attacks are seeded per sentence: attacking again would give the same table)
    monkeypatch.setattr(text_evaluation, "attack_example", lambda *a, **k: pytest.fail("attacked again"))
    assert _evaluate(run, ["pso"], 4)["table"] == result["table"]


def test_an_interrupted_evaluation_resumes_to_the_uninterrupted_result(standins, trained_run, tmp_path,
                                                                       monkeypatch):
    whole = _evaluate(shutil.copytree(trained_run, tmp_path / "whole"), ["pso"], 6)
    run = shutil.copytree(trained_run, tmp_path / "run")
    attack = recipes.attack_example
    calls = []

    def interrupted(*args, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(kw["index"])
        return attack(*args, **kw)

    monkeypatch.setattr(text_evaluation, "attack_example", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(run, ["pso"], 6)
    assert not (run / "eval.json").exists()
    progress = (run / text_evaluation.PROGRESS_DIR / "pso.jsonl").read_text().splitlines()
    assert len(progress) == 1 + 3  # the header, then the three sentences attacked
    monkeypatch.setattr(text_evaluation, "attack_example", attack)
    resumed = _evaluate(run, ["pso"], 6)
    strip = lambda result: [{k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
                            for r in result["attacks"]["pso"]["examples"]]
    assert strip(resumed) == strip(whole) and resumed["table"] == whole["table"]


def test_image_attacks_on_a_text_run_and_word_attacks_on_images_are_refused(standins, trained_run):
    with pytest.raises(ParameterError, match="^attack=pgd10_linf"):
        _evaluate(trained_run, ["pgd10_linf"], 4)
    with pytest.raises(ParameterError, match="^attack=textfooler"):
        _evaluate(trained_run, ["textfooler"], 4)

