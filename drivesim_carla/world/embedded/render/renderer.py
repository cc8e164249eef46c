"""The embedded world's camera renderer: scene + camera pose -> CARLA-like camera streams."""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from ....errors import DrivesimError
from ....types import STREAMS, CameraSpec, Transform
from ..scene import GROUND_TAG, Boxes, GroundMap, Light, Material
from . import post, raster
from .flow import Motion, flow_coefficients, flow_kernel, motion_index
from .shading import STYLES, TEXTURED, W_NIGHT, W_RAIN, Style, glows, shade
from .weather import WEATHERS, WeatherPreset

log = logging.getLogger(__name__)

FAR = 1000.0  # metres: CARLA's far plane; the sky's depth
SHADOW_RES = 0.25  # metres per cell of the baked shadow / occlusion raster (finest)
LAMP_RES = 0.5  # metres per cell of the baked street-lamp raster (finest)
MAX_BAKE_CELLS = 8_000_000

_EMISSION = np.zeros((256, 3))
_EMISSION[Material.LAMP_RED_ON] = (4.0, 0.25, 0.12)
_EMISSION[Material.LAMP_YELLOW_ON] = (4.0, 2.4, 0.2)
_EMISSION[Material.LAMP_GREEN_ON] = (0.3, 3.6, 1.6)
_EMISSION.flags.writeable = False

# Materials whose look takes the box's colour (when it is not black).
_USES_COLOR = np.zeros(256, np.bool_)
for _m in (Material.CONCRETE, Material.BRICK, Material.GLASS, Material.WALL, Material.FENCE,
           Material.BARK, Material.FOLIAGE, Material.METAL, Material.SIGN, Material.CAR_PAINT,
           Material.CLOTH, Material.HEDGE):
    _USES_COLOR[_m] = True
_USES_COLOR.flags.writeable = False

assert raster.BOX_COLS == 20 and raster.RND == 14 and raster.NFLOORS == 19


_VEHICLE_TAGS = np.arange(13, 20)  # rider, car, truck, bus, train, motorcycle, bicycle


def _headlight_sources(lights: np.ndarray, dynamic: np.ndarray) -> np.ndarray:
    """Move each headlight row (x, y, z, yaw of a vehicle) to the front of the vehicle's boxes:
    the light leaves from there. Rows with no vehicle box around them stay where they are."""
    out = lights.copy()
    veh = dynamic[np.isin(dynamic[:, raster.TAG], _VEHICLE_TAGS)]
    if len(veh) == 0:
        return out
    c, s = np.cos(lights[:, 3]), np.sin(lights[:, 3])
    dx = veh[None, :, raster.BX] - lights[:, None, 0]
    dy = veh[None, :, raster.BY] - lights[:, None, 1]
    # the light's point inside the box footprint (box frame), with some slack
    bx = -(veh[None, :, raster.COS] * dx + veh[None, :, raster.SIN] * dy)
    by = -(-veh[None, :, raster.SIN] * dx + veh[None, :, raster.COS] * dy)
    inside = (np.abs(bx) <= veh[None, :, raster.HX] + 0.1) & (np.abs(by) <= veh[None, :, raster.HY] + 0.1)
    along = c[:, None] * dx + s[:, None] * dy + veh[None, :, raster.HX]
    front = np.where(inside, along, -np.inf).max(axis=1)
    ok = np.isfinite(front) & (front > 0)
    out[ok, 0] += c[ok] * front[ok]
    out[ok, 1] += s[ok] * front[ok]
    return out


def _pad256(table: np.ndarray, fill) -> np.ndarray:
    out = np.empty((256,) + table.shape[1:], table.dtype)
    out[:] = fill
    out[: len(table)] = table
    return out


def _choose(registry: dict, name: str, what: str):
    if name not in registry:
        raise DrivesimError(f"unknown render {what} '{name}'; valid: {', '.join(registry)}")
    return registry[name]


@dataclass
class _Buffers:
    zbuf: np.ndarray  # (h, w) float64 1/depth
    fid: np.ndarray  # (h, w) int32 what each pixel sees
    gsun: np.ndarray  # (h, w) float32 dynamic sun visibility on the ground
    gao: np.ndarray  # (h, w) float32 dynamic occlusion on the ground
    glight: np.ndarray  # (h, w) float32 headlight intensity on the ground
    col: np.ndarray  # (h, w, 3) float32 linear colour
    tmp: np.ndarray  # (h, w, 3) float32 scratch


