"""A segmenter as an agent's perception.

`SegmenterPerception(model_dir)` turns what the agent sees (`obs.image`, the synthesizer's output)
into a Cityscapes train-id map; `PerceivingAgent(inner, perception)` runs it every step and hands
the inner agent a `PerceivedObservation` whose `perception` holds the map. `SegmentationAutopilot`
is a ready example: the privileged autopilot plus an emergency brake on what the segmenter sees,

    drivesim run --agent drivesim_carla.agents.perception:SegmentationAutopilot   # reads the env:
    DRIVESIM_SEGMENTER=runs/advent  DRIVESIM_SEGMENTER_DEVICE=cpu

(an agent given as `module:Class` is built without arguments, hence the environment variables).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DrivesimError
from ..types import Control
from .base import Agent, Observation

log = logging.getLogger(__name__)

# Cityscapes train ids of what the brake reacts to: person, rider, car, truck, bus, train, motorcycle, bicycle
HAZARD_TRAIN_IDS = (11, 12, 13, 14, 15, 16, 17, 18)
MODEL_ENV, DEVICE_ENV = "DRIVESIM_SEGMENTER", "DRIVESIM_SEGMENTER_DEVICE"


class SegmenterPerception:
    """RGB frames -> train-id maps with a trained segmenter (a run or `drivesim convert advent` directory,
    or a `DeepLabV2`). Frames are resized to the size the model was trained at (`input_size`)."""

    def __init__(self, model, device: str = "auto", input_size: tuple[int, int] | None = None):
        from ..models.devices import resolve_device

        self.device = resolve_device(device)
        if isinstance(model, (str, Path)):
            from ..models.segmenter import load_segmenter

            self.net, meta = load_segmenter(model, self.device)
            input_size = input_size or (tuple(meta["input_size"]) if meta.get("input_size") else None)
        else:
            self.net = model.to(self.device).eval()
        self.input_size = tuple(input_size) if input_size else None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """`h w 3` (or `b h w 3`) uint8 RGB -> `h w` (or `b h w`) uint8 train ids at the image's size."""
        import torch

        single = image.ndim == 3
        batch = image[None] if single else image
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise DrivesimError(f"perception takes h w 3 uint8 RGB frames, got {image.shape} {image.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            ids = self.net.predict(x, input_size=self.input_size).argmax(1).to(torch.uint8).cpu().numpy()
        return ids[0] if single else ids


@dataclass
class PerceivedObservation(Observation):
    perception: np.ndarray | None = None  # h w uint8 train ids of `image`


class PerceivingAgent(Agent):
    """Runs `perception` on every observation's image and passes the inner agent a
    `PerceivedObservation`; `last` keeps the latest map (for viewers and tests)."""

    def __init__(self, inner: Agent, perception):
        self.inner, self.perception = inner, perception
        self.name = f"{inner.name}+perception"
        self.last: np.ndarray | None = None

    def reset(self, route, seed: int | None = None) -> None:
        self.last = None
        self.inner.reset(route, seed)

    def act(self, obs: Observation) -> Control:
        self.last = self.perception(obs.image)
        return self.inner.act(PerceivedObservation(obs.frame, obs.image, obs.route, perception=self.last))

    def close(self) -> None:
        self.inner.close()


def hazard_ahead(ids: np.ndarray, fraction: float = 0.05) -> bool:
    """Whether more than `fraction` of the road ahead (rows 50-90 % of the height, the middle third of
    the width of a forward camera) is a person or a vehicle."""
    h, w = ids.shape
    window = ids[h // 2: (9 * h) // 10, w // 3: (2 * w) // 3]
    return bool(np.isin(window, HAZARD_TRAIN_IDS).mean() > fraction) if window.size else False


class BrakeOnHazard(Agent):
    """An inner agent's control, with full brake and no throttle while `hazard_ahead(obs.perception)`."""

    def __init__(self, inner: Agent, fraction: float = 0.05):
        self.inner, self.fraction = inner, fraction
        self.name = f"{inner.name}+brake"
        self.braking = False

    def reset(self, route, seed: int | None = None) -> None:
        self.braking = False
        self.inner.reset(route, seed)

    def act(self, obs: Observation) -> Control:
        control = self.inner.act(obs)
        seen = getattr(obs, "perception", None)
        if seen is None:
            raise DrivesimError("BrakeOnHazard needs obs.perception; wrap it in PerceivingAgent")
        self.braking = hazard_ahead(seen, self.fraction)
        if self.braking:
            return Control(throttle=0.0, steer=control.steer, brake=1.0)
        return control


class SegmentationAutopilot(PerceivingAgent):
    """The autopilot, braking hard whenever the segmenter sees a person or a vehicle on the road ahead.
    `model`: a segmenter directory (default: $DRIVESIM_SEGMENTER) or a DeepLabV2."""

    def __init__(self, model=None, device: str | None = None, target_speed: float = 30.0, fraction: float = 0.05):
        from .autopilot import Autopilot

        model = model if model is not None else os.environ.get(MODEL_ENV)
        if not model:
            raise DrivesimError(f"the segmentation autopilot needs a segmenter: pass --perception DIR (or set "
                                f"{MODEL_ENV}=DIR), a `drivesim train advent` run or `drivesim convert advent` output")
        device = device or os.environ.get(DEVICE_ENV, "auto")
        super().__init__(BrakeOnHazard(Autopilot(target_speed=target_speed), fraction),
                         SegmenterPerception(model, device))
        self.name = "segmentation-autopilot"
