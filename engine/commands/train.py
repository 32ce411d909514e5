"""``engine train``: train the joint model from a TOML config (resumes an interrupted run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from engine.commands.common import engine_errors


@click.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Training TOML (see configs/); unknown keys are an error.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False), default=None,
              help="Also copy the trained model checkpoint to this path.")
@click.option("--threads", type=int, default=None, help="Torch CPU threads (default: config or torch's).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where the model trains: auto takes the GPU when torch sees one [default: the config's "
                   "train.device, auto]. The quality fit after the last epoch runs on the CPU.")
@engine_errors
def train(config_path: str, export_path: str | None, threads: int | None, device: str | None) -> None:
    """Train (or resume) a joint spectrum/molecule model; writes RUN_DIR/model.pt.

    Data paths in the config point at the training data (MassBank and candidate Parquet files); they are
    read only here, never when the model is used.
    """
    import dataclasses

    from engine.models.training.config import load_train_config
    from engine.models.training.loop import train as run_training

    try:
        config = load_train_config(config_path)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc) if str(exc).startswith(config_path) else f"{config_path}: {exc}") from None
    if threads is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, threads=threads))
    if device is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, device=device))  # type: ignore[arg-type]
    for label, path in (("spectra", config.data.spectra), ("candidates", config.data.candidates)):
        if not Path(path).exists():
            raise click.ClickException(f"{config_path}: data.{label} file {path} does not exist")
    result = run_training(config)
    if export_path and result.model_path.exists():
        Path(export_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.model_path, export_path)
        click.echo(f"exported {export_path}")
