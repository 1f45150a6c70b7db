"""Train every run of the study that is not finished (resuming interrupted ones), measure every run, and write
``<out>/measurements.json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from samat.core.results import write_json
from samat.empirical.training.loop import train
from samat.empirical.training.runs import RUN_AGAIN, RunDir
from samat.empirical.training.setup import load_data
from samat.gaussian_study.grid import StudyGrid, jobs
from samat.gaussian_study.measure import measure


def run(grid: StudyGrid, out: Path, *, log: Callable[[str], None] = print, progress: bool = False) -> Path:
    """Train what is missing, measure every run, write ``<out>/measurements.json``.

    Runs on one CPU thread: for a linear model every op is tiny, and intra-op threads only cost
    (30x slower with two threads when another process holds a core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(grid, out, log=log, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _run(grid: StudyGrid, out: Path, *, log: Callable[[str], None], progress: bool) -> Path:
    all_jobs = jobs(grid, out)
    log(f"gaussian study: {len(all_jobs)} runs into {out}/runs "
        f"({sum(RunDir(j.run_dir).finished for j in all_jobs)} already finished)")
    rows, cache = [], {}
    for i, job in enumerate(all_jobs, 1):
        key = json.dumps(job.config.gaussian, sort_keys=True)
        if key not in cache:
            cache.clear()
            cache[key] = load_data(job.config)
        if not RunDir(job.run_dir).finished:
            if i % 10 == 1 or progress:
                log(f"  [{i}/{len(all_jobs)}] {job.key} {job.label} seed {job.config.seed} ({job.kind})")
            train(job.config, job.run_dir, resume=True, progress=progress, data=cache[key], resume_hint=RUN_AGAIN)
        rows.append(measure(job, grid, cache[key]))
    path = Path(out) / "measurements.json"
    write_json(path, {"grid": asdict(grid), "rows": rows}, inputs={"runs": str(Path(out) / "runs")})
    return path
