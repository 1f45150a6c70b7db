"""Evaluation of trained models: clean and robust accuracy under the papers' threat models.

Every model is evaluated on the same seeded subset of its test set (``n_eval`` images drawn with
``seed``), batched, on the GPU when there is one. Results go to ``eval.json`` beside the weights, as
numbers, with each attack's per-image hits (a hex bitmask); an existing evaluation is extended with new
columns, never silently recomputed, and its checks across columns are recomputed over old and new ones.

Each evaluation carries sanity checks (a failing one is a red flag in the report):

* robust <= clean, image by image: no image the model gets wrong is classified correctly after the attack;
* accuracy does not increase with ε within an attack family, beyond noise;
* 2x the PGD steps is never weaker than the evaluated PGD, beyond noise;
* every perturbation stays within its budget (up to float32 rounding) and within [0, 1];
* a large-ε PGD attack (l∞, ε = 0.5) drives the model below chance level: otherwise the gradients are
  not doing their job (masking) and every robust number is suspect.

"Beyond noise" is a paired test on the same images: b exceeds a if (#b-only - #a-only) > 2 √(#discordant).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from empirical.data import as_inputs
from theory.errors import ParameterError, SamatError

if TYPE_CHECKING:
    from empirical.attacks import AttackSpec
    from empirical.runs import RunDir

NATURAL, AVERAGE = "natural", "average"  # the table columns that are not attacks ("average": of a table's attacks)
DEFAULT_N_EVAL = 1000
LARGE_EPS = 0.5  # l∞ budget of the sanity attack: enough to turn any image into mid-grey


@torch.no_grad()
def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512,
                   bf16: bool = False, channels_last: bool = False) -> float:
    """Fraction of (x, y) classified correctly, in eval mode, batched, with one host sync at the end."""
    return float(correct_mask(model, x, y, batch_size=batch_size, bf16=bf16, channels_last=channels_last)
                 .double().mean()) if len(y) else 0.0


@torch.no_grad()
def correct_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512, bf16: bool = False,
                 channels_last: bool = False) -> torch.Tensor:
    was_training = model.training
    model.eval()
    autocast = torch.autocast(y.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out = []
    try:
        for start in range(0, len(y), batch_size):
            xb = as_inputs(x[start:start + batch_size])
            if channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast:
                out.append(model(xb).argmax(dim=1) == y[start:start + batch_size])
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=y.device)


# --- Which attacks ------------------------------------------------------------------------------


def column_spec(column: str) -> AttackSpec:
    """The one attack a table column names ("pgd10_linf@1/255", "stadv", ...)."""
    from empirical.attacks import parse_attack  # torchattacks is imported only when attacks are needed

    specs = parse_attack(column)
    if len(specs) != 1:
        raise ParameterError("attack", column, "a single attack with at most one budget, e.g. pgd10_linf@8/255")
    return specs[0]


def column_specs(columns: Iterable[str]) -> dict[str, AttackSpec]:
    """The attack of every column that needs one (not natural, not the average), by column name, each parsed
    once: "pgd10_linf@1/255,2/255" becomes two columns, a single attack keeps the user's name."""
    from empirical.attacks import parse_attack

    out: dict[str, AttackSpec] = {}
    for c in columns:
        if c in (NATURAL, AVERAGE):
            continue
        specs = parse_attack(c)
        for label, s in [(c, specs[0])] if len(specs) == 1 else [(s.label, s) for s in specs]:
            out.setdefault(label, s)
    return out


def attack_columns(columns: Iterable[str]) -> list[str]:
    """The columns that need an attack, in order, without repeats (see :func:`column_specs`)."""
    return list(column_specs(columns))


# --- Loading a trained model ----------------------------------------------------------------------


@dataclasses.dataclass
class Loaded:
    model: nn.Module
    x: torch.Tensor  # the test split (uint8 images or float vectors), on the device
    y: torch.Tensor
    num_classes: int
    where: Path  # the run directory (eval.json goes here)
    description: str


