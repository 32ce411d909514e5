"""Reports that scale: the hit table is capped at the highest-scoring top hits (with the total stated) and
plots are chosen by score, most confident first and a few of the least; a 1M-spectrum result stays small."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from engine.core.records import Spectrum
from engine.jobs.report import MAX_TABLE_ROWS, build_report, plot_rows


def _results(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = [f"q{i}" for i in range(n)]
    return pa.table({"query_id": ids, "rank": np.ones(n, np.int32), "score": rng.random(n).astype(np.float32),
                     "library_id": [f"lib{i}" for i in range(n)], "name": ids})


def test_plots_are_chosen_by_score_most_confident_first_then_a_few_least() -> None:
    score = np.array([0.5, np.nan, 0.9, 0.1, 0.7, 0.2, 0.95, 0.05, 0.6, 0.3, 0.8, 0.4])
    rows = np.arange(len(score))
    assert plot_rows(score, rows, 10) == [6, 2, 10, 4, 8, 0, 11, 9, 5, 7]  # 9 best, then the least (0.05)
    assert plot_rows(score, rows, 20) == [6, 2, 10, 4, 8, 0, 11, 9, 5, 3, 7, 1]  # all, by score, unscored last
    assert plot_rows(score, rows, 0) == []


def test_the_hit_table_is_capped_with_the_total_stated() -> None:
    page = build_report(_results(50), max_table_rows=10, source="r.parquet")
    assert page.count("<tr>") == 11 and "the 10 highest-scoring of 50" in page and "40 more top hits" in page


@pytest.mark.slow
def test_a_million_spectrum_report_stays_small() -> None:
    n = 1_000_000
    start = time.perf_counter()
    page = build_report(_results(n), title="big", source="results.parquet")
    assert time.perf_counter() - start < 60
    assert len(page.encode()) < 2 << 20
    assert page.count("<tr>") == MAX_TABLE_ROWS + 1  # header + the capped rows
    assert f"the {MAX_TABLE_ROWS:,} highest-scoring of {n:,}" in page
    rows = page.split("<tr>")[2:]
    scores = [float(r.split("<td class='num'>")[2].split("<")[0]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_mirror_plots_come_in_score_order() -> None:
    results = _results(40, seed=1)
    peaks = np.array([100.0, 150.0, 200.0]), np.array([1.0, 0.5, 0.2], np.float32)
    spectra = {f"q{i}": Spectrum(f"q{i}", *peaks, precursor_mz=250.0) for i in range(40)}
    library = {f"lib{i}": Spectrum(f"lib{i}", *peaks, precursor_mz=250.0) for i in range(40)}
    page = build_report(results, queries=spectra, library=library, max_plots=10)
    plotted = [part.split("'")[0] for part in page.split("alt='mirror plot ")[1:]]
    score = results.column("score").to_numpy()
    expected = plot_rows(score.astype(float), np.arange(40), 10)
    assert plotted == [f"q{i}" for i in expected]
    assert score[expected[0]] == score.max() and score[expected[-1]] == score.min()
