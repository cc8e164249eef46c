import json
import os
import subprocess
import sys

import av
import pytest

WALL_CLOCK = {"wall_seconds", "fps", "synth_ms_mean"}


def drivesim(*args, cwd=None):
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    return subprocess.run([sys.executable, "-m", "drivesim_carla.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=600)


def test_run_bar_video_summary_and_repeatability(tmp_path):
    """`drivesim run --headless --frames 400 --seed 3 --video v.mp4 --summary s.json`."""
    summaries = []
    for k in range(2):
        r = drivesim("run", "--headless", "--frames", "400", "--seed", "3", "--video",
                     f"v{k}.mp4", "--summary", f"s{k}.json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        summaries.append(json.loads((tmp_path / f"s{k}.json").read_text()))
    with av.open(str(tmp_path / "v0.mp4")) as video:  # H.264, what browsers and chat tools play
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in video.decode(stream)) == 400
    s = summaries[0]
    assert s["frames"] == 400 and s["sim_seconds"] == pytest.approx(20.0)
    assert s["distance_m"] >= 80.0 and s["collisions"] == 0
    for key in ("frames", "sim_seconds", "wall_seconds", "fps", "distance_m", "route_completion",
                "collisions", "lane_invasions", "world", "agent", "synth", "seed"):
        assert key in s
    assert (s["world"], s["agent"], s["synth"], s["seed"]) == ("embedded", "autopilot", "none", 3)
    strip = [{k: v for k, v in x.items() if k not in WALL_CLOCK} for x in summaries]
    assert strip[0] == strip[1]
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scenario", "nowhere"], "unknown scenario 'nowhere'"),
        (["--agent", "pilot"], "unknown agent 'pilot'"),
        (["--agent", "no_such_module:Agent"], "cannot import module 'no_such_module'"),
        (["--style", "watercolour"], "unknown style 'watercolour'"),
        (["--weather", "hail"], "unknown weather 'hail'"),
        (["--width", "8"], "--width 8 is invalid"),
        (["--height", "-3"], "--height -3 is invalid"),
        (["--frames", "0"], "--frames must be at least 1"),
        (["--synth", "missing_dir"], "synthesizer not found: missing_dir"),
        (["--world", "carla", "--port", "1", "--timeout", "2"], "no CARLA server answers at 127.0.0.1:1"),
        (["--frames", "many"], "'many' is not a valid integer"),
        (["--summary", "/nonexistent/dir/s.json"], "does not exist"),
        (["--scenario", "broken.yaml"], "scenario file not found"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    r = drivesim("run", "--headless", "--frames", "2", *args, cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert not list(tmp_path.iterdir())  # nothing written


def test_malformed_scenario_file(tmp_path):
    (tmp_path / "s.yaml").write_text("traffic: {vehicles: 2, trams: 1}\n")
    r = drivesim("run", "--headless", "--frames", "2", "--scenario", "s.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "unknown key 'traffic.trams'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_custom_agent_by_module_path(tmp_path):
    (tmp_path / "my_agent.py").write_text(
        "from drivesim_carla.agents.base import Agent\n"
        "from drivesim_carla.types import Control\n"
        "class Brake(Agent):\n"
        "    name = 'brake'\n"
        "    def act(self, obs):\n"
        "        return Control(brake=1.0)\n"
    )
    env_path = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "drivesim_carla.cli", "run", "--headless",
                        "--frames", "5", "--agent", "my_agent:Brake", "--width", "64",
                        "--height", "32", "--summary", "s.json"],
                       cwd=tmp_path, capture_output=True, text=True, env=env_path, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["agent"] == "brake" and s["distance_m"] == 0.0 and s["frames"] == 5
