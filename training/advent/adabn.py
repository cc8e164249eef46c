"""Batch-norm statistics re-estimated on unlabelled frames of a domain (AdaBN: Li et al., "Revisiting
Batch Normalization For Practical Domain Adaptation", 2016).

A segmenter's batch norms normalise with running statistics gathered in training. Replacing them
with statistics of the domain it is scored on, the learnt weights untouched, is the cheapest domain
adaptation there is, and the baseline an adapting method should beat. It also matters for judging
ADVENT: the reference's DeepLab-v2 keeps its batch norms in training mode, so an adapting run's
statistics already mix in target frames while a source-only run's do not.

    drivesim eval miou --model runs/source_only --data heldout.h5 --bn-frames target_unlabelled.h5
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import DrivesimError


def sample_frames(sources: Sequence[str | Path], camera: str | None, size: tuple[int, int] | None,
                  limit: int) -> Tensor:
    """Up to `limit` RGB frames `n 3 h w` in [-1, 1], evenly spaced over `sources` (sessions, folders
    of sessions, folders of images), each resized to `size`."""
    from ...recorders.datasets import image_source, image_tensor, resize_image

    if limit < 2:
        raise DrivesimError(f"--bn-max {limit}: batch-norm statistics need at least 2 frames")
    shots = []
    for path in sources:
        if not Path(path).exists():
            raise DrivesimError(f"--bn-frames {path}: not found; give unlabelled frames of the domain to score "
                                "(sessions or a folder of images)")
        shots.append(image_source(path, camera))
    total = sum(len(s) for s in shots)
    if total == 0:
        raise DrivesimError(f"--bn-frames {', '.join(map(str, sources))}: no frames")
    picks = np.unique(np.linspace(0, total - 1, min(limit, total)).round().astype(int))
    offsets = np.cumsum([0] + [len(s) for s in shots])
    out = []
    for i in picks:
        k = int(np.searchsorted(offsets, i, side="right")) - 1
        frame = shots[k].rgb(int(i - offsets[k]))
        out.append(image_tensor(resize_image(np.ascontiguousarray(frame), size)))
    sizes = {tuple(t.shape[-2:]) for t in out}
    if len(sizes) > 1:
        raise DrivesimError(f"--bn-frames hold frames of sizes {sorted(sizes)}; give --input-size HxW")
    return torch.stack(out)


@torch.no_grad()
def reestimate_batchnorm(net: nn.Module, images: Tensor, batch_size: int = 4, seed: int = 0) -> int:
    """Replace the running statistics of every batch norm in `net` by the average of its batch
    statistics over `images` (`n 3 h w` in [-1, 1], passed through `net.normalize`) in shuffled
    batches, with PyTorch's `swa_utils.update_bn`; scale and shift are kept. Leaves `net` in eval
    mode; returns the number of batch norms updated."""
    from torch.optim.swa_utils import update_bn

    norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    if not norms:
        return 0
    if len(images) < 2:
        raise DrivesimError("batch-norm statistics need at least 2 frames")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    device = next(net.parameters()).device
    # a trailing one-frame batch has no variance worth averaging in
    batches = [images[order[i:i + batch_size]] for i in range(0, len(images), batch_size)]
    batches = [b for k, b in enumerate(batches) if k == 0 or len(b) > 1]
    try:
        update_bn((net.normalize(b.to(device)) for b in batches), net)
    finally:
        net.eval()
    return norms
