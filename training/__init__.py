"""Model families and the shared trainer.

`from_pretrained(DIR)` rebuilds the inference network of any run directory or converted
checkpoint (an `nn.Module` in eval mode). Families live in subpackages (`pix2pix`, `spade`,
`semdisc`); what they share (configs, trainer, losses, checkpoints) lives in `core`.
Importing this package is cheap: torch loads with the first name used from it.
"""

from importlib import import_module

_LAZY = {"from_pretrained": "core.checkpoint", "save_pretrained": "core.checkpoint", "read_card": "core.checkpoint"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
