"""Driving agents: `autopilot`, `manual`, `segmentation-autopilot`, or any `module:Class` on the path."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..errors import DrivesimError
from .base import Agent, Observation


def _autopilot(target_speed: float = 30.0, **_: object) -> Agent:
    from .autopilot import Autopilot

    return Autopilot(target_speed=target_speed)


def _manual(viewer: object = None, **_: object) -> Agent:
    from .manual import ManualAgent

    return ManualAgent(viewer)  # type: ignore[arg-type]


def _segmentation_autopilot(target_speed: float = 30.0, perception: str | None = None,
                            perception_device: str = "auto", **_: object) -> Agent:
    from .perception import SegmentationAutopilot

    return SegmentationAutopilot(perception, perception_device, target_speed=target_speed)


AGENTS: dict[str, Callable[..., Agent]] = {"autopilot": _autopilot, "manual": _manual,
                                           "segmentation-autopilot": _segmentation_autopilot}


def with_perception(agent: Agent, model_dir: str, device: str = "auto") -> Agent:
    """`agent` seeing through a segmenter: it gets `obs.perception`, a train-id map of `obs.image`."""
    from .perception import PerceivingAgent, SegmenterPerception

    return PerceivingAgent(agent, SegmenterPerception(model_dir, device))


def make_agent(name: str, **options: object) -> Agent:
    """An agent by registry name or `module:Class` (constructed with no arguments).

    Options the chosen agent does not use (`viewer`, `target_speed`, `perception`) are ignored."""
    if name in AGENTS:
        return AGENTS[name](**options)
    if ":" not in name:
        raise DrivesimError(f"unknown agent '{name}'; valid: {', '.join(AGENTS)}, or module:Class")
    module_name, _, cls_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise DrivesimError(f"agent '{name}': cannot import module '{module_name}' ({e}); "
                            "check PYTHONPATH") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise DrivesimError(f"agent '{name}': module '{module_name}' has no '{cls_name}'")
    agent = cls()
    if not callable(getattr(agent, "act", None)):
        raise DrivesimError(f"agent '{name}' has no act(observation) method")
    return agent


__all__ = ["AGENTS", "Agent", "Observation", "make_agent", "with_perception"]
