"""A finished annotation job rerun with nothing to do returns at once, without opening model or library.

After a complete run, ``OUT/digest.json`` records :func:`artifact_digest` (the
model, library, candidate and calibration files by name, size and time, and the settings). A rerun whose
digest is the same and whose every input file has its completion record has nothing to do. A run that
starts work removes the record first, so an interrupted run with other artefacts never passes as done.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.core.locks import LOCK_NAME
from engine.core.paths import CALIBRATION_DIR
from engine.core.schema import SCHEMA_VERSION
from engine.jobs.chunks import InputFile
from engine.jobs.locations import checkpoint_path
from engine.jobs.settings import AnnotatorSpec
from engine.queries.references import FINGERPRINT_CACHE

DIGEST_NAME = "digest.json"


def digest_files(paths: list[Path]) -> str:
    """Cheap content digest of artefacts: names, sizes and modification times of their files (not the
    library's fingerprint cache, derived data a job may write there and checked against its own digest, nor
    the writers' lock file)."""
    h = hashlib.sha256()
    for root in paths:
        files = (sorted(p for p in root.rglob("*") if p.is_file() and p.name != LOCK_NAME
                        and not p.name.lstrip(".").startswith(FINGERPRINT_CACHE)) if root.is_dir() else [root])
        for p in files:
            st = p.stat()
            h.update(f"{p.relative_to(root.parent)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def artifact_digest(spec: AnnotatorSpec) -> dict[str, Any]:
    """What a job's results depend on, read without opening the model or the library (their files' names,
    sizes and times, the candidates, the calibrations and the settings); see :mod:`engine.jobs.rerun`."""
    lib = spec.resolved_library()
    model = checkpoint_path(spec.model)
    return {
        "engine_schema_version": SCHEMA_VERSION,
        "library": str(lib.resolve()),
        "library_digest": digest_files([lib]),
        "model": str(model.resolve()),
        "model_digest": digest_files([model]) if model.exists() else None,
        "candidates": digest_files([Path(spec.candidates)]) if spec.candidates else None,
        "calibrations": digest_contents(sorted(CALIBRATION_DIR.glob("*.json"))),
        "settings": asdict(spec.settings),
    }


def digest_contents(paths: list[Path]) -> str:
    """Content digest of small files (the search calibrations: they decide scores and orderings)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


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
