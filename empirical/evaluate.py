"""Evaluation of trained models: clean and robust accuracy under the papers' threat models.

Every model is evaluated on the same seeded subset of its test set (``n_eval`` images drawn with
``seed``), batched, on the GPU when there is one. Results go to ``eval.json`` beside the weights, as
numbers; an existing evaluation is extended with new columns, never silently recomputed.

Each evaluation carries sanity checks (a failing one is a red flag in the report):

* robust accuracy <= clean accuracy for every attack;
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm import tqdm

from empirical.data import to_float_images
from theory.errors import ParameterError, SamatError

if TYPE_CHECKING:
    from empirical.attacks import AttackSpec

NATURAL, AVERAGE = "natural", "average"
DEFAULT_N_EVAL = 1000
LARGE_EPS = 0.5  # l∞ budget of the sanity attack: enough to turn any image into mid-grey


def as_inputs(x: torch.Tensor) -> torch.Tensor:
    """Stored examples to model inputs: uint8 images become floats in [0, 1]; vectors pass through."""
    return to_float_images(x) if x.dtype == torch.uint8 else x


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


def attack_columns(columns: list[str] | tuple[str, ...]) -> list[str]:
    """The columns that need an attack (not natural, not the average), each parsed once to check it."""
    from empirical.attacks import parse_attack

    out = []
    for c in columns:
        if c in (NATURAL, AVERAGE):
            continue
        specs = parse_attack(c)  # "pgd10_linf@1/255,2/255" becomes two columns
        out += [c] if len(specs) == 1 else [s.label for s in specs]  # a single column keeps the user's name
    for c in out:
        column_spec(c)
    return list(dict.fromkeys(out))


# --- Loading a trained model ----------------------------------------------------------------------


@dataclasses.dataclass
class Loaded:
    model: nn.Module
    x: torch.Tensor  # the test split (uint8 images or float vectors), on the device
    y: torch.Tensor
    num_classes: int
    where: Path  # the run directory (eval.json goes here)
    description: str


def load_trained(path: str | Path, *, device: torch.device, data_dir: str | None = None,
                 model: str | None = None, dataset: str | None = None) -> Loaded:
    """A run directory, or a model.pt / checkpoint.pt inside one, or a bare state_dict with ``model``/``dataset``."""
    from empirical.config import TrainConfig
    from empirical.data import GaussianSpec, load_dataset
    from empirical.models import build_model
    from empirical.runs import RunDir

    path = Path(path)
    if not path.exists():
        raise SamatError(f"{path} does not exist: give a run directory (runs/<name>) or a model.pt/checkpoint.pt")
    run = RunDir(path if path.is_dir() else path.parent)
    if path.is_dir():
        weights = run.weights if run.weights.exists() else run.checkpoint
        if not weights.exists():
            raise SamatError(f"{path} holds no model.pt or checkpoint.pt: train it first (samat train)")
    else:
        weights = path
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


def _exceeds(weaker: torch.Tensor, stronger: torch.Tensor) -> tuple[bool, str]:
    """Does the attack that should be stronger leave more images correct, beyond noise? (paired masks)"""
    only_s, only_w = int((stronger & ~weaker).sum()), int((weaker & ~stronger).sum())
    flag = only_s - only_w > 2 * math.sqrt(only_s + only_w)
    return flag, f"{only_s} images survive only the stronger attack, {only_w} only the weaker"


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, columns: list[str], *, num_classes: int,
             seed: int = 0, batch_size: int = 256, progress: bool = True,
             log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Accuracy of ``model`` on (x, y) clean and under each column's attack, with sanity checks.

    x, y are the evaluation images (already the subset). Returns numbers only (accuracy as fractions).
    """
    from empirical.attacks import Method, Norm, build_attack, perturbation_report, spec

    device = y.device
    inputs = as_inputs(x)
    box = (0.0, 1.0) if inputs.dim() == 4 else None
    clean = correct_mask(model, inputs, y, batch_size=batch_size)
    result: dict[str, Any] = {"n": int(len(y)), "accuracy": {NATURAL: float(clean.double().mean())},
                              "attacks": {}, "sanity": []}
    masks = {NATURAL: clean}

    def run_attack(label: str, s: AttackSpec) -> torch.Tensor:
        attack = build_attack(s, model, num_classes=num_classes, seed=seed, device=device, box="auto")
        hits, reports, t0 = [], [], time.perf_counter()
        batches = range(0, len(y), batch_size)
        for i in tqdm(batches, desc=label, unit="batch", disable=not progress, leave=False):
            xb, yb = inputs[i:i + batch_size], y[i:i + batch_size]
            x_adv = attack(xb, yb)
            hits.append(correct_mask(model, x_adv, yb, batch_size=batch_size))
            flow = getattr(attack, "last_flow", None) if s.norm is Norm.FLOW else None
            reports.append(perturbation_report(xb, x_adv, s, flow=flow, box=box))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        correct = torch.cat(hits) & clean
        result["attacks"][label] = {
            "name": s.name, "norm": s.norm.value, "eps": s.eps, "steps": s.steps, "step_size": s.step_size,
            "seconds": seconds, "max_perturbation": max(r["max"] for r in reports),
            "tolerance": max(r["tolerance"] for r in reports),
            "within_budget": all(r["within_eps"] for r in reports),
            "in_box": None if box is None else all(r["in_box"] for r in reports),
        }
        log(f"  {label}: {float(correct.double().mean()):.4f} ({seconds:.1f} s)")
        return correct

    for label in columns:
        s = column_spec(label)
        masks[label] = run_attack(label, s)
        result["accuracy"][label] = float(masks[label].double().mean())

    # --- sanity checks -------------------------------------------------------------------------------
    sanity = result["sanity"]

    def check(name: str, passed: bool, detail: str) -> None:
        sanity.append({"check": name, "passed": bool(passed), "detail": detail})

    for label in columns:
        raw_ok = bool((masks[label] & ~clean).sum() == 0)
        check(f"robust <= clean: {label}", raw_ok and result["accuracy"][label] <= result["accuracy"][NATURAL],
              f"{result['accuracy'][label]:.4f} <= {result['accuracy'][NATURAL]:.4f}")
        a = result["attacks"][label]
        check(f"within budget and [0, 1]: {label}", a["within_budget"] and a["in_box"] is not False,
              f"largest perturbation {a['max_perturbation']:.6g} (budget {a['eps']}, slack {a['tolerance']:.2g})")
    families: dict[tuple, list[tuple[float, str]]] = {}
    for label in columns:
        s = column_spec(label)
        if s.eps is not None:
            families.setdefault((s.name, s.norm), []).append((s.eps, label))
    for members in families.values():
        labels = [label for _, label in sorted(members)]
        for l1, l2 in zip(labels, labels[1:], strict=False):
            flag, detail = _exceeds(masks[l1], masks[l2])
            check(f"accuracy does not increase with eps: {l1} -> {l2}", not flag, detail)
    for label in columns:
        s = column_spec(label)
        if s.method is Method.PGD:
            stronger = dataclasses.replace(s, name=f"pgd{2 * s.steps}_{s.norm.value}", steps=2 * s.steps,
                                           step_ratio=2.5 / (2 * s.steps))
            more = run_attack(f"{stronger.label} (sanity)", stronger)
            result["accuracy"][f"{stronger.label} (sanity)"] = float(more.double().mean())
            flag, detail = _exceeds(masks[label], more)
            check(f"more PGD steps are not weaker: {label} vs {stronger.steps} steps", not flag, detail)
    large = spec("pgd20_linf").at(LARGE_EPS)
    label = f"{large.label} (sanity)"
    big = run_attack(label, large)
    result["accuracy"][label] = float(big.double().mean())
    chance = 1 / num_classes
    check(f"a large attack (l-inf {LARGE_EPS}) drives accuracy below chance ({chance:.3g})",
          result["accuracy"][label] < chance, f"{result['accuracy'][label]:.4f}")
    result["sanity_passed"] = all(c["passed"] for c in sanity)
    return result


