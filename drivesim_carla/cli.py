"""The `drivesim` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from .errors import DrivesimError

log = logging.getLogger("drivesim")


def _write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _check_writable(path: Path | None, what: str) -> None:
    if path is None:
        return
    parent = path.resolve().parent
    if not parent.is_dir():
        raise DrivesimError(f"{what} {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise DrivesimError(f"{what} {path}: folder {parent} is not writable")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="drivesim-carla")
def cli(verbose: int) -> None:
    """drivesim: photoreal, closed-loop driving simulation around CARLA."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.option("--world", default="embedded", show_default=True,
              help="World backend: embedded or carla.")
@click.option("--scenario", default="default", show_default=True,
              help="Built-in scenario name or a YAML file.")
@click.option("--agent", default="autopilot", show_default=True,
              help="autopilot, manual, or module:Class.")
@click.option("--synth", default="none", show_default=True,
              help="none (the world's render) or a trained generator's run directory.")
@click.option("--frames", type=int, default=None,
              help="Ticks to run [default: the scenario's, ending early at the route's end].")
@click.option("--seed", type=int, default=0, show_default=True, help="World and traffic seed.")
@click.option("--width", type=int, default=None, help="Camera width in pixels.")
@click.option("--height", type=int, default=None, help="Camera height in pixels.")
@click.option("--style", default=None, help="Render style of the embedded world (flat, textured).")
@click.option("--weather", default=None, help="clear, dusk, night, fog or rain.")
@click.option("--headless", is_flag=True, help="No window.")
@click.option("--video", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the panels to this mp4.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write a JSON summary here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--host", default="127.0.0.1", show_default=True, help="CARLA server host (--world carla).")
@click.option("--port", type=int, default=2000, show_default=True, help="CARLA server RPC port (--world carla).")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait for the CARLA server and for each sensor (--world carla).")
@click.option("--map", "carla_map", default=None, help="CARLA map to load (--world carla); default: keep the current one.")
def run(world: str, scenario: str, agent: str, synth: str, frames: int | None, seed: int,
        width: int | None, height: int | None, style: str | None, weather: str | None,
        headless: bool, video: Path | None, summary_path: Path | None, quiet: bool,
        host: str, port: int, timeout: float, carla_map: str | None) -> None:
    """Drive one episode in closed loop."""
    from .agents import make_agent
    from .loop import ClosedLoop
    from .scenarios import load_scenario
    from .synth import load_synthesizer
    from .world import make_world

    if frames is not None and frames < 1:
        raise DrivesimError(f"--frames must be at least 1, got {frames}")
    for name, value in (("--width", width), ("--height", height)):
        if value is not None and not 16 <= value <= 8192:
            raise DrivesimError(f"{name} {value} is invalid; use 16..8192 pixels")
    _check_writable(video, "--video")
    _check_writable(summary_path, "--summary")
    spec = load_scenario(scenario)
    cameras = spec.camera_specs(width, height)
    synthesizer = load_synthesizer(synth)
    viewer = None
    if not headless or video is not None:
        from .viewer import Viewer

        viewer = Viewer(headless=headless, video=video)
    agent_obj = make_agent(agent, viewer=viewer, target_speed=spec.ego.target_speed)
    sim = make_world(world, spec, seed, cameras=cameras, style=style, weather=weather,
                     host=host, port=port, timeout=timeout, carla_map=carla_map)
    n = frames if frames is not None else spec.frames
    loop = ClosedLoop(sim, agent_obj, synthesizer, viewer=viewer,
                      realtime=viewer is not None and not getattr(viewer, "headless", True))
    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=n, unit="frame", desc="drivesim run", file=sys.stderr)
    with sim:
        try:
            result = loop.run(n, seed=seed, stop_at_route_end=frames is None,
                              info={"scenario_text": spec.to_yaml()}, progress=bar)
        finally:
            if bar is not None:
                bar.close()
            agent_obj.close()
            synthesizer.close()
    summary = result.summary
    summary["scenario"] = spec.name
    if summary_path is not None:
        _write_json(summary_path, summary)
    click.echo(
        f"{summary['frames']} frames, {summary['sim_seconds']:.1f} s simulated in "
        f"{summary['wall_seconds']:.1f} s ({summary['fps']:.1f} fps); "
        f"{summary['distance_m']:.1f} m driven, route {100 * summary['route_completion']:.0f}% "
        f"of {summary['route_length_m']:.0f} m, {summary['collisions']} collisions, "
        f"{summary['lane_invasions']} lane invasions"
    )
    if result.interrupted:
        sys.exit(130)


def _register_commands() -> None:
    from .serve.command import serve

    cli.add_command(serve)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="drivesim", standalone_mode=False)
    except DrivesimError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()} (see drivesim {_command(argv)}--help)", err=True)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(1)


def _command(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return f"{args[0]} " if args and args[0] in cli.commands else ""


if __name__ == "__main__":
    main()