def locate(path: str | Path) -> tuple[RunDir, Path]:
    """The run directory of ``path`` (a run directory, or a model.pt / checkpoint.pt) and the weights to load;
    nothing is read."""
    from empirical.runs import RunDir

    path = Path(path)
    if not path.exists():
        raise SamatError(f"{path} does not exist: give a run directory (runs/<name>) or a model.pt/checkpoint.pt")
    run = RunDir(path if path.is_dir() else path.parent)
    if not path.is_dir():
        return run, path
    weights = run.weights if run.weights.exists() else run.checkpoint
    if not weights.exists():
        raise SamatError(f"{path} holds no model.pt or checkpoint.pt: train it first (samat train)")
    return run, weights


def load_trained(path: str | Path, *, device: torch.device, data_dir: str | None = None,
                 model: str | None = None, dataset: str | None = None) -> Loaded:
    """A run directory, or a model.pt / checkpoint.pt inside one, or a bare state_dict with ``model``/``dataset``."""
    from empirical.config import TrainConfig
    from empirical.data import GaussianSpec, load_dataset
    from empirical.models import build_model

    run, weights = locate(path)
    cfg = run.load_config() if run.config.exists() else None
    values = cfg.to_dict() if cfg else {}
    values |= {k: v for k, v in (("model", model), ("dataset", dataset), ("data_dir", data_dir)) if v is not None}
    if "model" not in values or "dataset" not in values:
        raise SamatError(f"{path} is not inside a run directory: say which --model and --dataset it is")
    cfg = TrainConfig.from_dict(values)
    gaussian = GaussianSpec(**cfg.gaussian) if cfg.dataset == "gaussian" else None
    data = load_dataset(cfg.dataset, cfg.data_dir, gaussian=gaussian)
    net = build_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, mean=data.mean,
                      std=data.std)
    state = torch.load(weights, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and "optimizer" in state:
        state = state["model"]  # a training checkpoint
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0 if not str(err).startswith("Error(s)") else -1].strip()
        raise SamatError(f"{weights} does not fit model {cfg.model} on {cfg.dataset} "
                         f"({data.input_shape}, {data.num_classes} classes): {first}") from None
    net = net.to(device).eval()
    return Loaded(net, data.test_x.to(device), data.test_y.to(device), data.num_classes, run.path,
                  f"{cfg.model} on {cfg.dataset} ({weights.name})")


def eval_indices(n_test: int, n_eval: int, seed: int) -> torch.Tensor:
    """The same seeded subset of the test set for every model of a dataset (sorted)."""
    if n_eval < 1:
        raise ParameterError("n_eval", n_eval, "an integer >= 1")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_test, generator=g)[: min(n_eval, n_test)].sort().values


# --- The evaluation -----------------------------------------------------------------------------------------

SANITY = " (sanity)"  # suffix of the columns of the sanity attacks
FAMILY_CHECK = "accuracy does not increase with eps"


def _exceeds(weaker: torch.Tensor, stronger: torch.Tensor) -> tuple[bool, str]:
    """Does the attack that should be stronger leave more images correct, beyond noise? (paired masks)"""
    only_s, only_w = int((stronger & ~weaker).sum()), int((weaker & ~stronger).sum())
    flag = only_s - only_w > 2 * math.sqrt(only_s + only_w)
    return flag, f"{only_s} images survive only the stronger attack, {only_w} only the weaker"


