"""NVlabs/SPADE checkpoints -> our networks.

`convert(load_reference_checkpoint("latest_net_G.pth"), preset="cityscapes")` gives the SPADE
generator with spectral norm folded into plain weights (inference pays nothing for it). The
discriminator (`latest_net_D.pth`) and the VAE encoder (`latest_net_E.pth`) convert too, with
spectral norm kept, for fine-tuning. So do the pix2pixHD and ASAPNet generators of
vita-epfl/SemDisc runs (`--netG pix2pixhd | asapnets`). The file's kind is recognised from its keys.

What a state dict tells (widths, input channels, the VAE's linear head, the kernel and norm of
SPADE, spectral norm, a 7th upsampling) is read from it; what it cannot (the label set, 5 or 6
upsamplings, the crop) comes from the preset, which is recognised from the input channels
when not given (36 = Cityscapes, 151 = ADE20K, 184 = COCO-Stuff).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ...errors import DrivesimError
from ...models.inputs import InputSpec
from ...models.pretrained import check_state_dict
from ..core.checkpoint import Converted
from .discriminators import MultiscaleDiscriminator
from .encoder import ConvEncoder
from .generators import NUM_UP, ASAPNetGenerator, Pix2PixHDGenerator, SPADEGenerator
from .normalization import fold_spectral_norm, rename_reference_spectral

SOURCE = "converted from NVlabs/SPADE"


@dataclass(frozen=True)
class Preset:
    """The dataset options of a reference recipe (data/<dataset>_dataset.py of NVlabs/SPADE)."""

    label_space: str
    label_nc: int
    dontcare: bool
    instance: bool
    num_upsampling_layers: str
    size: tuple[int, int]  # (crop_size / aspect_ratio, crop_size)

    @property
    def semantic_nc(self) -> int:
        return self.label_nc + int(self.dontcare) + int(self.instance)

    def input(self) -> dict:
        spec = InputSpec(kind="onehot", label_space="cityscapes_ids", num_classes=self.label_nc,
                         dontcare=self.dontcare, instance_edges=self.instance)
        # ADE20K and COCO-Stuff label spaces are not (yet) in models.inputs.LABEL_SPACES: written as is
        return {**spec.to_dict(), "label_space": self.label_space}


PRESETS = {
    "cityscapes": Preset("cityscapes_ids", 35, False, True, "more", (256, 512)),
    "ade20k": Preset("ade20k", 150, True, False, "normal", (256, 256)),
    "coco": Preset("coco_stuff", 182, True, True, "normal", (256, 256)),
}


def convert(state: dict[str, Tensor], *, preset: str | None = None, fold: bool = True) -> Converted:
    """A NVlabs/SPADE `latest_net_{G,D,E}.pth` state dict -> our network (see the module docstring).
    `fold=False` keeps the generator's spectral norm (to fine-tune it)."""
    if preset is not None and preset not in PRESETS:
        raise DrivesimError(f"unknown SPADE preset '{preset}'; valid: {', '.join(PRESETS)}")
    if "conv_img.weight" in state and _has(state, "head_0."):
        return _generator(state, preset, fold)
    if _has(state, "discriminator_0.model0."):
        return _discriminator(state, preset)
    if "fc_mu.weight" in state and _has(state, "layer1."):
        return _encoder(state)
    if _has(state, "model.") and _has(state, "model.1.") and any(".conv_block." in k for k in state):
        return _pix2pixhd(state, preset, fold)
    if _has(state, "lowres_stream.model."):
        return _asapnet(state, preset, fold)
    example = ", ".join(sorted(state)[:2])
    raise DrivesimError(f"not a NVlabs/SPADE checkpoint (keys like {example}); expected latest_net_G.pth, "
                        "latest_net_D.pth or latest_net_E.pth of a SPADE (or SemDisc) run")


