"""A run directory: runs/<name>/ with config.json, metrics.jsonl, checkpoint.pt, model.pt, final.json.

* ``config.json``: the resolved configuration and its provenance (versions, git commit, device);
* ``metrics.jsonl``: one line per finished round (an epoch, or ``eval_every`` iterations);
* ``checkpoint.pt``: everything needed to continue, rewritten atomically after every round;
* ``model.pt``: the final weights (a state_dict), and ``final.json``, which marks the run finished: the
  summary, with a provenance record naming the configuration and the weights' SHA-256 it belongs to.

A run folder has one writer at a time: whoever trains or evaluates it holds its lock
(:class:`samat.core.locks.FolderLock`, the file ``runs/.<name>.lock``). A finished run is never overwritten unless
asked; a run with a checkpoint is only continued when asked (``resume``), and only with the same
configuration. ``overwrite`` sets the old run aside (``runs/.<name>.replaced``) and deletes it only once the
new run has written its first checkpoint; a new run that fails before that gives the old one back.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from samat.core.errors import DiskFull, ParameterError, SamatError, is_disk_full
from samat.core.locks import FolderLock, Holder, holder_of
from samat.core.results import (
    ROOM,
    atomic_write_bytes,
    atomic_write_text,
    check_free_space,
    json_safe,
    temporary_path,
    write_json,
)
from samat.empirical.training.config import TrainConfig

TRAINING, EVALUATION, CLAIM = "samat train", "samat eval", "samat experiment run"  # what a lock's holder does


_HASHED: dict[tuple, str] = {}  # (path, inode, size, mtime, ctime) -> SHA-256, of files unchanged for a while
SETTLED_S = 2.0  # a file whose status changed longer ago than this (well above the clock's granularity) is settled


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (what an evaluation records of the weights it attacked, and what a grid's status
    and report compare with it). A settled file is hashed once per process: any later write changes its ctime
    (which no user can set), so its stat then no longer matches what was hashed."""
    path = Path(path)
    before = path.stat()
    key = (str(path.absolute()), before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns)
    if key in _HASHED:
        return _HASHED[key]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    after = path.stat()
    settled = time.time() - after.st_ctime > SETTLED_S
    if settled and (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns) == key[1:]:
        _HASHED[key] = digest.hexdigest()
    return digest.hexdigest()


def run_path(runs_dir: str | Path, name: str) -> Path:
    """``runs_dir/name`` for a run name that stays inside ``runs_dir`` (one plain folder name)."""
    if not name or name in (".", "..") or Path(name).name != name or "/" in name or "\\" in name \
            or name.startswith("."):
        raise ParameterError("--name", name, "a plain folder name inside --runs-dir (no '/', no leading '.')")
    return Path(runs_dir) / name


def load_torch(path: Path, fix: str) -> Any:
    """``torch.load`` of a file samat wrote; one that is truncated, empty or not a torch file is a one-line
    SamatError naming it and saying what to do (``fix``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise SamatError(f"{path} does not exist: {fix}") from None
    except Exception as err:  # noqa: BLE001 - torch raises many kinds (RuntimeError, EOFError, UnpicklingError...)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SamatError(f"{path} is corrupt (truncated, empty or not written by samat: {reason[:120]}): "
                         f"{fix}") from None


def non_finite(state: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``state`` (a state_dict) that holds a NaN or an infinity;
    None when every value is finite (one host synchronisation)."""
    floats = [(name, t) for name, t in state.items() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not floats:
        return None
    finite = torch.stack([torch.isfinite(t).all().to(floats[0][1].device) for _, t in floats]).cpu()
    return None if bool(finite.all()) else floats[int((~finite).nonzero()[0])][0]


def _disk_full(err: OSError | RuntimeError, path: Path) -> bool:
    """Whether a failed write of ``path`` found the disk full: ENOSPC or EDQUOT, or (torch's zip writer reports
    ENOSPC as a RuntimeError without its errno) less than 64 MB left on its filesystem."""
    if is_disk_full(err):
        return True
    try:
        return isinstance(err, RuntimeError) and shutil.disk_usage(path.parent).free < (64 << 20)
    except OSError:
        return False


NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)  # a folder that refuses writes (permissions, read-only mount)
RESUME_HINT = "continue with --resume"  # how a user of samat train continues a run that stopped
RUN_AGAIN = "run the same command again: it resumes there"  # ... and one of a grid, the demo or the study