def robust_within_clean(clean: torch.Tensor, hits: torch.Tensor) -> tuple[bool, str]:
    """The check "robust <= clean" on an attack's raw hits (correct on x_adv), before they are combined with
    ``clean``: an image the model gets wrong must stay wrong, since attacks leave such images unattacked."""
    gained = int((hits & ~clean).sum())
    return gained == 0, f"{int(hits.sum())} images correct under attack, {gained} of them wrong on the clean image"


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


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, columns: list[str], *, num_classes: int,
             seed: int = 0, batch_size: int = 256, progress: bool = True,
             log: Callable[[str], None] = lambda m: None, previous: dict | None = None) -> dict[str, Any]:
    """Accuracy of ``model`` on (x, y) clean and under each column's attack, with sanity checks.

    x, y are the evaluation images (already the subset). Returns numbers only (accuracy as fractions), and in
    ``correct`` each attack's raw per-image hits (:func:`pack_mask`). With ``previous``, an earlier result of
    this function for the same model, images and seed, its columns are kept without attacking again, and the
    checks across columns (accuracy against eps, the large attack) are recomputed over old and new columns
    together, replacing the old ones.
    """
    from empirical.attacks import GRADIENT_METHODS, IMAGE_BOX, Method, PerturbationMeter, build_attack, spec

    specs = {label: column_spec(label) for label in columns}
    inputs = as_inputs(x)
    if inputs.dim() != 4:
        bad = next((label for label, s in specs.items() if s.method not in GRADIENT_METHODS), None)
        if bad is not None:
            raise ParameterError("attack", bad, "FGSM or PGD on vector data (AutoAttack, FAB, Pixle and StAdv "
                                 "attack (N, C, H, W) images only)")
    device, n = y.device, len(y)
    box = IMAGE_BOX if inputs.dim() == 4 else None
    before = previous or {}
    if before and before.get("n") != n:
        raise SamatError(f"the earlier evaluation has {before.get('n')} images, this one {n}: pass --overwrite")
    evaluated = list(before.get("columns", []))
    specs_all = {label: column_spec(label) for label in evaluated if label not in specs} | specs
    accuracy: dict[str, float] = dict(before.get("accuracy", {}))
    attacks: dict[str, dict] = dict(before.get("attacks", {}))
    try:
        hits_of = {label: unpack_mask(text, n, device) for label, text in before.get("correct", {}).items()}
    except (ValueError, TypeError) as err:
        raise SamatError(f"the earlier evaluation's per-image hits are corrupt ({err}): pass --overwrite") from None
    checks = {c["check"]: c for c in before.get("sanity", []) if not c["check"].startswith(FAMILY_CHECK)}

    clean = correct_mask(model, inputs, y, batch_size=batch_size)
    hits_of[NATURAL] = clean
    accuracy[NATURAL] = float(clean.double().mean())

    def robust(label: str) -> torch.Tensor:
        return hits_of[label] & clean

    def check(name: str, passed: bool, detail: str) -> None:
        checks[name] = {"check": name, "passed": bool(passed), "detail": detail}

    def run_attack(label: str, s: AttackSpec) -> None:
        attack = build_attack(s, model, num_classes=num_classes, seed=seed, device=device, box="auto")
        meter = PerturbationMeter(s, box=box)
        hits, t0 = [], time.perf_counter()
        for i in tqdm(range(0, n, batch_size), desc=label, unit="batch", disable=not progress, leave=False):
            xb, yb = inputs[i:i + batch_size], y[i:i + batch_size]
            x_adv = attack(xb, yb, clean=clean[i:i + batch_size])
            hits.append(correct_mask(model, x_adv, yb, batch_size=batch_size))
            meter.add(xb, x_adv, flow=getattr(attack, "last_flow", None))
        size = meter.summary()  # one host synchronisation, after the loop
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        hits_of[label] = torch.cat(hits)
        accuracy[label] = float(robust(label).double().mean())
        attacks[label] = {
            "name": s.name, "norm": s.norm.value, "eps": s.eps, "steps": s.steps, "step_size": s.step_size,
            "seconds": seconds, "max_perturbation": size["max"], "tolerance": size["tolerance"],
            "within_budget": size["within_eps"], "in_box": size["in_box"],
        }
        log(f"  {label}: {accuracy[label]:.4f} ({seconds:.1f} s)")

    for label, s in specs.items():
        run_attack(label, s)
        if label not in evaluated:
            evaluated.append(label)

    # --- sanity checks: per new column, then across all columns ------------------------------------------
    for label in specs:
        passed, detail = robust_within_clean(clean, hits_of[label])
        check(f"robust <= clean: {label}", passed,
              f"{accuracy[label]:.4f} <= {accuracy[NATURAL]:.4f}; {detail}")
        a = attacks[label]
        check(f"within budget and [0, 1]: {label}", a["within_budget"] and a["in_box"] is not False,
              f"largest perturbation {a['max_perturbation']:.6g} (budget {a['eps']}, slack {a['tolerance']:.2g})")
    for label, s in specs.items():
        if s.method is Method.PGD:
            stronger = spec(f"pgd{2 * s.steps}_{s.norm.value}").at(s.eps)
            more = f"{stronger.label}{SANITY}"
            run_attack(more, stronger)
            flag, detail = _exceeds(robust(label), robust(more))
            check(f"more PGD steps are not weaker: {label} vs {stronger.steps} steps", not flag, detail)
    families: dict[tuple, list[tuple[float, str]]] = {}
    for label in evaluated:
        s = specs_all[label]
        if s.eps is not None:
            families.setdefault((s.name, s.norm), []).append((s.eps, label))
    for members in families.values():
        labels = [label for _, label in sorted(members)]
        for l1, l2 in zip(labels, labels[1:], strict=False):
            flag, detail = _exceeds(robust(l1), robust(l2))
            check(f"{FAMILY_CHECK}: {l1} -> {l2}", not flag, detail)
    large = spec("pgd20_linf").at(LARGE_EPS)
    label = f"{large.label}{SANITY}"
    if label not in accuracy:  # an earlier evaluation ran it on the same model, images and seed
        run_attack(label, large)
    chance = 1 / num_classes
    check(f"a large attack (l-inf {LARGE_EPS}) drives accuracy below chance ({chance:.3g})",
          accuracy[label] < chance, f"{accuracy[label]:.4f}")
    sanity = list(checks.values())
    return {"n": n, "columns": evaluated, "accuracy": accuracy, "attacks": attacks,
            "correct": {k: pack_mask(v) for k, v in hits_of.items()}, "sanity": sanity,
            "sanity_passed": all(c["passed"] for c in sanity)}


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


