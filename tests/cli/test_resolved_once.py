"""Every value is resolved once, at the edge: one ``samat train`` and one ``samat eval`` parse each attack, locate the
weights, resolve the device, build the configuration and read config.json at most once, and pass the objects down.
The calls are counted wherever the library reaches the functions (every samat module that bound them)."""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter

import pytest

import samat.cli.main  # noqa: F401 - the command line and, below, every module the commands import
import samat.empirical.evaluation.run  # noqa: F401
import samat.empirical.training.loop  # noqa: F401
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.distributed import World
from samat.empirical.training.runs import RunDir
from tests.commandline import GAUSSIAN


def _count(monkeypatch, module: str, name: str) -> Counter:
    """Calls of ``module.name`` by their first argument, through every samat module that imported it."""
    original = getattr(importlib.import_module(module), name)
    calls: Counter = Counter()

    def counting(*args, **kwargs):
        calls[repr(args[0]) if args else ""] += 1
        return original(*args, **kwargs)

    for loaded in list(sys.modules.values()):
        if getattr(loaded, "__name__", "").startswith("samat") and getattr(loaded, name, None) is original:
            monkeypatch.setattr(loaded, name, counting)
    return calls


def _count_method(monkeypatch, cls: type, name: str) -> Counter:
    original = getattr(cls, name)
    calls: Counter = Counter()

    def counting(*args, **kwargs):
        calls[name] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, name, counting)
    return calls


@pytest.fixture()
def counters(monkeypatch):
    return {
        "parse_attack": _count(monkeypatch, "samat.empirical.attacks.specs", "parse_attack"),
        "locate": _count(monkeypatch, "samat.empirical.evaluation.trained", "locate"),
        "resolve_device": _count(monkeypatch, "samat.empirical.training.setup", "resolve_device"),
        "read_document": _count(monkeypatch, "samat.empirical.training.config", "read_document"),
        "config built": _count_method(monkeypatch, TrainConfig, "__post_init__"),
        "config.json read": _count_method(monkeypatch, RunDir, "_config_from"),
    }


def _totals(counters) -> dict[str, int]:
    return {name: sum(c.values()) for name, c in counters.items()}


def test_one_train_and_one_eval_resolve_every_value_once(tmp_path, counters, monkeypatch, capsys):
    world_calls = Counter()
    real = World.from_environment.__func__

    def from_environment(cls, environ=None):
        world_calls["from_environment"] += 1
        return real(cls, environ)

    monkeypatch.setattr(World, "from_environment", classmethod(from_environment))
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"dataset": "gaussian", "model": "linear", "epochs": 1, "batch_size": 64,
                                  "gaussian": GAUSSIAN, "device": "cpu"}))
    assert samat.cli.main.main(["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "r",
                                "--no-progress"]) == 0, capsys.readouterr().err
    totals = _totals(counters)
    assert totals["read_document"] == 1 and totals["config built"] == 1, totals
    assert totals["resolve_device"] == 1 and world_calls["from_environment"] == 1, (totals, world_calls)
    assert totals["config.json read"] == 0 and totals["parse_attack"] == 0 and totals["locate"] == 0, totals

    for c in counters.values():
        c.clear()
    world_calls.clear()
    attacks = ["pgd10_linf@0.1,0.2", "fgsm_linf@0.1"]
    assert samat.cli.main.main(["eval", str(tmp_path / "r"), "--attacks", *attacks, "--n-eval", "64",
                                "--no-progress"]) == 0, capsys.readouterr().err
    assert "PGD-10 ℓ∞ 0.2" in capsys.readouterr().out  # it did evaluate every column
    totals = _totals(counters)
    assert counters["parse_attack"] == Counter({repr(a): 1 for a in attacks}), counters["parse_attack"]
    assert totals["locate"] == 1 and totals["resolve_device"] == 1, totals
    assert totals["config.json read"] == 1 and totals["config built"] == 1, totals
    assert totals["read_document"] == 0 and world_calls["from_environment"] == 0, (totals, world_calls)
