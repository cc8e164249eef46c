"""The viewer (composition, HUD, keys, screenshots, mp4) and the manual agent."""

from __future__ import annotations

import logging
import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402

from drivesim_carla.agents.manual import ManualAgent  # noqa: E402
from drivesim_carla.errors import DrivesimError  # noqa: E402
from drivesim_carla.labels import CARLA_PALETTE, Tag  # noqa: E402
from drivesim_carla.route import Route, Waypoint  # noqa: E402
from drivesim_carla.taps import RunInfo, Step  # noqa: E402
from drivesim_carla.types import (  # noqa: E402
    CameraData,
    CameraSpec,
    Control,
    EgoState,
    Event,
    Frame,
    Transform,
)
from drivesim_carla.viewer import Viewer  # noqa: E402

H, W = 64, 128
SPEC = CameraSpec(name="front", width=W, height=H)


def run_info(fps: float = 20.0) -> RunInfo:
    route = Route([Waypoint(0.0, 0.0, 0.0, 0.0, 1, 1, 0), Waypoint(50.0, 0.0, 0.0, 50.0, 1, 1, 0)])
    return RunInfo(world="embedded", map_name="Town", seed=0, fps=fps, cameras=[SPEC],
                   style="day", weather="clear", agent="autopilot", synth="none", route=route)


def make_frame(i: int = 0, *, depth: bool = True, semantic: bool = True,
               events: list[Event] | None = None) -> Frame:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 200  # reddish world render
    rgb[..., 1] = i % 256
    tags = np.full((H, W), Tag.ROAD, np.uint8)
    tags[: H // 2] = Tag.SKY
    tags[H - 10:, W - 10:] = Tag.CAR
    cam = CameraData(SPEC, Transform(), rgb=rgb, semantic=tags if semantic else None,
                     depth=np.full((H, W), 10.0, np.float32) if depth else None)
    ego = EgoState(Transform(x=float(i)), (5.0, 0.0, 0.0), 5.0, Control(),
                   route_progress=float(i), route_completion=i / 50)
    return Frame(i, i * 0.05, ego, {"front": cam}, events=events or [])


def make_step(i: int = 0, **kw) -> Step:
    view = np.zeros((H, W, 3), np.uint8)
    view[..., 2] = 230  # a blue agent view, distinct from the world render
    return Step(make_frame(i, **kw), view, Control(throttle=0.5, steer=-0.25), 3.0, 30.0)


@pytest.fixture
def viewer():
    v = Viewer(scale=1.0)
    v.on_reset(run_info())
    yield v
    v.on_close()


def post_key(key: int, up: bool = True) -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
    if up:
        pygame.event.post(pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode="", scancode=0))


def test_canvas_size_for_each_layout(viewer):
    sizes = {}
    for layout in ("row", "grid", "agent"):
        viewer.layout = layout
        viewer.on_step(make_step())
        sizes[layout] = viewer.canvas.shape
    assert sizes == {"row": (H, 3 * W, 3), "grid": (2 * H, 2 * W, 3), "agent": (2 * H, 2 * W, 3)}
    assert pygame.display.get_surface().get_size() == (2 * W, 2 * H)


def test_scale_changes_panel_size():
    v = Viewer(headless=True, video=None, scale=0.5)
    try:
        v.on_reset(run_info())
        assert v.headless and v.canvas is None  # headless without video composes nothing
    finally:
        v.on_close()


