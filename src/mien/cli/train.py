"""`mien train CONFIG.yaml|FAMILY/PRESET [key=value ...]`: train any model; Lightning flags pass through."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.options import POSITIVE_INT, option, output


def train(
    config: Path = typer.Argument(..., help="YAML config or a shipped preset, e.g. vae/tiny or my.yaml."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.max_steps=100 data.path=DIR."),
    out: Path = output(None, folder=True, help="Run folder (default: runs/<config name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last state."),
    accelerator: str = typer.Option(None, help="cpu, gpu, auto (Lightning)."),
    devices: str = typer.Option(None, help="Number of devices or 'auto'."),
    strategy: str = typer.Option(None, help="auto, ddp, ddp_spawn, ... (Lightning)."),
    num_nodes: int = option(None, POSITIVE_INT, "--num-nodes", help="Machines for multi-node DDP."),
    precision: str = typer.Option(None, help="32-true, bf16-mixed, 16-mixed (Lightning)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
):
    """Train a model from a config; writes model.safetensors, config.yaml, meta.json, metrics.csv."""
    from mien.train import fit, load_run_config

    flags = {"accelerator": accelerator, "devices": _devices(devices), "strategy": strategy,
             "num_nodes": num_nodes, "precision": precision}
    extra = [f"train.{k}={v}" for k, v in flags.items() if v is not None]
    cfg = load_run_config(config, list(overrides or []) + extra)
    out = out or Path("runs") / f"{config.parent.name}-{config.stem}".strip("-")
    fit(cfg, out, resume=resume, progress=progress)
    typer.echo(f"checkpoint written to {out}")


def _devices(value: str | None):
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        from mien.errors import ConfigError

        raise ConfigError(f"--devices {value!r} must be a number or 'auto'") from None
