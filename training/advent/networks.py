"""ADVENT's networks: the multi-level DeepLab-v2 segmenter and the entropy-map discriminator.

State-dict names and shapes are those of valeoai/ADVENT (`advent/model/deeplabv2.py`,
`advent/model/discriminator.py`): `conv1`, `bn1`, `layer1`..`layer4` (torchvision's ResNet names),
`layer5` (the auxiliary ASPP head on layer3) and `layer6` (the main head on layer4), each head a
`conv2d_list` of four dilated 3x3 convolutions whose outputs are summed. As there, the backbone is
the Caffe-style ResNet of DeepLab: the stride sits on each bottleneck's first 1x1 convolution,
max-pooling rounds up, layer3 and layer4 keep 1/8 resolution with dilations 2 and 4, and every
batch norm is frozen (affine, its scale and shift never trained; its statistics follow train/eval
mode, as the reference's `model.train()` leaves them).

`width` scales every channel count (64 = the reference); `backbone` picks the depth: resnet101
(the paper's), resnet50, or resnet18 (basic blocks, for CPUs). The networks take the reference's
input (`normalization` says which: the reference's Caffe BGR mean subtraction, or torchvision's
ImageNet statistics); `DeepLabV2.predict` takes our RGB images in [-1, 1] and does the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import DrivesimError

log = logging.getLogger(__name__)

NUM_CLASSES = 19  # Cityscapes train ids
# (block, blocks per layer) of each backbone
BACKBONES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet18": ("basic", (2, 2, 2, 2)),
}
ASPP_DILATIONS = (6, 12, 18, 24)
# How images become network input: x = (rgb in [0, 1] * scale, channels reordered) - mean) / std.
NORMALIZATIONS: dict[str, dict] = {
    # the reference's (advent/domain_adaptation/config.py IMG_MEAN, dataset/base_dataset.py preprocess)
    "caffe": {"channels": "bgr", "scale": 255.0, "mean": [104.00698793, 116.66876762, 122.67891434],
              "std": [1.0, 1.0, 1.0]},
    # torchvision's ImageNet weights
    "imagenet": {"channels": "rgb", "scale": 1.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
}


def frozen_bn(channels: int) -> nn.BatchNorm2d:
    """A batch norm whose scale and shift are not trained (the reference's `requires_grad = False`)."""
    bn = nn.BatchNorm2d(channels, affine=True)
    bn.requires_grad_(False)
    return bn


class Bottleneck(nn.Module):
    """1x1 (stride) -> 3x3 (dilation) -> 1x1 x4, plus the (projected) input. `b c h w` -> `b 4p h' w'`."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = frozen_bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = frozen_bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = frozen_bn(planes * 4)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class BasicBlock(nn.Module):
    """3x3 (stride, dilation) -> 3x3 (dilation), plus the (projected) input (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = frozen_bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = frozen_bn(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class ASPPClassifier(nn.Module):
    """DeepLab-v2's classifier: the sum of four dilated 3x3 convolutions. `b c h w` -> `b k h w`."""

    def __init__(self, in_channels: int, num_classes: int, dilations: tuple[int, ...] = ASPP_DILATIONS):
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True) for d in dilations)
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: Tensor) -> Tensor:
        return sum(conv(x) for conv in self.conv2d_list)


