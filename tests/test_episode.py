"""The episode core: configs that round-trip, one assembly, a loop that steps, the same episodes as
before round 2 (golden summaries and pixels), and an inference side that never imports training."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from drivesim_carla.cli import main
from drivesim_carla.episode import EpisodeConfig, assemble
from drivesim_carla.errors import DrivesimError
from drivesim_carla.types import Control
from drivesim_carla.world import make_world

GOLDEN = Path(__file__).parent / "golden"
WALL = {"wall_seconds", "fps", "synth_ms_mean"}


def _same_as_golden(summary: dict, name: str) -> dict:
    golden = json.loads((GOLDEN / name).read_text())
    return {k: (summary.get(k), v) for k, v in golden.items() if k not in WALL and summary.get(k) != v}


# ----- same seed, same episode as before the core -------------------------------------------------
@pytest.mark.parametrize("seed", [7, 11])
def test_episodes_match_the_summaries_recorded_before_the_core(seed):
    with assemble(EpisodeConfig(seed=seed, frames=300)) as episode:
        summary = episode.run().summary
    assert _same_as_golden(summary, f"run-seed{seed}.json") == {}


def test_drivesim_run_matches_its_golden_summary(tmp_path):
    out = tmp_path / "s.json"
    main(["run", "--headless", "--frames", "300", "--seed", "3", "--summary", str(out)])  # exits only on error
    assert _same_as_golden(json.loads(out.read_text()), "run-seed3.json") == {}


def test_drivesim_record_matches_its_golden_pixels(tmp_path):
    out = tmp_path / "r.h5"
    main(["record", "--frames", "40", "--seed", "3", "--width", "256", "--height", "128",
          "--cameras", "front:rgb+semantic+depth", "--out", str(out)])
    golden = json.loads((GOLDEN / "record-seed3-40f-128x256.json").read_text())
    with h5py.File(out, "r") as f:
        got = {k: hashlib.sha256(f[f"cameras/front/{k}"][()].tobytes()).hexdigest()
               for k in ("rgb", "semantic", "depth")}
        assert list(f["cameras/front/rgb"].shape) == golden["shape"]
    assert got == {k: golden[k] for k in got}


# ----- the config ----------------------------------------------------------------------------------
def test_config_round_trips_through_yaml_and_json(tmp_path):
    config = EpisodeConfig(scenario="busy", seed=4, frames=12, width=128, height=64, style="textured",
                           cameras="front:rgb+semantic", synth={"model": "none", "precision": "fp32"},
                           endpoint={"port": 2010}, outputs={"summary": tmp_path / "s.json"})
    path = tmp_path / "episode.yaml"
    path.write_text(config.to_yaml())
    assert EpisodeConfig.from_yaml(path) == config
    assert EpisodeConfig.from_dict(json.loads(config.to_json())) == config
    assert EpisodeConfig.from_yaml(path).id == config.id


def test_the_id_names_what_runs_not_where_it_is_written(tmp_path):
    config = EpisodeConfig(seed=1)
    assert config.with_(outputs={"summary": tmp_path / "a.json"}, window=True).id == config.id
    assert config.with_(seed=2).id != config.id
    assert config.with_(synth={"precision": "fp32"}).id != config.id
    assert config.with_(synth={"precision": "fp32"}).synth.model == "none"  # a section merges
    inline = config.with_(scenario={"frames": 10, "traffic": {"vehicles": 0}})
    assert inline.id != config.id and inline.scenario["traffic"] == {"vehicles": 0}


@pytest.mark.parametrize("data, message", [
    ({"sedd": 3}, "unknown key 'sedd'; valid keys: world, endpoint, scenario"),
    ({"synth": {"modle": "x"}}, "unknown key 'synth.modle'; valid keys: model, device, precision, compile"),
    ({"frames": 0}, "frames: Input should be greater than or equal to 1"),
    ({"endpoint": {"port": 70000}}, "endpoint.port: Input should be less than or equal to 65535"),
    ({"cameras": "front:rgb+colour"}, "cameras: unknown stream(s) colour"),
])
def test_bad_configs_are_one_line_naming_the_key(data, message):
    with pytest.raises(DrivesimError) as e:
        EpisodeConfig.from_dict(data, source="job.yaml")
    assert str(e.value).startswith("job.yaml: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_bad_yaml_file_names_its_line(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("seed: 3\nframes: [1\n")
    with pytest.raises(DrivesimError, match=r"e.yaml: line \d+ is not valid YAML"):
        EpisodeConfig.from_yaml(path)


# ----- assembly ------------------------------------------------------------------------------------
def test_a_failed_assembly_writes_nothing(tmp_path):
    record = tmp_path / "s.h5"
    config = EpisodeConfig(world="carla", endpoint={"port": 1, "timeout": 0.5}, outputs={"record": record})
    with pytest.raises(DrivesimError, match="no CARLA server answers at 127.0.0.1:1"):
        assemble(config)
    assert list(tmp_path.iterdir()) == []


def test_world_registry_names_its_backends():
    from drivesim_carla.scenarios import load_scenario

    with pytest.raises(DrivesimError, match="unknown world 'unreal'; valid: embedded, carla"):
        make_world("unreal", load_scenario("default"))
    with pytest.raises(DrivesimError, match="world 'embedded' takes no ':x' argument"):
        make_world("embedded:x", load_scenario("default"))


# ----- the loop that steps --------------------------------------------------------------------------
def _small(**kw) -> EpisodeConfig:
    return EpisodeConfig(seed=5, frames=30, width=96, height=48, **kw)


def test_stepping_by_hand_is_the_run():
    with assemble(_small()) as episode:
        ran = episode.run().summary
    with assemble(_small()) as episode:
        loop = episode.loop
        first = loop.reset(5)
        assert first.frame.frame == 0 and first.image.shape == (48, 96, 3)
        steps = [loop.step() for _ in range(30)]
        summary = loop.end()
    assert [s.frame.frame for s in steps] == list(range(1, 31))
    assert all(s.control is not None and not s.manual for s in steps)
    # each tick applied the choice made from the frame before it (clipped as the world applies it)
    assert [s.frame.ego.control for s in steps[1:]] == [s.control.clipped() for s in steps[:-1]]
    assert {k: v for k, v in summary.items() if k not in WALL} == {k: v for k, v in ran.items()
                                                                    if k in summary and k not in WALL}


def test_a_loop_without_an_agent_is_driven_from_outside():
    with assemble(_small(agent=None)) as episode:
        loop = episode.loop
        with pytest.raises(DrivesimError, match="call reset"):
            loop.step(Control(throttle=1.0))
        loop.reset(5)
        with pytest.raises(DrivesimError, match="needs an agent"):
            loop.step()
        speeds = [loop.step(Control(throttle=1.0)).frame.ego.speed for _ in range(10)]
        assert loop.step(Control()).control is None
    assert np.all(np.diff(speeds) > 0) and speeds[-1] > 1.0


def test_reset_ends_the_running_episode_and_counts_afresh():
    with assemble(_small()) as episode:
        loop = episode.loop
        loop.reset(5)
        for _ in range(5):
            loop.step()
        first = loop.reset(6)  # the first episode's taps close here
        assert first.frame.frame == 0 and loop.metrics.frames == 0
        loop.step()
        assert loop.end()["frames"] == 1 and loop.end() is None


# ----- inference never imports training ------------------------------------------------------------
def test_the_inference_side_imports_no_training_module(tmp_path):
    """Importing the loop's modules and running an episode with a generator loads the network's
    own module only: no trainer, task, loss or training config."""
    from drivesim_carla.models.inputs import InputSpec
    from drivesim_carla.models.pretrained import save_pretrained
    from drivesim_carla.training.pix2pix.networks import UnetGenerator

    spec = InputSpec(kind="color", label_space="color")
    save_pretrained(UnetGenerator(3, 3, 5, 8), tmp_path / "g", network="pix2pix.UnetGenerator",
                    meta={"input": spec.to_dict()})
    code = f"""
import sys
import drivesim_carla.synth, drivesim_carla.agents, drivesim_carla.world, drivesim_carla.episode, drivesim_carla.loop
import drivesim_carla.env, drivesim_carla.models
assert not [m for m in sys.modules if m.startswith("drivesim_carla.training")], "imported"
from drivesim_carla.episode import EpisodeConfig, assemble
with assemble(EpisodeConfig(frames=2, width=64, height=32, synth={{"model": {str(tmp_path / "g")!r}}})) as e:
    e.run()
loaded = sorted(m for m in sys.modules if m.startswith("drivesim_carla.training"))
print(loaded)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    loaded = set(eval(r.stdout.strip().splitlines()[-1]))
    assert loaded == {"drivesim_carla.training", "drivesim_carla.training.pix2pix",
                      "drivesim_carla.training.pix2pix.networks"}, loaded
