"""The `drivesim serve` command."""

from __future__ import annotations

import click

from ..errors import DrivesimError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=2000, show_default=True)
@click.option("--town", default="0", show_default=True)
def serve(host: str, port: int, town: str) -> None:
    """Serve the embedded world to CARLA clients."""
    raise DrivesimError("drivesim serve is not available yet")
