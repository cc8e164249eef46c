"""ADVENT training: a DeepLab-v2 segmenter learns from labelled source frames and adapts to
unlabelled target frames.

Methods (`method`), as in "ADVENT: Adversarial Entropy Minimization for Domain Adaptation in
Semantic Segmentation" (Vu et al., CVPR 2019) and valeoai/ADVENT's `train_UDA.py`:
- `source_only`: cross-entropy on the source (main head + 0.1 x aux head);
- `minent`: plus the target predictions' mean normalised entropy (weights 0.001 main, 0.0002 aux);
- `advent`: plus fooling a discriminator per head that tells source from target by their weighted
  self-information maps `-p log2 p / log2 k` (weights 0.001, 0.0002); the discriminators learn
  source = 0, target = 1 on the detached maps of the same step;
- `advent_minent`: both terms in one model. (The reference's published "AdvEnt+MinEnt" figure is
  instead the 0.5/0.5 average of the outputs of two separately trained models.)

One step is phase `seg` (source and target through the segmenter, one backward of the summed
losses, SGD) and, for the adversarial methods, phase `d` (the discriminators on the maps `seg`
computed, detached; Adam). As the reference updates both from the same forward passes, the order
changes nothing. Defaults are the reference's (`domain_adaptation/config.py`); see `AdventConfig`.

Data: the source is labelled frames (sessions' semantic stream as train ids, `--gta5`,
`--cityscapes`); the target (`--target`) is sessions, image folders or a Cityscapes root. Each
sample pairs source frame i with a target image drawn from (seed, epoch, i). Evaluation scores
held-out target frames with labels: the tail of target sessions (`val_fraction`) and Cityscapes'
val split; unlabelled targets (image folders) give no evaluation.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset, Subset

from ...errors import DrivesimError
from ...models.inputs import InputSpec
from ..core.config import TrainConfig
from ..core.data import Sources
from ..core.data import set_epoch as _set_epoch
from ..core.task import Task
from .metrics import IGNORE, SegmentationScores, class_names, colorize_train_ids, confusion_matrix
from .networks import NORMALIZATIONS, NUM_CLASSES, DeepLabV2, EntropyDiscriminator, load_imagenet_backbone, upsample

log = logging.getLogger(__name__)

METHODS = ("source_only", "minent", "advent", "advent_minent")
SOURCE_DOMAIN, TARGET_DOMAIN = 0.0, 1.0  # the discriminators' labels (the reference's source_label, target_label)


class AdventConfig(TrainConfig):
    """Defaults are valeoai/ADVENT's GTA5 -> Cityscapes recipe."""

    method: Literal["source_only", "minent", "advent", "advent_minent"] = "advent"
    backbone: Literal["resnet101", "resnet50", "resnet18"] = Field(
        "resnet101", description="resnet101 = the paper's; resnet18 trains on a CPU")
    width: int = Field(64, ge=1, description="backbone base width (64 = ResNet's; smaller for CPU experiments)")
    multi_level: bool = Field(True, description="the auxiliary head on layer3 and its discriminator")
    pretrained: bool = Field(True, description="ImageNet backbone weights through torchvision's loader (the "
                             "reference starts from DeepLab_resnet_pretrained_imagenet.pth: see init_checkpoint)")
    init_checkpoint: str | None = Field(None, description="start from an ADVENT .pth instead: the ImageNet init "
                                        "DeepLab_resnet_pretrained_imagenet.pth or a trained model (implies "
                                        "normalization caffe); or from a drivesim segmenter (a run or model "
                                        "directory, e.g. a source-only warm-up; its normalization)")
    normalization: Literal["caffe", "imagenet"] | None = Field(
        None, description="network input: caffe (BGR 0..255 minus the mean, the reference's) or imagenet "
        "(torchvision's); default caffe with init_checkpoint, else imagenet")
    # segmenter optimizer: SGD, poly schedule, 10x lr on the classifier heads
    lr: float = Field(2.5e-4, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    head_lr_mult: float = Field(10.0, gt=0, description="lr multiplier of the ASPP heads")
    lr_policy: Literal["linear", "poly"] = "poly"
    lr_power: float = Field(0.9, gt=0)
    # discriminators: Adam
    lr_d: float = Field(1e-4, gt=0)
    beta1_d: float = Field(0.9, ge=0, lt=1)
    beta2_d: float = Field(0.99, ge=0, lt=1)
    ndf: int = Field(64, ge=1)
    # loss weights
    lambda_seg_main: float = Field(1.0, ge=0)
    lambda_seg_aux: float = Field(0.1, ge=0)
    lambda_adv_main: float = Field(0.001, ge=0)
    lambda_adv_aux: float = Field(0.0002, ge=0)
    lambda_ent_main: float = Field(0.001, ge=0)
    lambda_ent_aux: float = Field(0.0002, ge=0)
    # schedule and data (the reference: EARLY_STOP 120000 iterations, batch 1, snapshots every 2000)
    steps: int | None = Field(120000, ge=1)
    seed: int = 1234
    save_every: int = Field(2000, ge=1)
    eval_every: int = Field(2000, ge=1)
    size: tuple[int, int] | None = Field((720, 1280), description="source frames resized to (h, w) "
                                         "(the reference's INPUT_SIZE_SOURCE 1280x720)")
    target_size: tuple[int, int] | None = Field((512, 1024), description="target frames resized to (h, w), "
                                                "for training and as the input size at evaluation "
                                                "(INPUT_SIZE_TARGET 1024x512)")
    eval_size: tuple[int, int] | None = Field(None, description="labels scored at (h, w); None = as stored "
                                              "(the reference scores at the labels' full size)")
    flip: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.init_checkpoint is not None and self.normalization is not None \
                and self.normalization != self._init_normalization():
            raise ValueError(f"init_checkpoint {self.init_checkpoint} takes {self._init_normalization()} "
                             f"normalization; drop normalization={self.normalization}")
        return self

    def _init_normalization(self) -> str:
        """caffe for the reference's .pth files; a drivesim segmenter's own."""
        if not Path(self.init_checkpoint).is_dir():
            return "caffe"
        from ...models.pretrained import read_card

        return read_card(self.init_checkpoint).config.get("normalization", "imagenet")

    @property
    def adversarial(self) -> bool:
        return self.method in ("advent", "advent_minent")

    @property
    def entropy(self) -> bool:
        return self.method in ("minent", "advent_minent")

    @property
    def input_normalization(self) -> str:
        return self.normalization or (self._init_normalization() if self.init_checkpoint else "imagenet")


# ----- losses ----------------------------------------------------------------------------------------
def self_information(prob: Tensor) -> Tensor:
    """Weighted self-information maps `-p log2(p) / log2(k)`, `b k h w` (the reference's prob_2_entropy);
    summed over k they are the normalised entropy in [0, 1]."""
    return -prob * torch.log2(prob + 1e-30) / math.log2(prob.shape[1])


def entropy_loss(prob: Tensor) -> Tensor:
    """The mean over pixels of the normalised entropy of `b k h w` probabilities."""
    return self_information(prob).sum(1).mean()


def segmentation_loss(logits: Tensor, label: Tensor) -> Tensor:
    """Cross-entropy over the labelled pixels (255 = ignore); 0 when none is labelled."""
    k = logits.shape[1]
    scored = label != IGNORE
    if bool((scored & (label >= k)).any()) or bool((label < 0).any()):
        bad = int(label[scored].max())
        raise DrivesimError(f"a label holds class {bad}, but the segmenter predicts {k} classes; source labels "
                            f"must be the 19 Cityscapes train ids (255 = ignore)")
    if not bool(scored.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), label.long(), ignore_index=IGNORE)


