"""Atomic file writes: a file is written under a temporary name beside its target and renamed onto it, so
a reader (or a resumed job) sees the old file or the whole new one, never half of one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Glob of the temporary names :func:`atomic_path` uses (left behind only by a killed process).
TEMP_GLOB = ".*.tmp-*"


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = "", durable: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` for the caller to write; renamed onto ``path`` when the block ends
    without an error, removed when it raises. ``suffix`` ends the temporary name (for writers that add
    their own, e.g. ``.npz``); ``durable`` flushes the file to disk before the rename. A failure of the
    file system (full disk, read-only, no permission) is an ``OSError`` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str, *, durable: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