def _generator(state: dict[str, Tensor], preset: str | None, fold: bool) -> Converted:
    shared = _get(state, "head_0.norm_0.mlp_shared.0.weight")
    semantic_nc, kernel_size = shared.shape[1], shared.shape[-1]
    ngf = _conv_weight(state, "head_0.conv_0").shape[0] // 16
    name, p = _preset(preset, semantic_nc)
    num_up = "most" if _has(state, "up_4.") else p.num_upsampling_layers
    use_vae = state["fc.weight"].ndim == 2
    latent = None
    if use_vae:
        step = 2 ** NUM_UP[num_up]
        latent = [p.size[0] // step, p.size[1] // step]
        if state["fc.weight"].shape[0] != 16 * ngf * latent[0] * latent[1]:
            raise DrivesimError(f"this VAE SPADE generator's latent grid does not fit the {name} crop "
                                f"{p.size[0]}x{p.size[1]}; pass the preset it was trained with")
    net = SPADEGenerator(semantic_nc=semantic_nc, ngf=ngf, num_upsampling_layers=num_up,
                         norm="batch" if "head_0.norm_0.param_free_norm.running_mean" in state else "instance",
                         spectral=_spectral(state), kernel_size=kernel_size, use_vae=use_vae, latent_size=latent,
                         hidden=int(shared.shape[0]))
    _load(net, state, "NVlabs/SPADE generator")
    if fold:
        net = fold_spectral_norm(net)
    meta = {"family": "spade", "input": p.input(), "size": list(p.size), "source": SOURCE, "preset": name,
            "netG": "spade"}
    return Converted("spade.SPADEGenerator", net.eval(), meta)


def _discriminator(state: dict[str, Tensor], preset: str | None) -> Converted:
    first = _get(state, "discriminator_0.model0.0.weight")
    num_D = sum(1 for i in range(16) if _has(state, f"discriminator_{i}."))
    n_layers = sum(1 for n in range(1, 32) if _has(state, f"discriminator_0.model{n}."))
    net = MultiscaleDiscriminator(input_nc=first.shape[1], ndf=first.shape[0], n_layers=n_layers, num_D=num_D,
                                  norm=_conv_norm(state, "discriminator_0.model1.0"), spectral=_spectral(state))
    _load(net, state, "NVlabs/SPADE discriminator")
    meta = {"family": "spade", "source": SOURCE, "role": "discriminator"}
    if preset is not None:
        meta["preset"] = preset
    return Converted("spade.MultiscaleDiscriminator", net.eval(), meta)


def _encoder(state: dict[str, Tensor]) -> Converted:
    net = ConvEncoder(ngf=_conv_weight(state, "layer1").shape[0], z_dim=state["fc_mu.weight"].shape[0],
                      norm=_conv_norm(state, "layer1"), spectral=_spectral(state))
    _load(net, state, "NVlabs/SPADE encoder")
    return Converted("spade.ConvEncoder", net.eval(), {"family": "spade", "source": SOURCE, "role": "encoder"})


def _pix2pixhd(state: dict[str, Tensor], preset: str | None, fold: bool) -> Converted:
    """SemDisc's `Pix2PixHDGenerator`: `model.<i>` = pad, conv, ReLU, (conv, ReLU) x n_downsample,
    residual blocks, (transposed conv, ReLU) x n_downsample, pad, conv, tanh."""
    idx = _indices(state, "model.")
    blocks = [i for i in idx if _has(state, f"model.{i}.conv_block.")]
    first = _conv_weight(state, "model.1")
    name, p = _preset(preset, first.shape[1])
    net = Pix2PixHDGenerator(input_nc=first.shape[1], output_nc=state[f"model.{idx[-1]}.weight"].shape[0],
                             ngf=first.shape[0], n_downsample=(blocks[0] - 3) // 2, n_blocks=len(blocks),
                             kernel_size=_conv_weight(state, f"model.{blocks[0]}.conv_block.1").shape[-1],
                             initial_kernel_size=first.shape[-1], norm=_conv_norm(state, "model.1"),
                             spectral=_spectral(state))
    return _semdisc_generator("spade.Pix2PixHDGenerator", net, state, name, p, fold)


def _asapnet(state: dict[str, Tensor], preset: str | None, fold: bool) -> Converted:
    """SemDisc's `ASAPNetsGenerator`: the low-resolution stream's layers give its widths and depth;
    the size of its last layer (the MLP parameters) gives the high-resolution MLP. Reflection and
    replication padding store the same keys; reflection (SemDisc's --reflection_pad) is assumed."""
    prefix = "lowres_stream.model"
    idx = _indices(state, f"{prefix}.")
    blocks = [i for i in idx if _has(state, f"{prefix}.{i}.conv_block.")]
    convs = [i for i in idx[:-1] if not blocks or i < blocks[0]]
    first, last = _conv_weight(state, f"{prefix}.{convs[0]}"), _conv_weight(state, f"{prefix}.{convs[-1]}")
    learned = 2 ** (len(convs) - 1)
    name, p = _preset(preset, first.shape[1])
    lr_instance, downsampling, coordinates, width, depth = _asap_mlp(state[f"{prefix}.{idx[-1]}.weight"].shape[0],
                                                                     first.shape[1], learned, p.instance)
    net = ASAPNetGenerator(input_nc=first.shape[1], lr_instance=lr_instance, downsampling=downsampling,
                           learned_ds_factor=learned, lr_width=first.shape[0], lr_max_width=last.shape[0],
                           lr_depth=len(blocks), hr_width=width, hr_depth=depth, coordinates=coordinates,
                           norm=_conv_norm(state, f"{prefix}.{convs[0]}"), spectral=_spectral(state),
                           pad="zero" if idx[0] == 0 else "reflect")
    return _semdisc_generator("spade.ASAPNetGenerator", net, state, name, p, fold)


def _asap_mlp(num_params: int, input_nc: int, learned: int, instance: bool) -> tuple[bool, int, bool, int, int]:
    """(lr_instance, downsampling, coordinates, hr_width, hr_depth) whose per-tile MLP has
    `num_params` parameters. Several layouts can give the same count; SemDisc's defaults come
    first (instance edges to the low-res stream only, tiles of the learned downsampling, cosine
    codes, width 64, depth 5), then larger tiles, then other widths and depths."""
    shapes = [(64, 5)] + [(w, d) for d in range(2, 9) for w in range(1, 1025)]
    layouts = [(True, learned << k) for k in range(5)] + [(False, learned)]
    for lr_instance in ((True, False) if instance else (False,)):
        for coordinates, ds in layouts:
            first = input_nc - lr_instance + (4 * int(math.log2(ds)) if coordinates else 0)
            for w, d in shapes:
                if w * first + w + (d - 2) * (w * w + w) + 3 * w + 3 == num_params:
                    return lr_instance, ds, coordinates, w, d
    raise DrivesimError(f"an ASAPNet whose tiles take {num_params} MLP parameters fits no known layout; is it a "
                        "checkpoint of SemDisc's --netG asapnets?")


def _semdisc_generator(network: str, net, state: dict[str, Tensor], name: str, p: Preset, fold: bool) -> Converted:
    _load(net, state, f"SemDisc {network.split('.')[1]}")
    if fold:
        net = fold_spectral_norm(net)
    meta = {"family": "spade", "input": p.input(), "source": "converted from vita-epfl/SemDisc", "preset": name,
            "netG": "pix2pixhd" if "Pix2PixHD" in network else "asapnet"}
    return Converted(network, net.eval(), meta)


def _preset(preset: str | None, semantic_nc: int) -> tuple[str, Preset]:
    if preset is None:
        found = [n for n, p in PRESETS.items() if p.semantic_nc == semantic_nc]
        if not found:
            known = ", ".join(f"{n} {p.semantic_nc}" for n, p in PRESETS.items())
            raise DrivesimError(f"a generator with {semantic_nc} input channels matches no SPADE preset ({known}); "
                                "only models of these recipes convert")
        preset = found[0]
    p = PRESETS[preset]
    if p.semantic_nc != semantic_nc:
        raise DrivesimError(f"the {preset} preset takes {p.semantic_nc} input channels, this generator "
                            f"{semantic_nc}; pass the preset it was trained with")
    return preset, p


def _indices(state: dict[str, Tensor], prefix: str) -> list[int]:
    """The sorted indices i of keys `prefix<i>.*` (the layers of a Sequential that hold weights)."""
    return sorted({int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)})


