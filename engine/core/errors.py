"""Typed errors. Every error that reaches a user names the file and, where there is one, the record."""

from __future__ import annotations

import errno
import os
import re


class EngineError(Exception):
    """Base class of all errors raised on purpose by the engine."""


class InvalidInputError(EngineError, ValueError):
    """A file or record that cannot be used.

    ``path`` names the file, ``record`` the record inside it (title, native id, index or line) and
    ``reason`` is a short machine-readable code used for counting in skip mode.
    """

    def __init__(self, message: str, *, path: str | None = None, record: str | None = None,
                 reason: str = "invalid") -> None:
        self.path = path
        self.record = record
        self.reason = reason
        self.detail = message
        where = ""
        if path is not None:
            where = f"{path}"
            if record is not None:
                where += f", record {record}"
            where += ": "
        super().__init__(f"{where}{message}")


class FileFormatError(InvalidInputError):
    """A whole file cannot be parsed (truncated XML, garbage, unknown suffix, empty file)."""


class InvalidRecordError(InvalidInputError):
    """One record (spectrum) in a file is invalid; the rest of the file may be fine."""


class InvalidMoleculeError(InvalidInputError):
    """A SMILES (or other structure) that RDKit cannot parse."""


class IncompatibleArtifactError(EngineError, RuntimeError):
    """A model, index or table made by another version, dimension or encoder than the one in use."""


class OfflineError(EngineError, ConnectionError):
    """A network service (PubChem) is unreachable."""


def os_error_in(exc: BaseException, path: str | object) -> OSError | None:
    """The ``OSError`` (with ``path``) that a third-party error wraps, when its message ends in Rust's
    ``(os error N)`` (LanceDB reports a full disk so); None otherwise."""
    if isinstance(exc, OSError):
        return exc
    match = re.search(r"\(os error (\d+)\)", str(exc))
    if match is None:
        return None
    code = int(match.group(1))
    name = errno.errorcode.get(code)
    return OSError(code, os.strerror(code) if name else str(exc), str(path))


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and the cause of an ``OSError`` (full disk, read-only, no permission...)."""
    where = exc.filename if exc.filename is not None else None
    cause = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    hint = {errno.ENOSPC: "free some space and rerun: finished work is kept",
            errno.EDQUOT: "free some space and rerun: finished work is kept",
            errno.EROFS: "write to a writable directory",
            errno.EACCES: "check the permissions", errno.EPERM: "check the permissions"}.get(
                exc.errno or 0)
    text = f"{where}: {cause}" if where else cause
    return f"{text} ({hint})" if hint else text
