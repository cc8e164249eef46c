"""valeoai/ADVENT checkpoints -> our DeepLabV2 segmenter or entropy discriminator.

Three layouts, told apart by their keys:
- a trained segmenter (`model_<iter>.pth`, the released `gta2cityscapes_advent.pth`,
  `gta2cityscapes_minent_ER.pth`, ...): `conv1.weight`, `layer1.0.conv1.weight`, ...,
  `layer5.conv2d_list.*` (aux head, when multi-level) and `layer6.conv2d_list.*` (main head);
  the names are ours, so it loads as it is;
- the ImageNet initialisation the reference starts from (`DeepLab_resnet_pretrained_imagenet.pth`):
  the same backbone names under one prefix (`Scale.conv1.weight`, ...) and a classifier of another
  task; as the reference's `scripts/train.py` does, the prefix goes and the classifier is dropped, so
  the result has the backbone's weights and freshly initialised heads (meta kind `backbone_init`:
  a starting point for training, e.g. `--set init_checkpoint=...`, not a segmenter);
- a discriminator (`model_<iter>_D_main.pth`, `_D_aux.pth`): the bare `nn.Sequential` of five
  convolutions (`0.weight` ... `8.weight`), ours under `model.`.

The depth (blocks per stage), block type, width, class count and multi-level heads come from the
state dict. The released models take the reference's Caffe-style input (BGR, 0..255, minus the
ImageNet mean), recorded as normalization "caffe".
"""

from __future__ import annotations

import logging
import re

import torch

from ...errors import DrivesimError
from ...models.inputs import InputSpec
from ...models.pretrained import check_state_dict
from ..core.checkpoint import Converted
from .networks import ASPP_DILATIONS, BACKBONES, NORMALIZATIONS, NUM_CLASSES, DeepLabV2, EntropyDiscriminator

log = logging.getLogger(__name__)

SOURCE = "valeoai/ADVENT"
PRESETS = {"cityscapes": "segmenters of the 19 Cityscapes train ids (ADVENT's GTA5 -> Cityscapes models)"}
DEFAULT_PRESET = "cityscapes"
_DISCRIMINATOR_KEYS = {f"{i}.{p}" for i in (0, 2, 4, 6, 8) for p in ("weight", "bias")}


def convert(state: dict[str, torch.Tensor], *, preset: str | None = None) -> Converted:
    """An ADVENT state dict -> `Converted("advent.DeepLabV2" | "advent.EntropyDiscriminator", net, meta)`."""
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise DrivesimError(f"unknown advent preset '{name}'; valid: {', '.join(sorted(PRESETS))}")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DrivesimError("not a state dict (a mapping of names to tensors); give an ADVENT model_<iter>.pth")
    if set(state) == _DISCRIMINATOR_KEYS:
        return convert_discriminator(state)
    state, init_only = _strip_prefix(state)
    config = infer_config(state, init_only)
    net = DeepLabV2(**config)
    if init_only:
        backbone = {k: v for k, v in _fill_bn_counters(state).items() if not k.startswith(("layer5.", "layer6."))}
        expected = {k: v for k, v in net.state_dict().items() if not k.startswith(("layer5.", "layer6."))}
        _check_keys(expected, backbone)
        net.load_state_dict(backbone, strict=False)
        kind = "backbone_init"
    else:
        state = _fill_bn_counters(state)
        check_state_dict(net, state, f"{SOURCE} DeepLab-v2 checkpoint")
        net.load_state_dict(state)
        kind = "segmenter"
    meta = {"family": "advent", "kind": kind, "num_classes": config["num_classes"], "label_space": "train_ids",
            "input": InputSpec(kind="rgb", label_space="rgb").to_dict(),
            "normalization": {"name": "caffe", **NORMALIZATIONS["caffe"]},
            "source": f"converted from {SOURCE}", "preset": name}
    log.info("converted an ADVENT DeepLab-v2 (%s) as %s", config, kind)
    return Converted("advent.DeepLabV2", net.eval(), meta)


