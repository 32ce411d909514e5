"""Typed errors. Every error that reaches a user names the file and, where there is one, the record."""

from __future__ import annotations


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
