"""TF32 on CUDA: whether float32 convolutions (cuDNN) and matrix products (cuBLAS) may use TF32 tensor cores
(10-bit mantissas, float32 accumulation). Every part of samat sets it here, through one API.

PyTorch has two: the per-backend flags ``torch.backends.cudnn.allow_tf32`` / ``torch.backends.cuda.matmul.
allow_tf32`` (with ``torch.set_float32_matmul_precision``), and since 2.9 the ``fp32_precision`` attributes
(``torch.backends.cuda.matmul.fp32_precision = "tf32"``), which the 2.13 documentation recommends. Mixing them
leaves a state that PyTorch refuses to read back: after ``set_float32_matmul_precision("high")`` (which also
switches the CPU's oneDNN matmuls) and ``cuda.matmul.allow_tf32 = False``, ``torch.get_float32_matmul_precision()``
raises; so it does after ``cuda.matmul.fp32_precision = "tf32"`` alone, and so does ``cuda.matmul.allow_tf32``.
Inductor itself still reads the old getters (2.13: ``get_float32_matmul_precision()`` in its autotuning caches;
earlier releases: ``cuda.matmul.allow_tf32`` in the matmul padding that is on by default), and the project supports
torch >= 2.4, which has only the old flags. The two per-backend flags, set together, are the one spelling under
which both APIs read back the same state on every supported version (tests/empirical/training/test_precision.py
checks it); the rest of the code never touches TF32 otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def tf32_state() -> tuple[bool, bool]:
    """(convolutions, matrix products): whether each may use TF32."""
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def set_tf32(convolutions: bool, matmuls: bool | None = None) -> None:
    """Allow TF32 in float32 convolutions and matrix products (``matmuls`` defaults to ``convolutions``)."""
    torch.backends.cudnn.allow_tf32 = convolutions
    torch.backends.cuda.matmul.allow_tf32 = convolutions if matmuls is None else matmuls


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 on or off for both inside the block; the state before is restored after it."""
    saved = tf32_state()
    set_tf32(enabled)
    try:
        yield
    finally:
        set_tf32(*saved)
