"""The HDF5 recorder: exact round trip, back-pressure, crash safety, repair, and bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import hdf5plugin  # noqa: F401 - registers the Zstd filter for direct h5py reads
import numpy as np
import pytest

from drivesim_carla.agents import make_agent
from drivesim_carla.errors import DrivesimError
from drivesim_carla.loop import ClosedLoop
from drivesim_carla.recorders import Recorder, consistent_frames, inspect_session, repair_session
from drivesim_carla.recorders import hdf5 as rec_hdf5
from drivesim_carla.scenarios import load_scenario
from drivesim_carla.synth import load_synthesizer
from drivesim_carla.world import make_world

ENV = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")


def drivesim(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "drivesim_carla.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env=ENV, timeout=timeout)


class Capture:
    """A tap that keeps every step, to compare with what the recorder wrote."""

    def __init__(self):
        self.steps = []

    def on_reset(self, info):
        pass

    def on_step(self, step):
        self.steps.append(step)

    def on_close(self):
        pass


def _loop(seed, taps, scenario="all_streams", size=(128, 64), style="flat"):
    spec = load_scenario(scenario)
    world = make_world("embedded", spec, seed, cameras=spec.camera_specs(*size), style=style)
    info = {"scenario_text": spec.to_yaml()}
    return ClosedLoop(world, make_agent("autopilot"), load_synthesizer("none"), taps=taps, info=info), spec


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "s.h5"
    cap = Capture()
    loop, spec = _loop(5, [Recorder(path), cap], scenario="all_streams")
    loop.run(40, seed=5)
    with h5py.File(path, "r") as f:
        assert f.attrs["complete"] and f.attrs["n_frames"] == 40 and f.attrs["format_version"] == 1
        assert json.loads(f.attrs["cameras"]) == ["front", "rear"]
        assert f.attrs["scenario"] == spec.to_yaml() and f.attrs["seed"] == 5
        for name in ("front", "rear"):
            g = f["cameras"][name]
            assert json.loads(g.attrs["streams"]) == ["rgb", "semantic", "depth", "instance", "flow"]
            for i in (0, 17, 39):
                cam = cap.steps[i].frame.cameras[name]
                assert np.array_equal(g["rgb"][i], cam.rgb)
                assert np.array_equal(g["semantic"][i], cam.semantic)
                assert np.array_equal(g["instance"][i], cam.instance)
                assert np.array_equal(g["depth"][i], cam.depth.astype(np.float16))
                assert np.array_equal(g["flow"][i], cam.flow.astype(np.float16))
                assert np.allclose(g["pose"][i], cam.transform.as_array(), atol=1e-4)
            assert np.allclose(g.attrs["intrinsics"], cap.steps[0].frame.cameras[name].intrinsics)
        ego = f["ego"]
        assert list(ego["frame"][:]) == [s.frame.frame for s in cap.steps]
        assert np.allclose(ego["time"][:], [s.frame.time for s in cap.steps])
        assert np.allclose(ego["speed"][:], [s.frame.ego.speed for s in cap.steps], atol=1e-5)
        chosen = np.array([(s.control.throttle, s.control.steer, s.control.brake) for s in cap.steps])
        assert np.allclose(ego["control"][:, :3], chosen, atol=1e-6)
        # the control chosen from frame i is the one applied to produce frame i + 1
        assert np.allclose(ego["applied_control"][1:, :3], ego["control"][:-1, :3], atol=1e-6)
        assert np.allclose(ego["transform"][:, :2], [s.frame.ego.transform.as_array()[:2] for s in cap.steps],
                           atol=1e-3)
        assert len(f["route/waypoints"]) > 10


def test_events_are_recorded_with_their_frame_index(tmp_path):
    class Crash:
        """Drives straight ahead at full throttle until something stops it."""

        name = "crash"

        def reset(self, route, seed):
            pass

        def act(self, obs):
            from drivesim_carla.types import Control

            return Control(throttle=1.0)

        def close(self):
            pass

    path = tmp_path / "crash.h5"
    cap = Capture()
    spec = load_scenario("default")
    world = make_world("embedded", spec, 1, cameras=spec.camera_specs(64, 32))
    ClosedLoop(world, Crash(), load_synthesizer("none"), taps=[Recorder(path), cap]).run(300, seed=1)
    expected = [(i, e) for i, s in enumerate(cap.steps) for e in s.frame.events]
    assert expected, "driving blind at full throttle should hit or cross something"
    with h5py.File(path, "r") as f:
        rows = [(int(r["i"]), r) for t in ("collisions", "lane_invasions", "off_road") for r in f["events"][t][:]]
    assert sorted(i for i, _ in rows) == sorted(i for i, _ in expected)
    kinds = {"collision": "collisions", "lane_invasion": "lane_invasions", "off_road": "off_road"}
    with h5py.File(path, "r") as f:
        for kind, table in kinds.items():
            mine = [(i, e.other_type) for i, e in expected if e.kind == kind]
            got = [(int(r["i"]), r["other_type"].decode()) for r in f["events"][table][:]]
            assert got == mine


def test_back_pressure_never_drops_a_frame(tmp_path, monkeypatch):
    real = rec_hdf5._SessionWriter.append

    def slow_append(self, item):
        time.sleep(0.02)
        real(self, item)

    monkeypatch.setattr(rec_hdf5._SessionWriter, "append", slow_append)
    path = tmp_path / "slow.h5"
    loop, _ = _loop(0, [Recorder(path, queue_size=2)], scenario="default", size=(64, 32))
    t0 = time.perf_counter()
    loop.run(50, seed=0)
    assert time.perf_counter() - t0 >= 50 * 0.02  # the loop waited for the disk
    with h5py.File(path, "r") as f:
        assert f.attrs["n_frames"] == 50 and len(f["ego/frame"]) == 50
        assert np.all(np.diff(f["ego/frame"][:]) == 1)


def test_writer_failure_stops_the_loop_and_leaves_a_repairable_file(tmp_path, monkeypatch):
    real = rec_hdf5._SessionWriter.append

    def failing_append(self, item):
        if self.n == 12:
            for _, _, d, _ in self.images[:1]:  # half a frame reaches the disk before the failure
                d.resize(13, axis=0)
            raise OSError("No space left on device")
        real(self, item)

    monkeypatch.setattr(rec_hdf5._SessionWriter, "append", failing_append)
    path = tmp_path / "full.h5"
    loop, _ = _loop(0, [Recorder(path)], scenario="default", size=(64, 32))
    with pytest.raises(DrivesimError, match="No space left on device.*the first 12 frames are in the file"):
        loop.run(100, seed=0)
    info = inspect_session(path)
    assert not info["complete"] and info["frames"] == 12
    assert repair_session(path) == 12
    info = inspect_session(path)
    assert info["complete"] and info["frames"] == 12
    with h5py.File(path, "r") as f:
        assert len(f["cameras/front/rgb"]) == 12


def test_kill_9_during_2000_frames_then_repair(tmp_path):
    """The bar: kill -9 mid-recording; the file opens, says incomplete, keeps every flushed frame."""
    path = tmp_path / "long.h5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "drivesim_carla.cli", "-vv", "record", "--frames", "2000", "--seed", "4",
         "--width", "64", "--height", "32", "--flush-interval", "0.2", "--quiet", "--out", str(path)],
        stderr=subprocess.PIPE, text=True, env=ENV)
    flushed = 0
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # wait for a few flushes
        if "flushed" in line:
            flushed = int(line.split("flushed")[1].split()[0])
            if flushed >= 100:
                break
        assert time.monotonic() < deadline, "no flush within 120 s"
    assert flushed >= 100, "the recording ended before it was killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    r = drivesim("inspect", str(path))
    assert r.returncode == 1 and "INCOMPLETE" in r.stdout, r.stdout + r.stderr
    info = inspect_session(path)
    n = info["frames"]
    assert not info["complete"] and flushed <= n < 2000
    with pytest.raises(OSError):  # a killed SWMR writer leaves the file marked open for writing
        h5py.File(path, "r").close()
    # every frame read back is the one a clean run produces
    cap = Capture()
    loop, _ = _loop(4, [cap], scenario="default", size=(64, 32))
    loop.run(n, seed=4)
    with h5py.File(path, "r", swmr=True) as f:
        rgb, sem, frames = f["cameras/front/rgb"][:n], f["cameras/front/semantic"][:n], f["ego/frame"][:n]
    assert np.array_equal(rgb, np.stack([s.frame.camera.rgb for s in cap.steps]))
    assert np.array_equal(sem, np.stack([s.frame.camera.semantic for s in cap.steps]))
    assert np.all(np.diff(frames) == 1)
    r = drivesim("inspect", "--repair", str(path))
    assert r.returncode == 0 and "complete" in r.stdout and f"{n} frames" in r.stdout, r.stdout + r.stderr
    with h5py.File(path, "r") as f:  # a plain open works again
        assert f.attrs["complete"] and f.attrs["n_frames"] == n and f.attrs["repaired"]
        assert all(len(d) == n for d in rec_hdf5.per_frame_datasets(f))
        assert np.array_equal(f["cameras/front/rgb"][n - 1], rgb[n - 1])
    assert not list(tmp_path.glob("*.tmp"))


def test_record_cli_cameras_and_folder_output(tmp_path):
    r = drivesim("record", "--scenario", "all_streams", "--cameras", "rear:rgb+flow", "--frames", "5",
                 "--width", "64", "--height", "32", "--seed", "2", "--out", str(tmp_path),
                 "--summary", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    (path,) = tmp_path.glob("all_streams_seed2_*.h5")
    assert json.loads((tmp_path / "s.json").read_text())["recording"] == str(path)
    info = inspect_session(path)
    assert info["frames"] == 5 and list(info["cameras"]) == ["rear"]
    assert list(info["cameras"]["rear"]["streams"]) == ["rgb", "flow"]
    assert info["cameras"]["rear"]["streams"]["flow"]["shape"] == [32, 64, 2]


def test_run_record_uncompressed(tmp_path):
    path = tmp_path / "run.h5"
    r = drivesim("run", "--headless", "--frames", "5", "--width", "64", "--height", "32", "--record", str(path),
                 "--codec", "none", "--quiet")
    assert r.returncode == 0, r.stderr
    info = inspect_session(path)
    assert info["complete"] and info["cameras"]["front"]["streams"]["rgb"]["codec"] == "none"


def _recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "ok.h5"
    loop, _ = _loop(0, [Recorder(path)], scenario="default", size=(64, 32))
    loop.run(20, seed=0)
    return path


def test_bad_input_is_one_line(tmp_path, tmp_path_factory):
    good = _recorded(tmp_path_factory)
    (tmp_path / "text.h5").write_text("not hdf5 at all")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    future = tmp_path / "future.h5"
    shutil.copy(good, future)
    with h5py.File(future, "r+") as f:
        f.attrs["format_version"] = 2
    cases = [
        (["inspect", str(tmp_path / "missing.h5")], "no such session file"),
        (["inspect", str(tmp_path / "text.h5")], "is not an HDF5 file"),
        (["inspect", str(truncated)], "is truncated or damaged"),
        (["inspect", str(future)], "session format version 2; this drivesim reads version 1"),
        (["record", "--frames", "3", "--out", str(good)], "exists; choose another name or pass --overwrite"),
        (["record", "--frames", "3", "--out", str(tmp_path / "nodir" / "x.h5")], "is not a directory"),
        (["record", "--frames", "3", "--cameras", "side:rgb", "--out", str(tmp_path / "y.h5")],
         "no camera 'side' in the scenario; it has: front"),
        (["record", "--frames", "3", "--cameras", "front:rgb+sound", "--out", str(tmp_path / "y.h5")],
         "unknown stream(s) sound"),
    ]
    before = good.read_bytes()
    for args, message in cases:
        r = drivesim(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (args, r.stderr)
    assert good.read_bytes() == before  # refusing to overwrite left the recording as it was
    assert not (tmp_path / "y.h5").exists()


def test_consistent_frames_of_a_complete_file(tmp_path_factory):
    path = _recorded(tmp_path_factory)
    with h5py.File(path, "r") as f:
        assert consistent_frames(f) == 20
    assert repair_session(path) == 20  # nothing to repair


def test_float16_storage_is_numpys_cast_bit_for_bit():
    """The fast OpenCV path for depth and flow rounds exactly as numpy does, edge cases included."""
    rng = np.random.default_rng(1)
    values = np.concatenate([
        rng.standard_normal(4000) * 1000, rng.standard_normal(1000) * 1e-6,  # normal and subnormal halves
        [65504.0, 65520.0, 1e6, -1e6, 0.0, -0.0, 1000.0, 2049.0, 2051.0, 1 + 2**-11, 1 + 3 * 2**-11],  # ties, overflow
    ]).astype(np.float32)
    for shape in ((len(values),), (len(values) // 2, 2)):
        a = values[: np.prod(shape)].reshape(shape)
        got = rec_hdf5._stored(a, np.float16)
        assert got.dtype == np.float16 and got.shape == a.shape
        with np.errstate(over="ignore"):
            assert np.array_equal(got.view(np.uint16), a.astype(np.float16).view(np.uint16))
