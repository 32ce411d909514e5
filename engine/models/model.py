"""The joint model: spectrum encoder + molecule encoder in one space, with the spectrum quality estimate.

:func:`load_model` loads a checkpoint (by default the bundled ``engine/data/model/default.pt``);
:class:`JointModel` implements both :class:`~engine.models.encoders.base.SpectrumEmbedder` and
:class:`~engine.models.encoders.base.MoleculeEmbedder`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import torch
from torch import nn

from engine.core.config import Settings, from_mapping, setting, to_dict
from engine.core.errors import IncompatibleArtifactError, InvalidMoleculeError
from engine.core.paths import DEFAULT_MODEL
from engine.core.peaks import Peaks
from engine.core.preprocess import Pipeline, default_pipeline
from engine.models.checkpoint import content_hash, load_checkpoint, save_checkpoint
from engine.models.encoders.featurize import GraphStore, featurize
from engine.models.encoders.molecule import MoleculeEncoder, MoleculeEncoderConfig
from engine.models.encoders.spectrum import (
    N_SIDE_FEATURES,
    SpectrumEncoder,
    SpectrumEncoderConfig,
    SpectrumInputs,
    encoder_inputs,
    ion_positive_from_batch,
    preprocess_flat,
)
from engine.models.quality import QualityConfig, QualityHead


@dataclass(frozen=True)
class ModelConfig(Settings):
    """Everything that fixes the shape of a :class:`JointModel`."""

    dim: int = setting(256, ge=2)
    spectrum: SpectrumEncoderConfig = field(default_factory=SpectrumEncoderConfig)
    molecule: MoleculeEncoderConfig = field(default_factory=MoleculeEncoderConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    logit_scale_init: float = 10.0



def model_pipeline() -> Pipeline:
    """Preprocessing of the default model: 10-1000 m/z, 0.1% floor, top 500 peaks, sqrt intensities."""
    return Pipeline((*default_pipeline().steps, ("transform_intensity", {"transform": "sqrt"})))


@dataclass(frozen=True)
class MoleculeEmbeddings:
    """Result of :meth:`JointModel.embed_molecules`: rows for the valid inputs, and what was skipped."""

    embeddings: npt.NDArray[np.float32]   # [n_valid, dim]
    valid: npt.NDArray[np.bool_]          # [n_inputs]; embeddings row k is the k-th True
    skipped: list[tuple[int, str]]        # (input index, SMILES)


class JointModel(nn.Module):
    """Spectra and molecules into one L2-normalised space, plus a 0..1 quality for every spectrum."""

    def __init__(self, config: ModelConfig, pipeline: Pipeline | None = None) -> None:
        super().__init__()
        self.config = config
        self.pipeline = pipeline if pipeline is not None else model_pipeline()
        preprocess_flat_check(self.pipeline)
        self.spectrum_encoder = SpectrumEncoder(config.spectrum, config.dim)
        self.molecule_encoder = MoleculeEncoder(config.molecule, config.dim)
        self.quality_head = QualityHead(config.quality, config.dim, N_SIDE_FEATURES)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(config.logit_scale_init))))
        self._hash: str | None = None
        self.extra: dict[str, Any] = {}

    # -- protocol -------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def encoder_hash(self) -> str:
        """Content hash of weights + config + pipeline (the checkpoint's hash when loaded from one)."""
        if self._hash is None:
            return content_hash(self.state_dict(), {"config": self.config_dict(),
                                                    "pipeline": self.pipeline.to_dict()})
        return self._hash

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def config_dict(self) -> dict[str, Any]:
        return to_dict(self.config)

    # -- spectra --------------------------------------------------------------------------------
    def spectrum_inputs(self, batch: pa.RecordBatch | pa.Table, peaks: Peaks | None = None) -> SpectrumInputs:
        """Preprocess and bin a batch of the spectrum schema (vectorised; ``peaks``: its peaks when unpacked
        already)."""
        peaks = preprocess_flat(peaks if peaks is not None else Peaks.from_arrow(batch), self.pipeline)
        return encoder_inputs(peaks, ion_positive_from_batch(batch), self.config.spectrum)

    def encode_spectrum_inputs(self, inputs: SpectrumInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(L2-normalised embeddings, pre-normalisation lengths) as tensors (keeps the autograd graph)."""
        raw = self.spectrum_encoder.forward_inputs(inputs, self.device)
        norm = raw.norm(dim=1)
        return raw / norm.clamp_min(1e-12)[:, None], norm

    def embed_spectra(self, batch: pa.RecordBatch | pa.Table, *, batch_size: int = 1024,
                      peaks: Peaks | None = None) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Embeddings ``[n, dim]`` (float32, unit length) and quality ``[n]`` (0..1, higher = better).

        ``peaks`` are the batch's peaks when the caller unpacked them already (:meth:`Peaks.from_arrow`);
        they are preprocessed once for the whole batch (the result stays with them for later stages) and
        encoded ``batch_size`` spectra at a time."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        n = batch.num_rows
        peaks = peaks if peaks is not None else Peaks.from_arrow(batch)
        if len(peaks) != n:
            raise ValueError(f"peaks hold {len(peaks)} spectra, the batch {n}")
        prepared = preprocess_flat(peaks, self.pipeline)
        positive = ion_positive_from_batch(batch)
        emb = np.empty((n, self.dim), dtype=np.float32)
        qual = np.empty(n, dtype=np.float32)
        with self._inference():
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                inputs = encoder_inputs(prepared.slice(start, stop), positive[start:stop], self.config.spectrum)
                e, norm = self.encode_spectrum_inputs(inputs)
                q = self.quality_head(e, norm, torch.from_numpy(inputs.side).to(self.device))
                emb[start:stop] = e.cpu().numpy()
                qual[start:stop] = q.cpu().numpy()
        return emb, qual

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode without autograd for the block. The mode is switched (and restored) only when the
        model is training: switching walks every submodule, which costs more than embedding one spectrum."""
        was_training = self.training
        if was_training:
            self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            if was_training:
                self.train()

    # -- molecules ------------------------------------------------------------------------------
    def encode_graphs(self, store: GraphStore, rows: npt.NDArray[np.int64]) -> torch.Tensor:
        """L2-normalised embeddings of molecules ``rows`` of a graph store (keeps the autograd graph)."""
        raw = self.molecule_encoder.forward_batch(store.batch(rows), self.device)
        return nn.functional.normalize(raw, dim=1)

    def embed_graphs(self, store: GraphStore, *, batch_size: int = 1024) -> npt.NDArray[np.float32]:
        """Embeddings of every molecule of ``store``."""
        out = np.empty((len(store), self.dim), dtype=np.float32)
        with self._inference():
            for start in range(0, len(store), batch_size):
                rows = np.arange(start, min(start + batch_size, len(store)), dtype=np.int64)
                out[rows] = self.encode_graphs(store, rows).cpu().numpy()
        return out

    def embed_molecules(self, smiles: Sequence[str], *, batch_size: int = 1024,
                        on_invalid: Literal["error", "skip"] = "error") -> MoleculeEmbeddings:
        """Embed SMILES; with ``on_invalid="skip"`` invalid ones are left out and listed in ``skipped``."""
        if on_invalid not in ("error", "skip"):
            raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
        valid = np.zeros(len(smiles), dtype=bool)
        skipped: list[tuple[int, str]] = []
        chunks: list[npt.NDArray[np.float32]] = []
        for start in range(0, len(smiles), batch_size):
            graphs = []
            for i in range(start, min(start + batch_size, len(smiles))):
                try:
                    graphs.append(featurize(smiles[i]))
                    valid[i] = True
                except InvalidMoleculeError as exc:
                    if on_invalid == "error":
                        raise InvalidMoleculeError(exc.detail, record=f"{i} ({smiles[i]!r})",
                                                   reason="invalid_smiles") from None
                    skipped.append((i, str(smiles[i])))
            if graphs:
                chunks.append(self.embed_graphs(GraphStore.from_graphs(graphs), batch_size=batch_size))
        emb = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        return MoleculeEmbeddings(emb, valid, skipped)

    def embed_smiles(self, smiles: Sequence[str], *, batch_size: int = 1024,
                     on_invalid: Literal["error", "skip"] = "error") -> npt.NDArray[np.float32]:
        """Embeddings ``[n, dim]`` of SMILES. Invalid SMILES raise :class:`InvalidMoleculeError`, or with
        ``on_invalid="skip"`` are dropped (rows then align with the valid inputs only; use
        :meth:`embed_molecules` to learn which were skipped)."""
        return self.embed_molecules(smiles, batch_size=batch_size, on_invalid=on_invalid).embeddings

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path, *, half: bool = True, extra: dict[str, Any] | None = None) -> str:
        """Write a checkpoint (float16 weights by default) and return its content hash."""
        digest = save_checkpoint(path, self.state_dict(), config=self.config_dict(),
                                 pipeline=self.pipeline.to_dict(), extra=extra or {}, half=half)
        return digest


def preprocess_flat_check(pipeline: Pipeline) -> None:
    """Refuse a pipeline the vectorised preprocessing cannot apply."""
    from engine.models.encoders.spectrum import VECTORISED_STEPS

    bad = [name for name, _ in pipeline.steps if name not in VECTORISED_STEPS | {"require_min_peaks"}]
    if bad:
        raise ValueError(f"pipeline steps {bad} cannot be applied before embedding")


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    return from_mapping(ModelConfig, data, where="model config")


def load_model(path: str | Path, *, device: str = "cpu") -> JointModel:
    """Load a :class:`JointModel` checkpoint onto ``device`` (the bundled default and the checks on a
    missing file are :func:`engine.jobs.artifacts.open_model`'s)."""
    path = Path(path)
    payload = load_checkpoint(path)
    try:
        config = model_config_from_dict(payload["config"])
        pipeline = Pipeline.from_dict(payload["pipeline"])
        model = JointModel(config, pipeline)
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        model.load_state_dict(state)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise IncompatibleArtifactError(f"{path}: checkpoint does not match this engine's model "
                                        f"({str(exc).splitlines()[0]})") from None
    model._hash = payload["content_hash"]
    model.extra = dict(payload.get("extra", {}))
    return model.to(device).eval()


__all__ = ["DEFAULT_MODEL", "JointModel", "ModelConfig", "MoleculeEmbeddings", "load_model", "model_pipeline"]
