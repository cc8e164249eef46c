"""The reference projects' checkpoints: `.pth` state dicts loaded with `weights_only=True`, and
what converters return. Our own model directories are `drivesim_carla.models.pretrained`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ...errors import DrivesimError


class Converted(NamedTuple):
    """A reference checkpoint turned into one of our networks (what converters return)."""

    network: str
    net: nn.Module
    meta: dict


def load_reference_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A reference project's `.pth` state dict, loaded with `weights_only=True`.

    Unwraps `{"state_dict": ...}`/`{"model": ...}` containers and DataParallel's `module.` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise DrivesimError(f"{path}: checkpoint not found; give the path of a .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and format errors all mean the same to the user
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DrivesimError(f"{path}: not a loadable PyTorch state dict with weights_only=True ({msg[:160]})") from None
    for key in ("state_dict", "model", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DrivesimError(f"{path}: not a state dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj
