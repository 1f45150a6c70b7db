"""Fetching an archive with a progress bar and checking its published MD5."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from samat.core.errors import SamatError


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` with a progress bar."""
    with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def download(url: str, archive: str, expected_md5: str, data_dir: Path) -> Path:
    """Fetch ``url`` into data_dir/archive and check its published MD5 (a mismatch deletes it). The file
    appears under its name only once it is complete and checked."""
    dest = data_dir / archive
    part = dest.with_name(dest.name + ".part")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fetch(url, part)
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise SamatError(f"could not download {url} into {data_dir} ({e}): "
                         f"download it elsewhere and put {archive} in {data_dir}") from None
    actual = md5(part)
    if actual != expected_md5:
        part.unlink(missing_ok=True)
        raise SamatError(f"downloaded {archive} has MD5 {actual}, not the published {expected_md5}: "
                         "deleted it; download it again")
    part.replace(dest)
    return dest
