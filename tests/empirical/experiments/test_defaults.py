"""The embedded defaults (samat.empirical.experiments.defaults): a failed run is raised, never a finished default."""

from __future__ import annotations

import pytest

from samat.empirical.experiments import defaults
from samat.empirical.experiments.runner import RunsFailed
from tests.text import needs_text


@needs_text
def test_the_text_default_raises_a_failed_run_after_reporting_what_finished(standins, tmp_path, monkeypatch):
    """A failed run is recorded by the runner, which goes on; the text default returned as if it had finished, so
    that `samat demo --task text --force` replaced the earlier results with a partial report and exited 0."""
    reports = []
    monkeypatch.setattr(defaults, "run_experiment", lambda exp, **kw: [
        {"run": "st-adamw-seed0", "status": "failed", "reason": "boom"},
        {"run": "sam-adamw-seed0", "status": "finished"}])
    monkeypatch.setattr(defaults, "write_report", lambda exp, out, **kw: reports.append(out) or {"markdown": out})
    monkeypatch.setattr(defaults.Experiment, "finished", lambda self, label: True)
    with pytest.raises(RunsFailed, match=r"1 of 2 runs failed: st-adamw-seed0 \(boom\)"):
        defaults.run_text_default(tmp_path / "text", resources=standins, log=lambda m: None)
    assert reports == [tmp_path / "text"]  # the report of what did finish, written once
