"""``engine serve``: the repository as an HTTP service with a web page."""

from __future__ import annotations

import click

from engine.commands.common import engine_errors


@click.command()
@click.option("--repo", required=True, type=click.Path(exists=True, file_okay=False), metavar="REPO",
              help="Repository directory (engine repository add).")
@click.option("--library", default=None, type=click.Path(exists=True, file_okay=False), metavar="LIB",
              help="Reference library whose closest spectra are named beside the hits of a spectrum lookup.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CKPT",
              help="Model checkpoint the repository was embedded with [default: the bundled model].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (the default serves this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--max-body-bytes", type=click.IntRange(1), default=1_000_000, show_default=True,
              help="Largest request body (413 beyond).")
@click.option("--max-top-k", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Largest top_k a request may ask for.")
@click.option("--lookup-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds a lookup may take (503 beyond).")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="Torch and FAISS threads per process (0: their default with one worker, else cores / workers).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes on one port: one is bound to about one core, so more answer more lookups "
                   "per second, each holding its own model and in-memory index parts.")
@engine_errors
def serve(repo: str, library: str | None, model_path: str | None, host: str, port: int, max_body_bytes: int,
          max_top_k: int, lookup_timeout: float, threads: int, workers: int) -> None:
    """Serve lookups over REPO: GET /health, POST /lookup, GET /lookup?usi=, GET /structure?smiles=,
    GET /spectrum/{usi}, API docs at /docs and a web page at /. Read-only; Ctrl-C stops it."""
    import os

    from engine.jobs.serve import ServiceLimits, WorkerConfig, create_app, run_workers, server, set_threads

    limits = ServiceLimits(max_body_bytes=max_body_bytes, max_top_k=max_top_k, lookup_timeout_s=lookup_timeout)
    if workers > 1:
        per_worker = threads or max(1, (os.cpu_count() or 1) // workers)
        config = WorkerConfig(repo=repo, library=library, model_path=model_path, limits=limits, threads=per_worker)
        click.echo(f"serving {repo} on http://{host}:{port}/ with {workers} processes (API docs: /docs)", err=True)
        run_workers(config, workers=workers, host=host, port=port)
        return
    if threads:
        set_threads(threads)
    app = create_app(repo, library, model_path=model_path, limits=limits)
    click.echo(f"serving {repo} on http://{host}:{port}/ (API docs: /docs)", err=True)
    server(app, host=host, port=port).run()
