"""Where tensors go and in which precision: one rule for the bridge, perception, evaluation and
the trainer."""

from __future__ import annotations

import torch

from ..errors import DrivesimError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for inference at `precision` on `device` (None: plain fp32).

    `auto` is bf16 on a CUDA device that supports it, else fp16 on CUDA, fp32 on the CPU."""
    if precision not in PRECISIONS:
        raise DrivesimError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