def _conv_weight(state: dict[str, Tensor], prefix: str) -> Tensor:
    """The weight of the conv at `prefix`: bare, or first in a `Sequential(conv, norm)`."""
    for key in (f"{prefix}.0.weight_orig", f"{prefix}.0.weight", f"{prefix}.weight_orig", f"{prefix}.weight"):
        if key in state:
            return state[key]
    return _get(state, f"{prefix}.weight")


def _spectral(state: dict[str, Tensor]) -> bool:
    return any(k.endswith(".weight_orig") for k in state)


def _conv_norm(state: dict[str, Tensor], prefix: str) -> str:
    """The norm after the conv at `prefix` (a `Sequential(conv, norm)`, or a bare conv for "none")."""
    if _has(state, f"{prefix}.1."):
        return "instanceaffine" if f"{prefix}.1.running_mean" not in state else "batch"
    if _has(state, f"{prefix}.0."):
        return "instance"
    return "none"


def _load(net, state: dict[str, Tensor], what: str) -> None:
    state = rename_reference_spectral(state)
    for key, value in net.state_dict().items():  # files of torch < 0.4.1 have no batch counters
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value.clone()
    check_state_dict(net, state, what)
    net.load_state_dict(state)


def _has(state: dict, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in state)


def _get(state: dict[str, Tensor], key: str) -> Tensor:
    if key not in state:
        raise DrivesimError(f"not a complete NVlabs/SPADE checkpoint: '{key}' is missing; give latest_net_G.pth, "
                            "latest_net_D.pth or latest_net_E.pth of a SPADE run")
    return state[key]
