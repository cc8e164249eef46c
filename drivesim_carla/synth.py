"""Synthesizers: what replaces the simulator's rendering before the agent sees a frame."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from .errors import DrivesimError
from .types import Frame


class Synthesizer(ABC):
    """Maps a world frame to the image the agent sees (h w 3 uint8, primary camera).

    `streams` lists the camera streams the synthesizer needs (e.g. "semantic" for a
    label-to-image generator), so the world renders them.
    """

    name: str = "synth"
    streams: tuple[str, ...] = ()

    @abstractmethod
    def __call__(self, frame: Frame) -> np.ndarray: ...

    def close(self) -> None:
        """Free models and device memory."""


class WorldRender(Synthesizer):
    """`--synth none`: the world's own rendering, unchanged."""

    name = "none"
    streams = ("rgb",)

    def __call__(self, frame: Frame) -> np.ndarray:
        cam = frame.camera
        if cam.rgb is None:
            raise DrivesimError(f"camera '{cam.spec.name}' has no rgb stream; add rgb to its "
                                "streams in the scenario")
        return cam.rgb


def load_synthesizer(spec: str) -> Synthesizer:
    """`none`, or a trained generator's run directory."""
    if spec == "none":
        return WorldRender()
    path = Path(spec)
    if not path.exists():
        raise DrivesimError(f"synthesizer not found: {path}; pass --synth none or a trained "
                            "run directory")
    raise DrivesimError(f"cannot load {path}: trained generators arrive with the synthesis "
                        "issue; use --synth none for now")
