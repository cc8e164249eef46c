"""`drivesim train` and `drivesim convert`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ..errors import DrivesimError

log = logging.getLogger(__name__)


@click.command()
@click.argument("family")
@click.option("--data", "data", multiple=True, type=click.Path(path_type=Path),
              help="A session file (.h5) or a folder of sessions; repeat for more.")
@click.option("--cityscapes", type=click.Path(path_type=Path), default=None,
              help="Root of a Cityscapes-style folder (leftImg8bit/, gtFine/) to train on too.")
@click.option("--target", "target", multiple=True, type=click.Path(path_type=Path),
              help="Target domain (unlabelled): sessions, a folder of images or a Cityscapes root; repeat for more "
                   "(advent, recycle, cyclegan).")
@click.option("--gta5", type=click.Path(path_type=Path), default=None,
              help="Root of a GTA5-layout dataset (images/, labels/) as labelled source (advent).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="YAML file of options (unknown keys are errors).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one option, e.g. --set steps=50 --set lambda_vgg=0.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory (checkpoints, model/, TensorBoard logs).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(family: str, data: tuple[Path, ...], cityscapes: Path | None, target: tuple[Path, ...],
          gta5: Path | None, config_path: Path | None,
          overrides: tuple[str, ...], out: Path, resume: bool, quiet: bool) -> None:
    """Train a model family (pix2pix, spade, semdisc, advent, recycle, cyclegan)."""
    from ..models.registry import resolve
    from .core.config import load_config, parse_overrides
    from .core.data import Sources
    from .core.registry import FAMILIES
    from .core.trainer import Trainer, load_run_config

    task_cls = resolve(FAMILIES, family, "model family")
    extra = parse_overrides(overrides)
    if resume:
        if config_path is not None:
            raise DrivesimError("--resume continues with the run's saved config; drop --config (--set may change "
                                "steps)")
        config, saved = load_run_config(task_cls, out, extra)
        if not data and cityscapes is None and not target and gta5 is None:
            data = tuple(Path(p) for p in saved.get("data", []))
            cityscapes = Path(saved["cityscapes"]) if saved.get("cityscapes") else None
            target = tuple(Path(p) for p in saved.get("target", []))
            gta5 = Path(saved["gta5"]) if saved.get("gta5") else None
    else:
        config = load_config(task_cls.Config, config_path, extra)
    more = {"target": tuple(target)} if target else {}
    if gta5 is not None:
        more["gta5"] = gta5
    sources = Sources(tuple(data), cityscapes, more)
    trainer = Trainer(task_cls, config, out, sources, resume=resume, progress=not quiet and sys.stderr.isatty())
    summary = trainer.fit()
    if not trainer.dist.main:  # under torchrun, rank 0 speaks for the run
        return
    scores = {k: v for k, v in summary["eval"].items()  # the headline numbers; tables are in metrics.jsonl
              if k != "samples" and "/" not in k and isinstance(v, (int, float))}
    ev = ", ".join(f"{k} {v:.4g}" for k, v in scores.items())
    held = f"; held-out ({summary['eval'].get('samples', '?')} samples) {ev}" if ev else ""
    click.echo(f"trained {family} for {summary['steps']} steps in {summary['seconds']:.0f} s on "
               f"{summary['device']} x{summary['world_size']}{held}; model in {out / 'model'}")


@click.command()
@click.argument("family")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Model directory to write (config.json + model.safetensors).")
@click.option("--preset", default=None, help="What the checkpoint cannot say itself, e.g. cityscapes.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory.")
def convert(family: str, source: Path, out: Path, preset: str | None, overwrite: bool) -> None:
    """Convert a reference implementation's .pth checkpoint into a drivesim model directory."""
    from ..models.pretrained import CONFIG_NAME, from_pretrained, save_pretrained
    from ..models.registry import resolve
    from .core.checkpoint import load_reference_checkpoint
    from .core.registry import CONVERTERS

    converter = resolve(CONVERTERS, family, "checkpoint family")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DrivesimError(f"--out {out} already holds files; pass --overwrite or choose a new folder")
    if out.exists() and not overwrite and (out / CONFIG_NAME).exists():
        raise DrivesimError(f"--out {out} is a model directory; pass --overwrite to replace it")
    state = load_reference_checkpoint(source)
    converted = converter(state, preset=preset)
    meta = {**converted.meta, "source_file": source.name}
    save_pretrained(converted.net, out, network=converted.network, meta=meta)
    net = from_pretrained(out)  # what users will load: check it builds and loads
    n = sum(p.numel() for p in net.parameters())
    click.echo(f"converted {source} ({family}) -> {out}: {converted.network}, {n / 1e6:.1f} M parameters")
