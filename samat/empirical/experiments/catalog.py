"""The experiment files that ship with samat (package data in ``samat/empirical/experiments/configs/``): the papers'
grids and the Fashion-MNIST defaults (classification, and segmentation of Fashion-MNIST scenes). A command takes
either a path or one of these names."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from samat.core.errors import SamatError

DEFAULT = "fashion_mnist_default"
SEGMENTATION_DEFAULT = "segmentation_default"  # `samat demo --task segmentation`
TEXT_DEFAULT = "text_default"  # `samat demo --task text`


def packaged() -> dict[str, Path]:
    """Name -> file of every packaged experiment."""
    folder = resources.files("samat.empirical.experiments") / "configs"
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".toml")}


def resolve(text: str | Path) -> Path:
    """An experiment file: ``text`` itself where it exists, else the packaged experiment of that name (with or
    without ``configs/`` and ``.toml``); otherwise a one-line error listing the packaged names."""
    path = Path(text)
    if path.exists():
        return path
    files = packaged()
    name = path.stem if path.suffix in ("", ".toml") else None
    if name in files:
        return files[name]
    raise SamatError(f"experiment file {path} not found; packaged experiments: {', '.join(sorted(files))}")


def display_path(path: str | Path) -> str:
    """An experiment file as people should read it in a report: ``configs/NAME.toml`` for a packaged one, else
    relative to the current folder where it lies below it, else its name (never a machine's absolute path)."""
    path = Path(path)
    packaged_file = packaged().get(path.stem)
    if packaged_file is not None and packaged_file.resolve() == path.resolve():
        return f"configs/{path.name}"
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name if path.is_absolute() else str(path)
