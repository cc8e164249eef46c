"""The carla backend: payload decoders, the route planner on a client-side `carla.Map`,
`CarlaWorld`'s bookkeeping against a fake server, and `drivesim run --world carla` end to end
against `drivesim serve` (each client in its own process: the C++ client may abort its process)."""

import importlib.util
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from drivesim_carla.errors import DrivesimError
from drivesim_carla.route import RoadOption
from drivesim_carla.scenarios import parse_scenario
from drivesim_carla.types import CameraSpec, Control
from drivesim_carla.world.carla.decode import (
    decode_depth,
    decode_flow,
    decode_instance,
    decode_rgb,
    decode_semantic,
)

carla = pytest.importorskip("carla")

from drivesim_carla.world.carla.backend import (  # noqa: E402
    CarlaWorld,
    marking_name,
    traffic_manager_port,
)
from drivesim_carla.world.carla.route import attach_signals, plan_route, turn_option  # noqa: E402

CLIENTS = Path(__file__).parent / "carla_world_clients"
ALL = ("rgb", "semantic", "depth", "instance", "flow")
EMPTY = {"traffic": {"vehicles": 0, "parked": 0, "pedestrians": 0}, "ego": {"route_length": 120}}


def _fake_carla():
    spec = importlib.util.spec_from_file_location("fake_carla", CLIENTS / "fake_carla.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fake_carla"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


fake_carla = _fake_carla()


# ----- decoders -------------------------------------------------------------------------------
def _bgra(pixels):
    """(h w 4) from rows of (B, G, R) tuples, alpha 255."""
    a = np.array([[(*p, 255) for p in row] for row in pixels], np.uint8)
    return a.tobytes(), a.shape[1], a.shape[0]


def test_decoders_read_known_pixels():
    raw, w, h = _bgra([[(10, 20, 30), (1, 2, 3), (0, 0, 1)],
                       [(255, 255, 255), (0x12, 0x34, 14), (1, 0, 0)]])
    assert decode_rgb(raw, w, h).tolist() == [[[30, 20, 10], [3, 2, 1], [1, 0, 0]],
                                              [[255, 255, 255], [14, 0x34, 0x12], [0, 0, 1]]]
    assert decode_semantic(raw, w, h).tolist() == [[30, 3, 1], [255, 14, 0]]
    depth = decode_depth(raw, w, h)
    assert depth.dtype == np.float32 and depth.shape == (2, 3)
    # (R + G*256 + B*65536) / (2**24 - 1) * 1000 m
    assert depth[0, 1] == pytest.approx((3 + 2 * 256 + 65536) / 16777215 * 1000, rel=1e-6)
    assert depth[0, 2] == pytest.approx(1000 / 16777215, rel=1e-6)
    assert depth[1, 0] == pytest.approx(1000.0)
    assert depth[1, 2] == pytest.approx(65536 / 16777215 * 1000, rel=1e-6)
    inst = decode_instance(raw, w, h)
    assert inst.dtype == np.int32 and inst[1, 1] == 0x1234 and inst[0, 0] == 20 + 10 * 256


def test_flow_decodes_to_pixels_with_v_down():
    w, h = 4, 2
    raw = np.zeros((h, w, 2), np.float32)
    raw[0, 1] = (0.5, -0.25)  # right and down in normalised device units (y up)
    raw[1, 3] = (-2.0, 2.0)  # a full image width left, a full height up
    flow = decode_flow(raw.tobytes(), w, h)
    assert flow.dtype == np.float32 and flow.shape == (h, w, 2)
    assert flow[0, 1].tolist() == [1.0, 0.25] and flow[1, 3].tolist() == [-4.0, -2.0]
    with pytest.raises(ValueError, match="does not hold 4x3"):
        decode_flow(raw.tobytes(), 4, 3)


def test_depth_round_trip_within_one_code():
    metres = np.array([[0.0, 0.5, 3.25], [99.9, 512.0, 1000.0]])
    code = np.round(metres / 1000 * (2**24 - 1)).astype(np.int64)
    bgra = np.stack([code >> 16, (code >> 8) & 255, code & 255, np.full_like(code, 255)], -1)
    back = decode_depth(bgra.astype(np.uint8).tobytes(), 3, 2)
    assert np.abs(back - metres).max() < 1000 / 2**24 + 1e-4


def test_lane_marking_names_match_the_embedded_world():
    m = types.SimpleNamespace
    assert marking_name(m(type=carla.LaneMarkingType.Broken, color=carla.LaneMarkingColor.Standard)) \
        == "broken_white"
    assert marking_name(m(type=carla.LaneMarkingType.Solid, color=carla.LaneMarkingColor.Yellow)) \
        == "solid_yellow"
    assert marking_name(m(type=carla.LaneMarkingType.SolidSolid,
                          color=carla.LaneMarkingColor.Yellow)) == "solid_solid_yellow"
    assert marking_name(m(type=carla.LaneMarkingType.NONE, color=carla.LaneMarkingColor.White)) \
        == "none"


# ----- route on a client-side map --------------------------------------------------------------
@pytest.fixture(scope="module")
def town():
    from drivesim_carla.world.embedded.town import build_town

    t = build_town(0, (3, 3))
    return t, carla.Map(t.name, t.network.to_xodr())


def _starts(cmap):
    return [w for w in cmap.generate_waypoints(30.0) if not w.is_junction]


def test_turn_option_follows_carla_yaw():
    assert turn_option(0.0, 90.0) == RoadOption.RIGHT  # yaw grows clockwise: +90 is a right turn
    assert turn_option(170.0, 80.0) == RoadOption.LEFT and turn_option(170.0, -100.0) == RoadOption.RIGHT
    assert turn_option(-90.0, -80.0) == RoadOption.STRAIGHT


def test_route_follows_lanes_and_names_turns_as_the_town_does(town):
    t, cmap = town
    lanes = {(seg.road_id, seg.lane_id): seg for seg in t.lanes.values()}
    rng = np.random.default_rng(3)
    seen = set()
    for start in _starts(cmap)[:12]:
        route = plan_route(start, 300.0, rng)
        assert route.length == pytest.approx(300.0, abs=2.0)
        assert np.all(np.diff(route.s) > 0.5) and np.all(np.diff(route.s) < 1.5)
        for w in route.waypoints:
            seg = lanes[(w.road_id, w.lane_id)]
            assert (w.junction_id >= 0) == (seg.junction_id >= 0)
            if w.junction_id >= 0:  # the town's own turn label for this connector lane
                assert w.option.value == {"follow": "straight"}.get(seg.turn, seg.turn)
                seen.add(w.option)
            else:
                assert w.option == RoadOption.LANEFOLLOW
    assert {RoadOption.LEFT, RoadOption.RIGHT, RoadOption.STRAIGHT} <= seen


def test_route_is_seeded(town):
    _, cmap = town
    start = _starts(cmap)[5]
    a, b = (plan_route(start, 400.0, np.random.default_rng(7)) for _ in range(2))
    assert a.waypoints == b.waypoints
    others = [plan_route(start, 400.0, np.random.default_rng(s)).waypoints for s in range(8, 14)]
    assert any(o != a.waypoints for o in others)


def test_signals_bind_to_the_waypoint_at_the_stop_line(town):
    _, cmap = town
    route = plan_route(_starts(cmap)[0], 100.0, np.random.default_rng(0))
    w = route.waypoints[40]
    stops = {77: [(w.road_id, w.lane_id, w.x + 0.3, w.y)],
             78: [(w.road_id, w.lane_id + 9, w.x, w.y)]}  # another lane: not ours
    out = attach_signals(route, stops)
    assert [k for k, x in enumerate(out.waypoints) if x.signal_id is not None] == [40]
    assert out.waypoints[40].signal_id == 77


# ----- CarlaWorld against a fake server ------------------------------------------------------------
@pytest.fixture
def port():
    """Something listening (CarlaWorld probes the port before it connects)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def server(town, monkeypatch):
    srv = fake_carla.Server(town[1])
    monkeypatch.setitem(sys.modules, "carla", fake_carla.module(srv))
    return srv


def _world(port, scenario=None, timeout=2.0, streams=ALL, **kw):
    sc = parse_scenario(scenario or EMPTY)
    cams = [CameraSpec("front", 64, 32, 90.0, streams=streams)]
    return CarlaWorld(sc, 1, cameras=cams, port=port, timeout=timeout, **kw)


def _assert_clean(server):
    assert server.actors == {}
    assert server.settings.synchronous_mode is False and server.settings.fixed_delta_seconds is None
    assert ("destroyed while listening",) not in {e[:1] for e in server.log}


def test_frames_match_the_server_frame_and_decode_every_stream(server, port):
    server.stale = {"sensor.camera.rgb"}  # rgb sends the previous frame first: must be skipped
    with _world(port) as w:
        f0 = w.reset()
        assert server.settings.synchronous_mode and server.settings.fixed_delta_seconds == 0.05
        frames = [f0] + [w.tick(Control(throttle=0.8)) for _ in range(4)]
    _assert_clean(server)
    assert [f.frame for f in frames] == [0, 1, 2, 3, 4]
    assert frames[-1].time == pytest.approx(0.2)
    for f in frames:
        cam = f.cameras["front"]
        assert cam.rgb.shape == (32, 64, 3) and cam.rgb.dtype == np.uint8
        assert (cam.rgb[..., 0] == 7).all() and (cam.semantic == 7).all()
        g = (server.frame - 4 + f.frame) % 256  # the fake writes each image's frame into green
        assert (cam.rgb[..., 1] == g).all()  # so this is this frame's image, not a stale one
        assert np.allclose(cam.depth, (7 + 256 * g) * 1000 / 16777215) and cam.depth.dtype == np.float32
        assert (cam.instance == g).all() and cam.instance.dtype == np.int32
        assert cam.flow[0, 0].tolist() == [16.0, -8.0]
    assert frames[-1].ego.speed > frames[1].ego.speed > 0
    assert frames[-1].ego.route_progress > 0 and frames[-1].ego.control.throttle == 0.8
    assert frames[0].ego.extent == pytest.approx((2.4, 1.0, 0.75))


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_cleanup_after_an_exception_or_ctrl_c(server, port, exc):
    with pytest.raises(exc):
        with _world(port) as w:
            w.reset()
            w.tick(Control())
            assert len(server.actors) == 8  # ego, 5 cameras, collision, lane invasion
            raise exc("boom")
    _assert_clean(server)


def test_ctrl_c_during_cleanup_waits_until_cleanup_is_done(server, port):
    server.on_destroy = lambda actor: os.kill(os.getpid(), signal.SIGINT)
    w = _world(port)
    w.reset()
    with pytest.raises(KeyboardInterrupt):
        w.close()
    _assert_clean(server)


def test_a_silent_sensor_is_named_with_its_frame(server, port):
    server.silent = {"sensor.camera.depth"}
    with pytest.raises(DrivesimError, match=r"camera 'front' depth \(sensor.camera.depth\) sent no "
                                            r"data for frame 0 \(server frame 1001\) within 0.2 s"):
        with _world(port, timeout=0.2) as w:
            w.reset()
    _assert_clean(server)


def test_an_unreadable_image_is_named(server, port):
    server.broken = {"sensor.camera.semantic_segmentation"}
    with pytest.raises(DrivesimError, match=r"camera 'front' semantic \(sensor.camera.semantic_"
                                            r"segmentation\) sent an unreadable image for frame 0"):
        with _world(port) as w:
            w.reset()
    _assert_clean(server)


def test_a_server_that_stops_ticking_is_an_error_and_cleanup_still_runs(server, port):
    server.fail_tick_at = 1003
    with pytest.raises(DrivesimError, match="did not finish a tick within 2 s"):
        with _world(port) as w:
            w.reset()
            w.tick(Control())
            w.tick(Control())
    _assert_clean(server)


def test_collisions_are_reported_once_per_contact(server, port):
    with _world(port, streams=("rgb",)) as w:
        w.reset()
        other = server.spawn(server.library.find("vehicle.audi.tt"), w._ego_spawn)
        ego = w.ego
        server.collide(ego, other, 120.0, frame=server.frame + 1)  # two hits in one tick
        server.collide(ego, other, 30.0, frame=server.frame + 1)
        first = w.tick(Control()).events
        server.collide(ego, other, 50.0, frame=server.frame + 1)  # the same contact goes on
        second = w.tick(Control()).events
        third = w.tick(Control()).events  # contact ends
        server.collide(ego, other, 10.0, frame=server.frame + 1)  # a new contact
        fourth = w.tick(Control()).events
        server.actors.pop(other.id)
    assert [(e.kind, e.frame, e.other_id, e.other_type) for e in first] == \
        [("collision", 1, other.id, "vehicle.audi.tt")]
    assert first[0].impulse == pytest.approx(150.0)
    assert second == [] and third == [] and [e.frame for e in fourth] == [4]


def test_no_traffic_manager_or_navigation_degrades_with_warnings(server, port, caplog):
    sc = {"traffic": {"vehicles": 5, "parked": 0, "pedestrians": 5}, "ego": {"route_length": 80}}
    with caplog.at_level(logging.WARNING), _world(port, scenario=sc, streams=("rgb",)) as w:
        frame = w.reset()
        assert not any(a.type_id.startswith("vehicle.audi") for a in server.actors.values())
    assert "no Traffic Manager" in caplog.text and "cannot place pedestrians" in caplog.text
    assert "not spawning the scenario's NPC vehicles" in caplog.text
    assert frame.actors == []
    _assert_clean(server)


def test_version_mismatch_warns(server, port, caplog):
    server.version = "0.9.15"
    with caplog.at_level(logging.WARNING):
        _world(port).close()
    assert "client 0.9.16 and server 0.9.15 differ" in caplog.text


def test_missing_blueprint_names_stream_and_fix(town, monkeypatch, port):
    srv = fake_carla.Server(town[1], blueprints=[b for b in fake_carla.BLUEPRINTS
                                                  if "optical_flow" not in b])
    monkeypatch.setitem(sys.modules, "carla", fake_carla.module(srv))
    with pytest.raises(DrivesimError, match="no 'sensor.camera.optical_flow' blueprint "
                                            r"\(needed for camera 'front' flow\)"):
        with _world(port) as w:
            w.reset()
    _assert_clean(srv)


def test_no_server_is_one_clear_line():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    with pytest.raises(DrivesimError) as e:
        _world(free)
    msg = str(e.value)
    assert f"127.0.0.1:{free}" in msg and f"drivesim serve --port {free}" in msg and "\n" not in msg


def test_ports_are_checked_and_the_traffic_manager_port_stays_a_port():
    with pytest.raises(DrivesimError, match="--port 70000 is invalid; CARLA's RPC port is 1..65535"):
        _world(70000)
    assert traffic_manager_port(2000) == 8000 and traffic_manager_port(60559) == 54559


def test_weather_names_and_presets():
    with pytest.raises(DrivesimError, match="unknown weather 'hail'; valid: clear, dusk, night"):
        _world(1, weather="hail")
    with pytest.raises(DrivesimError, match="no CARLA server"):  # a preset name passes the check
        _world(1, weather="HardRainSunset")
    assert math.isfinite(CarlaWorld._weather_params(None, "fog").fog_density)


# ----- end to end against `drivesim serve` (separate processes) -------------------------------------
def _free_port() -> int:
    """A free port whose neighbour (the server's streaming port) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue


def _sigint_default() -> None:
    """Children get a default Ctrl-C: a test run started in the background (`pytest &` in a
    script) ignores SIGINT, and every child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _drivesim(*args, timeout=300):
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    return subprocess.run([sys.executable, "-m", "drivesim_carla.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def _python(script, *args, timeout=300):
    return subprocess.run([sys.executable, str(CLIENTS / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_sigint_default)


@pytest.fixture(scope="module")
def serve():
    """`drivesim serve` on a free port, in its own process (the client holds the GIL)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "drivesim_carla.cli", "serve", "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(rf"serving .* on \S+:{port}", line):
            break
    else:
        proc.wait(timeout=10)
        if "not available yet" in "".join(lines):
            pytest.skip("drivesim serve is not available yet")
        raise AssertionError(f"drivesim serve did not start:\n{''.join(lines)}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
    yield port
    proc.terminate()
    proc.wait(timeout=30)


def _state(port) -> dict:
    r = _python("server_state.py", port)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _assert_left_as_found(port, before, ours=()):
    """Original settings back, none of our actors left. (drivesim serve starts its own NPC
    traffic around the first hero vehicle; that traffic is the server's and stays.)"""
    after = _state(port)
    assert after["synchronous_mode"] is False
    assert after["fixed_delta_seconds"] == before["fixed_delta_seconds"]
    new = {i: t for i, t in after["actors"].items() if i not in before["actors"]}
    assert all(t.startswith(("vehicle.embedded.", "walker.pedestrian.")) for t in new.values()), new
    assert not {str(i) for i in ours} & set(after["actors"])


def test_drivesim_run_world_carla_end_to_end(serve, tmp_path):
    before = _state(serve)
    r = _drivesim("run", "--world", "carla", "--port", str(serve), "--frames", "60", "--headless",
                  "--width", "128", "--height", "64", "--summary", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["frames"] == 60 and s["sim_seconds"] == pytest.approx(3.0)
    assert s["distance_m"] > 3.0 and s["collisions"] == 0 and not s["interrupted"]
    assert s["world"] == "carla" and s["map"] and s["route_length_m"] > 250
    _assert_left_as_found(serve, before)


def test_ctrl_c_on_drivesim_run_leaves_the_server_as_found(serve, tmp_path):
    before = _state(serve)
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    proc = subprocess.Popen([sys.executable, "-m", "drivesim_carla.cli", "run", "--world", "carla",
                             "--port", str(serve), "--frames", "100000", "--headless", "--width",
                             "64", "--height", "32", "--summary", str(tmp_path / "s.json")],
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_sigint_default)
    deadline = time.monotonic() + 120
    while not any(t.startswith("sensor.camera") for t in _state(serve)["actors"].values()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
    time.sleep(1.0)  # driving now
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a client that ignored Ctrl-C must not go on ticking the shared server
    assert proc.returncode == 130, err
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["interrupted"] and s["frames"] > 10
    _assert_left_as_found(serve, before)


@pytest.mark.parametrize("mode", ["ok", "raise", "sigint"])
def test_frames_from_the_server_and_cleanup_on_every_exit(serve, mode):
    before = _state(serve)
    r = _python("drive_client.py", serve, 20, mode)
    assert r.returncode == {"ok": 0, "raise": 1, "sigint": -signal.SIGINT}[mode], r.stderr
    info = json.loads(r.stdout.splitlines()[0])
    assert len(info["spawned"]) == 8  # ego, 5 cameras, collision, lane invasion
    assert info["frames"] == list(range(21)) and info["times"][-1] == pytest.approx(1.0)
    assert info["shapes"] == {"rgb": [64, 128, 3], "semantic": [64, 128], "depth": [64, 128],
                              "instance": [64, 128], "flow": [64, 128, 2]}
    assert info["dtypes"] == {"rgb": "uint8", "semantic": "uint8", "depth": "float32",
                              "instance": "int32", "flow": "float32"}
    assert 1 in info["tags"] and set(info["tags"]) <= set(range(29))  # road is in view
    assert 0.0 < info["depth"][0] < info["depth"][1] <= 1000.0
    assert info["rgb_std"] > 5.0 and info["progress"] > 0.5 and info["speed"] > 0.5
    dv, du_left, du_right = info["flow_road"]  # driving on: the road streams down and outwards
    assert dv > 0.1 and du_left < -0.1 and du_right > 0.1
    _assert_left_as_found(serve, before, info["spawned"])


def test_drive_env_steps_a_carla_world_through_drivesim_serve(serve):
    """The Gymnasium env on `--world carla`: reset, 40 steps, truncated at its frame limit."""
    before = _state(serve)
    r = _python("env_client.py", serve, 40)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout.splitlines()[-1])
    assert info["shapes"] == {"image": [48, 96, 3], "speed": [1], "command": []} and info["in_space"]
    assert info["frames"] == 40 and info["ended"] == [False, True]
    assert info["distance"] > 3.0 and info["reward"] > 1.0 and info["rgb_std"] > 5.0
    _assert_left_as_found(serve, before)
