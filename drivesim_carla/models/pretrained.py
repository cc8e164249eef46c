"""Model directories: `config.json` (the network's registry name, its constructor kwargs and
metadata such as the input it expects) beside `model.safetensors`.

A training run directory holds one in `model/`; `read_card` and `from_pretrained` accept either.
Nothing is unpickled: weights are safetensors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import DrivesimError
from .registry import NETWORKS, resolve

FORMAT = "drivesim-model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class ModelCard:
    """What `config.json` says about a saved network."""

    directory: Path
    network: str  # registry name, e.g. "spade.SPADEGenerator"
    config: dict  # constructor kwargs
    meta: dict = field(default_factory=dict)  # e.g. {"input": InputSpec.to_dict(), "family": ...}


def save_pretrained(net: nn.Module, directory: str | Path, *, network: str, meta: dict | None = None) -> Path:
    """Write `net` (which must have `.config`, its constructor kwargs) as a model directory."""
    if network not in NETWORKS:
        raise DrivesimError(f"cannot save unregistered network '{network}'; valid: {', '.join(sorted(NETWORKS))}")
    config = getattr(net, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"{type(net).__name__} has no `config` dict of constructor kwargs")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    _atomic(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"network": network}))
    card = {"format": FORMAT, "version": FORMAT_VERSION, "network": network, "config": config, "meta": meta or {}}
    _atomic(directory / CONFIG_NAME, lambda p: p.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n"))
    return directory


def read_card(directory: str | Path) -> ModelCard:
    """The model card of a model directory or of a run directory (its `model/`)."""
    directory = _model_dir(Path(directory))
    try:
        card = json.loads((directory / CONFIG_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DrivesimError(f"{directory / CONFIG_NAME}: not a readable model config ({e}); "
                            "re-save the model or re-run `drivesim convert`") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise DrivesimError(f"{directory / CONFIG_NAME}: not a drivesim model config; give a run directory "
                            "or the output of `drivesim convert`")
    if card.get("version") != FORMAT_VERSION:
        raise DrivesimError(f"{directory / CONFIG_NAME}: model format version {card.get('version')!r}, this "
                            f"toolkit reads version {FORMAT_VERSION}; use the matching drivesim version")
    network, config, meta = card.get("network"), card.get("config"), card.get("meta", {})
    if network not in NETWORKS or not isinstance(config, dict) or not isinstance(meta, dict):
        raise DrivesimError(f"{directory / CONFIG_NAME}: unknown network {network!r} or malformed config; "
                            f"valid networks: {', '.join(sorted(NETWORKS))}")
    return ModelCard(directory, network, config, meta)


def from_pretrained(directory: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network of a model or run directory, load its weights, return it in eval mode."""
    card = read_card(directory)
    cls = resolve(NETWORKS, card.network, "network")
    try:
        net = cls(**card.config)
    except (TypeError, ValueError) as e:
        raise DrivesimError(f"{card.directory / CONFIG_NAME}: cannot build {card.network} from its config "
                            f"({e}); the file is damaged or from another drivesim version") from None
    load_weights(net, card.directory / WEIGHTS_NAME)
    return net.to(device).eval()


def load_weights(net: nn.Module, path: Path) -> None:
    """Load a safetensors file into `net`, strictly; mismatches name the keys."""
    if not path.is_file():
        raise DrivesimError(f"{path}: weights file missing; re-save the model or re-run `drivesim convert`")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise DrivesimError(f"{path}: not a readable safetensors file ({e})") from None
    check_state_dict(net, state, path)
    net.load_state_dict(state)


def check_state_dict(net: nn.Module, state: dict[str, torch.Tensor], source: Path | str) -> None:
    """Raise a one-line error unless `state` has exactly `net`'s keys and shapes."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                parts.append(f"{len(keys)} {name}: {', '.join(keys[:3])}{more}")
                if name == "wrong shape":
                    k = keys[0]
                    parts[-1] += f" [{tuple(state[k].shape)} vs {tuple(own[k].shape)}]"
        raise DrivesimError(f"{source}: weights do not fit {type(net).__name__} ({'; '.join(parts)}); "
                            "is it a checkpoint of another model or preset?")


def _model_dir(directory: Path) -> Path:
    if (directory / CONFIG_NAME).is_file():
        return directory
    if (directory / "model" / CONFIG_NAME).is_file():
        return directory / "model"
    if not directory.exists():
        raise DrivesimError(f"{directory}: not found; give a training run directory or a converted model directory")
    raise DrivesimError(f"{directory}: no {CONFIG_NAME} (nor model/{CONFIG_NAME}); give a training run directory "
                        "(after its first checkpoint) or the output of `drivesim convert`")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
