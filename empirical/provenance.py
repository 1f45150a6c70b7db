"""Where a result came from: versions, git commit, machine, time."""

from __future__ import annotations

import platform
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> dict:
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def collect(device=None) -> dict:
    import numpy
    import torch

    from samat import __version__

    info = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "samat": __version__,
        "git": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
    if device is not None and getattr(device, "type", None) == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
