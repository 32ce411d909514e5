"""``engine network``: molecular networks across ion modes, grown run by run."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.common import dataset_option, engine_errors, ion_mode_option
from engine.jobs.network import DEFAULT_MIN_SCORE, RESCORES


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (nodes.parquet, edges.parquet, network.graphml, network.cyjs, gnps_pairs.tsv, "
                   "summary.json, and the store that later runs grow).")
@click.option("--top-k", default=10, show_default=True, type=click.IntRange(1),
              help="Neighbours per node; an edge needs each node among the other's top k.")
@click.option("--min-score", default=DEFAULT_MIN_SCORE, show_default=True, type=click.FloatRange(0, 1),
              help="Minimum calibrated predicted Tanimoto of an edge (default chosen on the model's calibration "
                   "fold; see benchmarks/RESULTS.md, network).")
@click.option("--max-component-size", default=100, show_default=True, type=click.IntRange(0),
              help="Split larger components by raising the score threshold inside them, as GNPS does (0: no limit).")
@click.option("--cross-mode/--no-cross-mode", default=True, show_default=True,
              help="Connect positive- and negative-mode spectra (only matters when both are present).")
@click.option("--rescore", type=click.Choice(list(RESCORES)), default="none", show_default=True,
              help="Add an exact spectral similarity and matched peaks to every edge.")
@click.option("--library", default=None, type=click.Path(exists=True, file_okay=False),
              help="Spectral library whose top match annotates each node (annotate outputs bring their own).")
@click.option("--model", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Model checkpoint [default: the bundled model].")
@click.option("--on-invalid", type=click.Choice(["error", "skip"]), default="skip", show_default=True,
              help="skip: bad records are counted by reason in summary.json; error: stop at the first one.")
@dataset_option
@ion_mode_option
@click.option("--no-graph-files", is_flag=True, help="Skip network.graphml and network.cyjs (very large networks).")
@engine_errors
def network(inputs: tuple[str, ...], out: Path, top_k: int, min_score: float, max_component_size: int,
            cross_mode: bool, rescore: str, library: str | None, model: str | None, on_invalid: str,
            dataset: str | None, ion_mode: str | None, no_graph_files: bool) -> None:
    """Build or grow a molecular network of INPUTS (MGF, MSP, mzML, mzXML, Parquet spectrum files,
    directories, globs, or engine annotate output directories, whose embeddings and annotations are
    reused). Running again into the same --out adds new inputs without recomputing old pairs."""
    from engine.jobs.network import NetworkInputs, NetworkSettings, build_network

    settings = NetworkSettings(top_k=top_k, min_score=min_score, max_component_size=max_component_size,
                               cross_mode=cross_mode, rescore=rescore,  # type: ignore[arg-type]
                               graph_files=not no_graph_files)
    options = NetworkInputs(on_invalid=on_invalid, dataset=dataset, default_ion_mode=ion_mode)  # type: ignore[arg-type]
    summary = build_network(inputs, out, settings=settings, model=model, library=library, options=options)
    click.echo(summary.text())
    click.echo(f"network written to {out}")
