"""The live view: a pygame window (or an off-screen canvas) over the closed loop, and mp4 output.

The viewer is a `Tap`. Each step it composes the camera streams and the agent's view into one
preallocated RGB canvas, draws a HUD over it, shows it in a window and, if asked, appends it to
an mp4. The loop also calls `poll()` for the person's commands (quit, pause, take the wheel) and
`redraw()` while paused. `pressed` holds the keys currently down, for the manual agent.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from .errors import DrivesimError  # noqa: E402
from .labels import CARLA_PALETTE, NUM_TAGS  # noqa: E402
from .taps import RunInfo, Step  # noqa: E402
from .types import Frame  # noqa: E402
from .video import VideoWriter, check_video_path  # noqa: E402

log = logging.getLogger(__name__)

LAYOUTS = ("row", "grid", "agent")
COMMANDS = ("quit", "pause", "manual")

QUIT_KEYS = (pygame.K_ESCAPE, pygame.K_q)
PAUSE_KEYS = (pygame.K_p,)
LAYOUT_KEYS = (pygame.K_l, pygame.K_TAB)
MANUAL_KEYS = (pygame.K_m,)
SCREENSHOT_KEYS = (pygame.K_F12, pygame.K_c)

EVENT_FLASH_S = 1.0  # sim seconds an event stays on the HUD
EVENT_BLINK_S = 0.25  # on/off half period of the flashing
DEPTH_NEAR, DEPTH_FAR = 1.0, 1000.0  # metres mapped to the ends of the depth colormap
GREY = 72
WHITE, YELLOW, CYAN = (255, 255, 255), (255, 214, 0), (90, 220, 255)
RED, DIM = (255, 60, 60), (170, 170, 170)
PLACEHOLDER_SIZE = (640, 360)

_SEMANTIC_LUT = np.zeros((256, 3), np.uint8)
_SEMANTIC_LUT[:NUM_TAGS] = CARLA_PALETTE


@dataclass
class _Canvas:
    """One layout's canvas: an RGB array and a pygame surface sharing its memory."""

    array: np.ndarray  # H W 3 uint8, C-contiguous
    surface: pygame.Surface
    panels: list[tuple[str, int, int, int, int]]  # (stream, y, x, h, w)


