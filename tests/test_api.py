"""The public Python API (``engine.api``, exported lazily by ``engine``): the same results from files,
Spectrum records and matchms spectra, and the same results as the command line that calls it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import engine
from engine.commands.cli import main
from engine.io.readers import read_file

ROOT = Path(__file__).resolve().parents[1]
MGF = ROOT / "tests" / "data" / "massbank" / "massbank.mgf"


@pytest.fixture(scope="module")
def library() -> engine.SpectralLibrary:
    return engine.open_library()


def test_importing_records_does_not_load_the_api() -> None:
    code = "import sys, engine.core.records; print('engine.api' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]
    assert set(engine.__all__) <= set(dir(engine)) and callable(engine.search)
    with pytest.raises(AttributeError):
        engine.no_such_thing  # noqa: B018


def test_embed_files_records_and_matchms_agree(library: engine.SpectralLibrary) -> None:
    from_file = engine.embed_spectra(MGF, library.model)
    records = [s for s in read_file(MGF) if isinstance(s, engine.core.records.Spectrum)]
    from_records = engine.embed_spectra(records, library.model)
    assert from_file.num_rows == len(records) == 40
    assert from_records.column("spectrum_id").to_pylist() == from_file.column("spectrum_id").to_pylist()
    np.testing.assert_allclose(np.stack(from_records.column("embedding").to_numpy(zero_copy_only=False)),
                               np.stack(from_file.column("embedding").to_numpy(zero_copy_only=False)), atol=1e-6)
    pytest.importorskip("matchms")
    from engine.io.matchms_adapter import to_matchms

    from_matchms = engine.embed_spectra([to_matchms(s) for s in records], library.model)
    np.testing.assert_allclose(from_matchms.column("quality").to_numpy(), from_file.column("quality").to_numpy(),
                               atol=1e-6)


def test_search_is_what_the_cli_writes(library: engine.SpectralLibrary, tmp_path: Path) -> None:
    for mode in ("identity", "analogue"):
        hits = engine.search(MGF, library, mode=mode, top_k=3)  # type: ignore[arg-type]
        assert hits.num_rows > 0 and set(hits.column("rank").to_pylist()) <= {1, 2, 3}
        out = tmp_path / f"{mode}.parquet"
        result = CliRunner().invoke(main, ["search", str(MGF), "--library", str(ROOT / "engine/data/library"),
                                           "--mode", mode, "--top-k", "3", "--out", str(out), "--quiet"])
        assert result.exit_code == 0, result.output
        cli = pq.read_table(out)
        assert cli.column("library_id").to_pylist() == hits.column("library_id").to_pylist()
        np.testing.assert_allclose(cli.column("score").to_numpy(), hits.column("score").to_numpy(), rtol=1e-6)


def test_rank_and_annotate(library: engine.SpectralLibrary, tmp_path: Path) -> None:
    ranked = engine.rank(MGF, library.model, by="mass", top_k=2, fragments=False, on_invalid="skip")
    assert ranked.num_rows > 0 and max(ranked.column("rank").to_pylist()) <= 2
    summary = engine.annotate(MGF, tmp_path / "out", chunk_size=16)
    assert summary.spectra_read == 40 and summary.annotated == 40