def convert_discriminator(state: dict[str, torch.Tensor]) -> Converted:
    """The reference's `get_fc_discriminator` state dict -> our EntropyDiscriminator."""
    first = state["0.weight"]
    if first.ndim != 4 or tuple(first.shape[-2:]) != (4, 4):
        raise DrivesimError("not an ADVENT discriminator (its first convolution is not 4x4); give a "
                            "model_<iter>_D_main.pth or _D_aux.pth")
    net = EntropyDiscriminator(num_classes=int(first.shape[1]), ndf=int(first.shape[0]))
    ours = {f"model.{k}": v for k, v in state.items()}
    check_state_dict(net, ours, f"{SOURCE} discriminator checkpoint")
    net.load_state_dict(ours)
    meta = {"family": "advent", "kind": "discriminator", "num_classes": net.config["num_classes"],
            "input": {"kind": "entropy_maps", "channels": net.config["num_classes"]},
            "source": f"converted from {SOURCE}"}
    return Converted("advent.EntropyDiscriminator", net.eval(), meta)


def _strip_prefix(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """(state with the backbone at top level, whether it came under a prefix = the ImageNet-init layout)."""
    if "conv1.weight" in state:
        return state, False
    stems = [k[: -len("conv1.weight")] for k in state if k.endswith(".conv1.weight") and "layer" not in k]
    if len(stems) != 1:
        _not_deeplab(state)
    prefix = stems[0]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, True


def infer_config(state: dict[str, torch.Tensor], init_only: bool = False) -> dict:
    """`DeepLabV2` kwargs from a reference state dict (backbone names at top level)."""
    if "conv1.weight" not in state or "layer1.0.conv1.weight" not in state:
        _not_deeplab(state)
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    counts = tuple(_blocks(state, f"layer{i}") for i in range(1, 5))
    backbone = next((n for n, spec in BACKBONES.items() if spec == (block, counts)), None)
    if backbone is None:
        raise DrivesimError(f"a ResNet with {block} blocks {list(counts)} per stage; DeepLab-v2 here is resnet101 "
                            "[3, 4, 23, 3], resnet50 [3, 4, 6, 3] or resnet18 (basic) [2, 2, 2, 2]")
    width = int(state["conv1.weight"].shape[0])
    if init_only:
        return dict(num_classes=NUM_CLASSES, backbone=backbone, multi_level=True, width=width, normalization="caffe")
    main = _head_classes(state, "layer6")
    if main is None:
        raise DrivesimError("this DeepLab has no main classifier (layer6.conv2d_list.*); give a trained ADVENT "
                            "segmenter, or the ImageNet init (Scale.*) to start training from")
    aux = _head_classes(state, "layer5")
    if aux is not None and aux != main:
        raise DrivesimError(f"mismatched class counts: the aux head (layer5) predicts {aux} classes, the main "
                            f"head (layer6) {main}; the checkpoint is damaged")
    if main != NUM_CLASSES:
        raise DrivesimError(f"this segmenter predicts {main} classes; drivesim's segmenters score the "
                            f"{NUM_CLASSES} Cityscapes train ids (ADVENT's GTA5 -> Cityscapes models)")
    return dict(num_classes=main, backbone=backbone, multi_level=aux is not None, width=width,
                normalization="caffe")


def _blocks(state: dict, layer: str) -> int:
    pattern = re.compile(rf"^{layer}\.(\d+)\.")
    found = {int(m[1]) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def _head_classes(state: dict, head: str) -> int | None:
    convs = [f"{head}.conv2d_list.{i}.weight" for i in range(len(ASPP_DILATIONS))]
    if not any(k.startswith(f"{head}.") for k in state):
        return None
    if not all(k in state for k in convs):
        raise DrivesimError(f"{head} is not an ASPP head of {len(ASPP_DILATIONS)} convolutions; not an ADVENT "
                            "DeepLab-v2 checkpoint")
    return int(state[convs[0]].shape[0])


def _fill_bn_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Batch norms saved before PyTorch 0.4.1 lack `num_batches_tracked` (only training reads it)."""
    out = dict(state)
    for key in state:
        if key.endswith(".running_mean"):
            out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out


def _check_keys(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or wrong:
        first = (missing or wrong)[0]
        raise DrivesimError(f"{SOURCE} ImageNet init: {len(missing)} missing and {len(wrong)} mis-shaped backbone "
                            f"weights (first: {first}); is it DeepLab_resnet_pretrained_imagenet.pth?")


def _not_deeplab(state: dict) -> None:
    some = ", ".join(list(state)[:3])
    raise DrivesimError(f"not an ADVENT DeepLab-v2 or discriminator state dict (keys start {some}); give a "
                        "model_<iter>.pth, a released gta2cityscapes_*.pth or DeepLab_resnet_pretrained_imagenet.pth")
