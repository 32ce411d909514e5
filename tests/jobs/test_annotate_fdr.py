"""The annotate job with a decoy library: q-values over the whole job, FDR counts, cross-mode analogues."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from click.testing import CliRunner

from engine.commands.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
QUERY = str(DATA / "massbank" / "massbank.msp")


def build(out: Path, *flags: str) -> Path:
    result = CliRunner().invoke(main, ["library", "build", str(DATA / "massbank" / "massbank.mgf"), "--out", str(out),
                                       "--fixed-embedder", "--quiet", *flags])
    assert result.exit_code == 0, result.output
    return out


def annotate(library: Path, out: Path, *flags: str) -> tuple[list[dict[str, object]], dict[str, object], str]:
    result = CliRunner().invoke(main, ["annotate", QUERY, "--out", str(out), "--library", str(library),
                                       "--chunk-size", "8", "--quiet", *flags])
    assert result.exit_code == 0, result.output
    rows = pads.dataset(out / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    return rows, json.loads((out / "summary.json").read_text()), result.output


@pytest.fixture(scope="module")
def decoy_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("lib") / "library")


def test_q_values_span_the_whole_job(decoy_library: Path, tmp_path: Path) -> None:
    rows, summary, text = annotate(decoy_library, tmp_path / "out")
    assert len(rows) == 40
    q = np.array([np.nan if r["identity_q_value"] is None else r["identity_q_value"] for r in rows])
    score = np.array([np.nan if r["identity_score"] is None else r["identity_score"] for r in rows])
    decoy = np.array([np.nan if r["identity_decoy_score"] is None else r["identity_decoy_score"] for r in rows])
    assert np.isfinite(q).sum() >= 30  # the queries are library records: nearly all win against the decoys
    assert np.isfinite(decoy).any() and not any(str(r["identity_library_id"]).startswith("decoy:") for r in rows)
    # q-values come from all chunks together (chunks of 8) and never fall as the score falls
    ok = np.isfinite(q)
    order = np.argsort(-score[ok])
    assert np.all(np.diff(q[ok][order]) >= -1e-6)
    won = np.isfinite(score) & (np.nan_to_num(score, nan=-1) > np.nan_to_num(decoy, nan=-1))
    assert np.array_equal(ok, won)  # a query the decoy won has no q-value
    counts = summary["identity_hits_at_fdr"]
    assert counts == {"1%": int((q <= 0.01).sum()), "5%": int((q <= 0.05).sum())}  # type: ignore[comparison-overlap]
    assert "library matches at FDR 1%" in text and summary["fdr_note"] is None
    trust = summary["analogue_trust"]
    assert trust["min_reliability"] == 0.5  # type: ignore[index]
    assert trust["hits"] == sum(1 for r in rows if (r["analogue_score"] or -1) >= 0.5)  # type: ignore[index, operator]
    # the shipped trust table is for the bundled model: a fixed embedder gets no estimate, and is told why
    assert trust["estimated_share_below_0.4"] is None  # type: ignore[index]
    assert trust["note"] == "the analogue trust table was measured for another model"  # type: ignore[index]


def test_cross_mode_analogues_say_their_ion_mode(decoy_library: Path, tmp_path: Path) -> None:
    same, _, _ = annotate(decoy_library, tmp_path / "same")
    cross, _, _ = annotate(decoy_library, tmp_path / "cross", "--cross-mode")
    assert all(r["analogue_ion_mode"] == r["ion_mode"] for r in same if r["analogue_library_id"])
    assert all(r["analogue_ion_mode"] in ("positive", "negative") for r in cross if r["analogue_library_id"])
    # identity stays within the spectrum's ion mode either way
    assert [r["identity_library_id"] for r in sorted(same, key=lambda r: str(r["query_id"]))] == \
        [r["identity_library_id"] for r in sorted(cross, key=lambda r: str(r["query_id"]))]


def test_library_without_decoys_says_so(tmp_path: Path) -> None:
    library = build(tmp_path / "plain", "--no-decoys")
    rows, summary, text = annotate(library, tmp_path / "out")
    assert all(r["identity_q_value"] is None and r["identity_decoy_score"] is None for r in rows)
    assert summary["identity_hits_at_fdr"] is None
    assert "without decoy" in str(summary["fdr_note"]) and "note:" in text

