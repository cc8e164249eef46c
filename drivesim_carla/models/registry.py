"""The network registry: the name written in a model's `config.json` -> the class that rebuilds it.

Values are `module:attribute` paths imported on first use, so a loop that never loads a model
never imports torch, and loading one imports only the module that defines its network.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import DrivesimError

_PKG = "drivesim_carla.training"

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


def resolve(registry: dict[str, str], name: str, what: str):
    """The object registered as `name`; an unknown name is an error that lists the valid ones."""
    if name not in registry:
        raise DrivesimError(f"unknown {what} '{name}'; valid: {', '.join(sorted(registry))}")
    module, _, attr = registry[name].partition(":")
    return getattr(import_module(module), attr)
