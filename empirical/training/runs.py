"""A run directory: runs/<name>/ with config.json, metrics.jsonl, checkpoint.pt, model.pt, final.json.

* ``config.json``: the resolved configuration and its provenance (versions, git commit, device);
* ``metrics.jsonl``: one line per finished epoch;
* ``checkpoint.pt``: everything needed to continue, rewritten atomically after every epoch;
* ``model.pt``: the final weights (a state_dict), and ``final.json``, which marks the run finished: the
  summary, with a provenance record naming the configuration and the weights' SHA-256 it belongs to.

A finished run is never overwritten unless asked; a run with a checkpoint is only continued when
asked (``resume``), and only with the same configuration.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from core.errors import SamatError
from core.results import atomic_write_bytes, atomic_write_text, write_json
from empirical.training.config import TrainConfig


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (what an evaluation records of the weights it attacked)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoint = self.path / "checkpoint.pt"
        self.weights = self.path / "model.pt"
        self.final = self.path / "final.json"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def finished(self) -> bool:
        return self.final.exists()

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint.exists()

    def status(self) -> str:
        return "finished" if self.finished else ("partial" if self.has_checkpoint else "new")

    def load_config(self) -> TrainConfig:
        return TrainConfig.from_dict(json.loads(self.config.read_text())["config"])

    def prepare(self, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> dict | None:
        """Get the directory ready; return the checkpoint to resume from, or None for a fresh start.

        A folder that cannot be created or read (a file in the way, no permission) is a one-line SamatError.
        """
        try:
            return self._prepare(cfg, resume=resume, overwrite=overwrite)
        except OSError as err:
            reason = err.strerror or type(err).__name__
            if err.filename and Path(err.filename) != self.path:
                reason += f" ({err.filename})"
            raise SamatError(f"cannot prepare the run directory {self.path}: {reason}; "
                             "choose another --runs-dir or --name") from None

    def _prepare(self, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> dict | None:
        if overwrite and self.path.exists():
            shutil.rmtree(self.path)
        if self.finished:
            raise SamatError(f"run {self.path} is finished; pass --overwrite to train it again")
        if self.has_checkpoint:
            if not resume:
                epoch = self.read_checkpoint_epoch()
                raise SamatError(f"run {self.path} stopped after epoch {epoch}; pass --resume to continue it or "
                                 "--overwrite to start again")
            saved = self.load_config()
            if saved.identity() != cfg.identity():
                diff = sorted(k for k, v in cfg.identity().items() if saved.identity().get(k) != v)
                raise SamatError(f"cannot resume {self.path}: its configuration differs in {', '.join(diff)}")
            return torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        leftovers = [p.name for p in self.path.iterdir() if p.name != self.config.name] if self.path.exists() else []
        if leftovers:  # something that is not a run stopped before its first epoch
            raise SamatError(f"{self.path} exists and holds {leftovers[0]}; pass --overwrite to replace it")
        self.path.mkdir(parents=True, exist_ok=True)
        return None

    def read_checkpoint_epoch(self) -> int:
        try:
            return int(torch.load(self.checkpoint, map_location="cpu", weights_only=False)["epoch"])
        except Exception:  # noqa: BLE001 - only for the message
            return -1

    def write_config(self, cfg: TrainConfig, record: dict[str, Any]) -> None:
        write_json(self.config, {"config": cfg.to_dict()}, provenance_record=record, indent=2)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write_bytes(self.checkpoint, lambda p: torch.save(state, p))

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        atomic_write_text(self.metrics, "".join(json.dumps(row) + "\n" for row in history))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def finish(self, weights: dict[str, torch.Tensor], summary: dict[str, Any], cfg: TrainConfig) -> None:
        """Write model.pt, then final.json (which marks the run finished) naming the configuration and the
        weights' SHA-256."""
        atomic_write_bytes(self.weights, lambda p: torch.save(weights, p))
        inputs = {"config": cfg.identity(), "weights": {"file": self.weights.name,
                                                        "sha256": file_sha256(self.weights)}}
        write_json(self.final, summary, inputs=inputs, indent=2)

    def read_final(self) -> dict[str, Any]:
        return json.loads(self.final.read_text())
