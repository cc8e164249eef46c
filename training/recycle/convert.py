"""CycleGAN / Recycle-GAN ResNet generator checkpoints -> our `ResnetGenerator`.

Accepts `latest_net_G_A.pth` / `latest_net_G_B.pth` of a junyanz/pytorch-CycleGAN-and-pix2pix
or wangkaihong/Unsup_Recycle_GAN run, and the published one-direction models (`latest_net_G.pth`
from `scripts/download_cyclegan_model.sh`: horse2zebra, cityscapes_label2photo, ...). The state
dict gives the architecture: channels and `ngf` from the first and last convolutions, `n_blocks`
from the residual blocks' indices, the norm from the keys (instance norm: convolution biases and
no norm parameters; batch norm: affine parameters and running statistics), dropout and zero padding
from where a block's second convolution sits. Reflect and replicate padding leave the same
weights; reflect, the reference's only choice in `define_G`, is assumed. What the generator was
trained to take comes from a preset.

Pre-0.4 PyTorch checkpoints (the published models) carry instance-norm running statistics; they
are dropped, as the reference's loader drops them. Batch norms lacking `num_batches_tracked` get 0.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch

from ...errors import DrivesimError
from ...models.inputs import InputSpec
from ...models.pretrained import check_state_dict
from ..core.checkpoint import Converted
from ..pix2pix.convert import normalize_norm_stats
from .networks import ResnetGenerator

log = logging.getLogger(__name__)

SOURCE = "junyanz/pytorch-CycleGAN-and-pix2pix"
NETWORK = "cyclegan.ResnetGenerator"
_BLOCK = re.compile(r"^model\.(\d+)\.conv_block\.")


@dataclass(frozen=True)
class Preset:
    input: InputSpec
    about: str


_RGB = InputSpec(kind="rgb", label_space="rgb")
PRESETS: dict[str, Preset] = {
    "rgb": Preset(_RGB, "any image -> image translator (horse2zebra, summer2winter_yosemite, monet2photo, "
                        "sim2real, a Recycle-GAN G_A); translates the world's RGB frames"),
    "cityscapes_label2photo": Preset(InputSpec(kind="color", label_space="color"),
                                     "Cityscapes label colours (gtFine_color.png) -> photo (published)"),
    "carla_color": Preset(InputSpec(kind="color", label_space="carla_color"), "CARLA's tag palette -> photo"),
}
DEFAULT_PRESET = "rgb"


def convert(state: dict[str, torch.Tensor], *, preset: str | None = None) -> Converted:
    """A reference ResNet generator state dict -> `Converted("cyclegan.ResnetGenerator", net, meta)`."""
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise DrivesimError(f"unknown cyclegan preset '{name}'; valid: {', '.join(sorted(PRESETS))}")
    _check_is_resnet(state)
    config = infer_config(state)
    state = normalize_norm_stats(state, config["norm"])
    net = ResnetGenerator(**config)
    check_state_dict(net, state, f"{SOURCE} ResNet generator checkpoint")
    net.load_state_dict(state)
    spec = PRESETS[name].input
    if spec.channels != config["input_nc"] or config["output_nc"] != 3:
        raise DrivesimError(f"this generator maps {config['input_nc']} to {config['output_nc']} channels; the "
                            f"'{name}' preset needs {spec.channels} -> 3 (an image translator)")
    meta = {"family": "cyclegan", "input": spec.to_dict(), "source": f"converted from {SOURCE}",
            "preset": name, "about": PRESETS[name].about}
    log.info("converted a CycleGAN ResNet generator (%s), preset %s", config, name)
    return Converted(NETWORK, net.eval(), meta)


def infer_config(state: dict[str, torch.Tensor]) -> dict:
    """`ResnetGenerator` kwargs from a reference ResNet generator state dict."""
    blocks = sorted({int(m.group(1)) for k in state if (m := _BLOCK.match(k))})
    first = state["model.1.weight"]
    if not blocks or blocks != list(range(10, 10 + len(blocks))):
        where = f"sit at model.{blocks[0]}.." if blocks else "are missing"
        raise DrivesimError(f"this ResNet generator's residual blocks {where}, not from model.10 on; the "
                            "checkpoint is damaged or not a CycleGAN generator")
    n_blocks = len(blocks)
    block = f"model.{blocks[0]}.conv_block."
    convs = sorted(int(k[len(block):].split(".")[0]) for k in state if k.startswith(block) and k.endswith(".weight")
                   and state[k].ndim == 4)
    layouts = {(1, 5): ("reflect", False), (1, 6): ("reflect", True), (0, 3): ("zero", False), (0, 4): ("zero", True)}
    if tuple(convs) not in layouts:
        raise DrivesimError(f"unexpected residual block layout (convolutions at {block}{convs}); not a CycleGAN "
                            "ResNet generator")
    padding_type, dropout = layouts[tuple(convs)]
    if "model.1.bias" in state:
        norm = "instance"
    elif "model.2.weight" in state:
        norm = "batch"
    else:
        raise DrivesimError("this ResNet generator has neither batch nor instance norm (trained with --norm none?); "
                            "only --norm instance and --norm batch generators convert")
    last = state.get(f"model.{17 + n_blocks}.weight")
    if last is None or last.ndim != 4:
        raise DrivesimError(f"this ResNet generator has no output convolution at model.{17 + n_blocks}; the "
                            "checkpoint is damaged or truncated")
    return dict(input_nc=int(first.shape[1]), output_nc=int(last.shape[0]), ngf=int(first.shape[0]),
                n_blocks=n_blocks, norm=norm, use_dropout=dropout, padding_type=padding_type)


def _check_is_resnet(state: dict) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DrivesimError("not a state dict (a mapping of names to tensors); give a run's latest_net_G_A.pth")
    w1 = state.get("model.1.weight")
    if w1 is not None and w1.ndim == 4 and tuple(w1.shape[-2:]) == (7, 7):
        return
    if "model.model.0.weight" in state:
        raise DrivesimError(f"this is a {SOURCE} U-Net generator (pix2pix, --netG unet_*), not a ResNet one; "
                            "convert it with `drivesim convert pix2pix`")
    w0 = state.get("model.0.weight")
    if w0 is not None and w0.ndim == 4 and tuple(w0.shape[-2:]) == (4, 4):
        raise DrivesimError(f"this is a {SOURCE} PatchGAN discriminator (latest_net_D_A.pth), not a generator; "
                            "give the run's latest_net_G_A.pth")
    some = ", ".join(list(state)[:3])
    raise DrivesimError(f"not a CycleGAN ResNet generator (no 7x7 model.1.weight; keys start {some}); give a "
                        "run's latest_net_G_A.pth or a published latest_net_G.pth")


