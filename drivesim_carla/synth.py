"""Synthesizers: what replaces the simulator's rendering before the agent sees a frame.

`GeneratorSynth` is the bridge into the closed loop: a trained generator (a run directory or a
converted model directory) turns the primary camera's CARLA tags, mapped into the model's label
space, into the image the agent sees.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import DrivesimError
from .types import CameraData, CameraSpec, Frame

if TYPE_CHECKING:  # torch loads with the first generator, not with every `drivesim run`
    import torch
    from torch import Tensor, nn

    from .models.inputs import InputSpec
    from .models.pretrained import ModelCard

log = logging.getLogger(__name__)

MAPPABLE = ("train_ids", "cityscapes_ids", "carla", "color", "carla_color")  # labels.map_labels
_PROBE_ERRORS = (DrivesimError, RuntimeError, ValueError, IndexError)  # a size the network does not take


class Synthesizer(ABC):
    """Maps a world frame to the image the agent sees (h w 3 uint8, primary camera).

    `streams` lists the camera streams the synthesizer needs (e.g. "semantic" for a
    label-to-image generator), so the world renders them.
    """

    name: str = "synth"
    streams: tuple[str, ...] = ()

    @abstractmethod
    def __call__(self, frame: Frame) -> np.ndarray: ...

    def check(self, camera: CameraSpec) -> None:
        """Raise before a run if the primary camera does not render what this synthesizer needs."""
        missing = [s for s in self.streams if s not in camera.streams]
        if missing:
            raise _missing_streams(self.name, camera.name, missing)

    def close(self) -> None:
        """Free models and device memory."""


class WorldRender(Synthesizer):
    """`--synth none`: the world's own rendering, unchanged."""

    name = "none"
    streams = ("rgb",)

    def __call__(self, frame: Frame) -> np.ndarray:
        cam = frame.camera
        if cam.rgb is None:
            raise DrivesimError(f"camera '{cam.spec.name}' has no rgb stream; add rgb to its "
                                "streams in the scenario")
        return cam.rgb


def _missing_streams(name: str, camera: str, missing: list[str]) -> DrivesimError:
    need = ", ".join(missing)
    fix = f"add {'+'.join(missing)} to its streams (e.g. --cameras {camera}:rgb+semantic+instance)"
    if missing == ["instance"]:
        return DrivesimError(f"{name} takes instance edges but camera '{camera}' has no instance stream; {fix} "
                             "or use a model without instance input")
    return DrivesimError(f"{name} needs the {need} stream of camera '{camera}', which it does not render; {fix}")


