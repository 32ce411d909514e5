"""The one place that resolves and opens artifacts: the model, a spectrum library, a molecule table.

Bundled defaults, ``--model`` paths, and the version / encoder-hash checks live here; every failure is
one of the engine's typed errors (:mod:`engine.core.errors`), never a click exception, so the CLI, the
local annotation job, the Ray runner and notebook users share the same behaviour.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine.core.errors import EngineError, IncompatibleArtifactError
from engine.jobs.locations import MissingArtifactError, checkpoint_path, library_path
from engine.models.encoders.fixed import FixedMoleculeEmbedder, FixedSpectrumEmbedder
from engine.models.model import DEFAULT_MODEL, JointModel, load_model
from engine.queries.candidates import MoleculeTable
from indexes.library import Library

log = logging.getLogger(__name__)



def open_model(path: str | Path | None = None, *, device: str = "cpu") -> JointModel:
    """The joint model at ``path`` (``None``: the bundled default), refused with a message when missing
    or incompatible."""
    return load_model(checkpoint_path(path), device=device)


def open_members(paths: tuple[str, ...] | list[str], *, bundled: bool, model: JointModel,
                 device: str = "cpu") -> list[JointModel]:
    """Ensemble members for candidate ranking: the bundled ones (``bundled``) and then ``paths``; each a
    joint model refused when missing, of another version, or the ranking model itself."""
    from engine.core.paths import ENSEMBLE_MEMBERS

    files = sorted(ENSEMBLE_MEMBERS.glob("*.pt")) if bundled else []
    if bundled and not files:
        raise MissingArtifactError(f"no bundled ensemble members in {ENSEMBLE_MEMBERS}")
    members: list[JointModel] = []
    for file in [*files, *(Path(p) for p in paths)]:
        member = open_model(file, device=device)
        if member.encoder_hash == model.encoder_hash or any(member.encoder_hash == m.encoder_hash for m in members):
            raise EngineError(f"ensemble member {file} is the ranking model or another member "
                              f"(encoder {member.encoder_hash}): each model counts once")
        members.append(member)
    return members


def resolve_embedder(model_path: str | Path | None = None, *, fixed: bool = False, device: str = "cpu") -> Any:
    """The spectrum embedder a build asks for: the fixed binned-peak embedder, a checkpoint, or the
    bundled model (the fixed embedder, with a logged note, when no model is bundled)."""
    if fixed:
        if model_path is not None:
            raise EngineError("--model and --fixed-embedder exclude each other")
        return FixedSpectrumEmbedder()
    if model_path is None and not DEFAULT_MODEL.exists():
        log.warning("no bundled model found; embedding with the fixed binned-peak embedder")
        return FixedSpectrumEmbedder()
    return open_model(model_path, device=device)


def resolve_molecule_embedder(model_path: str | Path | None = None, *, fixed: bool = False,
                              device: str = "cpu") -> Any:
    """The molecule embedder a build asks for: the fixed fingerprint embedder, a checkpoint, or the bundled
    model (the fixed embedder, with a logged note, when no model is bundled)."""
    if fixed:
        if model_path is not None:
            raise EngineError("--model and --fixed-embedder exclude each other")
        return FixedMoleculeEmbedder()
    if model_path is None and not DEFAULT_MODEL.exists():
        log.warning("no bundled model found; embedding with the fixed fingerprint embedder")
        return FixedMoleculeEmbedder()
    return open_model(model_path, device=device)


def open_library(path: str | Path | None = None) -> Library:
    """The spectrum library at ``path`` (``None``: the bundled MassBank library)."""
    return Library.open(library_path(path))


def open_library_and_model(path: str | Path | None = None, model_path: str | Path | None = None, *,
                           fixed: bool = False, need_molecules: bool = False, device: str = "cpu"
                           ) -> tuple[Library, Any]:
    """Open a library and the model it was embedded with (``model_path``, the bundled default, or the
    fixed embedder when the library was built with it); a model of another encoder is refused."""
    lib = open_library(path)
    fixed_hash = FixedSpectrumEmbedder().encoder_hash
    model: Any
    if fixed or (model_path is None and lib.table.encoder_hash == fixed_hash and not need_molecules):
        model = FixedSpectrumEmbedder()
    else:
        model = open_model(model_path, device=device)
    lib.table.check_encoder(dim=model.dim, encoder_hash=model.encoder_hash)
    return lib, model


def open_molecules(path: str | Path) -> MoleculeTable:
    """A molecule table (Parquet with SMILES, InChIKey, formula, mass) for candidate ranking."""
    if not Path(path).exists():
        raise MissingArtifactError(f"molecule table not found: {path}")
    try:
        return MoleculeTable.open(path)
    except (OSError, KeyError) as exc:
        raise IncompatibleArtifactError(f"{path}: not a molecule table ({exc})") from None
