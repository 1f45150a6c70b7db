"""Evaluation of trained models: clean accuracy (robust accuracy joins in the evaluation issue)."""

from __future__ import annotations

import contextlib

import torch

from empirical.data import to_float_images


def as_inputs(x: torch.Tensor) -> torch.Tensor:
    """Stored examples to model inputs: uint8 images become floats in [0, 1]; vectors pass through."""
    return to_float_images(x) if x.dtype == torch.uint8 else x


@torch.no_grad()
def clean_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512,
                   bf16: bool = False, channels_last: bool = False) -> float:
    """Fraction of (x, y) classified correctly, in eval mode, batched, with one host sync at the end."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    autocast = torch.autocast(y.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        for start in range(0, len(y), batch_size):
            xb = as_inputs(x[start:start + batch_size])
            if channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(xb)
            correct += (logits.argmax(dim=1) == y[start:start + batch_size]).sum()
    finally:
        model.train(was_training)
    return correct.item() / max(len(y), 1)
