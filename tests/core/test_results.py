"""The one way a result is written (samat.core.results): atomically, as plain JSON numbers, with its provenance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from samat.core import VERSION
from samat.core.results import dumps, read_json, temporary_path, write_json


def test_a_result_carries_its_provenance_and_inputs(tmp_path):
    path = write_json(tmp_path / "r.json", {"accuracy": 0.5}, inputs={"config": {"seed": 3}})
    record = read_json(path)["provenance"]
    assert record["samat"] == VERSION and record["inputs"] == {"config": {"seed": 3}}
    assert {"created", "git", "python", "platform", "host", "packages"} <= record.keys()
    assert read_json(path)["accuracy"] == 0.5


def test_numbers_stay_numbers_and_non_finite_floats_become_null():
    text = dumps({"a": np.float32(0.25), "b": np.arange(3), "c": (1, 2.5), "d": math.inf, "e": np.int64(7)})
    assert json.loads(text) == {"a": 0.25, "b": [0, 1, 2], "c": [1, 2.5], "d": None, "e": 7}


def test_a_payload_cannot_bring_its_own_provenance(tmp_path):
    with pytest.raises(ValueError, match="provenance"):
        write_json(tmp_path / "r.json", {"provenance": {}})
    assert not (tmp_path / "r.json").exists()


def test_a_failed_write_keeps_the_previous_result_and_leaves_no_temporary_file(tmp_path):
    path = write_json(tmp_path / "r.json", {"accuracy": 0.5})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_json(path, {"accuracy": object()})
    assert path.read_bytes() == before
    assert not temporary_path(path).exists() and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
