"""Shard sets: groups of partitions served together by one worker (a Ray actor or one GPU).

A shard set is a run of mass-contiguous partitions of one ion mode, so an identity query (a narrow
precursor window) lands on one shard set, rarely two. :func:`plan_shard_sets` balances the sets by
resident bytes; :func:`route` says which sets a query must visit. Each worker opens the same index
directory restricted to its set (``VectorIndex.open(..., partitions=names)``): it only ever loads its
own partitions' files, and because every score is an exact cosine the per-set top-k lists merge with
a plain top-k (``indexes.ground_truth.merge_topk``).
"""

from __future__ import annotations

from dataclasses import dataclass

from indexes.manifest import IndexManifest, PartitionEntry


def resident_bytes(entry: PartitionEntry, dim: int) -> int:
    """RAM a partition needs to serve IVF searches: codes + ids (+ raw vectors for exact partitions)."""
    if entry.kind == "flat":
        return entry.n_rows * dim * 4
    code = dim * 4 if entry.kind == "ivf_flat" else entry.pq_m * max(entry.pq_nbits, 8) // 8
    return entry.n_rows * (code + 8) + entry.nlist * dim * 4


@dataclass(frozen=True)
class ShardSet:
    """Partitions (by name) served together, their ion mode, mass range and resident bytes."""

    ion_mode: str
    mass_lo: float
    mass_hi: float
    partitions: tuple[str, ...]
    rows: int
    resident_bytes: int


def plan_shard_sets(manifest: IndexManifest, n_sets: int) -> list[ShardSet]:
    """Cut the partitions of each ion mode, in mass order, into about ``n_sets`` byte-balanced sets.

    Every mode gets at least one set; modes get sets in proportion to their bytes.
    """
    if n_sets < 1:
        raise ValueError("n_sets must be >= 1")
    by_mode: dict[str, list[PartitionEntry]] = {}
    for p in manifest.partitions:
        by_mode.setdefault(p.ion_mode, []).append(p)
    total = sum(resident_bytes(p, manifest.dim) for p in manifest.partitions) or 1
    out: list[ShardSet] = []
    for mode, parts in sorted(by_mode.items()):
        parts.sort(key=lambda p: p.mass_lo)
        sizes = [resident_bytes(p, manifest.dim) for p in parts]
        remaining = sum(sizes)
        sets_left = max(1, min(len(parts), round(n_sets * remaining / total)))
        current: list[PartitionEntry] = []
        acc = 0
        for i, (p, size) in enumerate(zip(parts, sizes, strict=True)):
            current.append(p)
            acc += size
            parts_left = len(parts) - i - 1
            close = parts_left == 0 or (sets_left > 1 and (acc >= remaining / sets_left
                                                           or parts_left < sets_left))
            if close:
                out.append(ShardSet(mode, current[0].mass_lo, current[-1].mass_hi,
                                    tuple(c.name for c in current), sum(c.n_rows for c in current), acc))
                remaining -= acc
                sets_left -= 1
                current, acc = [], 0
    return out


def route(sets: list[ShardSet], ion_mode: str | None, mass_lo: float, mass_hi: float) -> list[int]:
    """Indices of the shard sets a query with this ion mode (None: any) and mass window must visit."""
    return [i for i, s in enumerate(sets)
            if (ion_mode is None or s.ion_mode == ion_mode) and mass_lo < s.mass_hi and mass_hi >= s.mass_lo]
