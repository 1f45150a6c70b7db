"""A folder of results replaced only once its replacement is complete: the earlier results are set aside
(``.NAME.replaced`` beside it) while the new ones are made, deleted when they are done, and given back when the work
fails. Nothing is deleted before its replacement is ready."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from samat.core.errors import Interrupted


@contextlib.contextmanager
def replacing(part: Path, *, force: bool, log: Callable[[str], None], what: str = "samat demo") -> Iterator[None]:
    """The work that makes the folder ``part``: with ``force``, its earlier results are set aside (``.PART.replaced``)
    until the new ones are complete, then deleted; without, an existing folder is kept and completed.

    A replacement that fails gives the earlier results back. One that is interrupted (Ctrl-C, or a process killed
    where nothing can clean up) keeps both: the next forced run (``what --force``) continues it, and the next plain
    one puts the earlier results back, saying so.
    """
    aside = part.with_name(f".{part.name}.replaced")
    done = part.with_name(f".{part.name}.done")  # earlier results on their way out: the new ones are complete
    if done.exists():
        shutil.rmtree(done)
    if aside.exists() and force:
        log(f"continuing the interrupted replacement of {part} (its earlier results stay in {aside} until "
            "it is done)")
    elif aside.exists():
        _put_back(part, aside)
        log(f"an interrupted `{what} --force` had set the earlier results of {part} aside: they are "
            "back (its unfinished new results are deleted)")
    elif force and part.exists():
        os.replace(part, aside)
    try:
        yield
    except (KeyboardInterrupt, Interrupted):
        if aside.exists():
            log(f"the earlier results of {part} stay in {aside} until the replacement is done: `{what} "
                f"--force` continues it, `{what}` puts them back")
        raise
    except BaseException:
        if aside.exists():
            _put_back(part, aside)
            log(f"the earlier results are back in {part}")
        raise
    if aside.exists():
        os.replace(aside, done)  # at once: a process killed while deleting them leaves only .done to finish
        shutil.rmtree(done)


def _put_back(part: Path, aside: Path) -> None:
    """The earlier results set aside in ``aside`` return to ``part`` (whatever the unfinished replacement left
    there is deleted)."""
    if part.exists():
        shutil.rmtree(part)
    os.replace(aside, part)