def _bake_grid(lo: np.ndarray, hi: np.ndarray, res: float, max_cells: int):
    area = float((hi[0] - lo[0]) * (hi[1] - lo[1]))
    res = max(res, math.sqrt(area / max_cells))
    nc = int(math.ceil((hi[0] - lo[0]) / res))
    nr = int(math.ceil((hi[1] - lo[1]) / res))
    return (nr, nc), np.array([lo[0], lo[1], res], np.float64)


class Renderer:
    """Software renderer of the embedded world (one CPU core, numba kernels).

    The static scene (ground raster, static boxes, street lamps) is given once; each `render`
    call adds the dynamic boxes of that frame. Streams: rgb (h w 3 uint8), semantic (h w uint8,
    CARLA tags), depth (h w float32 metres along the optical axis, sky = 1000), instance
    (h w int32, 0 = ground and sky), flow (h w 2 float32 pixels, now - previous).
    Pixel centres are at integer + 0.5: pixel (i, j) sees the ray through u = j + 0.5,
    v = i + 0.5.
    """

    def __init__(self, ground: GroundMap, static: Boxes, lights: Light, *, style: str = "flat",
                 weather: str = "clear", seed: int = 0):
        self.style: Style = _choose(STYLES, style, "style")
        self.weather: WeatherPreset = _choose(WEATHERS, weather, "weather")
        self.seed = int(seed) % (1 << 63)  # numpy seeds must be non-negative
        self._wp = self.weather.packed()
        self._textured = self.style.kernel_id == TEXTURED
        self._ground = np.ascontiguousarray(ground.material, np.uint8)
        self._gparams = np.array([ground.origin[0], ground.origin[1], ground.resolution], np.float64)
        self._gtag = np.zeros(256, np.uint8)
        self._gtag[: len(GROUND_TAG)] = GROUND_TAG
        self._gtag[len(GROUND_TAG):] = GROUND_TAG[0]
        # material tables padded to 256 rows: unknown codes look like grass / plain concrete
        self._galbedo = _pad256(self.style.ground_albedo, self.style.ground_albedo[0])
        self._balbedo = _pad256(self.style.box_albedo, self.style.box_albedo[0])
        self._ns = len(static)
        self._boxes = np.empty((self._ns + 64, raster.BOX_COLS), np.float64)
        self._boxes[: self._ns] = raster.pack_boxes(static, self.seed)
        self._tex = post.make_textures(self.seed)
        self._lut = post.tone_lut(self._textured, self.weather.exposure)
        self._foglut = np.exp(-self.weather.fog_density * np.linspace(0.0, FAR, 16385)).astype(np.float32)
        self._buffers: dict[tuple[int, int], _Buffers] = {}
        t0 = time.perf_counter()
        self._bake(ground, static, lights)
        log.debug("renderer %s/%s: baked the static scene in %.2fs", style, weather,
                  time.perf_counter() - t0)
        if self._textured:
            self._noise = post.make_noise_bank(self.seed)
            self._streaks = post.make_streaks(self.seed)
        else:
            self._noise = np.zeros(1, np.float32)
            self._streaks = np.zeros((1, 1), np.float32)

    # ------------------------------------------------------------------------------ setup
    def _bake(self, ground: GroundMap, static: Boxes, lights: Light) -> None:
        """Static shadows + ground occlusion (textured) and street-lamp light (night)."""
        h, w = ground.material.shape
        lo = np.array(ground.origin, np.float64)
        hi = lo + np.array([w, h]) * ground.resolution
        if len(static):
            lo = np.minimum(lo, static.center[:, :2].min(0) - 10.0)
            hi = np.maximum(hi, static.center[:, :2].max(0) + 10.0)
        sun = self.weather.sun_direction()
        if self._textured:
            shape, self._sparams = _bake_grid(lo, hi, SHADOW_RES, MAX_BAKE_CELLS)
            self._zmax = np.zeros(shape, np.float32)
            self._ao = np.ones(shape, np.float32)
            raster.bake_shadows(self._boxes[: self._ns], sun, self._sparams[0], self._sparams[1],
                                self._sparams[2], self._zmax, self._ao)
        else:
            self._sparams = np.array([0.0, 0.0, 1.0])
            self._zmax = np.zeros((1, 1), np.float32)
            self._ao = np.ones((1, 1), np.float32)
        n_lights = len(lights.radius) if lights is not None else 0
        self._light_pos = np.zeros((0, 3))
        self._light_col = np.zeros((0, 3))
        if self.weather.night > 0 and n_lights:
            shape, self._lparams = _bake_grid(lo, hi, LAMP_RES, MAX_BAKE_CELLS // 4)
            self._lamp = np.zeros(shape + (3,), np.float32)
            pos = np.ascontiguousarray(lights.position, np.float64)
            col = np.ascontiguousarray(lights.color, np.float64) * self.weather.night
            raster.bake_lamps(pos, col, np.ascontiguousarray(lights.radius, np.float64),
                              self._lparams[0], self._lparams[1], self._lparams[2], self._lamp)
            self._light_pos = pos
            self._light_col = col
        else:
            self._lparams = np.array([0.0, 0.0, 1.0])
            self._lamp = np.zeros((1, 1, 3), np.float32)

    def _buffers_for(self, h: int, w: int) -> _Buffers:
        buf = self._buffers.get((h, w))
        if buf is None:
            buf = _Buffers(
                np.empty((h, w)), np.empty((h, w), np.int32), np.ones((h, w), np.float32),
                np.ones((h, w), np.float32), np.zeros((h, w), np.float32),
                np.empty((h, w, 3), np.float32), np.empty((h, w, 3), np.float32),
            )
            self._buffers[(h, w)] = buf
        return buf

    def _frame_boxes(self, dynamic: Boxes) -> np.ndarray:
        n = self._ns + len(dynamic)
        if n > len(self._boxes):
            grown = np.empty((n + 64, raster.BOX_COLS), np.float64)
            grown[: self._ns] = self._boxes[: self._ns]
            self._boxes = grown
        if len(dynamic):
            self._boxes[self._ns: n] = raster.pack_boxes(dynamic, self.seed)
        return self._boxes[:n]

    # ------------------------------------------------------------------------------ render
    def render(self, spec: CameraSpec, pose: Transform, dynamic: Boxes, *, frame: int,
               streams: Collection[str] = ("rgb", "semantic", "depth"),
               motion: Motion | None = None,
               headlights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Render one camera. Returns exactly the requested streams."""
        streams = tuple(streams)
        unknown = [s for s in streams if s not in STREAMS]
        if unknown:
            raise DrivesimError(f"unknown stream(s) {unknown}; valid: {', '.join(STREAMS)}")
        h, w, f = spec.height, spec.width, spec.focal
        m = pose.matrix()
        origin = np.ascontiguousarray(m[:3, 3])
        rot = np.ascontiguousarray(m[:3, :3].T)
        boxes = self._frame_boxes(dynamic)
        buf = self._buffers_for(h, w)
        raster.rasterize(origin, rot, f, FAR, boxes, buf.zbuf, buf.fid)

        want_rgb = "rgb" in streams
        lamps = self._decals(origin, rot, f, buf, boxes, headlights) if want_rgb else np.zeros((0, 4))
        out: dict[str, np.ndarray] = {}
        sem = np.empty((h, w), np.uint8) if "semantic" in streams else np.zeros((1, 1), np.uint8)
        depth = np.empty((h, w), np.float32) if "depth" in streams else np.zeros((1, 1), np.float32)
        inst = np.empty((h, w), np.int32) if "instance" in streams else np.zeros((1, 1), np.int32)
        want = np.array(["semantic" in streams, "depth" in streams, "instance" in streams,
                         want_rgb], np.bool_)
        if want.any():
            shade(self.style.kernel_id, self._wp, origin, rot, f, FAR, buf.zbuf, buf.fid, boxes,
                  self._ground, self._gparams, self._gtag, self._galbedo, self._balbedo,
                  _EMISSION, _USES_COLOR, self._zmax, self._ao, self._sparams, self._lamp,
                  self._lparams, buf.gsun, buf.gao, buf.glight, self._tex, self._foglut, want,
                  sem, depth, inst, buf.col)
        if want_rgb:
            out["rgb"] = self._finish(spec, frame, origin, rot, f, buf, lamps)
        if "semantic" in streams:
            out["semantic"] = sem
        if "depth" in streams:
            out["depth"] = depth
        if "instance" in streams:
            out["instance"] = inst
        if "flow" in streams:
            out["flow"] = self._flow(h, w, f, origin, rot, buf, boxes, motion)
        return {s: out[s] for s in streams}

    def _decals(self, origin, rot, f, buf: _Buffers, boxes: np.ndarray,
                headlights: np.ndarray | None) -> np.ndarray:
        """What dynamic objects and headlights do to the ground this frame (screen buffers).
        Returns the headlight sources, moved to the front of their vehicles."""
        strength = self.weather.headlights
        lamps = np.zeros((0, 4))
        if headlights is not None and strength > 0 and len(headlights):
            lamps = _headlight_sources(np.asarray(headlights, np.float64).reshape(-1, 4),
                                       boxes[self._ns:])
        buf.gsun.fill(1.0)
        buf.gao.fill(1.0)
        buf.glight.fill(0.0)
        if self._textured or len(lamps):
            raster.ground_decals(origin, rot, f, boxes if self._textured else boxes[:0],
                                 self._ns, self.weather.sun_direction(), self._textured, lamps,
                                 buf.zbuf, buf.fid, buf.gsun, buf.gao, buf.glight)
            if strength != 1.0:
                buf.glight *= strength
        return lamps

    def _finish(self, spec, frame, origin, rot, f, buf, lamps) -> np.ndarray:
        h, w = buf.zbuf.shape
        if self._textured and (len(self._light_pos) or len(lamps)):
            pts, cols, rad, facing = self._glow_sources(lamps)
            if len(pts):
                glows(origin, rot, f, buf.zbuf, pts, cols, rad, facing, self.weather.fog_density,
                      buf.col)
        rgb = np.empty((h, w, 3), np.uint8)
        if self._textured:
            rng = np.random.default_rng([self.seed, int(frame) % (1 << 63),
                                         zlib.crc32(spec.name.encode())])
            soi, soj = (int(x) for x in rng.integers(0, 1 << 16, 2))
            row_off = rng.integers(0, len(self._noise) - 3 * w, h)
            amp = self.style.noise * (1.0 + 1.2 * self._wp[W_NIGHT])
            streak_col = np.asarray(self.weather.fog_color, np.float64) * 0.5 + 0.08
            post.finish(buf.col, rgb, self._lut, self.style.blur, self.style.vignette,
                        self._noise, amp, row_off, self._streaks, 0.2 * self._wp[W_RAIN],
                        soi, soj, streak_col, buf.tmp)
        else:
            post.finish(buf.col, rgb, self._lut, 0.0, 0.0, self._noise, 0.0,
                        np.zeros(h, np.int64), self._streaks, 0.0, 0, 0, np.zeros(3), buf.tmp)
        return rgb

    def _glow_sources(self, lamps: np.ndarray):
        """Street-lamp heads (all around) and headlights (facing their car's yaw)."""
        n_l = len(self._light_pos)
        n_h = len(lamps)
        pts = np.empty((n_l + 2 * n_h, 3))
        cols = np.empty((n_l + 2 * n_h, 3))
        rad = np.empty(n_l + 2 * n_h)
        facing = np.zeros((n_l + 2 * n_h, 3))
        pts[:n_l] = self._light_pos
        cols[:n_l] = self._light_col * 1.5
        rad[:n_l] = 0.6
        if n_h:
            c, s = np.cos(lamps[:, 3]), np.sin(lamps[:, 3])
            for k, side in enumerate((-0.7, 0.7)):
                sl = slice(n_l + k * n_h, n_l + (k + 1) * n_h)
                pts[sl, 0] = lamps[:, 0] + c * 0.05 - s * side
                pts[sl, 1] = lamps[:, 1] + s * 0.05 + c * side
                pts[sl, 2] = lamps[:, 2]
                cols[sl] = np.array([2.0, 1.9, 1.7]) * self.weather.headlights
                rad[sl] = 0.35
                facing[sl, 0] = c
                facing[sl, 1] = s
        return pts, cols, rad, facing

    def _flow(self, h, w, f, origin, rot, buf, boxes, motion) -> np.ndarray:
        if motion is None:
            return np.zeros((h, w, 2), np.float32)
        flow = np.empty((h, w, 2), np.float32)
        prev = np.linalg.inv(motion.prev_camera.matrix())
        midx, mats = motion_index(boxes[:, raster.INST].astype(np.int64), motion.objects)
        coef = flow_coefficients(origin, rot, prev, mats)
        flow_kernel(f, buf.zbuf, buf.fid, midx, coef, flow)
        return flow


__all__ = ["FAR", "Motion", "Renderer", "STYLES", "WEATHERS"]
