"""Weather presets: sun, sky, ambient light, fog and rain for the embedded world's renderer.

Colours are linear RGB. Irradiances are relative (an albedo of 1 under the clear noon sun gives
about 2.6 before the tone curve).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .shading import (
    W_AMB,
    W_AMBG,
    W_CLOUD,
    W_EXPO,
    W_FOG,
    W_FOGCOL,
    W_HOR,
    W_NIGHT,
    W_RAIN,
    W_SIZE,
    W_SUN,
    W_SUNCOL,
    W_WET,
    W_ZEN,
)

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class WeatherPreset:
    """The light and atmosphere of a scene."""

    name: str
    sun_elevation: float  # degrees above the horizon (negative: below, no sun light)
    sun_azimuth: float  # degrees, world yaw of the direction towards the sun (x towards y)
    sun_color: RGB  # irradiance of the sun on a surface facing it
    ambient: RGB  # sky light on an upward-facing surface
    ambient_ground: RGB  # light bounced from the ground onto downward-facing surfaces
    sky_zenith: RGB
    sky_horizon: RGB
    fog_color: RGB
    fog_density: float  # 1/m: transmittance exp(-density * depth)
    wetness: float = 0.0  # 0..1 wet roads (textured style)
    rain: float = 0.0  # 0..1 rain streaks (textured style)
    night: float = 0.0  # 0..1 street lamps, lit windows, headlights
    exposure: float = 1.0
    clouds: float = 0.0  # 0..1 cloud cover (textured style)
    headlights: float = 0.0  # 0..1 strength of the headlights passed to `Renderer.render`

    def sun_direction(self) -> np.ndarray:
        """(3,) unit vector from the ground towards the sun."""
        el = math.radians(self.sun_elevation)
        az = math.radians(self.sun_azimuth)
        return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])

    def packed(self) -> np.ndarray:
        """The parameters as the float64 vector the kernels read (layout in shading.W_*)."""
        p = np.zeros(W_SIZE, np.float64)
        p[W_SUN:W_SUN + 3] = self.sun_direction()
        sun_on = 1.0 if self.sun_elevation > 0 else 0.0
        p[W_SUNCOL:W_SUNCOL + 3] = np.asarray(self.sun_color) * sun_on
        p[W_AMB:W_AMB + 3] = self.ambient
        p[W_AMBG:W_AMBG + 3] = self.ambient_ground
        p[W_ZEN:W_ZEN + 3] = self.sky_zenith
        p[W_HOR:W_HOR + 3] = self.sky_horizon
        p[W_FOGCOL:W_FOGCOL + 3] = self.fog_color
        p[W_FOG] = self.fog_density
        p[W_WET] = self.wetness
        p[W_RAIN] = self.rain
        p[W_NIGHT] = self.night
        p[W_EXPO] = self.exposure
        p[W_CLOUD] = self.clouds
        p.flags.writeable = False
        return p


WEATHERS: dict[str, WeatherPreset] = {
    "clear": WeatherPreset(
        "clear", sun_elevation=48.0, sun_azimuth=-130.0, sun_color=(2.3, 2.15, 1.95),
        ambient=(0.42, 0.5, 0.66), ambient_ground=(0.16, 0.15, 0.13),
        sky_zenith=(0.1, 0.22, 0.6), sky_horizon=(0.55, 0.68, 0.85),
        fog_color=(0.55, 0.65, 0.8), fog_density=0.0025, clouds=0.25,
    ),
    "dusk": WeatherPreset(
        "dusk", sun_elevation=7.0, sun_azimuth=-100.0, sun_color=(1.9, 0.95, 0.4),
        ambient=(0.2, 0.18, 0.26), ambient_ground=(0.12, 0.07, 0.05),
        sky_zenith=(0.08, 0.09, 0.25), sky_horizon=(1.0, 0.5, 0.22),
        fog_color=(0.55, 0.35, 0.25), fog_density=0.004, exposure=1.35, clouds=0.35,
        headlights=0.35,
    ),
    "night": WeatherPreset(
        "night", sun_elevation=-25.0, sun_azimuth=60.0, sun_color=(0.0, 0.0, 0.0),
        ambient=(0.012, 0.016, 0.03), ambient_ground=(0.006, 0.006, 0.008),
        sky_zenith=(0.002, 0.003, 0.008), sky_horizon=(0.012, 0.014, 0.025),
        fog_color=(0.012, 0.013, 0.02), fog_density=0.004, night=1.0, exposure=2.6,
        clouds=0.15, headlights=1.0,
    ),
    "fog": WeatherPreset(
        "fog", sun_elevation=35.0, sun_azimuth=-120.0, sun_color=(0.35, 0.35, 0.33),
        ambient=(0.55, 0.57, 0.6), ambient_ground=(0.2, 0.2, 0.2),
        sky_zenith=(0.55, 0.57, 0.6), sky_horizon=(0.62, 0.64, 0.66),
        fog_color=(0.6, 0.62, 0.64), fog_density=0.03, clouds=0.0, headlights=0.5,
    ),
    "rain": WeatherPreset(
        "rain", sun_elevation=40.0, sun_azimuth=-120.0, sun_color=(0.25, 0.25, 0.26),
        ambient=(0.36, 0.38, 0.43), ambient_ground=(0.1, 0.1, 0.11),
        sky_zenith=(0.22, 0.24, 0.28), sky_horizon=(0.4, 0.42, 0.46),
        fog_color=(0.36, 0.38, 0.42), fog_density=0.008, wetness=1.0, rain=1.0,
        exposure=1.1, clouds=0.9, headlights=0.45,
    ),
}
