"""Model checkpoints: one ``torch.save`` payload of tensors and plain data, loaded with ``weights_only``.

A checkpoint carries its format and schema versions, the model config, the preprocessing pipeline, the
weights (float16 or float32), a content hash over all of these (the model's ``encoder_hash``) and
``extra`` notes (training data, timings, quality report) that the hash leaves out so that the same model
trained twice has the same hash. Loading refuses another format or schema version, a corrupt file and a
hash mismatch (a tampered file).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engine.core.errors import IncompatibleArtifactError
from engine.core.fsutil import atomic_path
from engine.core.schema import SCHEMA_VERSION

FORMAT = "engine.joint_model"
FORMAT_VERSION = 1


def content_hash(state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str:
    """SHA-256 (hex, 32 chars) of ``meta`` (JSON, sorted keys) and every tensor's name, dtype, shape, bytes."""
    h = hashlib.sha256()
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


def _meta(config: Mapping[str, Any], pipeline: Mapping[str, Any]) -> dict[str, Any]:
    """What the content hash covers besides the weights (not ``extra``: training notes, timings)."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "schema_version": SCHEMA_VERSION,
            "config": dict(config), "pipeline": dict(pipeline)}


def save_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor], *, config: Mapping[str, Any],
                    pipeline: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                    half: bool = False) -> str:
    """Write a checkpoint (floating weights as float16 when ``half``) and return its content hash."""
    state = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu()).clone()
             for k, v in state_dict.items()}
    meta = _meta(config, pipeline)
    digest = content_hash(state, meta)
    payload = {**meta, "extra": dict(extra or {}), "state_dict": state, "content_hash": digest}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return digest


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint; raise :class:`IncompatibleArtifactError` if it cannot be used."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise IncompatibleArtifactError(f"{path}: model checkpoint not found") from None
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL" in text:  # pickled Python objects: never load them
            raise IncompatibleArtifactError(f"{path}: refused: the file holds Python objects besides tensors and "
                                            f"plain data, which an engine checkpoint never does (loading them "
                                            f"could run code); use a checkpoint written by 'engine train'") from None
        detail = text.splitlines()[-1].strip() if text.strip() else ""
        if "Weights only" in text or "weights_only" in text:   # torch's advice to load unsafely is not ours to give
            detail = "not a torch checkpoint archive"
        raise IncompatibleArtifactError(f"{path}: not a readable model checkpoint ({exc.__class__.__name__}: "
                                        f"{detail})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise IncompatibleArtifactError(f"{path}: not an engine model checkpoint (format "
                                        f"{payload.get('format') if isinstance(payload, dict) else None!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise IncompatibleArtifactError(f"{path}: checkpoint format version {payload.get('format_version')} "
                                        f"but this engine reads version {FORMAT_VERSION}")
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise IncompatibleArtifactError(f"{path}: checkpoint made for spectrum schema version "
                                        f"{payload.get('schema_version')} but this engine uses version "
                                        f"{SCHEMA_VERSION}; retrain or use a matching engine")
    meta = _meta(payload.get("config", {}), payload.get("pipeline", {}))
    digest = content_hash(payload["state_dict"], meta)
    if digest != payload.get("content_hash"):
        raise IncompatibleArtifactError(f"{path}: content hash mismatch (stored {payload.get('content_hash')}, "
                                        f"computed {digest}); the file is corrupt or was modified")
    return payload
