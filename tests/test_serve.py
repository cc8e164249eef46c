"""`drivesim serve`: the embedded world behind CARLA 0.9.16's protocol, exercised by the real
`carla` client. The server runs in its own process (the client holds the GIL, so a server in the
test process would deadlock) and so does every client (a bad payload makes the C++ client
call std::terminate: that must fail a test, not kill the runner)."""

from __future__ import annotations

import json
import math
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
import pytest

from drivesim_carla.scenarios import load_scenario
from drivesim_carla.serve import payloads
from drivesim_carla.serve.blueprints import LIBRARY
from drivesim_carla.serve.methods import METHODS, dispatch
from drivesim_carla.serve.protocol import Description, EpisodeSettings
from drivesim_carla.serve.simulation import Simulation
from drivesim_carla.serve.weather import PRESETS, carla_weather, embedded_weather
from drivesim_carla.types import CameraData, CameraSpec, Control, Transform
from drivesim_carla.world.embedded import EmbeddedWorld
from drivesim_carla.world.embedded.town import build_town

pytest.importorskip("carla")

CLIENTS = Path(__file__).parent / "serve_clients"
READY_TIMEOUT = 60.0


@dataclass
class Served:
    port: int
    proc: subprocess.Popen
    log: Path


def _start(log: Path, *args: str) -> Served:
    proc = subprocess.Popen([sys.executable, "-m", "drivesim_carla.cli", "-v", "serve",
                             "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True)
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("serving "):
        proc.kill()
        raise AssertionError(f"no ready line from drivesim serve: {line!r}\n{log.read_text()}")
    port = int(line.split(" on ")[1].split(":")[1].split()[0])
    return Served(port, proc, log)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    """A fresh `drivesim serve --seed 3` on a free port pair, stopped after the test."""
    served = _start(tmp_path / "server.log", "--seed", "3")
    yield served
    served.proc.terminate()
    try:
        served.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait()
    assert served.proc.returncode == 0, "SIGTERM must stop the server cleanly"


def run_client(served: Served, script: str, *args: object, timeout: float = 90.0) -> dict:
    """Run a client script against the server; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, str(CLIENTS / script), str(served.port),
                           *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"{script} exited {proc.returncode}\n{proc.stderr[-3000:]}\n"
                                  f"server log:\n{served.log.read_text()[-3000:]}")
    assert served.proc.poll() is None, "the server died"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----- with the real client -------------------------------------------------------------------
def test_spawn_destroy(server: Served) -> None:
    out = run_client(server, "spawn_destroy.py")
    assert "vehicle.tesla.model3" in out["blueprints"]
    assert "sensor.camera.optical_flow" in out["blueprints"]
    assert out["spawn_points"] > 50
    assert out["spawned"] == [True, True]
    assert out["parent"] is not None
    assert out["role_name"] == "hero"
    assert out["type_ids"] == ["vehicle.lincoln.mkz_2020", "sensor.camera.rgb"]
    assert out["extent"] == pytest.approx([2.35, 1.0])
    assert out["blocked"], "a second vehicle on an occupied spawn point must fail"
    assert "spawn_actor_with_parent" in out["sensor_on_sensor"]
    assert out["batch"][0][1] == "" and out["batch"][0][0] > 0
    assert "999999" in out["batch"][1][1]
    assert out["destroyed"] == [True, True, ""]
    assert out["gone"] == [True, True, True]
    assert out["npcs"] == 20 and out["walkers"] == 40  # the default scenario
    signals = build_town(3).signals.values()
    assert out["lights"] == len(signals) and set(out["light_states"]) <= {"Red", "Yellow", "Green"}
    # each light's trigger volume lies on its approach's lanes: one stop waypoint per lane
    assert sorted(out["light_stops"]) == sorted(len(sig.segments) for sig in signals)
    assert out["unsupported"].startswith("get_environment_objects: not supported")


def test_cameras_frame_aligned(server: Served) -> None:
    out = run_client(server, "cameras.py", 12)
    assert out["aligned"] == [True] * 12
    assert out["sizes"]["ego_wide_rgb"] == [96, 96] and out["sizes"]["spectator"] == [64, 32]
    assert out["moved"] > 0.3
    assert out["camera_z"] == pytest.approx(1.7)
    assert out["ego_rgb"]["alpha"] == 255 and 20 < out["ego_rgb"]["mean"] < 240
    assert {1, 11}.issubset(out["ego_semantic_segmentation"]["tags"])  # road and sky
    assert out["ego_instance_segmentation"]["instance_tags"] == out["ego_semantic_segmentation"]["tags"]
    assert out["ego_instance_segmentation"]["objects"] > 5
    assert 0.5 < out["ego_depth"]["depth_min"] < 50 and out["ego_depth"]["depth_max"] == pytest.approx(1000)
    assert out["spectator"]["depth_max"] == pytest.approx(80.0, abs=0.01)  # 80 m above the ground
    assert out["ego_optical_flow"]["flow_finite"] and 0 < out["ego_optical_flow"]["flow_max"] < 2
    assert 1 in out["fixed"]["tags"]


def test_settings_kept_across_clients(server: Served) -> None:
    first = run_client(server, "settings.py", "restore")
    assert first["found"]["synchronous_mode"] is False
    assert first["ticks"] == [1, 2, 3, 4, 5]
    assert first["sim_seconds"] == pytest.approx(0.5) and first["delta"] == pytest.approx(0.1)
    assert run_client(server, "settings.py", "read")["found"] == first["found"]
    run_client(server, "settings.py", "leave")
    kept = run_client(server, "settings.py", "read")["found"]
    assert kept["synchronous_mode"] is True and kept["fixed_delta_seconds"] == pytest.approx(0.1)


def test_plain_script_matches_embedded_pixels(server: Served, tmp_path: Path) -> None:
    """The same seed, start and controls give the same frames through either backend."""
    run_client(server, "plain_drive.py", tmp_path / "run.npz")
    got = np.load(tmp_path / "run.npz")
    assert (got["frames"][:, 0] == got["frames"][:, 1]).all()
    assert (got["frames"][:, 0] == got["frames"][:, 2]).all()
    assert np.diff(got["frames"][:, 0]).tolist() == [1] * (len(got["frames"]) - 1)
    w, h = (int(v) for v in got["size"])
    x, y, z, pitch, yaw, roll = (float(v) for v in got["mount"])
    spec = CameraSpec("front", w, h, 90.0, Transform(x, y, z, pitch, yaw, roll),
                      ("rgb", "semantic"))
    world = EmbeddedWorld(load_scenario("default"), 3, cameras=[spec])
    sx, sy, syaw = (float(v) for v in got["spawn"])
    world.reset(start=Transform(sx, sy, 0.0, 0.0, syaw, 0.0))
    moved = 0.0
    for i, (throttle, steer, brake) in enumerate(got["controls"].astype(float)):
        frame = world.tick(Control(throttle, steer, brake))
        np.testing.assert_array_equal(got["rgb"][i], frame.camera.rgb, err_msg=f"rgb, tick {i}")
        np.testing.assert_array_equal(got["semantic"][i], frame.camera.semantic,
                                      err_msg=f"semantic, tick {i}")
        t = frame.ego.transform
        assert got["transforms"][i] == pytest.approx([t.x, t.y, t.yaw], abs=1e-3)
        moved = math.hypot(t.x - sx, t.y - sy)
    assert moved > 5.0


def test_sensor_events_traffic_and_weather(server: Served) -> None:
    out = run_client(server, "events.py")
    assert out["npc_moved"] > 5.0
    assert out["events"]["lane"], "driving across the markings raises lane invasions"
    assert out["events"]["collision"], "driving off the road hits something"
    frame, other, own = out["events"]["collision"][0]
    assert own and other.startswith(("static.", "vehicle.", "walker."))
    assert out["sun"] == -90.0
    assert out["night"] < 0.8 * out["day"]


def test_garbage_leaves_the_server_serving(server: Served) -> None:
    """Garbage bytes, truncated msgpack and unknown methods on raw sockets: each gets an error or
    a closed connection, and the next client is served."""
    host = ("127.0.0.1", server.port)
    for junk in (b"\xc1\xc1\xc1 garbage", b"\x91" * 100_000, b"\xdd\xff\xff\xff\xff",
                 b"\xc6\xff\xff\xff\xff" + bytes(5 << 20), msgpack.packb(7),
                 msgpack.packb([0, "id", "version", []])):
        assert _closed_after(host, junk), junk[:12]
    with socket.create_connection(host, timeout=5) as s:  # truncated, then hang up
        s.sendall(msgpack.packb([0, 1, "get_map_data", [[False]]])[:-3])
    assert _call(host, "no_such_call", [False], 3) == [[0, [
        "no_such_call: not supported by drivesim serve (the embedded world behind CARLA's "
        "protocol); see docs/carla-server.md for what is"]]]
    bad = _call(host, "spawn_actor", [False], {"x": 1}, [[1, 2], "y"])
    assert bad[0][0] == 0 and bad[0][1][0].startswith("spawn_actor: ")
    assert _call(host, "set_weather_parameters", [False], [1.0])[0][0] is True  # void error
    assert _call(host, "get_sensor_token", [False], 2**40)[0][0] == 0
    for junk in (b"\x01\x02\x03\x04", b"\x01\x00"):  # unknown stream id; half an id
        assert _closed_after(("127.0.0.1", server.port + 1), junk, expect_close=len(junk) == 4)
    assert _call(host, "version", [False]) == [[1, "0.9.16"]]
    assert run_client(server, "probe.py")["version"] == "0.9.16"


def _call(host: tuple[str, int], method: str, *params: object) -> object:
    with socket.create_connection(host, timeout=10) as s:
        s.sendall(msgpack.packb([0, 42, method, list(params)]))
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            data = s.recv(65536)
            assert data, f"{method}: connection closed without a reply"
            unpacker.feed(data)
            for reply in unpacker:
                assert reply[:3] == [1, 42, None]
                return reply[3]


def _closed_after(host: tuple[str, int], junk: bytes, expect_close: bool = True) -> bool:
    with socket.create_connection(host, timeout=5) as s:
        s.sendall(junk)
        if not expect_close:
            return True
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if s.recv(65536) == b"":
                    return True
            except ConnectionResetError:
                return True
    return False


def test_port_in_use_is_one_clear_error(server: Served) -> None:
    proc = subprocess.run([sys.executable, "-m", "drivesim_carla.cli", "serve", "--port",
                           str(server.port)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: port {server.port} ")


# ----- in process -----------------------------------------------------------------------------
def test_every_call_answers_malformed_arguments_with_an_error() -> None:
    """No argument shape makes a call raise: each gets a CARLA `Response` error naming it."""
    sim = Simulation(load_scenario("empty"), 0, style=None, weather=None, stream_port=2001)
    junk = [None, -1, 2**70, 1.5, float("nan"), "x", b"\x00", [], [[]], {"a": 1}, [[False], "x"],
            [[1, 2, 3], [4, 5]], [[0, "vehicle.tesla.model3", [["color", 5, "1,2"]]]]]
    for name in METHODS:
        for params in [*junk, [[False], *junk[:6]]]:
            response = dispatch(sim, name, params)
            assert isinstance(response, list) and (response or METHODS[name].raw), (name, params)
    assert dispatch(sim, 7, [])[0][0] == 0


def test_depth_semantic_instance_and_flow_encoding() -> None:
    spec = CameraSpec("c", 16, 16)
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.0, 1000.0, (16, 16)).astype(np.float32)
    sem = rng.integers(0, 29, (16, 16)).astype(np.uint8)
    inst = rng.integers(0, 70_000, (16, 16)).astype(np.int32)
    flow = rng.normal(0.0, 3.0, (16, 16, 2)).astype(np.float32)
    data = CameraData(spec, Transform(), rgb=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                      semantic=sem, depth=depth, instance=inst, flow=flow)
    px = {k: np.frombuffer(payloads.camera(k, data)[1], np.uint8).reshape(16, 16, -1)
          for k in ("rgb", "semantic", "depth", "instance")}
    np.testing.assert_array_equal(px["rgb"][:, :, 2::-1], data.rgb)
    assert (px["rgb"][:, :, 3] == 255).all()
    np.testing.assert_array_equal(px["semantic"][:, :, 2], sem)
    assert not px["semantic"][:, :, :2].any()
    d = px["depth"].astype(np.int64)
    metres = (d[:, :, 2] + d[:, :, 1] * 256 + d[:, :, 0] * 65536) / (256**3 - 1) * 1000.0
    np.testing.assert_allclose(metres, depth, atol=1000.0 / 2**24)
    np.testing.assert_array_equal(px["instance"][:, :, 2], sem)
    ids = px["instance"][:, :, 1].astype(np.int64) + px["instance"][:, :, 0].astype(np.int64) * 256
    np.testing.assert_array_equal(ids, inst & 0xFFFF)
    ndc = np.frombuffer(payloads.camera("flow", data)[1], np.float32).reshape(16, 16, 2)
    np.testing.assert_allclose(ndc * [8.0, -8.0], flow, rtol=1e-6)
    head = payloads.camera("rgb", data)[0]
    assert head == np.array([16, 16], "<u4").tobytes() + np.float32(90.0).tobytes()


def test_weather_maps_carla_presets() -> None:
    for name in PRESETS:
        assert embedded_weather(carla_weather(name), "clear") == name
    night_rain = carla_weather("rain") | {"sun_altitude_angle": -90.0}
    assert embedded_weather(night_rain, "clear") == "night"
    default = {k: -1.0 for k in carla_weather("clear")}
    assert embedded_weather(default, "fog") == "fog"


def _spawn(sim: Simulation, blueprint: str, pose: Transform, parent: int = 0, **attrs: str) -> int:
    uid = next(i for i, bp in enumerate(LIBRARY) if bp.id == blueprint)
    return sim.spawn(Description(uid, blueprint, attrs), pose, parent)[0]


def _semantic(sim: Simulation, camera: int) -> np.ndarray:
    head, image_head, pixels = next(b for k, b in reversed(sim.outbox) if k == camera)
    w, h = np.frombuffer(image_head[:8], "<u4")
    return np.frombuffer(pixels, np.uint8).reshape(h, w, 4)[:, :, 2]


def test_other_vehicles_are_seen_and_the_hero_passes_on() -> None:
    sim = Simulation(load_scenario("empty"), 0, style=None, weather=None, stream_port=2001)
    sim.set_settings(EpisodeSettings(synchronous_mode=True, fixed_delta_seconds=0.05))
    x, y, _, _, yaw, _ = (v for part in sim.map_info()[1][4] for v in part)
    heading = math.radians(yaw)
    hero = _spawn(sim, "vehicle.tesla.model3", Transform(x, y, 0.0, 0.0, yaw, 0.0))
    ahead = Transform(x + 12 * math.cos(heading), y + 12 * math.sin(heading), 0.0, 0.0, yaw, 0.0)
    other = _spawn(sim, "vehicle.embedded.van", ahead)
    mount = Transform(1.5, 0.0, 1.7)
    cams = [_spawn(sim, "sensor.camera.semantic_segmentation", mount, v, image_size_x="64",
                   image_size_y="32") for v in (hero, other)]
    for c in cams:
        sim.watched[c] = 1
    sim.tick()
    assert (_semantic(sim, cams[0]) == 15).sum() > 20  # the van (truck tag) ahead of the hero
    assert not (_semantic(sim, cams[1]) == 15).any()  # its own camera does not see it
    assert sim.world.hero == hero
    sim.destroy(hero)
    assert sim.world.hero == other and sim.world.ego == sim.world.vehicles[other].state
    sim.world.vehicles[other].control = Control(throttle=1.0)
    sim.tick()
    assert sim.world.vehicles[other].state.v > 0.0


def test_sensor_tick_and_listeners_decide_what_renders() -> None:
    sim = Simulation(load_scenario("empty"), 0, style=None, weather=None, stream_port=2001)
    sim.set_settings(EpisodeSettings(synchronous_mode=True, fixed_delta_seconds=0.05))
    x, y, _, _, yaw, _ = (v for part in sim.map_info()[1][0] for v in part)
    car = _spawn(sim, "vehicle.audi.a2", Transform(x, y, 0.0, 0.0, yaw, 0.0))
    every = _spawn(sim, "sensor.camera.rgb", Transform(z=2.0), car, image_size_x="32",
                   image_size_y="16")
    slow = _spawn(sim, "sensor.camera.depth", Transform(z=2.0), car, image_size_x="32",
                  image_size_y="16", sensor_tick="0.1")
    unheard = _spawn(sim, "sensor.camera.rgb", Transform(z=3.0), car)
    sim.watched[every] = sim.watched[slow] = 1
    for _ in range(6):
        sim.tick()
    sent = [k for k, _ in sim.outbox]
    assert sent.count(every) == 6 and sent.count(slow) == 3 and unheard not in sent


def test_a_seeded_spawn_point_as_start_is_the_seeded_episode() -> None:
    spec = CameraSpec("front", 64, 32, streams=("rgb", "semantic", "depth"))
    a = EmbeddedWorld(load_scenario("default"), 5, cameras=[spec])
    t = a.reset().ego.transform
    b = EmbeddedWorld(load_scenario("default"), 5, cameras=[spec])
    f32 = [float(np.float32(v)) for v in (t.x, t.y, t.yaw)]  # what a CARLA client sends
    b.reset(start=Transform(f32[0], f32[1], 0.0, 0.0, f32[2], 0.0))
    for _ in range(5):
        fa, fb = a.tick(Control(throttle=0.7)), b.tick(Control(throttle=0.7))
        assert fa.ego.transform == fb.ego.transform
        for stream in spec.streams:
            np.testing.assert_array_equal(getattr(fa.camera, stream), getattr(fb.camera, stream))
