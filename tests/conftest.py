"""Shared fixtures."""

from __future__ import annotations

import os

import hub_weights
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n N`: N processes share the cores; one thread each
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory):
    """A private TORCH_HOME (the torch hub cache) for this test process; install weights into it
    with the `hub_weights` helpers. Downloads are impossible here, so a missing file fails loudly."""
    home = tmp_path_factory.mktemp("torch_home")
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = old


@pytest.fixture(scope="session")
def vgg19_weights(torch_home):
    """Random VGG19 weights where torchvision's loader finds them."""
    return hub_weights.install_vgg19(torch_home)


@pytest.fixture(scope="session")
def alexnet_weights(torch_home):
    """Random AlexNet weights where torchvision's loader (as lpips calls it) finds them."""
    return hub_weights.install_alexnet(torch_home)


@pytest.fixture(scope="session")
def fid_weights(torch_home):
    """Random FID Inception weights where pytorch-fid's loader finds them."""
    return hub_weights.install_fid_inception(torch_home)
