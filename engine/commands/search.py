"""``engine search``: identity or analogue search of query spectra, or structure -> spectra lookup."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from engine.commands.common import (
    config_option,
    device_option,
    echo_skips,
    engine_errors,
    ion_mode_option,
    on_invalid_option,
    report_option,
    resolve_settings,
)


def write_or_print(tables: Any, out: Path | None, *, columns: tuple[str, ...]) -> int:
    """Stream result tables to Parquet at ``out`` (or print them as TSV); returns the row count."""
    import pyarrow.parquet as pq

    rows = 0
    writer = None
    try:
        for table in tables:
            rows += table.num_rows
            if out is not None:
                if writer is None:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(str(out), table.schema)
                writer.write_table(table)
            else:
                cols = [c for c in columns if c in table.column_names]
                if rows == table.num_rows:
                    click.echo("\t".join(cols))
                for rec in table.select(cols).to_pylist():
                    click.echo("\t".join("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
                                         for v in rec.values()))
    finally:
        if writer is not None:
            writer.close()
    return rows


@click.command()
@click.argument("queries", nargs=-1)
@click.option("--library", "library_path", type=click.Path(exists=True, file_okay=False), default=None,
              metavar="LIBRARY", help="Library directory (engine library build; required).")
@click.option("--mode", type=click.Choice(["identity", "analogue"]), default="identity", show_default=True,
              help="identity: same compound inside the precursor window; analogue: similar compounds at any "
                   "precursor mass.")
@click.option("--smiles", "smiles", multiple=True, metavar="SMILES",
              help="Structure -> spectra: library spectra nearest to this molecule (repeatable; no QUERIES).")
@click.option("--top-k", type=click.IntRange(1), default=10, show_default=True, help="Hits per query.")
@click.option("--precursor-tolerance-ppm", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Identity precursor window (and --adduct window for --smiles).")
@click.option("--max-mass-difference", type=click.FloatRange(min=0, min_open=True), default=None, metavar="DA",
              help="Analogue: only hits whose precursor m/z is within DA of the query's.")
@click.option("--analogue-candidates", type=click.IntRange(1), default=2000, show_default=True, metavar="N",
              help="Analogue: embedding neighbours re-scored per query (more: better hits, slower). Clean val "
                   "mean top-1 Tanimoto / queries/s on 2 cores: 10 -> 0.424 / 3,291; 60 (the tree re-ranker "
                   "applies) -> 0.471 / 1,126; 200 -> 0.483 / 804; 1000 -> 0.493 / 340; 2000 -> 0.494 / 198 "
                   "(benchmarks/RESULTS.md, search-analogue-pool).")
@click.option("--fdr", type=click.FloatRange(0, 1, min_open=True), default=None, metavar="Q",
              help="Identity: keep only matches whose target-decoy q-value is at most Q (e.g. 0.01); needs a "
                   "library built with decoys.")
@click.option("--cross-mode", is_flag=True,
              help="Analogue: search the library spectra of the other ion mode too (results give each hit's "
                   "ion_mode). Identity always stays within the query's ion mode.")
@click.option("--min-library-quality", type=click.FloatRange(0, 1), default=None,
              help="Ignore library spectra whose embedding quality is below this.")
@click.option("--adduct", "adducts", multiple=True,
              help="With --smiles: only spectra whose precursor matches this adduct of the molecule (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results Parquet file (default: print a table).")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CKPT",
              help="Model checkpoint the library was built with (default: the bundled model).")
@click.option("--fixed-embedder", is_flag=True, help="The library was built with --fixed-embedder.")
@on_invalid_option
@ion_mode_option
@click.option("--batch-size", type=click.IntRange(1), default=2048, show_default=True,
              help="Query spectra per batch.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@report_option
@device_option
@config_option
@engine_errors
def search(queries: tuple[str, ...], library_path: str, mode: str, smiles: tuple[str, ...], top_k: int,
           precursor_tolerance_ppm: float, max_mass_difference: float | None, analogue_candidates: int,
           fdr: float | None, cross_mode: bool,
           min_library_quality: float | None,
           adducts: tuple[str, ...], out: Path | None, model_path: str | None, fixed_embedder: bool,
           on_invalid: str, ion_mode: str | None, batch_size: int, quiet: bool, report_path: str | None,
           device: str, config_path: str | None) -> None:
    """Search QUERIES (spectrum files, directories, globs) against LIBRARY, or --smiles against it.

    Results: one row per hit with query_id, rank, score, library_id, inchikey, smiles, name,
    precursor_mz, mass_difference, quality, ion_mode and (identity, rank 1, libraries with decoys) q_value,
    the target-decoy q-value over all queries of the run (see the docs of engine.queries.hits).
    """
    from engine.jobs.settings import SearchSettings
    from engine.models.device import resolve_device

    st = resolve_settings(SearchSettings, config_path, rename={"library_path": "library", "model_path": "model",
                                                               "report_path": "report"})
    assert st.library is not None
    library_path, mode, smiles, top_k, precursor_tolerance_ppm = (st.library, st.mode, st.smiles, st.top_k,
                                                                  st.precursor_tolerance_ppm)
    max_mass_difference, fdr, cross_mode, min_library_quality = (st.max_mass_difference, st.fdr, st.cross_mode,
                                                                 st.min_library_quality)
    analogue_candidates = st.analogue_candidates
    adducts, out, model_path, fixed_embedder = st.adducts, None if st.out is None else Path(st.out), st.model, \
        st.fixed_embedder
    on_invalid, ion_mode, batch_size, quiet, report_path = (st.on_invalid, st.ion_mode, st.batch_size, st.quiet,
                                                            st.report)
    if smiles and queries:
        raise click.UsageError("give QUERIES or --smiles, not both")
    if not smiles and not queries:
        raise click.UsageError("give query spectrum files (QUERIES) or --smiles")
    from engine.api import open_library, search_tables

    if fdr is not None and mode != "identity":
        raise click.UsageError("--fdr applies to identity search (q-values come from identity matches)")
    if cross_mode and mode != "analogue":
        raise click.UsageError("--cross-mode applies to analogue search; identity stays within one ion mode")
    library = open_library(library_path, model=model_path, fixed=fixed_embedder, need_molecules=bool(smiles),
                           device=resolve_device(st.device))
    lib, model, refs = library.library, library.model, library.references
    if mode == "identity" and not smiles and not refs.has_decoys:
        if fdr is not None:
            raise click.UsageError(f"--fdr needs decoy spectra: {refs.decoy_note}")
        click.echo(f"note: {refs.decoy_note}", err=True)
    if smiles:
        from engine.queries.structure import StructureSettings, spectra_for_structures

        settings = StructureSettings(top_k=top_k, ion_mode=ion_mode, adducts=adducts,
                                     precursor_tolerance_ppm=precursor_tolerance_ppm,
                                     min_library_quality=min_library_quality)
        table = spectra_for_structures(list(smiles), lib, refs, model, settings=settings)
        n = write_or_print([table], out, columns=("query_id", "rank", "score", "library_id", "name", "inchikey",
                                                  "precursor_mz", "ion_mode", "adduct", "same_structure"))
        if out is not None:
            click.echo(f"{n} hits for {len(smiles)} structures written to {out}", err=True)
        return
    from tqdm import tqdm

    from engine.io.stream import ReadReport
    from engine.queries.hits import search_schema

    report = ReadReport()
    bar = tqdm(unit=" spectra", disable=quiet or out is None, file=sys.stderr, mininterval=0.5)
    results = search_tables(list(queries), library, mode=mode, top_k=top_k,
                            precursor_tolerance_ppm=precursor_tolerance_ppm, max_mass_difference=max_mass_difference,
                            analogue_candidates=analogue_candidates, min_library_quality=min_library_quality,
                            cross_mode=cross_mode, fdr=fdr,
                            on_invalid=on_invalid, ion_mode=ion_mode, batch_size=batch_size,
                            report=report, progress=bar)
    try:
        columns = ("query_id", "rank", "score", "q_value", "library_id", "name", "inchikey", "mass_difference",
                   "quality") if mode == "identity" else ("query_id", "rank", "score", "library_id", "name",
                                                          "inchikey", "ion_mode", "mass_difference", "quality")
        n = write_or_print(results, out, columns=columns)
    finally:
        bar.close()
    if out is not None and n == 0:
        import pyarrow.parquet as pq

        pq.write_table(search_schema(mode).empty_table(), str(out))
    click.echo(f"{report.kept} query spectra ({report.n_skipped} skipped), {n} hits"
               + (f" written to {out}" if out is not None else ""), err=True)
    echo_skips(report, report_path)
