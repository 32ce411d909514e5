"""``engine lookup``: where else in a repository does this spectrum, an analogue of it, or this structure occur?"""

from __future__ import annotations

import json

import click

from engine.commands.common import engine_errors


@click.command()
@click.argument("query_file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--repo", required=True, type=click.Path(exists=True, file_okay=False), metavar="REPO",
              help="Repository directory (engine repository add).")
@click.option("--usi", "usis", multiple=True, metavar="USI", help="Query by a spectrum held in REPO (repeatable).")
@click.option("--smiles", "smiles", multiple=True, metavar="SMILES",
              help="Query by a structure through the joint space (repeatable).")
@click.option("--adduct", "adducts", multiple=True, metavar="ADDUCT",
              help="With --smiles: search the precursor window of this adduct (repeatable, e.g. '[M+H]+').")
@click.option("--mode", type=click.Choice(["identity", "analogue"]), default="analogue", show_default=True,
              help="identity: same precursor m/z (--precursor-tolerance-ppm); analogue: any m/z "
                   "(or within --max-mass-difference).")
@click.option("--cross-mode", is_flag=True, help="Also search the other ion mode.")
@click.option("--top-k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Hits per query.")
@click.option("--precursor-tolerance-ppm", type=click.FloatRange(min=0, min_open=True), default=20.0,
              show_default=True, help="Identity precursor window.")
@click.option("--max-mass-difference", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Analogue: largest |hit - query m/z| in Da.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CKPT",
              help="Model checkpoint the repository was embedded with [default: the bundled model].")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON (as the HTTP service answers).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the hits to this Parquet file.")
@engine_errors
def lookup(query_file: str | None, repo: str, usis: tuple[str, ...], smiles: tuple[str, ...],
           adducts: tuple[str, ...], mode: str, cross_mode: bool, top_k: int, precursor_tolerance_ppm: float,
           max_mass_difference: float | None, model_path: str | None, as_json: bool, out: str | None) -> None:
    """Look up the spectra of QUERY_FILE, the spectra --usi, or the structures --smiles in REPO.

    Hits carry USI, dataset, precursor m/z, ion mode, cosine, predicted Tanimoto and mass difference,
    ranked by predicted Tanimoto.
    """
    import pyarrow.parquet as pq

    from engine.jobs.lookup import RepositorySearcher, read_query_file
    from engine.queries.lookup import LookupSettings, hit_records

    if sum(bool(x) for x in (query_file, usis, smiles)) != 1:
        raise click.UsageError("give exactly one of QUERY_FILE, --usi or --smiles")
    if adducts and not smiles:
        raise click.UsageError("--adduct goes with --smiles")
    settings = LookupSettings(mode=mode, top_k=top_k, cross_mode=cross_mode,
                              precursor_tolerance_ppm=precursor_tolerance_ppm,
                              max_mass_difference=max_mass_difference, adducts=adducts)
    searcher = RepositorySearcher(repo, model_path=model_path)
    if query_file:
        hits = searcher.spectra(read_query_file(query_file), settings)
    elif usis:
        hits = searcher.usis(list(usis), settings)
    else:
        hits = searcher.structures(list(smiles), settings)
    if out:
        pq.write_table(hits, out)
    if as_json:
        click.echo(json.dumps({"hits": hit_records(hits)}, indent=1))
        return
    cols = ["query_id", "rank", "usi", "dataset", "precursor_mz", "ion_mode", "predicted_tanimoto", "cosine",
            "mass_difference"]
    click.echo("\t".join(cols))
    for row in hit_records(hits):
        click.echo("\t".join("" if row[c] is None else str(row[c]) for c in cols))
