"""The embedded world's camera renderer: a software rasterizer (numba, one CPU core) that turns
the scene (`world.embedded.scene`) into CARLA-like rgb, semantic, depth, instance and flow streams, in
several looks (`STYLES`) and weathers (`WEATHERS`)."""

from .flow import Motion
from .renderer import FAR, Renderer
from .shading import STYLES, Style
from .weather import WEATHERS, WeatherPreset

__all__ = ["FAR", "Motion", "Renderer", "STYLES", "Style", "WEATHERS", "WeatherPreset"]