# ----- the bridge --------------------------------------------------------------------------------
class GeneratorSynth(Synthesizer):
    """A label-to-image (or image-to-image) generator applied to the primary camera of each frame.

    The camera's CARLA tags are mapped into the model's label space through a lookup table made
    with `labels.map_labels`, encoded as `models.inputs.encode_input` encodes them for training
    (the same function), and run at the camera's size when the network accepts it, else at the
    nearest size it does (labels resized by nearest neighbour, the image resized back).
    CUDA: inference mode, autocast (bf16 where supported, else fp16), channels_last, optional
    `torch.compile`, pinned host buffers with non-blocking copies. CPU: inference mode, channels_last.
    """

    def __init__(self, net: nn.Module, spec: InputSpec, *, name: str = "generator",
                 device: str | torch.device = "cpu", compile: bool = False, precision: str = "auto",
                 size_hint: tuple[int, int] | None = None):
        import torch

        from .models.devices import autocast_dtype

        self.spec, self.name = spec, name
        self.device = torch.device(device)
        self.streams = _streams(spec)
        self.amp_dtype = autocast_dtype(precision, self.device)
        self.net = net.to(self.device).eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self._run = torch.compile(self.net) if compile else self.net
        self._lut = _label_lut(spec, self.device)
        self._hint = tuple(size_hint) if size_hint else None
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}
        self._pinned: dict[str, Tensor] = {}
        self._probe_error = ""
        self._seeded = "generator" in inspect.signature(net.forward).parameters  # e.g. a VAE generator's z

    # ----- per frame ---------------------------------------------------------------------------
    def __call__(self, frame: Frame) -> np.ndarray:
        cam = frame.camera
        self._check_frame(cam)
        h, w = (cam.rgb if self.spec.kind == "rgb" else cam.semantic).shape[:2]
        size = self.run_size(h, w)
        with _torch().inference_mode():
            y = self._forward(self._encode(cam, size))
            return self._download(to_uint8(y, (h, w)))

    def _check_frame(self, cam: CameraData) -> None:
        missing = [s for s in self.streams if getattr(cam, s) is None]
        if missing:
            raise _missing_streams(self.name, cam.spec.name, missing)

    def _encode(self, cam: CameraData, size: tuple[int, int]) -> Tensor:
        """`1 c H W` float on the device, as training encodes a sample."""
        from .models.inputs import encode_input

        if self.spec.kind == "rgb":
            rgb = self._upload("rgb", cam.rgb).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
            return _resize_image(rgb, size)
        label = self._lut[_resize_nearest(self._upload("semantic", cam.semantic), size).long()]
        if self.spec.kind == "color":
            return label.permute(2, 0, 1)[None]
        instance = None
        if self.spec.instance_edges:
            instance = _resize_nearest(self._upload("instance", cam.instance), size)[None]
        return encode_input(label[None], self.spec, instance)

    def _forward(self, x: Tensor, net: nn.Module | None = None) -> Tensor:
        torch = _torch()
        x = x.contiguous(memory_format=torch.channels_last)
        kwargs = {}
        if self._seeded:  # the same latent every frame: a stable look, not per-frame flicker
            kwargs["generator"] = torch.Generator(self.device).manual_seed(0)
        with self._autocast():
            return (net or self._run)(x, **kwargs)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return _torch().autocast(self.device.type, dtype=self.amp_dtype)

    # ----- host <-> device -----------------------------------------------------------------------
    def _upload(self, key: str, array: np.ndarray) -> Tensor:
        t = _torch().from_numpy(np.ascontiguousarray(array))
        if self.device.type != "cuda":
            return t
        buf = self._buffer(key, t.shape, t.dtype)
        buf.copy_(t)  # the previous frame's copy out of this buffer finished: each frame ends synchronized
        return buf.to(self.device, non_blocking=True)

    def _download(self, image: Tensor) -> np.ndarray:
        if self.device.type != "cuda":
            return image.numpy()
        buf = self._buffer("out", image.shape, image.dtype)
        buf.copy_(image, non_blocking=True)
        _torch().cuda.current_stream(self.device).synchronize()
        return buf.numpy().copy()  # the buffer is reused next frame; taps may keep this array

    def _buffer(self, key: str, shape, dtype) -> Tensor:
        buf = self._pinned.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._pinned[key] = _torch().empty(shape, dtype=dtype, pin_memory=True)
        return buf

    # ----- which size the network runs at --------------------------------------------------------
    def run_size(self, h: int, w: int) -> tuple[int, int]:
        """The (h, w) the network runs at for an `h x w` camera (found once per camera size)."""
        if (h, w) not in self._sizes:
            self._sizes[(h, w)] = self._plan(h, w)
            if self._sizes[(h, w)] != (h, w):
                log.info("%s runs at %dx%d for the %dx%d camera (labels resized, image resized back)",
                         self.name, *self._sizes[(h, w)][::-1], w, h)
        return self._sizes[(h, w)]

    def _plan(self, h: int, w: int) -> tuple[int, int]:
        """The camera's size if the network takes it; else the nearest multiples of the smallest
        power of two it takes (found on small probes); else the size it was trained at."""
        if self._accepts(h, w):
            return h, w
        for k in range(1, 10):
            m = 2 ** k
            if self._accepts(m, m):
                size = _nearest_multiple(h, m), _nearest_multiple(w, m)
                if self._accepts(*size):
                    return size
                break
        if self._hint and self._accepts(*self._hint):
            return self._hint
        raise DrivesimError(f"{self.name}: found no input size near the {w}x{h} camera that the network "
                            f"accepts ({self._probe_error}); set the camera to the size the model was trained at")

    def _accepts(self, h: int, w: int) -> bool:
        """Does the network map a `c h w` input to a `3 h w` image?"""
        torch = _torch()
        x = torch.zeros(1, self.spec.channels, h, w, device=self.device)
        try:
            with torch.inference_mode():
                y = self._forward(x, self.net)
        except _PROBE_ERRORS as e:
            self._probe_error = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            return False
        if not isinstance(y, torch.Tensor) or y.ndim != 4 or y.shape[1] != 3:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise DrivesimError(f"{self.name} does not make images (its output is {shape}, not 1 3 h w); "
                                "give a generator's run or model directory")
        self._probe_error = f"output {tuple(y.shape[-2:])} for input {(h, w)}"
        return tuple(y.shape[-2:]) == (h, w)

    def close(self) -> None:
        self.net = self._run = self._lut = None
        self._pinned.clear()
        if self.device.type == "cuda":
            _torch().cuda.empty_cache()


# ----- helpers ------------------------------------------------------------------------------------
def _torch():
    import torch

    return torch


def to_uint8(y: Tensor, size: tuple[int, int]) -> Tensor:
    """`1 3 H W` in [-1, 1] -> `h w 3` uint8 at `size`, resized (bilinear, antialiased) if needed."""
    import torch
    import torch.nn.functional as F

    y = y.float()
    if tuple(y.shape[-2:]) != tuple(size):
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False, antialias=True)
    return y[0].add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


