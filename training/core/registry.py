"""Explicit registries: network classes, model families (training tasks) and checkpoint converters.

Values are `module:attribute` paths imported on first use, so `import drivesim_carla.training`
stays cheap and a family's heavy imports load only when it is asked for.
"""

from __future__ import annotations

from importlib import import_module

from ...errors import DrivesimError

_PKG = "drivesim_carla.training"

# network name (as written in a model's config.json) -> class
NETWORKS: dict[str, str] = {
    "pix2pix.UnetGenerator": f"{_PKG}.pix2pix.networks:UnetGenerator",
    "pix2pix.NLayerDiscriminator": f"{_PKG}.pix2pix.networks:NLayerDiscriminator",
    "spade.SPADEGenerator": f"{_PKG}.spade.generators:SPADEGenerator",
    "spade.Pix2PixHDGenerator": f"{_PKG}.spade.generators:Pix2PixHDGenerator",
    "spade.ASAPNetGenerator": f"{_PKG}.spade.generators:ASAPNetGenerator",
    "spade.MultiscaleDiscriminator": f"{_PKG}.spade.discriminators:MultiscaleDiscriminator",
    "spade.ConvEncoder": f"{_PKG}.spade.encoder:ConvEncoder",
    "semdisc.SemDiscDiscriminator": f"{_PKG}.semdisc.discriminator:SemDiscDiscriminator",
    "advent.DeepLabV2": f"{_PKG}.advent.networks:DeepLabV2",
    "advent.EntropyDiscriminator": f"{_PKG}.advent.networks:EntropyDiscriminator",
    "cyclegan.ResnetGenerator": f"{_PKG}.recycle.networks:ResnetGenerator",
}

# family (as in `drivesim train FAMILY`) -> its Task class
FAMILIES: dict[str, str] = {
    "pix2pix": f"{_PKG}.pix2pix.task:Pix2PixTask",
    "spade": f"{_PKG}.spade.task:SPADETask",
    "semdisc": f"{_PKG}.semdisc.task:SemDiscTask",
    "advent": f"{_PKG}.advent.task:AdventTask",
    "recycle": f"{_PKG}.recycle.task:RecycleTask",
    "cyclegan": f"{_PKG}.recycle.task:CycleGANTask",
}

# family (as in `drivesim convert FAMILY`) -> converter function (see `checkpoint.Converted`)
CONVERTERS: dict[str, str] = {
    "pix2pix": f"{_PKG}.pix2pix.convert:convert",
    "spade": f"{_PKG}.spade.convert:convert",
    "semdisc": f"{_PKG}.semdisc.convert:convert",
    "advent": f"{_PKG}.advent.convert:convert",
    "cyclegan": f"{_PKG}.recycle.convert:convert",
}


def resolve(registry: dict[str, str], name: str, what: str):
    """The object registered as `name`; an unknown name is an error that lists the valid ones."""
    if name not in registry:
        raise DrivesimError(f"unknown {what} '{name}'; valid: {', '.join(sorted(registry))}")
    module, _, attr = registry[name].partition(":")
    return getattr(import_module(module), attr)
