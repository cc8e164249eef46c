"""`drivesim eval miou`: score a segmenter on labelled frames, or score synthesized frames by how
well a segmenter recovers the labels they were made from (semantic consistency of synthesis).

    drivesim eval miou --model runs/advent --data heldout.h5
    drivesim eval miou --model runs/advent --data labels.h5 --images synth_frames/

`--data` holds the labels: sessions (their semantic stream as Cityscapes train ids; the rgb too
unless `--images`), a Cityscapes root (its val split) or a GTA5-layout folder. (Recordings hold
the world's own rgb, not a synthesizer's frames: write those to a folder and pass `--images`.)

Pairing with `--images` (a folder of PNG/JPEG, a session or a folder of sessions): the k-th image
scores against the k-th labelled frame, images in sorted path order (recursive; name frames with
zero-padded indices, e.g. 000012.png) or session frames in order, labelled frames in frame order
over the sessions sorted by name. The counts must match.

Each image is resized to the size the model was trained at (its model card's `input_size`; the
labels' size when it has none) and the predictions are upsampled to the labels' size.

`--bn-frames SRC` (repeatable) first replaces the segmenter's batch-norm statistics by those of up
to `--bn-max` unlabelled frames of SRC, evenly spaced (AdaBN; see `adabn.py`): the baseline a domain
adaptation method should beat, and a check of how much of one's gain is its statistics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ...errors import DrivesimError
from ...models.segmenter import NUM_CLASSES, load_segmenter

if TYPE_CHECKING:  # torch loads when a command runs, not when the CLI starts

    from .metrics import SegmentationScores

log = logging.getLogger(__name__)


def labelled_frames(data: str | Path, camera: str | None = None):
    """Frames with train-id labels (`image`, `label`) at their stored size."""
    from ...recorders.cityscapes import CityscapesDataset
    from ...recorders.datasets import PairedDataset
    from ...recorders.gta5 import GTA5Dataset, is_gta5_root

    path = Path(data)
    if not path.exists():
        raise DrivesimError(f"--data {path}: not found; give sessions, a Cityscapes root or a GTA5 folder")
    if (path / "leftImg8bit").is_dir():
        split = "val" if (path / "leftImg8bit" / "val").is_dir() else "train"
        return CityscapesDataset(path, split, labels="train_ids")
    if is_gta5_root(path):
        return GTA5Dataset(path, labels="train_ids")
    if path.is_dir() and not any(p.suffix in (".h5", ".hdf5") for p in path.iterdir()):
        raise DrivesimError(f"--data {path}: a folder without sessions, Cityscapes or GTA5 layout has no labels; "
                            "give labelled frames as --data and the images to score as --images")
    return PairedDataset(path, camera=camera, labels="train_ids")


class _Pairs:
    """(image of `images` resized to `input_size`, label of `labelled`) pairs."""

    def __init__(self, labelled, images, input_size: tuple[int, int] | None = None):
        if len(images) != len(labelled):
            raise DrivesimError(f"--images has {len(images)} images but --data {len(labelled)} labelled frames; "
                                "they pair by order (k-th image with the k-th frame), so the counts must match")
        self.labelled, self.images, self.input_size = labelled, images, input_size

    def __len__(self) -> int:
        return len(self.labelled)

    def __getitem__(self, i: int) -> dict:
        import numpy as np

        from ...recorders.datasets import image_tensor, resize_image

        label = self.labelled[i]["label"]
        size = self.input_size or tuple(label.shape[-2:])
        return {"image": image_tensor(resize_image(np.ascontiguousarray(self.images.rgb(i)), size)), "label": label}


def score_segmenter(model: str | Path, data: str | Path, *, camera: str | None = None,
                    images: str | Path | None = None, batch_size: int = 4, device: str = "auto",
                    input_size: tuple[int, int] | None = None, bn_frames=(), bn_max: int = 256,
                    ) -> tuple[SegmentationScores, int]:
    """(scores over every labelled frame of `data`, frames scored); see the module docstring.
    `bn_frames`: sources whose frames re-estimate the batch-norm statistics first."""
    import torch
    from torch.utils.data import DataLoader

    from ...recorders.datasets import image_source
    from .metrics import SegmentationScores, confusion_matrix
    from .networks import upsample

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    net, meta = load_segmenter(model, dev)
    labelled = labelled_frames(data, camera)
    if images is not None:
        shots = image_source(images, camera)
    else:  # the labelled frames' own images, read the same way
        shots = labelled if hasattr(labelled, "rgb") else image_source(data, camera)
    size = input_size or (tuple(meta["input_size"]) if meta.get("input_size") else None)
    if size is None:
        size = tuple(labelled[0]["label"].shape[-2:])
    if bn_frames:
        from .adabn import reestimate_batchnorm, sample_frames

        reestimate_batchnorm(net, sample_frames(list(bn_frames), camera, size, bn_max),
                             batch_size=max(batch_size, 2))  # a one-frame batch has little variance
    loader = DataLoader(_Pairs(labelled, shots, size), batch_size=batch_size, collate_fn=list)
    confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    n = 0
    with torch.no_grad():
        for items in loader:
            logits = net(net.normalize(torch.stack([s["image"] for s in items]).to(dev)))[1]
            for one, s in zip(logits, items, strict=True):
                pred = upsample(one[None], tuple(s["label"].shape[-2:])).argmax(1)[0]
                confusion += confusion_matrix(pred.cpu(), s["label"], NUM_CLASSES)
            n += len(items)
    return SegmentationScores(confusion), n


def _size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise DrivesimError(f"--input-size {value!r}: expected HxW, e.g. 512x1024") from None
    return h, w


@click.command("miou")
@click.option("--model", required=True, type=click.Path(path_type=Path),
              help="A segmenter: a `drivesim train advent` run or a `drivesim convert advent` directory.")
@click.option("--data", required=True, metavar="SRC",
              help="Labelled frames: sessions, a Cityscapes root (val split) or a GTA5-layout folder.")
@click.option("--camera", default=None, help="Camera of session sources [default: the first].")
@click.option("--images", default=None, metavar="SRC",
              help="Synthesized frames to score instead of --data's rgb (a folder of images or sessions), "
                   "paired by order with --data's labelled frames.")
@click.option("--input-size", default=None, metavar="HxW",
              help="Resize images to this before the segmenter [default: the size it was trained at].")
@click.option("--bn-frames", multiple=True, metavar="SRC",
              help="Unlabelled frames (sessions or images; repeatable) to re-estimate the segmenter's "
                   "batch-norm statistics on before scoring (AdaBN).")
@click.option("--bn-max", type=int, default=256, show_default=True, help="At most this many --bn-frames frames.")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the scores (per-class IoU, confusion matrix) as JSON.")
def miou(model: Path, data: str, camera: str | None, images: str | None, input_size: str | None,
         bn_frames: tuple[str, ...], bn_max: int, batch_size: int, device: str, json_out: Path | None) -> None:
    """Per-class IoU and mIoU of a segmenter over the 19 Cityscapes classes."""
    if json_out is not None and not json_out.resolve().parent.is_dir():
        raise DrivesimError(f"--json {json_out}: folder {json_out.resolve().parent} does not exist; create it first")
    scores, n = score_segmenter(model, data, camera=camera, images=images, batch_size=batch_size, device=device,
                                input_size=_size(input_size), bn_frames=bn_frames, bn_max=bn_max)
    if json_out is not None:
        record = {**scores.to_dict(), "frames": n, "model": str(model), "data": str(data), "images": images,
                  "pairing": "k-th image with k-th labelled frame" if images else None,
                  "bn_frames": list(bn_frames) or None, "bn_max": bn_max if bn_frames else None}
        json_out.write_text(json.dumps(record, indent=2) + "\n")
    click.echo(scores.table())
    scored = "synthesized frames" if images else "frames"
    stats = f"; batch-norm statistics of {', '.join(bn_frames)}" if bn_frames else ""
    click.echo(f"mIoU {100 * scores.miou:.2f}% over {n} {scored} ({scores.pixels} labelled pixels; "
               f"pixel accuracy {100 * scores.pixel_accuracy:.2f}%{stats})")
