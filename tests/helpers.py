"""Helpers shared by the theory and the empirical tests (no torch here: theory tests must not import it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m samat ARGS`` in a fresh interpreter at the repository root; output captured as text."""
    return subprocess.run([sys.executable, "-m", "samat", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (lock files aside), by its path relative to it: to show that a command rewrote
    nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}
