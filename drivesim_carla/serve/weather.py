"""CARLA's `WeatherParameters` <-> the embedded world's weathers (clear, dusk, night, fog, rain)."""

from __future__ import annotations

from .protocol import WEATHER_FIELDS

# The CARLA preset each embedded weather reports (values of the 0.9.16 wheel's presets; fog is
# CloudyNoon with thick near fog).
_NOON = (5.0, 0.0, 0.0, 10.0, -1.0, 45.0, 2.0, 0.75, 0.1, 0.0, 1.0, 0.03, 0.033, 0.0)
PRESETS: dict[str, tuple[float, ...]] = {
    "clear": _NOON,
    "dusk": (5.0, 0.0, 0.0, 10.0, -1.0, 15.0, 2.0, 0.75, 0.1, 0.0, 1.0, 0.03, 0.033, 0.0),
    "night": (5.0, 0.0, 0.0, 10.0, -1.0, -90.0, 60.0, 75.0, 1.0, 0.0, 1.0, 0.03, 0.033, 0.0),
    "fog": (60.0, 0.0, 0.0, 10.0, -1.0, 45.0, 70.0, 0.0, 1.0, 20.0, 1.0, 0.03, 0.033, 0.0),
    "rain": (60.0, 60.0, 60.0, 60.0, -1.0, 45.0, 3.0, 0.75, 0.1, 0.0, 1.0, 0.03, 0.033, 0.0),
}
assert all(len(v) == len(WEATHER_FIELDS) for v in PRESETS.values())


def embedded_weather(p: dict[str, float], default: str) -> str:
    """The embedded weather closest to CARLA weather parameters: the sun below the horizon is
    night (whatever else), then thick fog, then rain, then a low sun (dusk), else clear.
    CARLA's `Default` (every field -1: the map's own weather) is `default`."""
    if all(p[f] == -1.0 for f in WEATHER_FIELDS[:10]):
        return default
    if p["sun_altitude_angle"] < 0.0:
        return "night"
    if p["fog_density"] >= 40.0:
        return "fog"
    if p["precipitation"] >= 30.0:
        return "rain"
    if p["sun_altitude_angle"] < 20.0:
        return "dusk"
    return "clear"


def carla_weather(name: str) -> dict[str, float]:
    return dict(zip(WEATHER_FIELDS, PRESETS[name], strict=True))
