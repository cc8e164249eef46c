"""What a generator takes as input, and how label maps become that tensor.

One `InputSpec` travels with every saved generator (in its model card), so training, the bridge
in the loop and evaluation encode labels the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import DrivesimError

KINDS = ("onehot", "color", "rgb")
# label spaces a generator can be trained in (see labels.map_labels)
LABEL_SPACES = ("train_ids", "cityscapes_ids", "carla", "color", "carla_color", "ade20k", "coco_stuff")


@dataclass(frozen=True)
class InputSpec:
    """A generator's input.

    `onehot`: a label map in `label_space` as `num_classes` one-hot channels, then a don't-care
    channel (labels >= num_classes, e.g. 255) when `dontcare`, then an instance-edge channel when
    `instance_edges` (SPADE, pix2pixHD). `color`: the label map as a colour image in [-1, 1]
    (pix2pix-style; `label_space` is "color" or "carla_color"). `rgb`: an RGB image (translation).
    """

    kind: Literal["onehot", "color", "rgb"] = "onehot"
    label_space: str = "cityscapes_ids"
    num_classes: int = 35
    dontcare: bool = False
    instance_edges: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DrivesimError(f"unknown input kind '{self.kind}'; valid: {', '.join(KINDS)}")
        if self.label_space not in LABEL_SPACES + ("rgb",):
            raise DrivesimError(f"unknown label space '{self.label_space}'; valid: {', '.join(LABEL_SPACES)}")
        if self.kind == "color" and self.label_space not in ("color", "carla_color"):
            raise DrivesimError(f"colour input needs label space color or carla_color, not {self.label_space}")

    @property
    def channels(self) -> int:
        if self.kind != "onehot":
            return 3
        return self.num_classes + int(self.dontcare) + int(self.instance_edges)

    @property
    def needs_instance(self) -> bool:
        return self.kind == "onehot" and self.instance_edges

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise DrivesimError(f"unknown input spec keys {sorted(unknown)}; the model card is damaged")
        return cls(**d)


def encode_input(label: torch.Tensor, spec: InputSpec, instance: torch.Tensor | None = None) -> torch.Tensor:
    """Labels (`b h w` int64 for onehot; `b 3 h w` float in [-1, 1] for color/rgb) -> `b c h w` float."""
    if spec.kind != "onehot":
        if label.ndim != 4 or label.shape[1] != 3:
            raise DrivesimError(f"a {spec.kind} input must be b 3 h w, got {tuple(label.shape)}")
        return label.float()
    if label.ndim != 3:
        raise DrivesimError(f"a label map must be b h w, got {tuple(label.shape)}")
    label = label.long()
    known = label < spec.num_classes
    maps = [F.one_hot(torch.where(known, label, 0), spec.num_classes).permute(0, 3, 1, 2).float()
            * known[:, None]]
    if spec.dontcare:
        maps.append((~known)[:, None].float())
    if spec.instance_edges:
        if instance is None:
            raise DrivesimError("this model takes instance edges; record the instance stream (or use "
                                "gtFine _instanceIds) or pick a model without instance input")
        maps.append(instance_edges(instance))
    return torch.cat(maps, 1)


def instance_edges(instance: torch.Tensor) -> torch.Tensor:
    """`b h w` instance ids -> `b 1 h w` float: 1 where a pixel's id differs from a 4-neighbour's."""
    t = instance
    edge = torch.zeros_like(t, dtype=torch.bool)
    horizontal = t[:, :, 1:] != t[:, :, :-1]
    vertical = t[:, 1:, :] != t[:, :-1, :]
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    return edge[:, None].float()
