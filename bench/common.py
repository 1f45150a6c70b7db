"""What every benchmark here shares: the record of the machine, CIFAR-shaped random images, argument types,
and one-line errors. (The scripts run as ``python bench/NAME.py``, so this imports as ``common``.)"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samat.core.errors import SamatError
from samat.core.results import atomic_write_text, check_writable_folder, git_state

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def host() -> dict:
    """Date, commit, Python, CPU and the load before the measurement (no torch: the theory benchmarks use it)."""
    return {"date": dt.date.today().isoformat(), "git": git_state(), "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_average_before": os.getloadavg()[0]}


def machine(device) -> dict:
    """``host()`` plus torch, its threads and the device (GPU name, CUDA, cuDNN and TF32 settings on CUDA)."""
    import torch

    info = host() | {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
                 "tf32_convolutions": torch.backends.cudnn.allow_tf32,
                 "tf32_matmuls": torch.backends.cuda.matmul.allow_tf32}
    return info


def random_images(n: int, seed: int):
    """n random uint8 images of CIFAR's shape: what the timed cost depends on, nothing else."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is invalid: it must be >= {minimum}")
        return value

    return parse


def output_file(text: str) -> Path:
    """Argument type of ``--json FILE`` and the like: a file whose folder can be written, checked before the work
    (a benchmark may run for minutes before it writes)."""
    path = Path(text)
    try:
        check_writable_folder(path.parent, "folder")
    except SamatError as err:
        raise argparse.ArgumentTypeError(f"{text}: {err}") from None
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder: name a file")
    return path


def write_record(path: Path, record: Any) -> None:
    """A benchmark's figures as JSON, written atomically (a reader never sees half a file)."""
    atomic_write_text(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def run(main: Callable[[], int]) -> None:
    """Run a benchmark's main: a SamatError (bad device, bad value) is one line and exit code 2."""
    from samat.core.errors import SamatError

    try:
        code = main()
    except SamatError as err:
        print(f"{os.path.basename(sys.argv[0])}: error: {err}", file=sys.stderr)
        code = 2
    except BrokenPipeError:
        code = 0
    raise SystemExit(code)