def evaluate_path(path: str | Path, columns: list[str], *, n_eval: int = DEFAULT_N_EVAL, seed: int = 0,
                  batch_size: int = 256, device: str = "auto", data_dir: str | None = None,
                  model: str | None = None, dataset: str | None = None, crosscheck: bool = False,
                  overwrite: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Evaluate a run (or checkpoint) and write ``eval.json`` in its run directory.

    An existing evaluation with the same settings is extended: only columns it lacks are attacked (and nothing
    is loaded when it has them all); the checks across columns are recomputed over the union.
    """
    from empirical import provenance
    from empirical.attacks import Method
    from empirical.runs import atomic_write_text
    from empirical.train import resolve_device

    specs = column_specs(columns)
    run, _ = locate(path)
    out = run.path / "eval.json"
    settings = {"n_eval": n_eval, "seed": seed}
    previous = None if overwrite else read_evaluation(out)
    if previous is not None and previous.get("settings") != settings:
        raise SamatError(f"{out} was made with {previous.get('settings')}; pass --overwrite to redo it with "
                         f"{settings}")
    todo = list(specs)
    if previous is not None:  # columns of an evaluation without per-image hits (older files) are redone
        earlier = previous.get("columns") or [c for c in previous["accuracy"] if c != NATURAL and SANITY not in c]
        todo = [c for c in dict.fromkeys([*earlier, *specs]) if c not in previous.get("correct", {})]
        if not todo and not crosscheck:
            log(f"{out}: all {len(specs)} columns already evaluated (--overwrite redoes them)")
            return previous
    dev = resolve_device(device)
    loaded = load_trained(path, device=dev, data_dir=data_dir, model=model, dataset=dataset)
    if crosscheck and loaded.x.dim() != 4:
        raise SamatError(f"--crosscheck runs AutoAttack, which attacks images; {loaded.description} has vectors")
    idx = eval_indices(len(loaded.y), n_eval, seed).to(loaded.y.device)
    x, y = loaded.x[idx], loaded.y[idx]
    log(f"evaluating {loaded.description} on {len(y)} test images: {', '.join(todo) or 'cross-check only'}")
    result = evaluate(loaded.model, x, y, todo, num_classes=loaded.num_classes, seed=seed, batch_size=batch_size,
                      progress=progress, log=log, previous=previous)
    if crosscheck:
        from empirical.attacks import crosscheck_autoattack

        aa = next((s for s in specs.values() if s.method is Method.AUTOATTACK), None)
        eps = aa.eps if aa else 32 / 255
        norm = aa.norm.value if aa else "l2"
        log(f"cross-checking AutoAttack ({norm}, eps {eps:.4g}) against the reference implementation")
        result["crosscheck"] = crosscheck_autoattack(loaded.model, as_inputs(x), y, eps=eps, norm=norm, seed=seed,
                                                     batch_size=batch_size)
    elif previous is not None and "crosscheck" in previous:
        result["crosscheck"] = previous["crosscheck"]
    result["settings"] = settings
    result["model"] = loaded.description
    result["provenance"] = provenance.collect(dev)
    atomic_write_text(out, json.dumps(result, indent=2))
    return result