def _bce(logits: Tensor, domain: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), domain))


# ----- the task ----------------------------------------------------------------------------------------
class AdventTask(Task):
    family = "advent"
    Config = AdventConfig

    def __init__(self, config: AdventConfig):
        super().__init__(config)
        self.seg = DeepLabV2(NUM_CLASSES, config.backbone, config.multi_level, config.width,
                             config.input_normalization)
        self._initialise(config)
        adversarial = config.adversarial
        self.d_main = EntropyDiscriminator(NUM_CLASSES, config.ndf) if adversarial else None
        self.d_aux = EntropyDiscriminator(NUM_CLASSES, config.ndf) if adversarial and config.multi_level else None
        self.phases = ("seg", "d") if adversarial else ("seg",)
        self._maps: tuple[Tensor, dict[str, tuple[Tensor, Tensor]]] | None = None  # (batch image, level -> maps)
        self.last_scores: SegmentationScores | None = None  # of the latest evaluation (its confusion matrix)
        self.input_size = config.target_size  # what `eval miou` resizes to; `bind_data` decides

    def bind_data(self, train: Dataset, held_out: Dataset | None) -> None:
        """The exported input size: the target frames' size when the run had a target domain (the
        reference evaluates at INPUT_SIZE_TARGET), else the size of the source frames it learnt from."""
        self.input_size = self.config.target_size if getattr(train, "target_domain", True) else self.config.size

    def _initialise(self, config: AdventConfig) -> None:
        if config.init_checkpoint is not None:
            load_init_checkpoint(self.seg, config.init_checkpoint)
        elif config.pretrained:
            load_imagenet_backbone(self.seg)

    @classmethod
    def input_spec(cls, config: AdventConfig) -> InputSpec:
        return InputSpec(kind="rgb", label_space="rgb")

    @classmethod
    def datasets(cls, config: AdventConfig, sources: Sources) -> tuple[Dataset, Dataset | None]:
        source = source_dataset(config, sources)
        targets = sources.extra.get("target") or ()
        if not targets and config.method != "source_only":
            raise DrivesimError(f"method {config.method} adapts to a target domain; pass --target SESSIONS_OR_IMAGES "
                                "(unlabelled frames), or train --set method=source_only")
        images, held = target_datasets(config, targets)
        if held is None:
            log.warning("no labelled target frames held out (val_fraction 0, or no target sessions with a semantic "
                        "stream nor a Cityscapes root with gtFine/val): training without evaluation")
        train = AdventDataset(source, images if config.method != "source_only" else None,
                              size=config.target_size, flip=config.flip, seed=config.seed)
        train.target_domain = bool(targets)
        return train, held

    def networks(self) -> dict[str, nn.Module]:
        nets: dict[str, nn.Module] = {"seg": self.seg}
        if self.d_main is not None:
            nets["d_main"] = self.d_main
        if self.d_aux is not None:
            nets["d_aux"] = self.d_aux
        return nets

    def discriminators(self) -> list[nn.Module]:
        return [d for d in (self.d_main, self.d_aux) if d is not None]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        backbone, heads = self.seg.parameter_groups()
        out: dict[str, torch.optim.Optimizer] = {"seg": torch.optim.SGD(
            [{"params": backbone, "lr": c.lr}, {"params": heads, "lr": c.lr * c.head_lr_mult}],
            lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)}
        if self.discriminators():
            params = [p for d in self.discriminators() for p in d.parameters()]
            out["d"] = torch.optim.Adam(params, lr=c.lr_d, betas=(c.beta1_d, c.beta2_d))
        return out

    # ----- the step ----------------------------------------------------------------------------------
    def _logits(self, images: Tensor) -> dict[str, Tensor]:
        """Per level ("main", "aux"), logits `b k h w` upsampled to the images' size."""
        aux, main = self.seg(self.seg.normalize(images))
        size = tuple(images.shape[-2:])
        out = {"main": upsample(main, size)}
        if aux is not None:
            out["aux"] = upsample(aux, size)
        return out

    def seg_step(self, batch: dict) -> dict[str, Tensor]:
        """Source cross-entropy, plus the target's entropy and/or adversarial terms."""
        c = self.config
        weights = {"seg": (c.lambda_seg_main, c.lambda_seg_aux), "adv": (c.lambda_adv_main, c.lambda_adv_aux),
                   "ent": (c.lambda_ent_main, c.lambda_ent_aux)}
        losses: dict[str, Tensor] = {}
        total = 0.0
        src = self._logits(batch["image"])
        for level, logits in src.items():
            losses[f"seg_{level}"] = segmentation_loss(logits, batch["label"])
        if c.method != "source_only":
            if "target" not in batch:
                raise DrivesimError(f"method {c.method} needs target images in the batch; build the data with "
                                    "AdventTask.datasets and --target")
            trg = self._logits(batch["target"])
            trg_prob = {level: F.softmax(logits.float(), 1) for level, logits in trg.items()}
            if c.entropy:
                for level, prob in trg_prob.items():
                    losses[f"ent_{level}"] = entropy_loss(prob)
            if c.adversarial:
                losses |= self._fool(trg_prob)
                with torch.no_grad():
                    src_maps = {lv: self_information(F.softmax(lg.float(), 1)) for lv, lg in src.items()}
                self._maps = (batch["image"], {lv: (src_maps[lv], self_information(trg_prob[lv]).detach())
                                               for lv in trg_prob})
        for name, value in losses.items():
            kind, level = name.split("_")
            total = total + weights[kind][level == "aux"] * value
        return {"loss": total, **losses}

    def _fool(self, trg_prob: dict[str, Tensor]) -> dict[str, Tensor]:
        """The discriminators (frozen) should take the target's maps for source ones."""
        discs = {"main": self.d_main, "aux": self.d_aux}
        for d in self.discriminators():
            d.requires_grad_(False)
        try:
            return {f"adv_{lv}": _bce(discs[lv](self_information(p)), SOURCE_DOMAIN)
                    for lv, p in trg_prob.items() if discs[lv] is not None}
        finally:
            for d in self.discriminators():
                d.requires_grad_(True)

    def d_step(self, batch: dict) -> dict[str, Tensor]:
        """Each discriminator: source maps -> 0, target maps -> 1, each term halved (the reference's)."""
        maps = self._step_maps(batch)
        discs = {"main": self.d_main, "aux": self.d_aux}
        losses: dict[str, Tensor] = {}
        for level, (src, trg) in maps.items():
            d = discs[level]
            if d is None:
                continue
            losses[f"{level}_source"] = _bce(d(src), SOURCE_DOMAIN) / 2
            losses[f"{level}_target"] = _bce(d(trg), TARGET_DOMAIN) / 2
        return {"loss": sum(losses.values()), **losses}

    def _step_maps(self, batch: dict) -> dict[str, tuple[Tensor, Tensor]]:
        """The detached (source, target) maps of this step's `seg_step`, or fresh ones."""
        cached, self._maps = self._maps, None
        if cached is not None and cached[0] is batch["image"]:
            return cached[1]
        with torch.no_grad():
            src, trg = self._logits(batch["image"]), self._logits(batch["target"])
            return {lv: (self_information(F.softmax(src[lv].float(), 1)),
                         self_information(F.softmax(trg[lv].float(), 1))) for lv in src}

    # ----- evaluation, images, export ------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_batches(self, batches) -> dict[str, float]:
        """mIoU, pixel accuracy and per-class IoU (`iou/<class>`) of the held-out target frames."""
        confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
        n = 0
        for batch in batches:
            label = batch["label"]
            logits = self.seg.predict(batch["image"], size=tuple(label.shape[-2:]), input_size=self.config.target_size)
            confusion += confusion_matrix(logits.argmax(1).cpu(), label.cpu(), NUM_CLASSES)
            n += len(label)
        scores = SegmentationScores(confusion)
        self.last_scores = scores
        log.info("held-out target frames: mIoU %.2f%% over %d frames\n%s", 100 * scores.miou, n, scores.table())
        return {"samples": n, **scores.scalars()}

    @torch.no_grad()
    def generate(self, batch: dict) -> Tensor:
        """The source frames' predicted classes as colours `b 3 h w` in [-1, 1]."""
        return colorize_train_ids(self._logits(batch["image"])["main"].argmax(1))

    def visuals(self, batch: dict, fake: Tensor) -> dict[str, Tensor]:
        panels = {"source": batch["image"], "label": colorize_train_ids(batch["label"]), "prediction": fake}
        if "target" in batch:
            size = tuple(batch["image"].shape[-2:])
            target = batch["target"]
            with torch.no_grad():
                pred = colorize_train_ids(self._logits(target)["main"].argmax(1))
            panels |= {"target": F.interpolate(target.float(), size=size, mode="bilinear", align_corners=False),
                       "target prediction": F.interpolate(pred, size=size, mode="nearest")}
        return panels

    def export(self) -> tuple[str, nn.Module, dict]:
        return "advent.DeepLabV2", self.seg, segmenter_meta(self.seg, self.config, self.input_size)