def test_panels_show_streams(viewer):
    viewer.on_step(make_step())
    c = viewer.canvas
    # world RGB (left), semantic (middle), agent view (right); rows away from HUD and captions
    assert tuple(c[H // 2 + 2, W // 2]) == (200, 0, 0)
    assert tuple(c[H // 2 + 2, W + W // 2]) == tuple(CARLA_PALETTE[Tag.ROAD])
    assert tuple(c[H - 2, 2 * W - 2]) == tuple(CARLA_PALETTE[Tag.CAR])
    assert tuple(c[H // 2 + 2, 2 * W + W // 2]) == (0, 0, 230)


def test_grid_depth_panel_and_missing_stream_is_grey(viewer):
    viewer.layout = "grid"
    viewer.on_step(make_step(depth=True))
    depth_px = viewer.canvas[H + H // 2 - 8, W + 4].copy()
    assert len(set(depth_px.tolist())) > 1  # a colormap colour, not grey
    viewer.on_step(make_step(depth=False, semantic=False))
    c = viewer.canvas
    assert tuple(c[H + 4, W + 4]) == (72, 72, 72)  # depth panel grey
    assert tuple(c[H - 4, W + W - 4]) == (72, 72, 72)  # semantic panel grey
    # the caption is drawn in the middle of the grey panel
    mid = c[H + H // 2 - 6: H + H // 2 + 6, W + 8: 2 * W - 8]
    assert (mid != 72).any()


def test_hud_draws_over_canvas(viewer):
    viewer.on_step(make_step())
    red = viewer.canvas[:12, :W, 0]
    # the world render's red is 200 everywhere: the HUD strip halves it and writes text over it
    assert (red == 100).mean() > 0.5
    assert (red > 150).sum() > 20
    assert viewer.canvas[H // 2 + 2, W // 2, 0] == 200  # the middle of the panel is untouched
    before = viewer.canvas.copy()
    viewer.paused = True
    viewer.redraw()
    assert (viewer.canvas != before).any()  # PAUSED shows up


def test_events_flash_for_a_second(viewer):
    ev = Event("collision", frame=1, other_type="vehicle")
    viewer.on_step(make_step(1, events=[ev]))
    assert viewer._flashing(0.05) == ["COLLISION (vehicle)"]
    assert viewer._flashing(0.05 + 0.3) == []  # blink off phase
    assert viewer._flashing(0.05 + 0.6) == ["COLLISION (vehicle)"]
    assert viewer._flashing(0.05 + 1.2) == []


def test_keys_give_commands_and_cycle_layout(viewer, tmp_path):
    viewer.screenshot_dir = tmp_path
    viewer.on_step(make_step(7))
    pygame.event.get()
    post_key(pygame.K_p)
    post_key(pygame.K_m)
    assert viewer.poll() == {"pause", "manual"}
    assert viewer.paused and viewer.manual
    post_key(pygame.K_p)
    post_key(pygame.K_p)
    assert viewer.poll() == set()  # two toggles cancel out
    assert viewer.layout == "row"
    post_key(pygame.K_l)
    assert viewer.poll() == set() and viewer.layout == "grid"
    post_key(pygame.K_TAB)
    viewer.poll()
    assert viewer.layout == "agent"
    post_key(pygame.K_w, up=False)
    post_key(pygame.K_d, up=False)
    viewer.poll()
    assert viewer.pressed == {pygame.K_w, pygame.K_d}
    pygame.event.post(pygame.event.Event(pygame.KEYUP, key=pygame.K_w, mod=0))
    viewer.poll()
    assert viewer.pressed == {pygame.K_d}
    post_key(pygame.K_q)
    assert viewer.poll() == {"quit"}
    post_key(pygame.K_ESCAPE)
    assert "quit" in viewer.poll()
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert viewer.poll() == {"quit"}


def test_screenshot(viewer, tmp_path, caplog):
    viewer.screenshot_dir = tmp_path / "shots"
    viewer.on_step(make_step(42))
    post_key(pygame.K_F12)
    with caplog.at_level(logging.INFO, logger="drivesim_carla.viewer"):
        viewer.poll()
    path = tmp_path / "shots" / "drivesim_000042.png"
    assert path.exists() and str(path) in caplog.text
    img = cv2.imread(str(path))
    assert img.shape == (H, 3 * W, 3)
    assert (img[..., ::-1] == viewer.canvas).all()
    post_key(pygame.K_c)
    viewer.poll()
    assert (tmp_path / "shots" / "drivesim_000042_1.png").exists()


def count_frames(path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, (0, 0)
    while True:
        ok, img = cap.read()
        if not ok:
            break
        n, shape = n + 1, img.shape[:2]
    cap.release()
    return n, shape


def test_video_has_one_frame_per_step_and_appears_on_close(tmp_path):
    target = tmp_path / "out.mp4"
    v = Viewer(headless=True, video=target)
    v.on_reset(run_info(fps=10))
    for i in range(7):
        if i == 3:
            v.cycle_layout()  # grid while recording: the video keeps its size
        v.on_step(make_step(i))
    assert not target.exists()  # the final name only once the file is whole
    v.on_close()
    assert not (tmp_path / "out.partial.mp4").exists()
    n, shape = count_frames(target)
    assert n == 7 and shape == (H, 3 * W)
    cap = cv2.VideoCapture(str(target))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)


def test_video_without_close_is_not_complete(tmp_path):
    target = tmp_path / "crash.mp4"
    v = Viewer(headless=True, video=target)
    v.on_reset(run_info())
    for i in range(3):
        v.on_step(make_step(i))
    assert not target.exists()
    v._writer.close()


def test_unwritable_video_path_raises(tmp_path):
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    with pytest.raises(DrivesimError, match="file.txt"):
        Viewer(headless=True, video=not_a_dir / "out.mp4")
    with pytest.raises(DrivesimError, match="no extension"):
        Viewer(headless=True, video=tmp_path / "out")


def test_no_display_falls_back_to_headless(monkeypatch, caplog):
    monkeypatch.delenv("SDL_VIDEODRIVER")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with caplog.at_level(logging.WARNING, logger="drivesim_carla.viewer"):
        v = Viewer()
    assert v.headless and "headless" in caplog.text
    assert v.poll() == set()


def test_set_mode_failure_falls_back_to_headless(monkeypatch, caplog):
    def fail(*a, **k):
        raise pygame.error("no video device")

    monkeypatch.setattr(pygame.display, "set_mode", fail)
    with caplog.at_level(logging.WARNING, logger="drivesim_carla.viewer"):
        v = Viewer()
    assert v.headless and "no video device" in caplog.text


def test_manual_agent_ramps_steer_with_w_and_d(viewer):
    agent = ManualAgent(viewer)
    agent.reset(run_info().route)
    viewer.pressed |= {pygame.K_w, pygame.K_d}
    controls = [agent.act(None) for _ in range(4)]
    assert [c.throttle for c in controls] == [1.0] * 4
    assert [c.steer for c in controls] == pytest.approx([0.05, 0.10, 0.15, 0.20])
    assert all(c.brake == 0.0 and not c.reverse for c in controls)
    viewer.pressed -= {pygame.K_w, pygame.K_d}
    released = [agent.act(None) for _ in range(3)]
    assert [c.steer for c in released] == pytest.approx([0.10, 0.0, 0.0])
    assert released[0].throttle == 0.0
    viewer.pressed |= {pygame.K_LEFT, pygame.K_s, pygame.K_SPACE, pygame.K_r}
    c = agent.act(None)
    assert c.steer == pytest.approx(-0.05) and c.brake == 1.0 and c.hand_brake and c.reverse
    assert agent.act(None).reverse  # held R does not toggle again
    viewer.pressed.discard(pygame.K_r)
    agent.act(None)
    viewer.pressed.add(pygame.K_r)
    assert not agent.act(None).reverse


def test_manual_agent_refuses_headless():
    with pytest.raises(DrivesimError, match="drop --headless"):
        ManualAgent(Viewer(headless=True))
    with pytest.raises(DrivesimError, match="drop --headless"):
        ManualAgent(None)
