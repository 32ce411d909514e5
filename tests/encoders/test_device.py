"""Same answers on either device: the bundled model embeds spectra and molecules on CUDA as on the CPU
(fp32 both; cosine >= 0.9999 per row, quality within 1e-4), and a library search with GPU-embedded
queries returns the same top hits. Skipped where torch sees no CUDA device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from engine.models.device import resolve_device
from engine.models.model import JointModel, load_model

DATA = Path(__file__).resolve().parents[1] / "data"
ROOT = Path(__file__).resolve().parents[2]
BUNDLED_MODEL = ROOT / "engine" / "data" / "model" / "default.pt"
BUNDLED_LIBRARY = ROOT / "engine" / "data" / "library"
#: tolerances of the CPU / GPU comparison (fp32 on both; reductions run in another order on the GPU)
MIN_COSINE = 0.9999
QUALITY_ATOL = 1e-4

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_model_loads_on_the_resolved_device() -> None:
    model = load_model(BUNDLED_MODEL, device=resolve_device("auto"))
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def _queries() -> pa.Table:
    from engine.io.stream import iter_spectrum_batches

    return pa.Table.from_batches(list(iter_spectrum_batches([DATA / "massbank" / "massbank.mgf"], batch_size=64)))


@pytest.fixture(scope="module")
def models() -> tuple[JointModel, JointModel]:
    return load_model(BUNDLED_MODEL, device="cpu"), load_model(BUNDLED_MODEL, device="cuda")


@pytest.mark.gpu
@gpu
def test_spectrum_embeddings_match(models: tuple[JointModel, JointModel]) -> None:
    cpu, cuda = models
    queries = _queries()
    e_cpu, q_cpu = cpu.embed_spectra(queries)
    e_gpu, q_gpu = cuda.embed_spectra(queries)
    assert isinstance(e_gpu, np.ndarray) and e_gpu.dtype == np.float32 and e_gpu.shape == e_cpu.shape
    assert np.einsum("ij,ij->i", e_cpu, e_gpu).min() >= MIN_COSINE
    np.testing.assert_allclose(q_gpu, q_cpu, atol=QUALITY_ATOL)


@pytest.mark.gpu
@gpu
def test_molecule_embeddings_match(models: tuple[JointModel, JointModel]) -> None:
    cpu, cuda = models
    table = pq.read_table(ROOT / "engine" / "data" / "candidates" / "molecules.parquet", columns=["smiles"])
    smiles = [str(s) for s in table.column("smiles").to_pylist()[:256]]
    a, b = cpu.embed_smiles(smiles), cuda.embed_smiles(smiles)
    assert np.einsum("ij,ij->i", a, b).min() >= MIN_COSINE


@pytest.mark.gpu
@gpu
def test_search_hits_match(models: tuple[JointModel, JointModel]) -> None:
    """Identity search of the example spectra against the bundled library: same top hit wherever the
    best and second-best scores differ by more than the embedding tolerance."""
    from engine.queries.identity import IdentitySettings, identity_search
    from engine.queries.references import References
    from indexes.library import Library

    cpu, cuda = models
    lib = Library.open(BUNDLED_LIBRARY)
    refs = References(lib)
    batch = _queries().combine_chunks().to_batches()[0]
    settings = IdentitySettings(top_k=2)
    a = identity_search(batch, lib, refs, cpu, settings=settings).to_pylist()
    b = identity_search(batch, lib, refs, cuda, settings=settings).to_pylist()

    def top(rows: list[dict[str, object]]) -> dict[object, tuple[object, float]]:
        by_query: dict[object, list[dict[str, object]]] = {}
        for r in rows:
            by_query.setdefault(r["query_id"], []).append(r)
        out = {}
        for q, hits in by_query.items():
            hits.sort(key=lambda r: r["rank"])  # type: ignore[arg-type, return-value]
            gap = float(hits[0]["score"]) - float(hits[1]["score"]) if len(hits) > 1 else 1.0  # type: ignore[arg-type]
            out[q] = (hits[0]["library_id"], gap)
        return out

    ta, tb = top(a), top(b)
    assert set(ta) == set(tb) and ta
    clear = [q for q, (_, gap) in ta.items() if gap > 1e-3]
    assert clear and all(ta[q][0] == tb[q][0] for q in clear)
