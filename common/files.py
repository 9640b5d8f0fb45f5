"""Files written whole or not at all: the one write-to-a-temporary-then-replace helper.

A reader (another notebook, ``make test``, a crashed run's successor) never sees a half-written
model, table or README: every writer in ``common`` goes through :func:`atomic` (or its two
shortcuts), which writes beside the target and moves the result onto it only when the writer
finished without an error.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)       # read once: the mode a plain open() would give a new file


@contextmanager
def atomic(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path in ``path``'s folder (same suffix unless ``suffix`` is given, because some
    writers choose the format by it) for the block to write; it replaces ``path`` when the block
    ends, and is removed when the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix if suffix is None else suffix,
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_UMASK)          # mkstemp makes it private; the target gets the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