def _resize_nearest(t: Tensor, size: tuple[int, int]) -> Tensor:
    """`h w` (any dtype) -> `size` by nearest neighbour at pixel centres (as recorders.datasets)."""
    import torch

    h, w = t.shape[-2:]
    if (h, w) == tuple(size):
        return t
    rows = ((torch.arange(size[0], device=t.device) + 0.5) * h / size[0]).long()
    cols = ((torch.arange(size[1], device=t.device) + 0.5) * w / size[1]).long()
    return t[..., rows[:, None], cols[None, :]]


def _resize_image(x: Tensor, size: tuple[int, int]) -> Tensor:
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _nearest_multiple(n: int, m: int) -> int:
    return max(m, int(round(n / m)) * m)


def _streams(spec: InputSpec) -> tuple[str, ...]:
    if spec.kind == "rgb":
        return ("rgb",)
    return ("semantic", "instance") if spec.needs_instance else ("semantic",)


def _label_lut(spec: InputSpec, device: torch.device) -> Tensor | None:
    """CARLA tag (0..255) -> the model's label id (`256` int64) or colour in [-1, 1] (`256 3` float)."""
    import torch

    from .labels import map_labels

    if spec.kind == "rgb":
        return None
    lut = map_labels(np.arange(256, dtype=np.uint8), spec.label_space)
    if spec.kind == "color":
        return torch.from_numpy(lut.astype(np.float32) / 127.5 - 1.0).to(device)
    return torch.from_numpy(lut.astype(np.int64)).to(device)


def input_spec_of(card: ModelCard) -> InputSpec:
    """The InputSpec of a model card, or one clear error if the bridge cannot feed that model."""
    from .models.inputs import InputSpec

    where = card.directory / "config.json"
    kind = card.meta.get("kind")
    if kind in ("segmenter", "discriminator", "backbone_init"):
        raise DrivesimError(f"{where}: this is a {kind} ({card.network}), not a generator; give a generator's run "
                            "or model directory to --synth (a segmenter goes to --perception)")
    raw = card.meta.get("input")
    if not isinstance(raw, dict):
        raise DrivesimError(f"{where}: {card.network} has no input description (meta.input), so it is not a "
                            "generator the loop can run; give a generator's run or model directory")
    kind, space = raw.get("kind"), raw.get("label_space")
    if kind != "rgb" and space not in MAPPABLE:
        raise DrivesimError(f"{where}: the model takes labels in '{space}', and CARLA tags cannot be mapped there "
                            f"(mappable: {', '.join(MAPPABLE)}); use a model trained on Cityscapes or CARLA labels")
    spec = InputSpec.from_dict(raw)
    if spec.kind == "onehot":
        _check_classes(spec, where)
    return spec


def _check_classes(spec: InputSpec, where: Path) -> None:
    from .labels import NUM_TAGS, map_labels

    if spec.label_space in ("color", "carla_color"):
        raise DrivesimError(f"{where}: a one-hot input cannot be in the colour label space '{spec.label_space}'; "
                            "the model card is damaged")
    ids = map_labels(np.arange(NUM_TAGS, dtype=np.uint8), spec.label_space)  # every tag CARLA renders
    top = int(ids[ids != 255].max())
    if top >= spec.num_classes:
        raise DrivesimError(f"{where}: the model has {spec.num_classes} classes, but CARLA tags map to "
                            f"{spec.label_space} ids up to {top}; it was trained on another label set")


def load_synthesizer(spec: str, *, device: str = "auto", compile: bool = False,
                     precision: str = "auto") -> Synthesizer:
    """`none` (the world's own render), or a trained generator: a run directory or a converted model
    directory. `device`: auto (CUDA when present), cpu, cuda[:N]; `compile`: wrap the network in
    torch.compile; `precision`: auto (bf16, else fp16, autocast on CUDA; fp32 on CPU), fp32, bf16, fp16."""
    if spec == "none":
        return WorldRender()
    if not Path(spec).exists():
        raise DrivesimError(f"synthesizer not found: {spec}; pass --synth none, a training run directory or a "
                            "converted model directory")
    from .models.devices import autocast_dtype, resolve_device
    from .models.pretrained import from_pretrained, read_card

    card = read_card(spec)
    input_spec = input_spec_of(card)
    dev = resolve_device(device)
    autocast_dtype(precision, dev)  # fail on a bad precision before loading weights
    net = from_pretrained(card.directory)
    hint = card.meta.get("size")
    return GeneratorSynth(net, input_spec, name=f"{card.network}@{spec}", device=dev, compile=compile,
                          precision=precision, size_hint=tuple(hint) if hint else None)
