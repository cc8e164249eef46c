"""Scenario specs (YAML, validated) and the built-in scenarios."""

from .spec import CameraConfig, Scenario, builtin_names, load_scenario, parse_scenario

__all__ = ["CameraConfig", "Scenario", "builtin_names", "load_scenario", "parse_scenario"]
