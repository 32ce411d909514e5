"""``engine report``: an HTML page for a results file (score histogram, mirror or fragment plots)."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.common import engine_errors


@click.command()
@click.argument("results", type=click.Path(exists=True, path_type=Path))
@click.option("--queries", "queries", multiple=True,
              help="Query spectrum files (or directories, globs) the results were made from; repeatable.")
@click.option("--library", "library", multiple=True,
              help="Library directory (or reference spectrum files) holding the hits; repeatable.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write.")
@click.option("--max-plots", default=50, show_default=True, type=click.IntRange(0),
              help="Mirror or fragment plots at most (one per query, for its top hit or candidate).")
@click.option("--edge", default=None, metavar="SRC,TGT",
              help="Network output: the edge whose mirror plot to show (cluster ids as in the graph files, spectrum "
                   "ids or node ids) "
                   "[default: the top edge].")
@engine_errors
def report(results: Path, queries: tuple[str, ...], library: tuple[str, ...], out: Path,
           max_plots: int, edge: str | None) -> None:
    """Write an HTML report for RESULTS (from engine search or engine rank, or the output directory of
    engine annotate): score histogram, and per query a mirror plot against its top library hit and / or
    the peaks its top candidate's in-silico fragments explain; images embedded in the page. For an
    annotate output the query files and library default to those the job read. For an engine network
    output: its largest components, component sizes and the mirror plot of one edge."""
    from engine.jobs.network_report import is_network_output, write_network_report
    from engine.jobs.report import write_report

    if is_network_output(results):
        pair = tuple(edge.split(",", 1)) if edge else None
        if pair is not None and len(pair) != 2:
            raise click.BadParameter("give --edge as SRC,TGT", param_hint="--edge")
        try:
            path = write_network_report(results, out, edge=pair)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"report written to {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return
    path = write_report(results, out, queries=queries, library=library, max_plots=max_plots)
    click.echo(f"report written to {path} ({path.stat().st_size / 1e6:.2f} MB)")
