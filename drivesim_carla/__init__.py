"""drivesim-carla: photoreal, closed-loop driving simulation around CARLA."""

__version__ = "0.1.0"

from .errors import DrivesimError  # noqa: E402
from .types import (  # noqa: E402
    ActorState,
    CameraData,
    CameraSpec,
    Control,
    EgoState,
    Event,
    Frame,
    TrafficLightState,
    Transform,
)

__all__ = [
    "ActorState", "CameraData", "CameraSpec", "Control", "DrivesimError", "EgoState", "Event",
    "Frame", "TrafficLightState", "Transform", "__version__",
]
