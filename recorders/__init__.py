"""HDF5 recording of closed-loop sessions, and the readers and datasets that load them back.

The file layout is documented in docs/recording-format.md. The PyTorch datasets import torch,
so they load on first use: `drivesim record` never pays for it.
"""

from importlib import import_module

from .hdf5 import (
    FORMAT_VERSION,
    Recorder,
    consistent_frames,
    inspect_session,
    open_session_file,
    repair_session,
)
from .session import CameraInfo, EgoTable, Sample, Session

_LAZY = {
    "SessionIndex": "datasets", "PairedDataset": "datasets", "ClipDataset": "datasets",
    "UnpairedDataset": "datasets", "ImageFolder": "datasets", "Augment": "datasets",
    "map_labels": "datasets", "LABEL_MODES": "datasets",
    "CityscapesDataset": "cityscapes", "CityscapesSequence": "cityscapes",
    "export_cityscapes": "export",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FORMAT_VERSION", "CameraInfo", "EgoTable", "Recorder", "Sample", "Session", "consistent_frames",
           "inspect_session", "open_session_file", "repair_session", *_LAZY]