def evaluate_path(path: str | Path, columns: list[str], *, n_eval: int = DEFAULT_N_EVAL, seed: int = 0,
                  batch_size: int = 256, device: str = "auto", data_dir: str | None = None,
                  model: str | None = None, dataset: str | None = None, crosscheck: bool = False,
                  overwrite: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Evaluate a run (or checkpoint) and write ``eval.json`` in its run directory."""
    from empirical import provenance
    from empirical.attacks import Method
    from empirical.train import resolve_device

    columns = attack_columns(columns)
    dev = resolve_device(device)
    loaded = load_trained(path, device=dev, data_dir=data_dir, model=model, dataset=dataset)
    out = loaded.where / "eval.json"
    previous = json.loads(out.read_text()) if out.exists() and not overwrite else None
    settings = {"n_eval": n_eval, "seed": seed}
    if previous is not None and previous.get("settings") != settings:
        raise SamatError(f"{out} was made with {previous.get('settings')}; pass --overwrite to redo it with "
                         f"{settings}")
    done = set(previous["accuracy"]) if previous else set()
    todo = [c for c in columns if c not in done]
    if previous is not None and not todo and not crosscheck:
        log(f"{out}: all {len(columns)} columns already evaluated (--overwrite redoes them)")
        return previous
    idx = eval_indices(len(loaded.y), n_eval, seed).to(loaded.y.device)
    x, y = loaded.x[idx], loaded.y[idx]
    log(f"evaluating {loaded.description} on {len(y)} test images: {', '.join(todo) or 'cross-check only'}")
    result = evaluate(loaded.model, x, y, todo, num_classes=loaded.num_classes, seed=seed, batch_size=batch_size,
                      progress=progress, log=log)
    if previous is not None:  # merge: earlier columns kept, checks recomputed only for the new ones
        result["accuracy"] = previous["accuracy"] | result["accuracy"]
        result["attacks"] = previous["attacks"] | result["attacks"]
        result["sanity"] = previous["sanity"] + result["sanity"]
        result["sanity_passed"] = all(c["passed"] for c in result["sanity"])
    if crosscheck:
        from empirical.attacks import crosscheck_autoattack

        aa = next((column_spec(c) for c in columns if column_spec(c).method is Method.AUTOATTACK), None)
        eps = aa.eps if aa else 32 / 255
        norm = aa.norm.value if aa else "l2"
        log(f"cross-checking AutoAttack ({norm}, eps {eps:.4g}) against the reference implementation")
        result["crosscheck"] = crosscheck_autoattack(loaded.model, as_inputs(x), y, eps=eps, norm=norm, seed=seed,
                                                     batch_size=batch_size)
    result["settings"] = settings
    result["model"] = loaded.description
    result["provenance"] = provenance.collect(dev)
    tmp = out.with_name(".eval.json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    return result
