"""The one way a result is written (samat.core.results): atomically, as plain JSON numbers, with its provenance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from samat.core import VERSION, results
from samat.core.errors import DiskFull
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


def test_publish_copies_each_file_whole_and_keeps_the_old_one_when_a_copy_fails(tmp_path, monkeypatch):
    out, folder = tmp_path / "out", tmp_path / "docs" / "study"
    out.mkdir()
    (out / "verdicts.md").write_text("new verdicts")
    (out / "summary.json").write_text("{}")
    results.publish([out / "verdicts.md", out / "summary.json"], folder)
    assert (folder / "verdicts.md").read_text() == "new verdicts" and (folder / "summary.json").read_text() == "{}"

    (out / "verdicts.md").write_text("newer verdicts")

    def failing_copy(source, target):
        Path(target).write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.shutil, "copyfile", failing_copy)
    with pytest.raises(DiskFull):
        results.publish([out / "verdicts.md"], folder)
    assert (folder / "verdicts.md").read_text() == "new verdicts"  # the old file, whole
    assert sorted(p.name for p in folder.iterdir()) == ["summary.json", "verdicts.md"]  # no temporary file left
