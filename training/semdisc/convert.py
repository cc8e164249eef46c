"""vita-epfl/SemDisc checkpoints -> our networks.

`latest_net_D.pth` (the `--c2f_sem_rec` discriminator) becomes a `SemDiscDiscriminator`: module names are
the same, spectral norm's `weight_orig/_u/_v` get the parametrization's names (as in the SPADE converter), the
constructor options come from the shapes, and the keys are checked strictly.
A generator checkpoint (`latest_net_G.pth`; SemDisc trains SPADE's generators) goes to the SPADE converter.
"""

from __future__ import annotations

import logging
import re

from torch import Tensor

from ...errors import DrivesimError
from ...models.inputs import InputSpec
from ...models.pretrained import check_state_dict
from ..core.checkpoint import Converted
from ..spade.normalization import rename_reference_spectral
from .discriminator import REC_CHANNELS, SemDiscDiscriminator

log = logging.getLogger(__name__)

NETWORK = "semdisc.SemDiscDiscriminator"
SOURCE = "converted from vita-epfl/SemDisc"
SEG_CLASSES = 19  # Cityscapes train ids, fixed in the reference (models/networks/discriminator.py:89)
# what a checkpoint cannot say: the label space its fine-grained head (and its generator) was trained in
PRESETS = {
    "cityscapes": dict(label_space="cityscapes_ids", num_classes=35, dontcare=False, instance_edges=True),
}
_FIRST = re.compile(r"discriminator_(\d+)\.model0\.0\.weight")


def convert(state: dict[str, Tensor], *, preset: str | None = None) -> Converted:
    """A SemDisc `net_D` (or, delegated to SPADE's converter, `net_G`) state dict -> `Converted`."""
    if preset is not None and preset not in PRESETS:
        raise DrivesimError(f"unknown SemDisc preset '{preset}'; valid: {', '.join(PRESETS)}")
    if not any(_FIRST.fullmatch(k) for k in state):
        return _convert_generator(state, preset)
    options = infer_options(state)
    net = SemDiscDiscriminator(**options)
    state = rename_reference_spectral(state)
    check_state_dict(net, state, "SemDisc discriminator checkpoint")
    net.load_state_dict(state)
    return Converted(NETWORK, net.eval(), _meta(options, preset))


def infer_options(state: dict[str, Tensor]) -> dict:
    """`SemDiscDiscriminator` kwargs from a reference state dict's names and shapes."""
    scales = sorted(int(m.group(1)) for k in state if (m := _FIRST.fullmatch(k)))
    if scales != list(range(len(scales))):
        raise DrivesimError(f"SemDisc discriminator checkpoint: scales {scales} are not 0..n-1; the file is damaged")
    first = state["discriminator_0.model0.0.weight"]
    ndf, input_nc = first.shape[:2]
    n_layers = max(int(m.group(1)) for k in state if (m := re.match(r"discriminator_0\.model(\d+)\.", k)))
    head = state.get(f"discriminator_0.model{n_layers}.0.weight")
    if input_nc != 3 or head is None:
        raise DrivesimError(f"this discriminator sees {input_nc} input channels, not an RGB image: it is a SPADE "
                            "(label + image) discriminator, not SemDisc's; convert it with the spade converter")
    num_classes = head.shape[0] - 1 - SEG_CLASSES - REC_CHANNELS
    if num_classes < 1:
        raise DrivesimError(f"the discriminator has {head.shape[0]} outputs, too few for SemDisc's c2f_sem_rec heads "
                            f"(classes + 1 + {SEG_CLASSES} + {REC_CHANNELS}); was it trained with --c2f_sem_rec?")
    norm, spectral = _infer_norm(state, n_layers)
    return dict(num_classes=int(num_classes), seg_classes=SEG_CLASSES, input_nc=3, ndf=int(ndf), n_layers=n_layers,
                num_D=len(scales), norm=norm, spectral=spectral)


def _infer_norm(state: dict[str, Tensor], n_layers: int) -> tuple[str, bool]:
    """(norm, spectral) of the normalized layers, from the first one's keys."""
    p = "discriminator_0.model1.0."
    if n_layers < 2:
        return "instance", True  # no normalized layer: any choice builds the same network
    spectral = any(k.startswith(p) and k.endswith("weight_orig") for k in state)
    if p + "1.running_mean" in state:
        return "batch", spectral
    if p + "1.weight" in state:
        return "instanceaffine", spectral
    if any(k.startswith(p + "0.") for k in state):
        return "instance", spectral
    return "none", spectral


def _meta(options: dict, preset: str | None) -> dict:
    space = PRESETS[preset or "cityscapes"]
    if options["num_classes"] != space["num_classes"] + space["dontcare"]:
        if preset is not None:
            raise DrivesimError(f"the checkpoint has {options['num_classes']} fine-grained classes, preset "
                                f"'{preset}' has {space['num_classes']}; pick the preset it was trained with")
        log.warning("fine-grained head has %d classes (not Cityscapes' 35); recording its label space as unknown",
                    options["num_classes"])
        space = None
    meta = {"family": "semdisc", "source": SOURCE, "role": "discriminator",
            "heads": {"fine": options["num_classes"], "coarse": 1, "segmentation": options["seg_classes"],
                      "reconstruction": REC_CHANNELS},
            "segmentation_labels": "train_ids"}
    meta["input"] = InputSpec(kind="rgb", label_space="rgb", num_classes=0).to_dict()
    if space is not None:
        meta["label_input"] = InputSpec(kind="onehot", **space).to_dict()
    return meta


def _convert_generator(state: dict[str, Tensor], preset: str | None) -> Converted:
    try:
        from ..spade.convert import convert as spade_convert
    except ImportError:
        raise DrivesimError("not a SemDisc discriminator checkpoint (no discriminator_0.* keys); a generator "
                            "checkpoint needs the SPADE converter, which this install lacks") from None
    converted = spade_convert(state, preset=preset)
    meta = {**converted.meta, "family": "semdisc", "source": SOURCE}
    return Converted(converted.network, converted.net, meta)
