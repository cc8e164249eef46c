"""Typed training configs: YAML files and `--set key=value` overrides, validated on load.

Every family's config subclasses `TrainConfig` (the knobs the trainer reads) and adds its own
fields, with defaults that reproduce the reference recipe. Configs are flat, so an override is
`--set steps=50` or `--set lambda_vgg=0`. An unknown key is an error that names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...errors import DrivesimError

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


class TrainConfig(Config):
    """What the trainer reads. Steps are optimizer steps of every phase (one D and one G update)."""

    steps: int | None = Field(None, ge=1, description="total steps; None = epochs over the training set")
    epochs: float = Field(200, gt=0, description="passes over the training set when steps is None")
    lr_decay_start: float = Field(0.5, ge=0, le=1, description="fraction of steps after which the learning "
                                  "rate decays linearly to 0 (pix2pix: 100 + 100 epochs = 0.5; 1 = constant)")
    lr_policy: Literal["linear", "poly"] = Field("linear", description="linear: constant, then linear decay to 0 "
                                                 "after lr_decay_start (pix2pix, SPADE); poly: lr * (1 - step/steps)"
                                                 "**lr_power from the start (DeepLab, ADVENT)")
    lr_power: float = Field(0.9, gt=0)
    lr_schedule_steps: int | None = Field(None, ge=1, description="poly: the horizon of the decay when it is "
                                          "longer than the run (ADVENT decays over 250k steps, stops at 120k)")
    batch_size: int = Field(1, ge=1, description="per process (DDP: per rank)")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "fp16", "bf16"] = "auto"  # auto: bf16 on CUDA when supported, else fp16; off on CPU
    num_workers: int = Field(0, ge=0)
    log_every: int = Field(50, ge=1)
    image_every: int = Field(500, ge=1)
    eval_every: int = Field(1000, ge=1)
    save_every: int = Field(1000, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    val_fraction: float = Field(0.05, ge=0, lt=1, description="held-out tail of the data for evaluation")
    val_max: int = Field(64, ge=0, description="held-out samples evaluated each time")
    # data
    size: tuple[int, int] | None = Field((256, 512), description="resize (h, w) before cropping; None = as stored")
    crop: tuple[int, int] | None = None
    flip: bool = True
    camera: str | None = None


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict:
    """`["a=1", "b=[2, 3]"]` -> `{"a": 1, "b": [2, 3]}` (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DrivesimError(f"--set {item!r}: expected key=value, e.g. --set steps=50")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            raise DrivesimError(f"--set {item!r}: the value is not valid YAML") from None
    return out


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict | None = None) -> C:
    """`cls` from an optional YAML file, then overrides; errors name the file and the key."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        path, source = Path(path), str(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise DrivesimError(f"config {path}: cannot read it ({e.strerror}); check the path") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise DrivesimError(f"config {path}: invalid YAML{where}; fix the file") from None
        if not isinstance(data, dict):
            raise DrivesimError(f"config {path}: expected a mapping of keys to values")
    if overrides:
        data = {**data, **overrides}
        source += " and --set"
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if not key:  # a check across several options
            raise DrivesimError(f"{source}: invalid options: {err['msg'].removeprefix('Value error, ')}") from None
        if err["type"] == "extra_forbidden":
            valid = ", ".join(cls.model_fields)
            raise DrivesimError(f"{source}: unknown key '{key}' for {cls.__name__}; valid keys: {valid}") from None
        raise DrivesimError(f"{source}: invalid value for '{key}': {err['msg']}") from None