class RunDir:
    def __init__(self, path: str | Path, *, resume_hint: str = RESUME_HINT) -> None:
        """``resume_hint``: what the command that trains the run tells its user to do to continue it (samat train's
        --resume; a grid or the demo is run again)."""
        self.path = Path(path)
        self.resume_hint = resume_hint
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoint = self.path / "checkpoint.pt"
        self.weights = self.path / "model.pt"
        self.final = self.path / "final.json"
        self.replaced = self.path.parent / f".{self.path.name}.replaced"  # the old run while --overwrite starts
        self.failure = self.path.parent / f".{self.path.name}.failed.json"  # why a grid's last try at it failed
        self._replacing = False

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

    # --- one writer at a time ----------------------------------------------------------------------------------
    def lock(self, purpose: str, *, hint: str | None = None, wait: Callable[[Holder | None], bool] | None = None,
             on_wait: Callable[[Holder | None], None] | None = None) -> FolderLock:
        """The run's lock (a context manager); a second writer gets a one-line error naming the holder."""
        return FolderLock(self.path, purpose, hint=hint or "wait for it to finish, or choose another --name",
                          wait=wait or (lambda holder: False), on_wait=on_wait or (lambda holder: None))

    def holder(self) -> Holder | None:
        """Who is writing this run now (None: nobody)."""
        return holder_of(self.path)

    # --- what the folder holds -----------------------------------------------------------------------------------
    def load_config(self, changes: dict[str, Any] | None = None) -> TrainConfig:
        """The configuration in config.json (read and validated once), with ``changes`` in place of its own values
        where given; a corrupt file is a one-line SamatError naming it."""
        return self._config_from(self.config, lambda doc: doc["config"], changes)

    def recorded_config(self) -> TrainConfig | None:
        """What the run was trained as: final.json's configuration when finished, else config.json's (None when
        the folder has neither)."""
        if self.finished:
            return self._config_from(self.final, lambda doc: doc["provenance"]["inputs"]["config"])
        return self.load_config() if self.config.exists() else None

    def differences(self, cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """The fields of the run's identity that differ from ``cfg``'s: name -> (recorded, asked)."""
        recorded = self.recorded_config()
        if recorded is None:
            return {}
        old, new = json_safe(recorded.identity()), json_safe(cfg.identity())
        return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}

    def _config_from(self, path: Path, pick: Callable[[dict], dict],
                     changes: dict[str, Any] | None = None) -> TrainConfig:
        """The configuration that ``pick`` finds in the JSON file ``path``, with ``changes`` (a configuration that the
        changes make invalid is the ParameterError that names the field; anything else wrong is the file's one-line
        SamatError)."""
        fix = f"train it again with --overwrite (or delete {self.path})"
        changes = changes or {}
        try:
            values = pick(json.loads(path.read_text()))
            return TrainConfig.from_dict(values | changes)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise SamatError(f"{path} is corrupt ({type(err).__name__}: {str(err)[:80]}): {fix}") from None
        except ParameterError as err:
            if changes:
                raise
            raise SamatError(f"{path} holds a configuration this version cannot read ({err}): {fix}") from None

    def read_checkpoint(self) -> dict:
        """The checkpoint, checked to be one; a corrupt file is a one-line SamatError naming it. One written before
        rounds were called rounds (its count and its metrics' under "epoch") reads as a new one."""
        fix = "it cannot be resumed: train the run again with --overwrite"
        state = load_torch(self.checkpoint, fix)
        if isinstance(state, dict) and "round" not in state and "epoch" in state:
            state["round"] = state.pop("epoch")
            state["history"] = [_round_row(row) for row in state.get("history", [])]
        if not (isinstance(state, dict) and {"round", "history", "model", "optimizer"} <= set(state)
                and isinstance(state["round"], int) and isinstance(state["model"], Mapping)):
            raise SamatError(f"{self.checkpoint} is corrupt (not a samat training checkpoint): {fix}")
        if (name := non_finite(state["model"])) is not None:  # written before samat checked the weights it keeps
            raise SamatError(f"{self.checkpoint} holds non-finite weights (NaN or inf in {name}): the run diverged "
                             "before it was saved; train it again with --overwrite (with a lower learning rate or "
                             "rho)")
        return state

    # --- getting ready ---------------------------------------------------------------------------------------------
    def prepare(self, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> dict | None:
        """Get the directory ready; return the checkpoint to resume from, or None for a fresh start.

        Call it holding the lock. A folder that cannot be created or read (a file in the way, no permission) is a
        one-line SamatError.
        """
        try:
            state = self._prepare(cfg, resume=resume, overwrite=overwrite)
            self._check_writable()
            return state
        except OSError as err:
            if is_disk_full(err):
                raise DiskFull(err.filename or self.path, kept="nothing was started") from None
            reason = err.strerror or type(err).__name__
            if err.filename and Path(err.filename) != self.path:
                reason += f" ({err.filename})"
            raise SamatError(f"cannot prepare the run directory {self.path}: {reason}; "
                             "choose another --runs-dir or --name") from None

    def _prepare(self, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> dict | None:
        self._settle_replacement()
        if overwrite and self.path.exists():
            os.replace(self.path, self.replaced)  # kept until the new run has a checkpoint
            self._replacing = True
        if self.finished:
            raise SamatError(f"run {self.path} is finished; pass --overwrite to train it again")
        if self.has_checkpoint:
            if not resume:
                done = cfg.round_name(self.read_checkpoint()["round"])
                raise SamatError(f"run {self.path} stopped after {done}; pass --resume to continue it or "
                                 "--overwrite to start again")
            saved = self.load_config()
            if saved.identity() != cfg.identity():
                diff = sorted(k for k, v in cfg.identity().items() if saved.identity().get(k) != v)
                raise SamatError(f"cannot resume {self.path}: its configuration differs in {', '.join(diff)}")
            return self.read_checkpoint()
        for partial in self._temporary_files():  # a process killed inside an atomic write left it: never current
            partial.unlink()
        leftovers = [p.name for p in self.path.iterdir() if p.name != self.config.name] if self.path.exists() else []
        if leftovers:  # something that is not a run stopped before its first round
            raise SamatError(f"{self.path} exists and holds {leftovers[0]}; pass --overwrite to replace it")
        self.path.mkdir(parents=True, exist_ok=True)
        return None

    def _check_writable(self) -> None:
        """Before the first round: a file can be written in the folder (a read-only one would train a round, then
        fail to save it)."""
        try:
            fd, probe = tempfile.mkstemp(dir=self.path, prefix=".samat-write-test-")
        except OSError as err:
            if err.errno not in NOT_WRITABLE:
                raise
            raise SamatError(f"cannot write in the run directory {self.path} ({err.strerror}): nothing was trained; "
                             f"make it writable and {self.resume_hint if self.has_checkpoint else 'start it again'}"
                             ) from None
        os.close(fd)
        os.unlink(probe)

    def _temporary_files(self) -> list[Path]:
        """The temporary files of this folder's atomic writes (core.results.atomic_write_bytes: ``.NAME.tmp``)."""
        own = (self.config, self.metrics, self.checkpoint, self.weights, self.final)
        return [tmp for tmp in map(temporary_path, own) if tmp.exists()]

    def _settle_replacement(self) -> None:
        """An --overwrite killed before its new run had a checkpoint left the old run aside: give it back. One
        killed after that left only the old run to delete."""
        if not self.replaced.exists():
            return
        if self.has_checkpoint or self.finished:
            shutil.rmtree(self.replaced)
            return
        if self.path.exists():
            shutil.rmtree(self.path)  # config.json at most: the new run never finished a round
        os.replace(self.replaced, self.path)

    def abort_replacement(self) -> bool:
        """The new run failed before its first checkpoint: put the run it was to replace back. True if it did."""
        if not self._replacing or not self.replaced.exists() or self.has_checkpoint:
            return False
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.replaced, self.path)
        self._replacing = False
        return True

    # --- writing ---------------------------------------------------------------------------------------------------
    def check_room(self, model: torch.nn.Module) -> None:
        """Before training: :class:`DiskFull` unless the disk has room for what the run will write: a checkpoint
        (the weights and up to two optimizer buffers per weight, as Adam's moments) beside the current one, then
        model.pt, and the JSON files (ROOM)."""
        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        check_free_space(self.path.parent, 4 * weights + ROOM, what=f"the checkpoints and weights of {self.path}")

    def write_config(self, cfg: TrainConfig, record: dict[str, Any]) -> None:
        write_json(self.config, {"config": cfg.to_dict()}, provenance_record=record, indent=2)

    def save_checkpoint(self, state: dict[str, Any], cfg: TrainConfig) -> None:
        """Replace checkpoint.pt atomically; a failed write (a full disk) keeps the previous one and says so.
        The first checkpoint of a run that replaces another (--overwrite) deletes the old run."""
        self._writing(self.checkpoint, lambda: atomic_write_bytes(self.checkpoint, lambda p: torch.save(state, p)),
                      kept=f"the last checkpoint (after {cfg.round_name(state['round'] - 1)}) is intact"
                      if state["round"] > 1 else "nothing was saved yet")
        if self._replacing:
            shutil.rmtree(self.replaced, ignore_errors=True)
            self._replacing = False

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        self._writing(self.metrics, lambda: atomic_write_text(
            self.metrics, "".join(json.dumps(row) + "\n" for row in history)), kept="the checkpoint is intact")

    def _writing(self, path: Path, write: Callable[[], None], kept: str) -> None:
        """``write()`` of ``path``; a failure is one line saying what is ``kept`` and how to go on."""
        try:
            write()
        except DiskFull:  # from core.results' atomic write, which knows only the file
            raise DiskFull(path, kept=kept, then=self.resume_hint) from None
        except (OSError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and not _is_write_failure(err):
                raise
            if _disk_full(err, path):
                raise DiskFull(path, kept=kept, then=self.resume_hint) from None
            reason = getattr(err, "strerror", None) or str(err).strip()[:120]
            remedy = "make it writable" if getattr(err, "errno", None) in NOT_WRITABLE else "fix that"
            raise SamatError(f"cannot write {path.name} ({reason}) in {self.path}; {kept}: {remedy} and "
                             f"{self.resume_hint}") from None

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        return [_round_row(json.loads(line)) for line in self.metrics.read_text().splitlines() if line.strip()]

    def finish(self, weights: dict[str, torch.Tensor], summary: dict[str, Any], cfg: TrainConfig) -> None:
        """Write model.pt, then final.json (which marks the run finished) naming the configuration and the
        weights' SHA-256."""
        kept = "the last checkpoint is intact"
        self._writing(self.weights, lambda: atomic_write_bytes(self.weights, lambda p: torch.save(weights, p)),
                      kept=kept)
        inputs = {"config": cfg.identity(), "weights": {"file": self.weights.name,
                                                        "sha256": file_sha256(self.weights)}}
        self._writing(self.final, lambda: write_json(self.final, summary, inputs=inputs, indent=2), kept=kept)

    def read_final(self) -> dict[str, Any]:
        return json.loads(self.final.read_text())

    # --- a grid's failed tries (beside the folder, which may not exist yet) ----------------------------------------
    def record_failure(self, reason: str, details: list[str]) -> None:
        """Why training or evaluating this run failed in a grid (one line), and the traceback's lines. Call it
        holding the run's lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.failure, {"reason": reason, "traceback": details}, indent=2)

    def read_failure(self) -> str | None:
        """The reason of the last recorded failure (None: none recorded, or the record is unreadable)."""
        try:
            return str(json.loads(self.failure.read_text())["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return None if not self.failure.exists() else "failed (its record cannot be read)"

    def clear_failure(self) -> None:
        self.failure.unlink(missing_ok=True)


def _round_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of metrics as this version writes it: its round under "round" (older versions wrote "epoch")."""
    if "epoch" in row and "round" not in row:
        return {("round" if k == "epoch" else k): v for k, v in row.items()}
    return row


def _is_write_failure(err: RuntimeError) -> bool:
    """torch.save reports a failed write (ENOSPC) as a RuntimeError of its zip writer."""
    text = str(err)
    return any(s in text for s in ("unexpected pos", "PytorchStreamWriter", "file write failed", "No space left"))
