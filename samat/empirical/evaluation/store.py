"""eval.json: how an evaluation is kept beside the weights. Numbers are numbers; each attack's per-image hits
are a hex bitmask, so that an evaluation can be extended and its checks recomputed without attacking again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from samat.core.errors import SamatError
from samat.empirical.evaluation.columns import NATURAL, SANITY


def pack_mask(mask: torch.Tensor) -> str:
    """A bool mask (N,) as hex digits, one bit per image: how eval.json keeps per-image correctness."""
    return np.packbits(mask.detach().cpu().numpy().astype(bool)).tobytes().hex()


def unpack_mask(text: str, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The inverse of :func:`pack_mask` for a mask of ``n`` images; ValueError if ``text`` does not hold one."""
    raw = bytes.fromhex(text)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"{len(raw)} bytes for {n} images")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n)
    return torch.from_numpy(bits.astype(bool)).to(device)


def read_evaluation(path: Path) -> dict | None:
    """The evaluation in ``path`` (an eval.json), None if there is none; one that cannot be read is a
    :class:`SamatError` naming the file."""
    if not path.exists():
        return None
    fix = "delete it, or evaluate again with samat eval --overwrite"
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SamatError(f"{path} is not valid JSON ({err}): {fix}") from None
    fields = {"accuracy": dict, "attacks": dict, "sanity": list, "correct": dict, "columns": list}
    valid = isinstance(doc, dict) and all(isinstance(doc.get(k, kind()), kind) for k, kind in fields.items())
    valid = valid and "accuracy" in doc and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                for v in doc["accuracy"].values())
    valid = valid and all(isinstance(c, dict) and isinstance(c.get("check"), str) and isinstance(c.get("passed"), bool)
                          for c in doc.get("sanity", []))
    if not valid:
        raise SamatError(f"{path} is not an evaluation written by samat eval: {fix}")
    return doc


def evaluated_columns(evaluation: dict) -> list[str]:
    """The attack columns an evaluation holds, in order (natural and the sanity attacks are not columns; files
    written before eval.json listed its columns name them by their scores)."""
    listed = evaluation.get("columns") or list(evaluation.get("miou", evaluation.get("accuracy", {})))
    return [c for c in listed if c != NATURAL and not c.endswith(SANITY)]


def kept_columns(evaluation: dict) -> set[str]:
    """The columns whose results an evaluation keeps in full: classification's with their per-example hits (a column
    without them is attacked again when the evaluation is extended), segmentation's with their mIoU."""
    return set(evaluation.get("miou", evaluation.get("correct", {}))) & set(evaluated_columns(evaluation))


def recorded_weights(evaluation: dict) -> str | None:
    """The SHA-256 of the weights an evaluation attacked, as its provenance records it (None: not recorded)."""
    weights = evaluation.get("provenance", {}).get("inputs", {}).get("weights")
    return weights.get("sha256") if isinstance(weights, dict) else None


def reusable_evaluation(out: Path, weights: Path, weights_sha256: str, settings: dict, *, overwrite: bool,
                        log: Callable[[str], None]) -> dict | None:
    """The evaluation in ``out`` that a new one may extend: None with ``overwrite``, where there is none, or where it
    attacked other weights than ``weights`` holds now (said in the log; it is redone). One made with other
    settings is a :class:`SamatError` (the two cannot be merged)."""
    previous = None if overwrite else read_evaluation(out)
    if previous is not None and recorded_weights(previous) != weights_sha256:
        log(f"{out} was made for other weights than {weights} holds now (it was trained further, or another "
            "checkpoint): evaluating again")
        return None
    if previous is not None and previous.get("settings") != settings:
        raise SamatError(f"{out} was made with {previous.get('settings')}; pass --overwrite to redo it with "
                         f"{settings}")
    return previous
