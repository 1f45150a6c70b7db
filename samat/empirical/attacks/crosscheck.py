"""AutoAttack: torchattacks' re-implementation against the reference code (pyautoattack), on the same images."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.attacks.build import build_attack, evaluating, seeded
from samat.empirical.attacks.specs import parse_eps, spec
from samat.empirical.inference import correct_mask
from samat.empirical.vocabulary import Norm


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _quiet_reference(capture: _Capture) -> Iterator[None]:
    """Route pyautoattack's 'auto-attack' logger into ``capture``; restore its settings and sys.settrace after
    (its dynamic-defence check calls ``sys.settrace`` and then clears any tracer, e.g. coverage's)."""
    logger = logging.getLogger("auto-attack")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    tracer = sys.gettrace()
    logger.handlers, logger.propagate = [capture], False
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate, logger.handlers = saved[1], saved[2]
        sys.settrace(tracer)


def crosscheck_autoattack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float | str, norm: str = "L2", seed: int,
    batch_size: int = 250,
) -> dict:
    """Robust accuracy under standard AutoAttack from torchattacks and from the reference code (pyautoattack).

    Both run on the same model, images and seed, in eval mode with frozen parameters. Accuracies are fractions
    in [0, 1]; ``difference`` is torchattacks minus reference; ``disagreements`` counts the images that one
    finds robust and the other does not. The reference's log warnings are returned, not printed.
    """
    from pyautoattack import AutoAttack as ReferenceAutoAttack  # the wheel's import name, not "autoattack"

    norm_enum = {"linf": Norm.LINF, "l2": Norm.L2}.get(norm.lower())
    if norm_enum is None:
        raise ParameterError("norm", norm, "L2 or Linf")
    eps_value = parse_eps(eps)
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    aa_spec = spec(f"autoattack_{norm_enum.value}").at(eps_value)
    num_classes = int(_peek_classes(model, x))

    attack = build_attack(aa_spec, model, num_classes=num_classes, seed=seed, device=device)
    t0 = time.perf_counter()
    x_ta = torch.cat([attack(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    t_ta = time.perf_counter() - t0

    capture = _Capture()
    with evaluating(model), seeded(seed, device), _quiet_reference(capture):
        reference = ReferenceAutoAttack(model, norm=norm_enum.autoattack, eps=eps_value, version="standard",
                                        device=device, seed=seed)
        reference.verbose = False
        t0 = time.perf_counter()
        x_ref = reference.run_standard_evaluation(x, y, batch_size=batch_size)[0]
        t_ref = time.perf_counter() - t0

    with evaluating(model):
        clean = correct_mask(model, x, y, batch_size=batch_size)
        robust_ta = correct_mask(model, x_ta, y, batch_size=batch_size) & clean
        robust_ref = correct_mask(model, x_ref.to(device), y, batch_size=batch_size) & clean
    n = len(x)
    acc_ta, acc_ref = int(robust_ta.sum()) / n, int(robust_ref.sum()) / n
    return {
        "n": n,
        "norm": norm_enum.autoattack,
        "eps": eps_value,
        "seed": seed,
        "clean_accuracy": int(clean.sum()) / n,
        "robust_accuracy_torchattacks": acc_ta,
        "robust_accuracy_reference": acc_ref,
        "difference": acc_ta - acc_ref,
        "disagreements": int((robust_ta != robust_ref).sum()),
        "seconds_torchattacks": t_ta,
        "seconds_reference": t_ref,
        "reference_warnings": capture.messages,
    }


def _peek_classes(model: nn.Module, x: torch.Tensor) -> int:
    with evaluating(model), torch.no_grad():
        return model(x[:1]).shape[1]
