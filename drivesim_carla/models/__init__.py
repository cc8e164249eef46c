"""The inference side of models: model directories (safetensors + `config.json`), the network
registry, what a network takes as input and how it is encoded, and device and precision choice.

The loop, the bridge (`synth`), agents and worlds load models through this package only; the
training side (`drivesim_carla.training`) builds on it and is never imported by them.
"""

from importlib import import_module

_LAZY = {
    "ModelCard": "pretrained", "save_pretrained": "pretrained", "read_card": "pretrained",
    "from_pretrained": "pretrained", "load_weights": "pretrained", "check_state_dict": "pretrained",
    "CONFIG_NAME": "pretrained", "WEIGHTS_NAME": "pretrained",
    "NETWORKS": "registry", "resolve": "registry",
    "InputSpec": "inputs", "encode_input": "inputs", "instance_edges": "inputs",
    "resolve_device": "devices", "autocast_dtype": "devices", "PRECISIONS": "devices",
    "load_segmenter": "segmenter",
}


def __getattr__(name: str):  # torch loads with the first model, not with `import drivesim_carla.models`
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
