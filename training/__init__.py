"""Model families and the shared trainer.

`from_pretrained(DIR)` rebuilds the inference network of any run directory or converted
checkpoint (an `nn.Module` in eval mode). Families live in subpackages (`pix2pix`, `spade`,
`semdisc`); what they share (configs, trainer, losses, checkpoints) lives in `core`.
Importing this package is cheap: torch loads with the first name used from it.
"""

from importlib import import_module

_LAZY = {name: "models.pretrained" for name in ("from_pretrained", "save_pretrained", "read_card")}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"drivesim_carla.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
