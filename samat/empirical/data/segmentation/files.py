"""The files of a dataset, read from its folder or, unextracted, from its official archive (.tar, .tar.gz).

A loader names the files it needs by their path relative to the dataset's root (``images/0000047.jpg``); a
:class:`Files` finds that root in a folder or an archive and reads the files' bytes. Nothing is ever written:
reading an archive in place leaves nothing half-extracted behind. Images are decoded with Pillow, in threads.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from samat.core.errors import SamatError

T = TypeVar("T")


class Files:
    """Files under a root: a folder (``archive`` None) or a folder inside a tar archive."""

    def __init__(self, root: Path, archive: Path | None = None, members: dict[str, tarfile.TarInfo] | None = None):
        self.root, self.archive, self._members = root, archive, members or {}

    @classmethod
    def find(cls, data_dir: Path, marker: str, roots: Iterable[str], archives: Iterable[str]) -> Files | None:
        """The first of ``data_dir/<root>`` holding ``marker`` (a file or folder), else the first archive in
        ``data_dir`` that holds ``<root>/<marker>``; None when there is neither."""
        for root in roots:
            if (data_dir / root / marker).exists():
                return cls(data_dir / root)
        for name in archives:
            path = data_dir / name
            if path.is_file():
                return cls._from_archive(path, marker, roots)
        return None

    @classmethod
    def _from_archive(cls, path: Path, marker: str, roots: Iterable[str]) -> Files:
        try:
            with tarfile.open(path, "r:*") as tar:
                members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
        except (OSError, tarfile.TarError, EOFError) as err:
            raise SamatError(f"{path} is not a readable tar archive ({err}): download it again") from None
        for root in roots:
            prefix = "" if root in ("", ".") else root.rstrip("/") + "/"
            if any(name.startswith(prefix + marker) for name in members):
                return cls(Path(prefix), path, {n.removeprefix(prefix): m for n, m in members.items()
                                                if n.startswith(prefix)})
        raise SamatError(f"{path} holds no {marker} under any of {', '.join(r or '.' for r in roots)}: it is not the "
                         "official archive")

    def where(self, name: str) -> str:
        """How an error names the file ``name``."""
        return f"{self.archive}:{self.root / name}" if self.archive else str(self.root / name)

    def exists(self, name: str) -> bool:
        return name in self._members if self.archive else (self.root / name).is_file()

    def listdir(self, folder: str) -> list[str]:
        """The names of the files directly in ``folder`` (relative to the root), sorted."""
        if self.archive is None:
            path = self.root / folder
            return sorted(f"{folder}/{p.name}" for p in path.iterdir() if p.is_file()) if path.is_dir() else []
        prefix = folder.rstrip("/") + "/"
        return sorted(n for n in self._members if n.startswith(prefix) and "/" not in n[len(prefix):])

    def require(self, name: str, what: str) -> None:
        if not self.exists(name):
            raise SamatError(f"{self.where(name)} is missing ({what}): the dataset is incomplete, extract it again")

    def read_text(self, name: str, what: str) -> str:
        self.require(name, what)
        return self.read([name])[name].decode()

    def read(self, names: list[str]) -> dict[str, bytes]:
        """The bytes of every file in ``names`` (each must exist); an archive is read once, in its own order."""
        if self.archive is None:
            return {name: (self.root / name).read_bytes() for name in names}
        wanted = set(names)
        out: dict[str, bytes] = {}
        try:
            with tarfile.open(self.archive, "r:*") as tar:
                for name, member in sorted(self._members.items(), key=lambda item: item[1].offset):
                    if name in wanted:
                        out[name] = tar.extractfile(member).read()
        except (OSError, tarfile.TarError, EOFError) as err:
            raise SamatError(f"cannot read {self.archive} ({err}): download it again") from None
        return out


def decode_all(decode: Callable[[str, bytes], T], blobs: dict[str, bytes]) -> dict[str, T]:
    """``decode(name, bytes)`` of every file, in threads (Pillow releases the GIL while decoding)."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return dict(zip(blobs, pool.map(decode, blobs, blobs.values()), strict=True))


def decode_image(where: str, data: bytes, *, mode: str | None = "RGB") -> np.ndarray:
    """An image's pixels: (3, H, W) uint8 with ``mode="RGB"``; with ``mode=None`` the stored values (H, W) of a
    palette or grey image (a VOC mask's class indices). ``where`` names the file in errors."""
    from PIL import Image  # Pillow is imported where images are decoded, not by every import of empirical.data

    try:
        with Image.open(io.BytesIO(data)) as image:
            if mode is None:
                if image.mode not in ("P", "L"):
                    raise SamatError(f"{where} is a {image.mode} image, not a palette (class-index) PNG: "
                                     "replace it with the official mask")
                return np.asarray(image).copy()
            return np.asarray(image.convert(mode)).transpose(2, 0, 1).copy()
    except (OSError, ValueError, SyntaxError) as err:
        raise SamatError(f"cannot decode {where} ({err}): replace it") from None