def segmenter_meta(net: DeepLabV2, config: AdventConfig | None = None,
                   input_size: tuple[int, int] | None = None) -> dict:
    """The model card's meta of a segmenter: what `drivesim eval miou` and the perception agent read."""
    norm = net.config["normalization"]
    meta = {"family": "advent", "kind": "segmenter", "num_classes": net.num_classes, "label_space": "train_ids",
            "classes": list(class_names()), "input": InputSpec(kind="rgb", label_space="rgb").to_dict(),
            "normalization": {"name": norm, **NORMALIZATIONS[norm]}}
    if config is not None:
        size = input_size if input_size is not None else config.target_size
        meta |= {"method": config.method, "input_size": list(size) if size else None}
    return meta


def load_init_checkpoint(net: DeepLabV2, path: str | Path) -> None:
    """Initialise from an ADVENT checkpoint (the ImageNet init: backbone only; a trained model: all) or a
    drivesim segmenter's run or model directory (all)."""
    from ...models.pretrained import WEIGHTS_NAME, load_weights, read_card
    from ..core.checkpoint import load_reference_checkpoint
    from .convert import convert

    if Path(path).is_dir():
        card = read_card(path)
        if card.network != "advent.DeepLabV2":
            raise DrivesimError(f"init_checkpoint {path}: a {card.network}, not a DeepLab-v2 segmenter")
        differ = {k: v for k, v in card.config.items() if net.config.get(k) != v}
        if differ:
            fix = " ".join(f"--set {k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in differ.items())
            raise DrivesimError(f"init_checkpoint {path} is another network; train with {fix}")
        load_weights(net, card.directory / WEIGHTS_NAME)
        log.info("initialised the segmenter from %s", card.directory)
        return
    converted = convert(load_reference_checkpoint(path))
    if converted.network != "advent.DeepLabV2":
        raise DrivesimError(f"init_checkpoint {path}: a {converted.network}, not a DeepLab-v2 segmenter")
    theirs, ours = converted.net.config, net.config
    keys = ("backbone", "width") + (("multi_level",) if converted.meta["kind"] == "segmenter" else ())
    differ = {k: theirs[k] for k in keys if theirs[k] != ours[k]}
    if differ:
        fix = " ".join(f"--set {k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in differ.items())
        raise DrivesimError(f"init_checkpoint {path} is a {theirs['backbone']} of width {theirs['width']} "
                            f"(multi-level {theirs['multi_level']}); train with {fix}")
    state = converted.net.state_dict()
    if converted.meta["kind"] == "backbone_init":
        state = {k: v for k, v in state.items() if not k.startswith(("layer5.", "layer6."))}
    net.load_state_dict(state, strict=converted.meta["kind"] == "segmenter")
    log.info("initialised the segmenter from %s (%s)", path, converted.meta["kind"])


# ----- data ----------------------------------------------------------------------------------------------
def source_dataset(config: AdventConfig, sources: Sources) -> Dataset:
    """Labelled source frames (train ids): sessions, a GTA5 folder, a Cityscapes root."""
    from ...recorders.cityscapes import CityscapesDataset
    from ...recorders.datasets import PairedDataset
    from ...recorders.gta5 import GTA5Dataset

    common = dict(labels="train_ids", size=config.size, crop=config.crop, flip=config.flip, seed=config.seed)
    parts: list[Dataset] = []
    if sources.data:
        for path in sources.data:
            _check_labelled_sessions(Path(path), config.camera)
        parts.append(PairedDataset(list(sources.data), camera=config.camera, **common))
    if sources.extra.get("gta5") is not None:
        parts.append(GTA5Dataset(sources.extra["gta5"], **common))
    if sources.cityscapes is not None:
        parts.append(CityscapesDataset(sources.cityscapes, "train", **common))
    if not parts:
        raise DrivesimError("advent needs labelled source frames: --data SESSIONS (with a semantic stream), "
                            "--gta5 DIR or --cityscapes DIR")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def _check_labelled_sessions(path: Path, camera: str | None) -> None:
    from ...recorders.datasets import SESSION_SUFFIXES, as_index

    if path.is_dir() and not any(p.suffix in SESSION_SUFFIXES for p in path.iterdir()):
        raise DrivesimError(f"--data {path}: a folder without sessions (*.h5) has no labels; the source must be "
                            "labelled (sessions with a semantic stream, --gta5, --cityscapes); pass unlabelled "
                            "images as --target")
    for s in as_index(path).sessions:
        info = s.camera(camera)
        if "semantic" not in info.streams:
            raise DrivesimError(f"--data {s.path}: camera '{info.name}' has no semantic stream, so no labels; "
                                "record the source with semantic, or pass these frames as --target")


def target_datasets(config: AdventConfig, paths) -> tuple[ImageList | None, Dataset | None]:
    """(training images of every target, their labelled held-out frames or None)."""
    images: list = []
    held: list[Dataset] = []
    for path in paths:
        train_part, held_part = _target(config, Path(path))
        images.append(train_part)
        if held_part is not None:
            held.append(held_part)
    if not images:
        return None, None
    return ImageList(images), (held[0] if len(held) == 1 else ConcatDataset(held)) if held else None


def _target(config: AdventConfig, path: Path):
    """One --target: (an ImageSource of training frames, labelled held-out frames or None)."""
    from ...recorders.cityscapes import CityscapesDataset
    from ...recorders.datasets import SESSION_SUFFIXES, ImageFolder, PairedDataset, SessionImages, as_index
    from ...recorders.gta5 import GTA5Dataset, is_gta5_root

    if not path.exists():
        raise DrivesimError(f"--target {path}: not found; give sessions, a folder of images or a Cityscapes root")
    eval_common = dict(labels="train_ids", size=config.eval_size, seed=config.seed)
    if (path / "leftImg8bit").is_dir():  # Cityscapes: train images, val with labels
        images = ImageFolder(path / "leftImg8bit" / "train")
        val = (path / "leftImg8bit" / "val").is_dir() and (path / "gtFine" / "val").is_dir()
        return images, CityscapesDataset(path, "val", **eval_common) if val else None
    if is_gta5_root(path):
        full = GTA5Dataset(path, **eval_common)
        return _split(full, GTA5Dataset(path, **eval_common), config.val_fraction)
    if path.is_dir() and not any(p.suffix in SESSION_SUFFIXES for p in path.iterdir()):
        return ImageFolder(path), None
    index = as_index(path)
    if all("semantic" in s.camera(config.camera).streams for s in index.sessions):
        return _split(SessionImages(index, config.camera), PairedDataset(index, camera=config.camera, **eval_common),
                      config.val_fraction)
    return SessionImages(index, config.camera), None


def _split(images, labelled: Dataset, fraction: float):
    """The first (1 - fraction) of the frames as training images, the rest labelled (the core's rule)."""
    n = len(images)
    k = int(round(n * fraction))
    if fraction > 0 and n >= 2:
        k = max(k, 1)
    if k == 0:
        return images, None
    return ImageRange(images, 0, n - k), Subset(labelled, range(n - k, n))


class ImageRange:
    """Frames start..stop-1 of an ImageSource."""

    def __init__(self, images, start: int, stop: int):
        self.images, self.start, self.stop = images, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def rgb(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} outside 0..{len(self) - 1}")
        return self.images.rgb(self.start + i)


class ImageList:
    """Several ImageSources one after another."""

    def __init__(self, parts: list):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rgb(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} outside 0..{len(self) - 1}")
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.parts[k].rgb(i - int(self.offsets[k]))


class AdventDataset(Dataset):
    """Source sample i (`image`, `label`) with `target`: a target image (3 h w in [-1, 1], resized to
    `size`, flipped at random when `flip`) drawn from (seed, epoch, i); `target_index` says which."""

    def __init__(self, source: Dataset, target=None, *, size: tuple[int, int] | None = None, flip: bool = False,
                 seed: int = 0):
        from ...recorders.datasets import Augment

        if target is not None and len(target) == 0:
            raise DrivesimError("the target domain has no images")
        self.source, self.target, self.seed, self.epoch = source, target, seed, 0
        self.augment = Augment(size, None, flip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        _set_epoch(self.source, epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        from ...recorders.datasets import image_tensor

        s = self.source[i]
        out = {"image": s["image"], "label": s["label"], "index": i}
        if self.target is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i, 1])  # not the source's crop/flip draw
            j = int(rng.integers(len(self.target)))
            img = self.target.rgb(j)
            out["target"] = image_tensor(self.augment.image(img, self.augment.draw(*img.shape[:2], rng)))
            out["target_index"] = j
        return out
