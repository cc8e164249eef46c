"""HDF5 recording of closed-loop sessions and the datasets that read them (arrives with the
recorders issue)."""
