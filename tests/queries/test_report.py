"""The HTML report embeds a histogram and mirror plots and renders without external files."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from engine.core.peaks import Peaks
from engine.core.records import Spectrum
from engine.jobs.report import build_report
from engine.queries.similarity import modified_cosine


def _results(spectra: list[Spectrum], n_queries: int = 6) -> pa.Table:
    peaks = Peaks.from_spectra(spectra)
    rows = []
    for q in range(n_queries):
        lib = np.array([i for i in range(len(spectra)) if i != q and spectra[i].ion_mode == spectra[q].ion_mode])
        scores, _ = modified_cosine(peaks, peaks, np.full(lib.shape, q), lib)
        for rank, j in enumerate(lib[np.argsort(-scores)][:3], start=1):
            hit = spectra[j]
            rows.append({"query_id": spectra[q].spectrum_id, "rank": rank,
                         "score": float(scores[lib == j][0]), "library_id": hit.spectrum_id,
                         "inchikey": hit.inchikey, "smiles": hit.smiles, "name": hit.name,
                         "precursor_mz": hit.precursor_mz,
                         "mass_difference": float(hit.precursor_mz - spectra[q].precursor_mz),  # type: ignore[operator]
                         "quality": 0.8})
    return pa.Table.from_pylist(rows)


def test_report_has_histogram_and_mirror_plots(sample_spectra: list[Spectrum]) -> None:
    results = _results(sample_spectra)
    by_id = {s.spectrum_id: s for s in sample_spectra}
    page = build_report(results, queries=by_id, library=by_id, max_plots=4)
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 1 + 4  # histogram + capped mirror plots
    for img in images:
        assert base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.count("<tr>") == 1 + 6  # header + one top hit per query
    assert "http" not in page.split("<body>")[1].replace("https://", "")  # self-contained


def test_report_command_without_spectra(tmp_path: Path, sample_spectra: list[Spectrum]) -> None:
    from engine.commands.report import report

    path = tmp_path / "results.parquet"
    pq.write_table(_results(sample_spectra, n_queries=3), path)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(report, [str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "3 top hits not plotted" in page