class Viewer:
    """Live pygame view, HUD and mp4 writer for the closed loop (a `Tap`).

    Layouts: "row" (rgb | semantic | agent), "grid" (2x2 with depth), "agent" (agent view, large).
    Keys: Esc/Q quit, P pause, L/Tab layout, M manual, F12/C screenshot.
    """

    def __init__(self, *, headless: bool = False, video: Path | None = None, layout: str = "row",
                 screenshot_dir: Path = Path("."), scale: float = 1.0):
        if layout not in LAYOUTS:
            raise DrivesimError(f"unknown viewer layout '{layout}'; valid: {', '.join(LAYOUTS)}")
        if not scale > 0:
            raise DrivesimError(f"invalid viewer scale {scale}; use a positive number such as 1.0")
        self.layout = layout
        self.scale = float(scale)
        self.screenshot_dir = Path(screenshot_dir)
        self.video = Path(video) if video is not None else None
        self.pressed: set[int] = set()
        self.paused = False
        self.manual = False
        self.info: RunInfo | None = None
        self.frames_written = 0
        if self.video is not None:
            check_video_path(self.video)
        self._writer: VideoWriter | None = None
        self._panel_hw: tuple[int, int] | None = None
        self._canvases: dict[str, _Canvas] = {}
        self._last: Step | None = None
        self._events: dict[str, tuple[float, str]] = {}  # kind -> (sim time, label)
        self._fonts: dict[int, pygame.font.Font] = {}
        self._texts: dict[tuple[str, tuple[int, int, int], int], pygame.Surface] = {}
        self._screen: pygame.Surface | None = None
        pygame.font.init()
        self._headless = headless or not self._open_window()

    # ------------------------------------------------------------------ public state
    @property
    def headless(self) -> bool:
        """True when there is no window (asked for, or no display was available)."""
        return self._headless

    @property
    def canvas(self) -> np.ndarray | None:
        """The current layout's canvas (H W 3 uint8 RGB), or None before anything was drawn."""
        c = self._canvases.get(self.layout)
        return c.array if c is not None else None

    # ------------------------------------------------------------------ Tap
    def on_reset(self, info: RunInfo) -> None:
        self.info = info
        self.paused = self.manual = False
        self._events.clear()
        self._last = None
        if info.cameras:
            cam = info.cameras[0]
            self._set_panel_size(cam.height, cam.width)
        if self._needs_canvas and self._panel_hw is not None:
            self._open_video()
        if not self._headless:
            if self._screen is None:
                self._headless = not self._open_window()
            if self._screen is not None:
                title = f"drivesim: {info.agent} / {info.synth} ({info.map_name})"
                pygame.display.set_caption(title)
                if self._panel_hw is not None:
                    self._present(self._get_canvas(self.layout))

    def on_step(self, step: Step) -> None:
        self._last = step
        self.manual = step.manual
        self._note_events(step.frame)
        if not self._needs_canvas:
            return
        if self._panel_hw is None:
            self._set_panel_size(*_frame_hw(step))
        canvas = self._compose(step)
        if self.video is not None:
            self._open_video()
            self._write_video(canvas.array)
        if self._screen is not None:
            self._present(canvas)

    def on_close(self) -> None:
        """Finish the video (rename it to its final name) and close the window."""
        if self._writer is not None:
            self.frames_written = self._writer.close()
            self._writer = None
        if self._screen is not None:
            pygame.display.quit()
            self._screen = None
        self.pressed.clear()

    # ------------------------------------------------------------------ loop commands
    def poll(self) -> set[str]:
        """Pump window events; return the loop's commands, a subset of {"quit", "pause", "manual"}.

        "pause" and "manual" are toggles (two presses in one poll cancel out). Layout switches
        and screenshots are handled here.
        """
        commands: set[str] = set()
        if self._screen is None:
            return commands
        for ev in pygame.event.get():
            if ev.type == pygame.QUIT:
                commands.add("quit")
            elif ev.type == pygame.KEYDOWN:
                self.pressed.add(ev.key)
                if ev.key in QUIT_KEYS:
                    commands.add("quit")
                elif ev.key in PAUSE_KEYS:
                    commands ^= {"pause"}
                    self.paused = not self.paused
                elif ev.key in MANUAL_KEYS:
                    commands ^= {"manual"}
                    self.manual = not self.manual
                elif ev.key in LAYOUT_KEYS:
                    self.cycle_layout()
                elif ev.key in SCREENSHOT_KEYS:
                    self.screenshot()
            elif ev.type == pygame.KEYUP:
                self.pressed.discard(ev.key)
            elif ev.type == pygame.WINDOWFOCUSLOST:
                self.pressed.clear()  # key-ups go elsewhere while unfocused
        return commands

    def redraw(self) -> None:
        """Recompose the last step (with the current layout and PAUSED state) and show it."""
        if self._last is None or not self._needs_canvas or self._panel_hw is None:
            return
        canvas = self._compose(self._last)
        if self._screen is not None:
            self._present(canvas)

    def cycle_layout(self) -> str:
        """Switch to the next layout; returns its name."""
        self.layout = LAYOUTS[(LAYOUTS.index(self.layout) + 1) % len(LAYOUTS)]
        log.info("viewer layout: %s", self.layout)
        self.redraw()
        return self.layout

    def screenshot(self) -> Path | None:
        """Save the current canvas as PNG in `screenshot_dir`; returns its path."""
        if self._last is None or self._panel_hw is None:
            log.warning("screenshot: nothing has been drawn yet")
            return None
        array = self._compose(self._last).array
        frame = self._last.frame.frame
        try:
            self.screenshot_dir.mkdir(parents=True, exist_ok=True)
            path = self.screenshot_dir / f"drivesim_{frame:06d}.png"
            n = 1
            while path.exists():
                path = self.screenshot_dir / f"drivesim_{frame:06d}_{n}.png"
                n += 1
            if not cv2.imwrite(str(path), cv2.cvtColor(array, cv2.COLOR_RGB2BGR)):
                raise OSError("the PNG encoder failed")
        except OSError as e:
            log.warning("screenshot not saved to %s: %s", self.screenshot_dir, e)
            return None
        log.info("screenshot saved to %s", path)
        return path

    # ------------------------------------------------------------------ window
    def _open_window(self) -> bool:
        """Open the window; on failure log one warning and return False (run headless)."""
        no_display = (sys.platform.startswith("linux") and not os.environ.get("SDL_VIDEODRIVER")
                      and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"))
        if no_display:
            log.warning("no display (DISPLAY is not set): running headless, without a window")
            return False
        try:
            pygame.display.init()
            self._screen = pygame.display.set_mode(self._window_size())
            pygame.display.set_caption("drivesim")
        except pygame.error as e:
            log.warning("cannot open a window (%s): running headless, without a window", e)
            pygame.display.quit()
            self._screen = None
            return False
        self._screen.fill((GREY, GREY, GREY))
        pygame.display.flip()
        return True

    def _window_size(self) -> tuple[int, int]:
        if self._panel_hw is None:
            return PLACEHOLDER_SIZE
        h, w = _layout_size(self.layout, *self._panel_hw)
        return w, h

    def _present(self, canvas: _Canvas) -> None:
        assert self._screen is not None
        h, w = canvas.array.shape[:2]
        if self._screen.get_size() != (w, h):
            self._screen = pygame.display.set_mode((w, h))
        self._screen.blit(canvas.surface, (0, 0))
        pygame.display.flip()

    @property
    def _needs_canvas(self) -> bool:
        return self._screen is not None or self.video is not None

    # ------------------------------------------------------------------ composition
    def _set_panel_size(self, h: int, w: int) -> None:
        hw = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
        if hw != self._panel_hw:
            self._panel_hw = hw
            self._canvases.clear()

    def _get_canvas(self, layout: str) -> _Canvas:
        canvas = self._canvases.get(layout)
        if canvas is None:
            assert self._panel_hw is not None
            ph, pw = self._panel_hw
            h, w = _layout_size(layout, ph, pw)
            array = np.full((h, w, 3), GREY, np.uint8)
            surface = pygame.image.frombuffer(array, (w, h), "RGB")  # shares array's memory
            canvas = _Canvas(array, surface, _layout_panels(layout, ph, pw))
            self._canvases[layout] = canvas
        return canvas

    def _compose(self, step: Step) -> _Canvas:
        canvas = self._get_canvas(self.layout)
        cam = step.frame.camera if step.frame.cameras else None
        for stream, y, x, h, w in canvas.panels:
            dst = canvas.array[y:y + h, x:x + w]
            if stream == "rgb":
                ok = _fill_rgb(dst, cam.rgb if cam is not None else None)
            elif stream == "semantic":
                ok = _fill_semantic(dst, cam.semantic if cam is not None else None)
            elif stream == "depth":
                ok = _fill_depth(dst, cam.depth if cam is not None else None)
            else:
                ok = _fill_rgb(dst, step.agent_view)
            caption = _CAPTIONS[stream] if ok else f"no {_CAPTIONS[stream]}"
            if not ok:
                dst[:] = GREY
                self._blit_text(canvas, caption, (x + w // 2, y + h // 2), DIM, center=True)
            else:
                self._caption(canvas, caption, y, x, h)
        self._draw_hud(canvas, step)
        return canvas

    def _caption(self, canvas: _Canvas, text: str, y: int, x: int, h: int) -> None:
        surf = self._text(text, WHITE, self._font_size(small=True))
        tw, th = surf.get_size()
        y0 = max(y, y + h - th - 4)
        box = canvas.array[y0:y + h, x:x + tw + 8]
        np.right_shift(box, 1, out=box)
        canvas.surface.blit(surf, (x + 4, y0 + 2))

    # ------------------------------------------------------------------ HUD
    def _draw_hud(self, canvas: _Canvas, step: Step) -> None:
        f, ego = step.frame, step.frame.ego
        ctl = step.control if step.control is not None else ego.control
        size = self._font_size()
        lh = self._font(size).get_linesize()
        strip = canvas.array[: 2 * lh + 6]
        np.right_shift(strip, 1, out=strip)  # darken under the text
        agent = self.info.agent if self.info else "?"
        synth = self.info.synth if self.info else "?"
        x = self._items(canvas, 6, 3, [
            (f"{agent} | {synth}", YELLOW),
            (f"frame {f.frame}", WHITE),
            (f"t {f.time:7.2f} s", WHITE),
            (f"{step.loop_fps:5.1f} fps", WHITE),
            (f"synth {step.synth_ms:5.1f} ms", WHITE),
        ])
        badges = [(s, c) for s, c, on in (("MANUAL", YELLOW, self.manual),
                                          ("PAUSED", CYAN, self.paused)) if on]
        self._items(canvas, x + 10, 3, badges)
        y = 3 + lh
        x = self._items(canvas, 6, y, [
            (f"{ego.speed * 3.6:5.1f} km/h", WHITE),
            (f"route {100.0 * ego.route_completion:3.0f}%", WHITE),
        ])
        bar_w, bar_h = max(24, size * 2), max(4, lh // 2)
        for label, value, lo in (("steer", ctl.steer, -1.0), ("throttle", ctl.throttle, 0.0),
                                 ("brake", ctl.brake, 0.0)):
            x = self._items(canvas, x, y, [(label, DIM)]) - 8
            x = self._bar(canvas, x, y + (lh - bar_h) // 2, bar_w, bar_h, value, lo) + 4
            x = self._items(canvas, x, y, [(f"{value:+.2f}" if lo < 0 else f"{value:.2f}", WHITE)])
        flags = [(s, WHITE) for s, on in (("REVERSE", ctl.reverse), ("HAND BRAKE", ctl.hand_brake))
                 if on]
        flags += [(label, RED) for label in self._flashing(f.time)]
        self._items(canvas, x + 10, y, flags)

    def _items(self, canvas: _Canvas, x: int, y: int, items: list[tuple[str, tuple]]) -> int:
        """Draw texts left to right from (x, y); returns the x after the last one."""
        size = self._font_size()
        for text, color in items:
            surf = self._text(text, color, size)
            canvas.surface.blit(surf, (x, y))
            x += surf.get_width() + 14
        return x

    def _bar(self, canvas: _Canvas, x: int, y: int, w: int, h: int, value: float, lo: float) -> int:
        """A value bar over [lo, 1]; a centred bar when lo < 0. Returns the x after it."""
        value = float(np.clip(value, lo, 1.0))
        pygame.draw.rect(canvas.surface, DIM, (x, y, w, h), 1)
        if lo < 0:
            mid = x + w // 2
            end = mid + round(value * (w // 2 - 1))
            left, right = min(mid, end), max(mid, end)
            pygame.draw.rect(canvas.surface, WHITE, (left, y + 1, max(1, right - left), h - 2))
        else:
            pygame.draw.rect(canvas.surface, WHITE, (x + 1, y + 1, round(value * (w - 2)), h - 2))
        return x + w

    def _note_events(self, frame: Frame) -> None:
        for ev in frame.events:
            label = {"collision": "COLLISION", "lane_invasion": "LANE INVASION",
                     "off_road": "OFF ROAD"}.get(ev.kind, ev.kind.upper())
            if ev.other_type and ev.kind != "off_road":
                label = f"{label} ({ev.other_type})"
            self._events[ev.kind] = (frame.time, label)

    def _flashing(self, now: float) -> list[str]:
        """Labels of the events of the last second of sim time that are in their 'on' phase."""
        out = []
        for t, label in self._events.values():
            age = now - t
            if 0.0 <= age < EVENT_FLASH_S and int(age / EVENT_BLINK_S) % 2 == 0:
                out.append(label)
        return out

    # ------------------------------------------------------------------ text
    def _font_size(self, small: bool = False) -> int:
        ph = self._panel_hw[0] if self._panel_hw else 256
        size = int(np.clip(ph // 12, 14, 26))
        return max(12, size * 4 // 5) if small else size

    def _font(self, size: int) -> pygame.font.Font:
        font = self._fonts.get(size)
        if font is None:
            font = self._fonts[size] = pygame.font.Font(None, size)
        return font

    def _text(self, text: str, color: tuple, size: int) -> pygame.Surface:
        key = (text, color, size)
        surf = self._texts.get(key)
        if surf is None:
            if len(self._texts) > 512:
                self._texts.clear()
            surf = self._texts[key] = self._font(size).render(text, True, color)
        return surf

    def _blit_text(self, canvas: _Canvas, text: str, xy: tuple[int, int], color: tuple,
                   center: bool = False) -> None:
        surf = self._text(text, color, self._font_size())
        rect = surf.get_rect(center=xy) if center else surf.get_rect(topleft=xy)
        canvas.surface.blit(surf, rect)

    # ------------------------------------------------------------------ video
    def _open_video(self) -> None:
        if self.video is None or self._writer is not None or self._panel_hw is None:
            return
        h, w = _layout_size(self.layout, *self._panel_hw)
        fps = float(self.info.fps) if self.info is not None else 20.0
        self._writer = VideoWriter(self.video, fps, w, h)
        self.frames_written = 0
        log.info("recording video to %s (%dx%d @ %.1f fps, H.264)", self.video, w, h, fps)

    def _write_video(self, array: np.ndarray) -> None:
        assert self._writer is not None
        self._writer.write(array)
        self.frames_written = self._writer.frames


_CAPTIONS = {"rgb": "world RGB", "semantic": "semantic", "agent": "agent view", "depth": "depth"}


def _layout_size(layout: str, ph: int, pw: int) -> tuple[int, int]:
    """Canvas (height, width) of a layout for panels of ph x pw."""
    return (ph, 3 * pw) if layout == "row" else (2 * ph, 2 * pw)


def _layout_panels(layout: str, ph: int, pw: int) -> list[tuple[str, int, int, int, int]]:
    if layout == "row":
        return [("rgb", 0, 0, ph, pw), ("semantic", 0, pw, ph, pw), ("agent", 0, 2 * pw, ph, pw)]
    if layout == "grid":
        return [("rgb", 0, 0, ph, pw), ("semantic", 0, pw, ph, pw), ("agent", ph, 0, ph, pw),
                ("depth", ph, pw, ph, pw)]
    return [("agent", 0, 0, 2 * ph, 2 * pw)]


def _frame_hw(step: Step) -> tuple[int, int]:
    cam = step.frame.camera if step.frame.cameras else None
    for img in (cam.rgb, cam.semantic, cam.depth) if cam is not None else ():
        if img is not None:
            return img.shape[0], img.shape[1]
    return step.agent_view.shape[0], step.agent_view.shape[1]


def _fill_rgb(dst: np.ndarray, img: np.ndarray | None) -> bool:
    """Copy an h w 3 (or h w) image into the panel `dst`, resizing if needed."""
    if img is None or img.ndim not in (2, 3):
        return False
    if img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.dtype.kind == "f" else 1.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    h, w = dst.shape[:2]
    if img.shape[:2] != (h, w):
        shrink = img.shape[0] > h
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    dst[:] = img[..., :3]
    return True


def _fill_semantic(dst: np.ndarray, tags: np.ndarray | None) -> bool:
    """CARLA tags -> CARLA's palette, straight into the panel."""
    if tags is None:
        return False
    h, w = dst.shape[:2]
    if tags.shape[:2] != (h, w):
        tags = cv2.resize(tags, (w, h), interpolation=cv2.INTER_NEAREST)
    np.take(_SEMANTIC_LUT, tags, axis=0, out=dst, mode="clip")
    return True


def _fill_depth(dst: np.ndarray, depth: np.ndarray | None) -> bool:
    """Metres -> log-scaled inferno colours (near = bright)."""
    if depth is None:
        return False
    h, w = dst.shape[:2]
    if depth.shape[:2] != (h, w):
        depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
    d = np.clip(depth, DEPTH_NEAR, DEPTH_FAR, dtype=np.float32)
    np.log(d, out=d)
    span = np.log(DEPTH_FAR / DEPTH_NEAR)
    u8 = cv2.convertScaleAbs(d, alpha=-255.0 / span, beta=255.0 + 255.0 * np.log(DEPTH_NEAR) / span)
    np.take(_DEPTH_LUT, u8, axis=0, out=dst, mode="clip")
    return True


def _depth_lut() -> np.ndarray:
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    return cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)[:, 0]


_DEPTH_LUT = _depth_lut()
