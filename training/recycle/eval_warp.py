"""`drivesim eval warp`: temporal consistency of a generator's frames (the warping error).

Registered in the `drivesim eval` group (`training/eval_command.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ...errors import DrivesimError


@click.command("warp")
@click.option("--model", required=True, type=click.Path(path_type=Path),
              help="A generator's run or model directory (e.g. a recycle or cyclegan run, a converted CycleGAN).")
@click.option("--data", multiple=True, required=True, metavar="SRC",
              help="Recorded sessions (a file or a folder of them) or a folder of consecutive frames; repeat for "
                   "more.")
@click.option("--camera", default=None, help="Camera of session sources [default: the first].")
@click.option("--frames", type=int, default=None, help="Use the first N frames of each source [default: all].")
@click.option("--flow", type=click.Choice(["auto", "gt", "farneback"]), default="auto", show_default=True,
              help="auto: the recorded flow where sessions have it, else Farneback estimated on the frames.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the result as JSON.")
def warp_command(model: Path, data: tuple[str, ...], camera: str | None, frames: int | None, flow: str,
                 device: str, json_out: Path | None) -> None:
    """Warping error between consecutive generated frames (L1 on [0, 1], visible pixels), beside
    that of the source frames themselves. Lower is steadier."""
    from .temporal import warping_error

    if json_out is not None and not json_out.resolve().parent.is_dir():
        raise DrivesimError(f"--json {json_out}: folder {json_out.resolve().parent} does not exist; create it first")
    r = warping_error(model, data, camera=camera, frames=frames, flow=flow, device=device)
    if json_out is not None:
        json_out.write_text(json.dumps({**r.to_dict(), "model": str(model), "data": list(data)}, indent=2) + "\n")
    flow_name = {"recorded": "recorded flow", "farneback": "Farneback flow"}.get(r.flow, "recorded and estimated flow")
    click.echo(f"warping error {r.warping_error:.5f} (source frames {r.input_warping_error:.5f}; {r.pairs} frame "
               f"pairs from {len(r.sources)} source(s), {flow_name}, {100 * r.valid_fraction:.0f}% of pixels "
               "visible)")
