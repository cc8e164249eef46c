"""HDF5 recording of closed-loop sessions, and the readers and datasets that load them back.

The file layout is documented in docs/recording-format.md.
"""

from .hdf5 import (
    FORMAT_VERSION,
    Recorder,
    consistent_frames,
    inspect_session,
    open_session_file,
    repair_session,
)

__all__ = ["FORMAT_VERSION", "Recorder", "consistent_frames", "inspect_session", "open_session_file",
           "repair_session"]
