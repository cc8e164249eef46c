"""The `drivesim` command line."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import click

from .errors import DrivesimError

log = logging.getLogger("drivesim")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="drivesim-carla")
def cli(verbose: int) -> None:
    """drivesim: photoreal, closed-loop driving simulation around CARLA."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _world_options(f):
    """Options shared by `run` and `record`: the world, the scenario, the agent, the cameras."""
    options = [
        click.option("--world", default="embedded", show_default=True, help="World backend: embedded or carla."),
        click.option("--scenario", default="default", show_default=True,
                     help="Built-in scenario name or a YAML file."),
        click.option("--agent", default="autopilot", show_default=True,
                     help="autopilot, manual, segmentation-autopilot, or module:Class."),
        click.option("--perception", "perception", type=click.Path(path_type=Path), default=None,
                     help="A segmenter (advent run or converted model) the agent sees through (obs.perception)."),
        click.option("--perception-device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                     show_default=True, help="Where the segmenter runs."),
        click.option("--synth", default="none", show_default=True,
                     help="none (the world's render), or a run directory or converted model directory."),
        click.option("--synth-device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where the generator runs (auto: CUDA when present)."),
        click.option("--synth-precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
                     show_default=True, help="Generator precision on CUDA (auto: bf16 when supported, else fp16)."),
        click.option("--synth-compile", is_flag=True, help="torch.compile the generator (CUDA; slow first frame)."),
        click.option("--frames", type=int, default=None,
                     help="Ticks to run [default: the scenario's, ending early at the route's end]."),
        click.option("--seed", type=int, default=0, show_default=True, help="World and traffic seed."),
        click.option("--width", type=int, default=None, help="Camera width in pixels."),
        click.option("--height", type=int, default=None, help="Camera height in pixels."),
        click.option("--style", default=None, help="Render style of the embedded world (flat, textured)."),
        click.option("--weather", default=None, help="clear, dusk, night, fog or rain."),
        click.option("--summary", "summary_path", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="Write a JSON summary here."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--host", default="127.0.0.1", show_default=True, help="CARLA server host (--world carla)."),
        click.option("--port", type=int, default=2000, show_default=True,
                     help="CARLA server RPC port (--world carla)."),
        click.option("--timeout", type=float, default=10.0, show_default=True,
                     help="Seconds to wait for the CARLA server and for each sensor (--world carla)."),
        click.option("--map", "carla_map", default=None,
                     help="CARLA map to load (--world carla); default: keep the current one."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _record_options(f):
    options = [
        click.option("--overwrite", is_flag=True, help="Replace an existing recording."),
        click.option("--flush-interval", type=float, default=1.0, show_default=True,
                     help="Seconds between flushes to disk (what a crash can lose at most)."),
        click.option("--codec", type=click.Choice(["zstd", "none"]), default="zstd", show_default=True,
                     help="Compression of the recorded images."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.command()
@_world_options
@click.option("--headless", is_flag=True, help="No window.")
@click.option("--video", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the panels to this mp4.")
@click.option("--record", "record_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Record the episode to this HDF5 session file.")
@_record_options
def run(headless: bool, video: Path | None, record_path: Path | None, **kw) -> None:
    """Drive one episode in closed loop."""
    _drive(headless=headless, video=video, record_path=record_path, **kw)


@cli.command()
@_world_options
@click.option("--cameras", "camera_spec", default=None,
              help="Cameras and streams to record, e.g. 'front:rgb+semantic+depth+flow,rear:rgb' "
                   "(names from the scenario; 'all' = every stream) [default: the scenario's].")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="The session file (.h5), or a folder to create a named one in.")
@_record_options
def record(camera_spec: str | None, out: Path, **kw) -> None:
    """Record an episode (headless, autopilot by default) to an HDF5 session file."""
    if out.suffix not in (".h5", ".hdf5"):
        if not out.is_dir():
            raise DrivesimError(f"--out {out}: not a folder and not a .h5 file; create the folder or name a .h5 file")
        stem = Path(kw["scenario"]).stem
        out = out / f"{stem}_seed{kw['seed']}_{time.strftime('%Y%m%d-%H%M%S')}.h5"
    _drive(headless=True, video=None, record_path=out, camera_spec=camera_spec, **kw)


def episode_config(*, world: str, scenario: str, agent: str, perception: Path | None, perception_device: str,
                   synth: str, synth_device: str, synth_precision: str, synth_compile: bool, frames: int | None,
                   seed: int, width: int | None, height: int | None, style: str | None, weather: str | None,
                   headless: bool, video: Path | None, summary_path: Path | None, host: str, port: int,
                   timeout: float, carla_map: str | None, record_path: Path | None, overwrite: bool,
                   flush_interval: float, codec: str, camera_spec: str | None = None, **_: object):
    """The `EpisodeConfig` of `run`/`record`'s options; bad values are one line naming the option."""
    from .episode import EpisodeConfig

    if frames is not None and frames < 1:
        raise DrivesimError(f"--frames must be at least 1, got {frames}")
    for name, value in (("--width", width), ("--height", height)):
        if value is not None and not 16 <= value <= 8192:
            raise DrivesimError(f"{name} {value} is invalid; use 16..8192 pixels")
    if not 1 <= port <= 65535:
        raise DrivesimError(f"--port {port} is invalid; CARLA's RPC port is 1..65535 (2000 by default)")
    if camera_spec is not None:
        from .episode import parse_camera_spec

        try:
            parse_camera_spec(camera_spec)
        except ValueError as e:
            raise DrivesimError(f"--cameras: {e}") from None
    return EpisodeConfig.from_dict({
        "world": world, "scenario": scenario, "agent": agent, "seed": seed, "frames": frames,
        "width": width, "height": height, "style": style, "weather": weather, "cameras": camera_spec,
        "window": not headless,
        "endpoint": {"host": host, "port": port, "timeout": timeout, "map": carla_map},
        "synth": {"model": synth, "device": synth_device, "precision": synth_precision, "compile": synth_compile},
        "perception": {"model": str(perception), "device": perception_device} if perception else None,
        "outputs": {"record": record_path, "video": video, "summary": summary_path, "flush_interval": flush_interval,
                    "codec": codec, "overwrite": overwrite},
    }, source="options")


def _drive(*, quiet: bool, **options) -> None:
    """One closed-loop episode: what `run` and `record` share."""
    from .episode import assemble

    config = episode_config(**options)
    with assemble(config) as episode:
        bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            kind = "record" if config.outputs.record else "run"
            bar = tqdm(total=episode.frames, unit="frame", desc=f"drivesim {kind}", file=sys.stderr)
        try:
            result = episode.run(progress=bar)
        finally:
            if bar is not None:
                bar.close()
    summary, record_path = result.summary, config.outputs.record
    click.echo(
        f"{summary['frames']} frames, {summary['sim_seconds']:.1f} s simulated in "
        f"{summary['wall_seconds']:.1f} s ({summary['fps']:.1f} fps); "
        f"{summary['distance_m']:.1f} m driven, route {100 * summary['route_completion']:.0f}% "
        f"of {summary['route_length_m']:.0f} m, {summary['collisions']} collisions, "
        f"{summary['lane_invasions']} lane invasions"
        + (f"; recorded to {record_path}" if record_path is not None else "")
    )
    if result.interrupted:
        sys.exit(130)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--repair", is_flag=True,
              help="Trim an interrupted recording to its last whole frame and mark it complete.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect(file: Path, repair: bool, as_json: bool) -> None:
    """Summarize a session file (cameras, frames, duration, distance, events, completeness)."""
    from .recorders import inspect_session, repair_session

    info = inspect_session(file)
    if repair and not info["complete"]:
        kept = repair_session(file)
        click.echo(f"repaired {file}: kept {kept} whole frames, marked complete", err=True)
        info = inspect_session(file)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(_describe_session(info))
    if not info["complete"]:
        sys.exit(1)


def _describe_session(info: dict) -> str:
    state = "complete" if info["complete"] else "INCOMPLETE (interrupted; `drivesim inspect --repair` trims it)"
    lines = [
        f"{info['path']}: {state}",
        f"  {info['frames']} frames, {info['duration_s']:.1f} s at {info['fps']:g} fps, "
        f"{info['distance_m']:.1f} m driven, {info['bytes'] / 1e6:.1f} MB",
        f"  world {info['world']} map {info['map']} seed {info['seed']} style {info['style']} "
        f"weather {info['weather']} agent {info['agent']} synth {info['synth']}",
        "  events: " + ", ".join(f"{k} {v}" for k, v in info["events"].items()),
    ]
    for name, cam in info["cameras"].items():
        streams = ", ".join(f"{k} {'x'.join(map(str, v['shape']))} {v['dtype']} ({v['codec']})"
                            for k, v in cam["streams"].items())
        lines.append(f"  camera {name} {cam['size'][0]}x{cam['size'][1]} fov {cam['fov']:g}: {streams}")
    return "\n".join(lines)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["cityscapes"]), default="cityscapes", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--camera", default=None, help="Camera to export [default: the first].")
@click.option("--split", default="train", show_default=True, help="Cityscapes split folder name.")
@click.option("--city", default="drivesim", show_default=True, help="Cityscapes city name (file prefix).")
@click.option("--every", type=int, default=1, show_default=True, help="Export every n-th frame.")
def export(file: Path, fmt: str, out: Path, camera: str | None, split: str, city: str, every: int) -> None:
    """Export a session to another dataset layout (Cityscapes: leftImg8bit/ and gtFine/)."""
    from .recorders.export import export_cityscapes

    n = export_cityscapes(file, out, camera=camera, split=split, city=city, every=every)
    click.echo(f"exported {n} frames of {file} to {out} ({fmt} layout)")


def _register_commands() -> None:
    from .serve.command import serve
    from .training.commands import convert, train
    from .training.eval_command import eval_group

    cli.add_command(serve)
    cli.add_command(train)
    cli.add_command(convert)
    cli.add_command(eval_group)


_register_commands()


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2. SIGTERM (timeout,
    docker stop, batch pools) unwinds like Ctrl-C, so a CARLA server gets its settings back."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="drivesim", standalone_mode=False)
    except DrivesimError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
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
