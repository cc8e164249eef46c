"""The `drivesim serve` command. Imports stay light here (click, stdlib): the world and the
server load when the command runs."""

from __future__ import annotations

import re

import click

from ..errors import DrivesimError


def _town_seed(town: str | None) -> int | None:
    """`--town`: a seed (7) or a town name (Embedded0007)."""
    if town is None:
        return None
    m = re.fullmatch(r"(?:Embedded)?(\d{1,9})", town)
    if m is None:
        raise DrivesimError(f"--town {town}: give a seed (e.g. 3) or a town name such as "
                            "Embedded0003")
    return int(m.group(1))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=int, default=2000, show_default=True,
              help="RPC port; streaming uses the next one (0: any free pair).")
@click.option("--town", default=None, metavar="SEED|NAME",
              help="Embedded town by seed or name [default: the scenario's, else --seed].")
@click.option("--scenario", default="default", show_default=True,
              help="Built-in scenario or YAML file: NPC traffic, weather, style, fps.")
@click.option("--seed", type=int, default=0, show_default=True, help="World and traffic seed.")
@click.option("--style", default=None, help="Render style (flat, textured).")
@click.option("--weather", default=None, help="clear, dusk, night, fog or rain.")
@click.option("--sync", is_flag=True, help="Start in synchronous mode (no ticks until a client's).")
def serve(host: str, port: int, town: str | None, scenario: str, seed: int, style: str | None,
          weather: str | None, sync: bool) -> None:
    """Serve the embedded world to CARLA 0.9.16 clients (RPC + streaming protocol)."""
    from ..scenarios import load_scenario
    from .network import Server
    from .simulation import Simulation

    if not 0 <= port <= 65534:
        raise DrivesimError(f"--port {port} is invalid; use 1..65534 (or 0 for any free pair)")
    spec = load_scenario(scenario)
    town_seed = _town_seed(town)
    if town_seed is not None:
        spec = spec.model_copy(update={"town": spec.town.model_copy(update={"seed": town_seed})})

    def make(stream_port: int) -> Simulation:
        sim = Simulation(spec, seed, style=style, weather=weather, stream_port=stream_port)
        sim.settings.synchronous_mode = sync
        return sim

    server = Server(make, host, port)
    click.echo(f"serving {server.sim.map_name} on {host}:{server.port} "
               f"(streaming {server.stream_port})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.close()