class DeepLabV2(nn.Module):
    """DeepLab-v2 with ADVENT's two heads: `b 3 h w` (see `normalization`) -> (aux, main) logits
    `b k h/8 w/8` (aux None without `multi_level`). `predict` gives full-size logits."""

    def __init__(self, num_classes: int = NUM_CLASSES, backbone: Literal["resnet101", "resnet50", "resnet18"] =
                 "resnet101", multi_level: bool = True, width: int = 64,
                 normalization: Literal["caffe", "imagenet"] = "caffe"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{backbone}'; valid: {', '.join(BACKBONES)}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization '{normalization}'; valid: {', '.join(NORMALIZATIONS)}")
        if num_classes < 2 or width < 1:
            raise ValueError(f"num_classes must be >= 2 and width >= 1, got {num_classes} and {width}")
        self.config = dict(num_classes=num_classes, backbone=backbone, multi_level=multi_level, width=width,
                           normalization=normalization)
        self.num_classes, self.multi_level = num_classes, multi_level
        kind, blocks = BACKBONES[backbone]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = frozen_bn(width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = self._layer(block, width, blocks[0])
        self.layer2 = self._layer(block, 2 * width, blocks[1], stride=2)
        self.layer3 = self._layer(block, 4 * width, blocks[2], dilation=2)
        aux_channels = self.inplanes
        self.layer4 = self._layer(block, 8 * width, blocks[3], dilation=4)
        self.layer5 = ASPPClassifier(aux_channels, num_classes) if multi_level else None
        self.layer6 = ASPPClassifier(self.inplanes, num_classes)
        del self.inplanes
        self._init_backbone()
        norm = NORMALIZATIONS[normalization]
        self.register_buffer("_mean", torch.tensor(norm["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(norm["std"]).view(1, 3, 1, 1), persistent=False)

    def _layer(self, block, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        """A ResNet stage; like the reference, dilated stages always get a projection shortcut."""
        out = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out or dilation in (2, 4):
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False), frozen_bn(out))
        layers = [block(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = out
        layers += [block(out, planes, 1, dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_backbone(self) -> None:
        """He-normal backbone convolutions (training from scratch; pretrained weights replace them)."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and not name.startswith(("layer5", "layer6")):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """`b 3 h w` normalized images -> (aux `b k h' w'` or None, main `b k h' w'`), h' = h/8 rounded up."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        aux = self.layer5(x) if self.layer5 is not None else None
        return aux, self.layer6(self.layer4(x))

    def normalize(self, images: Tensor) -> Tensor:
        """RGB `b 3 h w` in [-1, 1] -> this network's input."""
        norm = NORMALIZATIONS[self.config["normalization"]]
        x = (images.float() + 1) * (norm["scale"] / 2)
        if norm["channels"] == "bgr":
            x = x.flip(1)
        return (x - self._mean) / self._std

    def predict(self, images: Tensor, size: tuple[int, int] | None = None,
                input_size: tuple[int, int] | None = None) -> Tensor:
        """RGB `b 3 h w` in [-1, 1] -> main logits `b k H W` at `size` (default: h w).

        The images are resized to `input_size` first when given (the size the model was trained
        at); the logits are upsampled bilinearly with aligned corners, as the reference evaluates."""
        size = tuple(size or images.shape[-2:])
        if input_size is not None and tuple(images.shape[-2:]) != tuple(input_size):
            images = F.interpolate(images.float(), size=tuple(input_size), mode="bilinear", align_corners=False,
                                   antialias=True)
        main = self(self.normalize(images))[1]
        return upsample(main, size)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(trainable backbone parameters, classifier parameters): the reference trains the second at 10x lr."""
        heads = [p for m in (self.layer5, self.layer6) if m is not None for p in m.parameters()]
        ids = {id(p) for p in heads}
        backbone = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return backbone, heads

    def backbone_state(self) -> Iterator[str]:
        """Names of the backbone's state entries (what ImageNet weights provide)."""
        return (k for k in self.state_dict() if not k.startswith(("layer5.", "layer6.")))


def upsample(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """`b k h w` -> `b k H W`, bilinear with aligned corners (the reference's `nn.Upsample`)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)


class EntropyDiscriminator(nn.Module):
    """ADVENT's fully-convolutional discriminator: five stride-2 4x4 convolutions with LeakyReLU(0.2)
    between them. Weighted self-information maps `b k h w` -> logits `b 1 h/32 w/32` (1 = target)."""

    def __init__(self, num_classes: int = NUM_CLASSES, ndf: int = 64):
        super().__init__()
        if num_classes < 2 or ndf < 1:
            raise ValueError(f"num_classes must be >= 2 and ndf >= 1, got {num_classes} and {ndf}")
        self.config = dict(num_classes=num_classes, ndf=ndf)
        widths = [num_classes, ndf, 2 * ndf, 4 * ndf, 8 * ndf]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, stride=2, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


# ----- ImageNet initialisation -------------------------------------------------------------------
def load_imagenet_backbone(net: DeepLabV2) -> None:
    """Copy torchvision's ImageNet ResNet weights (IMAGENET1K_V1, through its own loader and the
    torch hub cache) into the backbone. The heads keep their N(0, 0.01) initialisation."""
    import torchvision

    backbone = net.config["backbone"]
    if net.config["width"] != 64:
        raise DrivesimError(f"ImageNet weights exist for width 64 only, this {backbone} has width "
                            f"{net.config['width']}; use --set width=64 or --set pretrained=false")
    weights = {"resnet101": torchvision.models.ResNet101_Weights, "resnet50": torchvision.models.ResNet50_Weights,
               "resnet18": torchvision.models.ResNet18_Weights}[backbone].IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as e:
        cache = torch.hub.get_dir() + "/checkpoints/" + weights.url.rsplit("/", 1)[-1]
        raise DrivesimError(f"ImageNet {backbone} weights are not in the torch hub cache and cannot be downloaded "
                            f"({type(e).__name__}); put {weights.url} at {cache}, or train from scratch with "
                            "--set pretrained=false") from None
    own = set(net.backbone_state())
    picked = {k: v for k, v in state.items() if k in own}
    missing = sorted(own - set(picked) - {k for k in own if k.endswith("num_batches_tracked")})
    if missing:
        raise DrivesimError(f"torchvision's {backbone} weights lack {len(missing)} backbone entries "
                            f"({', '.join(missing[:3])}); the cached file is damaged, delete it")
    net.load_state_dict(picked, strict=False)
    log.info("initialised the %s backbone from torchvision's ImageNet weights (%d tensors)", backbone, len(picked))
