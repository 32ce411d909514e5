"""The sidecar manifest of a vector index directory, and the checks made before it is used.

``manifest.json`` names everything needed to trust the files beside it: format and schema version,
encoder hash, dimension, metric, the table and its row count, the partition scheme, the index policy,
and per partition its kind, nlist, PQ parameters, row counts and file names. Partition files carry a
generation number; a new manifest is written atomically after its files, so a crash leaves the old,
consistent state (old generations are removed afterwards).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.core.errors import IncompatibleArtifactError
from engine.core.fsutil import atomic_write
from engine.core.schema import SCHEMA_VERSION
from indexes.faiss_ivf import IndexKind, IndexPolicy
from indexes.partition import Partition, PartitionScheme

MANIFEST_NAME = "manifest.json"
FORMAT = "engine.vector_index"
FORMAT_VERSION = 1
METRIC = "inner_product"


@dataclass
class PartitionEntry:
    """State of one partition's files.

    FAISS ids and positions in ``vectors`` / ``meta`` are the same ``0..n_rows-1``; the first
    ``n_sorted`` are sorted by mass (built together), the rest were appended incrementally.
    """

    name: str
    ion_mode: str
    mass_lo: float
    mass_hi: float
    kind: IndexKind
    n_rows: int
    n_sorted: int
    trained_rows: int
    generation: int
    nlist: int = 0
    pq_m: int = 0
    pq_nbits: int = 0
    refine_codes: bool = False

    def file(self, suffix: str) -> str:
        """File name of this generation: ``suffix`` is ``faiss``, ``codes.faiss``, ``vectors.npy`` or
        ``meta.arrow``."""
        return f"{self.name}.g{self.generation}.{suffix}"

    @property
    def files(self) -> list[str]:
        names = [self.file("vectors.npy"), self.file("meta.arrow")]
        names += [self.file("faiss")] if self.kind != "flat" else []
        return names + ([self.file("codes.faiss")] if self.refine_codes else [])

    def partition(self, ordinal: int) -> Partition:
        return Partition(self.ion_mode, ordinal, self.mass_lo, self.mass_hi)

    def stale_reason(self, policy: IndexPolicy, dim: int) -> str | None:
        """Why this partition should be retrained, or None."""
        if self.kind != policy.kind_for(self.n_rows, dim) and self.n_rows > self.trained_rows:
            return (f"{self.n_rows} rows now call for {policy.kind_for(self.n_rows, dim)} "
                    f"(built as {self.kind})")
        if self.kind != "flat" and self.n_rows > policy.drift_factor * max(self.trained_rows, 1):
            return f"{self.n_rows} rows, {self.n_rows / max(self.trained_rows, 1):.1f}x its training size"
        tail = self.n_rows - self.n_sorted
        if tail > max(policy.min_tail_rows, self.n_sorted // 4):
            return f"{tail} rows appended since the last build are searched unsorted"
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mass_hi"] = None if math.isinf(self.mass_hi) else self.mass_hi
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionEntry:
        data = dict(data)
        data["mass_hi"] = math.inf if data.get("mass_hi") is None else float(data["mass_hi"])
        return cls(**data)


@dataclass
class IndexManifest:
    """Everything a search needs to trust the index files beside it."""

    encoder_hash: str
    dim: int
    table: str
    key_column: str
    mass_column: str
    table_rows: int
    max_row_id: int
    scheme: PartitionScheme
    policy: IndexPolicy
    partitions: list[PartitionEntry] = field(default_factory=list)
    metric: str = METRIC
    schema_version: int = SCHEMA_VERSION
    format_version: int = FORMAT_VERSION

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.partitions)

    def stale(self) -> dict[str, str]:
        """Partition name -> reason, for partitions that should be retrained."""
        out = {}
        for p in self.partitions:
            reason = p.stale_reason(self.policy, self.dim)
            if reason is not None:
                out[p.name] = reason
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": self.format_version, "schema_version": self.schema_version,
            "encoder_hash": self.encoder_hash, "dim": self.dim, "metric": self.metric,
            "normalised": True, "table": self.table, "key_column": self.key_column,
            "mass_column": self.mass_column, "table_rows": self.table_rows, "max_row_id": self.max_row_id,
            "n_rows": self.n_rows, "scheme": self.scheme.to_dict(), "policy": self.policy.to_dict(),
            "partitions": [p.to_dict() for p in self.partitions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "manifest") -> IndexManifest:
        if data.get("format") != FORMAT:
            raise IncompatibleArtifactError(f"{where}: not an engine vector index manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise IncompatibleArtifactError(f"{where}: index format version {data.get('format_version')} but "
                                            f"this engine reads {FORMAT_VERSION}; rebuild the index")
        return cls(
            encoder_hash=data["encoder_hash"], dim=int(data["dim"]), table=data["table"],
            key_column=data["key_column"], mass_column=data["mass_column"],
            table_rows=int(data["table_rows"]), max_row_id=int(data["max_row_id"]),
            scheme=PartitionScheme.from_dict(data["scheme"]), policy=IndexPolicy.from_dict(data["policy"]),
            partitions=[PartitionEntry.from_dict(p) for p in data["partitions"]],
            metric=data["metric"], schema_version=int(data["schema_version"]),
            format_version=int(data["format_version"]),
        )

    def save(self, directory: str | Path) -> None:
        """Write ``manifest.json`` atomically."""
        path = Path(directory) / MANIFEST_NAME
        atomic_write(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> IndexManifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise IncompatibleArtifactError(f"{directory}: no {MANIFEST_NAME}; build the index first")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise IncompatibleArtifactError(f"{path}: unreadable manifest ({exc})") from None
        return cls.from_dict(data, where=str(path))

    def check(self, *, where: str, dim: int | None = None, encoder_hash: str | None = None,
              table_rows: int | None = None) -> None:
        """Refuse an index made for another model, dimension, schema version or table state."""
        if self.schema_version != SCHEMA_VERSION:
            raise IncompatibleArtifactError(f"{where}: index built for schema version {self.schema_version}, "
                                            f"this engine uses {SCHEMA_VERSION}; rebuild it")
        if self.metric != METRIC:
            raise IncompatibleArtifactError(f"{where}: metric {self.metric!r}, expected {METRIC!r}")
        if dim is not None and dim != self.dim:
            raise IncompatibleArtifactError(f"{where}: index has dimension {self.dim} but the model embeds "
                                            f"in {dim}; rebuild the library with this model")
        if encoder_hash is not None and encoder_hash != self.encoder_hash:
            raise IncompatibleArtifactError(f"{where}: index built with encoder {self.encoder_hash} but the "
                                            f"model in use is {encoder_hash}; rebuild the library with "
                                            f"this model or pass the model it was built with")
        if table_rows is not None and table_rows != self.table_rows:
            raise IncompatibleArtifactError(f"{where}: index covers {self.table_rows} table rows but table "
                                            f"{self.table!r} has {table_rows}; run `engine index update` "
                                            f"(or rebuild) before searching")
