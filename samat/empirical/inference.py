"""Predictions of a model on stored examples, batched, in eval mode: what training's test accuracy, the
attacks' cross-check and the evaluation all count."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from samat.empirical.data import as_inputs


@torch.no_grad()
def correct_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512, bf16: bool = False,
                 channels_last: bool = False) -> torch.Tensor:
    """Whether ``model`` classifies each (x, y) correctly, as a bool tensor on y's device; x may be stored
    examples (uint8 images) or inputs. The model's train/eval mode is restored afterwards."""
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


@torch.no_grad()
def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512,
                   bf16: bool = False, channels_last: bool = False) -> float:
    """Fraction of (x, y) classified correctly, in eval mode, batched, with one host sync at the end."""
    return float(correct_mask(model, x, y, batch_size=batch_size, bf16=bf16, channels_last=channels_last)
                 .double().mean()) if len(y) else 0.0
