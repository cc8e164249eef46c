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


def _relu_init(net: torch.nn.Module) -> torch.nn.Module:
    """He-normal convolutions: activations keep their scale through deep ReLU stacks (PyTorch's default
    init shrinks them at every layer: FID Inception's 2048-d features come out around 1e-8)."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net


def install_alexnet(torch_home: Path, seed: int = 0) -> Path:
    """torchvision's AlexNet (IMAGENET1K_V1) file with random convolutions: what lpips 0.1.4 loads through
    `torchvision.models.alexnet(pretrained=True)` (torchvision's legacy interface maps it to these weights)."""
    import torchvision

    path = _checkpoints(torch_home) / torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    if not path.exists():
        torch.manual_seed(seed)
        state = _relu_init(torchvision.models.alexnet(weights=None)).state_dict()
        torch.save(_compact(state, ("classifier.",)), path)
    return path


def fid_inception_state(seed: int = 0) -> dict:
    """A random state dict of pytorch-fid's FID Inception (`fid_inception_v3`'s network)."""
    from unittest import mock

    import torchvision
    from pytorch_fid import inception as fid_lib

    torch.manual_seed(seed)
    # the library's own builder, with its download and its load_state_dict turned off
    with mock.patch.object(fid_lib, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda *a, **k: None):
        net = fid_lib.fid_inception_v3()
    return _compact(_relu_init(net).state_dict(), ("fc.",))


def install_fid_inception(torch_home: Path, seed: int = 0) -> Path:
    """pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` with random convolutions, where its
    `load_state_dict_from_url(FID_WEIGHTS_URL)` looks for it."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    path = _checkpoints(torch_home) / FID_WEIGHTS_URL.rsplit("/", 1)[-1]
    if not path.exists():
        torch.save(fid_inception_state(seed), path)
    return path
