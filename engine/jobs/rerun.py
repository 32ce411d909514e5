"""A finished annotation job rerun with nothing to do returns at once, without opening model or library.

After a complete run, ``OUT/digest.json`` records :func:`engine.jobs.annotator.artifact_digest` (the
model, library, candidate and calibration files by name, size and time, and the settings). A rerun whose
digest is the same and whose every input file has its completion record has nothing to do. A run that
starts work removes the record first, so an interrupted run with other artefacts never passes as done.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.jobs.chunks import InputFile

DIGEST_NAME = "digest.json"


def nothing_to_do(out: str | Path, files: Sequence[InputFile], digest: dict[str, Any]) -> bool:
    """Whether ``OUT`` holds complete results of ``files`` made with artefacts of this ``digest``."""
    root = Path(out)
    try:
        saved = json.loads((root / DIGEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return saved == json.loads(json.dumps(digest, default=str)) and all(
        (root / "files" / f"{f.key}.json").exists() for f in files)


def forget_digest(out: str | Path) -> None:
    """Before work starts: results are about to change."""
    (Path(out) / DIGEST_NAME).unlink(missing_ok=True)


def save_digest(out: str | Path, digest: dict[str, Any]) -> None:
    """After a run: the results in ``OUT`` were made with artefacts of this ``digest``."""
    (Path(out) / DIGEST_NAME).write_text(json.dumps(digest, indent=2, default=str) + "\n")
