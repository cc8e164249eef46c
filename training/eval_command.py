"""`drivesim eval`: image metrics between a real and a synthesized set (FID, LPIPS).

Sources are folders of PNG/JPEG, session files or folders of sessions (the rgb of `--camera`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import DrivesimError


def _source_option(side: str):
    return click.option(f"--{side}", required=True, metavar="SRC",
                        help=f"The {side} images: a folder of PNG/JPEG, a session file or a folder of sessions.")


def _common(f):
    for option in reversed((
        _source_option("real"),
        _source_option("fake"),
        click.option("--camera", default=None, help="Camera of session sources [default: the first]."),
        click.option("--batch-size", type=int, default=None, help="Images per forward pass."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Also write the result as JSON."),
    )):
        f = option(f)
    return f


def _check_writable(path: Path | None) -> None:
    if path is None:
        return
    parent = path.resolve().parent
    if not parent.is_dir():
        raise DrivesimError(f"--json {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise DrivesimError(f"--json {path}: folder {parent} is not writable")


def _report(line: str, result: dict, json_out: Path | None, real: str, fake: str) -> None:
    if json_out is not None:
        json_out.write_text(json.dumps({**result, "real": real, "fake": fake}, indent=2) + "\n")
    click.echo(line)


@click.group("eval")
def eval_group() -> None:
    """Evaluate images and models: FID, LPIPS, segmentation mIoU, temporal warping error."""


@eval_group.command("fid")
@_common
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth [default: the torch hub cache].")
@click.option("--dims", type=click.Choice(["64", "192", "768", "2048"]), default="2048", show_default=True,
              help="Inception feature block (2048 is the standard FID).")
def fid_command(real: str, fake: str, camera: str | None, batch_size: int | None, device: str,
                json_out: Path | None, weights: Path | None, dims: str) -> None:
    """Fréchet Inception Distance (pytorch-fid) between --real and --fake."""
    from .metrics import fid

    _check_writable(json_out)
    r = fid(real, fake, weights=weights, dims=int(dims), batch_size=batch_size or 50, device=device, camera=camera)
    _report(f"FID {r.fid:.4f} ({r.dims}-d Inception features; {r.n_real} real, {r.n_fake} fake images)",
            r.to_dict(), json_out, real, fake)


@eval_group.command("lpips")
@_common
@click.option("--net", type=click.Choice(["alex", "vgg"]), default="alex", show_default=True,
              help="LPIPS trunk network.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The trunk's torchvision ImageNet weights (alexnet-owt-7be5be79.pth or vgg16-397923af.pth) "
                   "[default: the torch hub cache].")
def lpips_command(real: str, fake: str, camera: str | None, batch_size: int | None, device: str,
                  json_out: Path | None, net: str, weights: Path | None) -> None:
    """Mean LPIPS between --real and --fake, paired by sorted order (sizes must match)."""
    from .metrics import lpips_distance

    _check_writable(json_out)
    r = lpips_distance(real, fake, net=net, weights=weights, batch_size=batch_size or 16, device=device,
                       camera=camera)
    _report(f"LPIPS ({r.net}) {r.mean:.4f} (std {r.std:.4f}, {r.n} pairs)", r.to_dict(), json_out, real, fake)


def _register_family_commands() -> None:
    """Commands the model families bring (their modules import torch only when a command runs)."""
    from .advent.eval_miou import miou
    from .recycle.eval_warp import warp_command

    eval_group.add_command(miou)
    eval_group.add_command(warp_command)


_register_family_commands()
