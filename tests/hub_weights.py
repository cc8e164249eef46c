"""Random-weight files, in the formats and at the places the libraries' own loaders look for
pretrained weights (the torch hub cache under $TORCH_HOME), so the real loading code runs offline.

The large fully connected layers are stored as stride-0 views of one value: the file keeps a
single element, `load_state_dict` broadcasts it. Convolutions get the network's own random init.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _checkpoints(torch_home: Path) -> Path:
    d = Path(torch_home) / "hub" / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _compact(state: dict, prefixes: tuple[str, ...]) -> dict:
    """Replace the tensors under `prefixes` by tiny stride-0 views of the right shape."""
    return {k: (torch.full((1,), 0.01).expand(v.shape) if k.startswith(prefixes) else v) for k, v in state.items()}


def install_vgg19(torch_home: Path, seed: int = 0) -> Path:
    """torchvision's VGG19 (IMAGENET1K_V1) file with random convolutions."""
    import torchvision

    path = _checkpoints(torch_home) / torchvision.models.VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    if not path.exists():
        torch.manual_seed(seed)
        state = torchvision.models.vgg19(weights=None).state_dict()
        torch.save(_compact(state, ("classifier.",)), path)
    return path
