"""eval.json: how an evaluation is kept beside the weights. Numbers are numbers; each attack's per-image hits
are a hex bitmask, so that an evaluation can be extended and its checks recomputed without attacking again."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from samat.core.errors import ParameterError, SamatError
from samat.empirical.evaluation.columns import NATURAL, SANITY, column_spec


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


def recorded_model(evaluation: dict) -> tuple[str, str] | None:
    """The architecture and the dataset an evaluation loaded the weights into and scored them on (None: not
    recorded). Files written before they were recorded name them in their description, "small_cnn on
    fashion_mnist (model.pt)"."""
    model = evaluation.get("provenance", {}).get("inputs", {}).get("model")
    if isinstance(model, dict) and isinstance(model.get("architecture"), str) and isinstance(model.get("dataset"), str):
        return model["architecture"], model["dataset"]
    described = re.fullmatch(r"(\S+) on (\S+) \(.*\)", str(evaluation.get("model", "")))
    return (described.group(1), described.group(2)) if described else None


ATTACK_FIELDS = ("name", "norm", "eps", "steps", "step_size")  # what makes an attack the one a column names


@dataclass(frozen=True)
class EvaluationOf:
    """What an evaluation is of, and so what makes a saved one reusable: the weights (their SHA-256: the file's
    bytes now, whatever a run's records say), the architecture they are loaded into and the dataset they are
    scored on, the settings (test images and seed), and each attack column's parameters (a column names the same
    attack only while its name, norm, budget, steps and step size are the same)."""

    weights: Path
    weights_sha256: str
    architecture: str
    dataset: str
    settings: dict

    def inputs(self) -> dict:
        """The provenance "inputs" of an evaluation made of this."""
        return {"weights": {"file": self.weights.name, "sha256": self.weights_sha256},
                "model": {"architecture": self.architecture, "dataset": self.dataset}, "settings": self.settings}

    def mismatch(self, evaluation: dict) -> str:
        """Why ``evaluation`` is not of these weights, model, data and attacks ("" when it is); settings aside
        (:meth:`settings_differ`), as those ask before an evaluation is replaced."""
        if recorded_weights(evaluation) != self.weights_sha256:
            return f"it attacked other weights than {self.weights} holds now"
        model = recorded_model(evaluation)
        if model != (self.architecture, self.dataset):
            shown = f"{model[0]} on {model[1]}" if model else "an unrecorded model"
            return f"it evaluated {shown}, not {self.architecture} on {self.dataset}"
        return attacks_changed(evaluation)

    def settings_differ(self, evaluation: dict) -> bool:
        return evaluation.get("settings") != self.settings


def attacks_changed(evaluation: dict) -> str:
    """Which attack of an evaluation is not the one its column names now (its parameters were recorded by a
    version that attacked differently), or ""."""
    for label, record in evaluation.get("attacks", {}).items():
        if not isinstance(record, dict):
            return f"its record of {label} is not an attack's"
        try:
            now = column_spec(label.removesuffix(SANITY))
        except ParameterError:
            return f"its column {label} names no attack samat knows now"
        wanted = {"name": now.name, "norm": now.norm.value, "eps": now.eps, "steps": now.steps,
                  "step_size": now.step_size}
        changed = [k for k in ATTACK_FIELDS if k in record and record[k] != wanted[k]]
        if changed:
            return (f"its {label} attack had {', '.join(f'{k} {record.get(k)}' for k in changed)}, which the column "
                    f"means as {', '.join(f'{k} {wanted[k]}' for k in changed)} now")
    return ""


def reusable_evaluation(out: Path, of: EvaluationOf, *, overwrite: bool, log: Callable[[str], None]) -> dict | None:
    """The evaluation in ``out`` that a new one may extend: None with ``overwrite``, where there is none, or where it
    is not of ``of``'s weights, model, data and attacks (said in the log; it is redone). One made with other
    settings is a :class:`SamatError` (the two cannot be merged)."""
    previous = None if overwrite else read_evaluation(out)
    if previous is None:
        return None
    if why := of.mismatch(previous):
        log(f"{out} is not an evaluation of these weights ({why}): evaluating again")
        return None
    if of.settings_differ(previous):
        raise SamatError(f"{out} was made with {previous.get('settings')}; pass --overwrite to redo it with "
                         f"{of.settings}")
    return previous
