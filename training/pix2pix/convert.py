"""junyanz/pytorch-CycleGAN-and-pix2pix generator checkpoints (`latest_net_G.pth`) -> our U-Net.

The state dict gives the architecture: widths and channels from the outermost convolutions,
`num_downs` from how deeply the levels' `model` Sequentials nest, the norm from the keys (batch norm
has running statistics and bias-free convolutions; instance norm has convolution biases and no
norm parameters). What it cannot give, the input the model was trained on, comes from a preset.

Pre-0.4 PyTorch checkpoints differ in two ways the reference's loader papers over: instance-norm
layers carry running statistics (dropped, as the reference drops them) and batch-norm layers lack
`num_batches_tracked` (filled with 0; only training reads it).

The converted network comes back in eval mode (running batch statistics, no dropout). The
reference's `test.py` runs pix2pix in train mode unless given `--eval` (the paper's choice: batch
statistics of the test batch and dropout as noise), so its default outputs differ from these.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ...errors import DrivesimError
from ...models.inputs import InputSpec
from ...models.pretrained import check_state_dict
from ..core.checkpoint import Converted
from .networks import UnetGenerator

log = logging.getLogger(__name__)

SOURCE = "junyanz/pytorch-CycleGAN-and-pix2pix"
NETWORK = "pix2pix.UnetGenerator"
RUNNING = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Preset:
    input: InputSpec
    about: str


_RGB = InputSpec(kind="rgb", label_space="rgb")
PRESETS: dict[str, Preset] = {
    "cityscapes": Preset(InputSpec(kind="color", label_space="color"),
                         "Cityscapes label colours (gtFine_color.png) -> photo, as the reference's "
                         "datasets/prepare_cityscapes_dataset.py pairs them (train with --direction BtoA)"),
    "carla_color": Preset(InputSpec(kind="color", label_space="carla_color"), "CARLA's tag palette -> photo"),
    "facades_label2photo": Preset(_RGB, "CMP Facades label colours -> photo (published; an image input)"),
    "edges2shoes": Preset(_RGB, "edge map -> shoe photo (published)"),
    "sat2map": Preset(_RGB, "satellite photo -> map (published)"),
    "map2sat": Preset(_RGB, "map -> satellite photo (published)"),
    "day2night": Preset(_RGB, "day photo -> night photo (published)"),
    "rgb": Preset(_RGB, "any image -> image model"),
}
PRESETS["facades"] = PRESETS["facades_label2photo"]
DEFAULT_PRESET = "cityscapes"


def convert(state: dict[str, torch.Tensor], *, preset: str | None = None) -> Converted:
    """A reference pix2pix generator state dict -> `Converted("pix2pix.UnetGenerator", net, meta)`."""
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise DrivesimError(f"unknown pix2pix preset '{name}'; valid: {', '.join(sorted(PRESETS))}")
    _check_is_unet(state)
    config = infer_config(state)
    state = normalize_norm_stats(state, config["norm"])
    net = UnetGenerator(**config)
    check_state_dict(net, state, f"{SOURCE} generator checkpoint")
    net.load_state_dict(state)
    meta = {"family": "pix2pix", "input": PRESETS[name].input.to_dict(), "source": f"converted from {SOURCE}",
            "preset": name, "about": PRESETS[name].about}
    log.info("converted a pix2pix U-Net (%s), preset %s", config, name)
    return Converted(NETWORK, net.eval(), meta)


def infer_config(state: dict[str, torch.Tensor]) -> dict:
    """`UnetGenerator` kwargs from a reference U-Net state dict."""
    first, last = state["model.model.0.weight"], state.get("model.model.3.weight")
    if first.ndim != 4 or last is None or last.ndim != 4:
        raise DrivesimError("not a pix2pix U-Net generator state dict (its outermost convolutions are missing or "
                            "not 4-d); give the run's latest_net_G.pth")
    prefix, depth = "model.model.1.model.", 1  # the outermost level holds the next at index 1, the others at 3
    while any(k.startswith(prefix) for k in state):
        prefix, depth = f"{prefix}3.model.", depth + 1
    if depth < 5:
        raise DrivesimError(f"this U-Net has {depth} levels, pix2pix's have at least 5; the checkpoint is damaged "
                            "or not a pix2pix generator")
    if "model.model.0.bias" in state:
        norm = "instance"
    elif any(k.endswith(".running_mean") for k in state):
        norm = "batch"
    else:
        raise DrivesimError("this pix2pix U-Net has neither batch nor instance norm (trained with --norm none?); "
                            "only --norm batch and --norm instance generators convert")
    return dict(input_nc=int(first.shape[1]), output_nc=int(last.shape[1]), num_downs=depth,
                ngf=int(first.shape[0]), norm=norm, use_dropout=True)  # dropout leaves no weights; pix2pix's is on


def _check_is_unet(state: dict) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DrivesimError("not a state dict (a mapping of names to tensors); give the run's latest_net_G.pth")
    if "model.model.0.weight" in state:
        return
    w0, w1 = state.get("model.0.weight"), state.get("model.1.weight")
    if w0 is not None and w0.ndim == 4 and "model.2.weight" in state:
        raise DrivesimError(f"this is a {SOURCE} PatchGAN discriminator (latest_net_D.pth), not a generator; "
                            "give the run's latest_net_G.pth")
    if w1 is not None and w1.ndim == 4 and tuple(w1.shape[-2:]) == (7, 7):
        raise DrivesimError(f"this is a {SOURCE} ResNet generator (CycleGAN, --netG resnet_*), not a U-Net; "
                            "only pix2pix U-Net generators convert")
    some = ", ".join(list(state)[:3])
    raise DrivesimError(f"not a pix2pix U-Net generator (no model.model.0.weight; keys start {some}); "
                        "give the latest_net_G.pth of a --model pix2pix run")


def normalize_norm_stats(state: dict[str, torch.Tensor], norm: str) -> dict[str, torch.Tensor]:
    """Drop instance-norm running statistics; give batch norms a missing `num_batches_tracked` (old
    checkpoints of junyanz/pytorch-CycleGAN-and-pix2pix, as its own loader patches them)."""
    if norm == "instance":
        dropped = [k for k in state if k.rsplit(".", 1)[-1] in RUNNING]
        if dropped:
            log.info("dropping %d instance-norm running statistics (a pre-0.4 checkpoint)", len(dropped))
        return {k: v for k, v in state.items() if k not in dropped}
    out = dict(state)
    for key in state:
        if key.endswith(".running_mean"):
            out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out
