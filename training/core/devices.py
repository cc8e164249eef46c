"""Where tensors go: one rule for the trainer, the bridge and evaluation."""

from __future__ import annotations

import torch

from ...errors import DrivesimError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`; CUDA asked for without one is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DrivesimError(f"unknown device '{device}'; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DrivesimError(f"device {device}: PyTorch sees no CUDA device here; use auto or cpu")
    return dev
