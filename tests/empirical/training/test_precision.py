"""One TF32 API throughout (samat/empirical/training/precision.py): the state it sets reads back the same through
both of PyTorch's APIs, whatever the order of training, evaluation and tests; mixing the two APIs, as the code did
before, leaves a state that torch refuses to read (which inductor does); and nothing else in the project sets TF32."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samat.empirical.evaluation.evaluate import attack_precision
from samat.empirical.training.precision import set_tf32, tf32, tf32_state
from tests.helpers import REPO

MIXED = """
import torch
torch.set_float32_matmul_precision("high")   # what build() did on CUDA
torch.backends.cuda.matmul.allow_tf32 = False  # what the TF32 test and the evaluation did
try:
    torch.get_float32_matmul_precision()
except RuntimeError as err:
    print("refused:", str(err).splitlines()[0][:80])
"""


def test_mixing_the_two_apis_leaves_a_state_torch_refuses_to_read():
    """Finding 8 holds on this torch: in a fresh process (the state is global)."""
    done = subprocess.run([sys.executable, "-c", MIXED], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("refused: PyTorch is checking the matmul precision"), done


@pytest.fixture
def restored():
    saved = tf32_state()
    yield
    set_tf32(*saved)


def _reads_back(convolutions: bool, matmuls: bool) -> None:
    """Both APIs say the same, and neither raises (inductor reads the old one)."""
    assert tf32_state() == (convolutions, matmuls)
    assert torch.get_float32_matmul_precision() == ("high" if matmuls else "highest")
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9 ("none": the default, IEEE)
        assert (torch.backends.cuda.matmul.fp32_precision == "tf32") == matmuls
        assert (torch.backends.cudnn.conv.fp32_precision == "tf32") == convolutions


def test_the_one_switch_reads_back_through_both_apis_in_any_order(restored):
    set_tf32(True)  # a CUDA run's build()
    _reads_back(True, True)
    with tf32(False):  # a graph-against-eager test
        _reads_back(False, False)
        with attack_precision(torch.device("cuda")):  # an evaluation inside it (flags only: no CUDA needed)
            _reads_back(True, True)
        _reads_back(False, False)
    _reads_back(True, True)
    set_tf32(True, False)  # PyTorch's default: convolutions only
    _reads_back(True, False)


SETTERS = re.compile(r"set_float32_matmul_precision\(|allow_tf32\s*=(?!=)|fp32_precision\s*=(?!=)")


def test_nothing_else_sets_tf32():
    here = {REPO / "samat" / "empirical" / "training" / "precision.py", Path(__file__).resolve()}
    # hidden folders are not the project's code: virtual environments, .mutation/ (bench/mutation.py's copies)
    files = [p for p in REPO.rglob("*.py")
             if not any(part.startswith(".") for part in p.relative_to(REPO).parts[:-1]) and p not in here]
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in files
                 for i, line in enumerate(p.read_text().splitlines(), 1) if SETTERS.search(line)]
    assert offenders == []
