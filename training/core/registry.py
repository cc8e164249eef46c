"""Explicit registries of the training side: model families (training tasks) and checkpoint converters.
The network registry lives with model directories, in `drivesim_carla.models.registry`.

Values are `module:attribute` paths imported on first use, so `import drivesim_carla.training`
stays cheap and a family's heavy imports load only when it is asked for.
"""

from __future__ import annotations

_PKG = "drivesim_carla.training"

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
