"""Trained segmenters (an ADVENT run or a `drivesim convert advent` output) as inference models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DrivesimError

if TYPE_CHECKING:  # torch loads with the model, not with this module
    import torch
    from torch import nn

SEGMENTER_NETWORK = "advent.DeepLabV2"
NUM_CLASSES = 19  # the Cityscapes train ids


def load_segmenter(model: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(a trained segmenter in eval mode, its model card's meta) from a run or model directory."""
    from .pretrained import from_pretrained, read_card

    card = read_card(model)
    kind = card.meta.get("kind")
    if card.network != SEGMENTER_NETWORK or kind not in (None, "segmenter"):
        what = "an ImageNet initialisation" if kind == "backbone_init" else f"a {card.network}"
        raise DrivesimError(f"{model}: {what}, not a trained segmenter; give a `drivesim train advent` run "
                            "or a `drivesim convert advent` output of a trained model")
    if card.config.get("num_classes") != NUM_CLASSES:
        raise DrivesimError(f"{model}: the segmenter predicts {card.config.get('num_classes')} classes; the labels "
                            f"here are the {NUM_CLASSES} Cityscapes train ids")
    return from_pretrained(card.directory, device=device), card.meta
