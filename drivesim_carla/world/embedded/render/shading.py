"""Render styles and the shading kernel.

A style decides how the visible surfaces (`raster.rasterize`) become colours; semantic, depth and
instance come out of the same pass and never depend on the style or the weather.

- "flat": CARLA-like: one albedo per material, Lambert sun + ambient, a sky gradient, fog.
- "textured": procedural textures (asphalt grain, sidewalk tiles, grass, facades with brick and
  window grids, car windows and wheels), sun and sky light with baked shadows and occlusion,
  lit windows, lamp pools and headlights at night, wet roads in rain; tone curve, vignetting,
  sensor noise and a slight blur in `post`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..scene import Material

FLAT = 0
TEXTURED = 1

# Layout of the packed weather parameters (`WeatherPreset.packed`); kept in this file because
# numba's cache only watches the file a kernel lives in.
W_SUN = 0  # (3) unit vector towards the sun
W_SUNCOL = 3  # (3) sun irradiance, linear RGB
W_AMB = 6  # (3) sky (ambient) light from above
W_AMBG = 9  # (3) ambient light bounced from the ground
W_ZEN = 12  # (3) sky colour at the zenith
W_HOR = 15  # (3) sky colour at the horizon
W_FOGCOL = 18  # (3)
W_FOG = 21  # fog density, 1/m
W_WET = 22  # road wetness 0..1
W_RAIN = 23  # rain streak strength 0..1
W_NIGHT = 24  # 0..1: street lamps, lit windows, headlight glows
W_EXPO = 25  # exposure multiplier (post)
W_CLOUD = 26  # cloud cover 0..1
W_SIZE = 32

# Columns of a packed box row (mirrors raster.py; asserted equal in __init__).
BX, BY, BZ, HX, HY, HZ, COS, SIN, TAG, INST, MAT, CR, CG, CB, RND, BOTTOM = range(16)
FLOOR_INV, CELL_INV_X, CELL_INV_Y, NFLOORS = range(16, 20)
FID_SKY = -1
FID_GROUND = -2

# Materials (values of scene.Material), as plain ints for the kernels.
M_CONCRETE, M_BRICK, M_GLASS, M_WALL, M_FENCE, M_BARK, M_FOLIAGE, M_METAL, M_SIGN = range(9)
M_CAR_PAINT, M_CAR_WINDOW, M_CLOTH, M_SKIN = 9, 10, 11, 12
M_LAMP_RED, M_LAMP_YELLOW, M_LAMP_GREEN, M_LAMP_OFF, M_HEDGE = 13, 14, 15, 16, 17
N_MATERIALS = 18

# Ground materials (values of scene.Ground).
G_GRASS, G_ASPHALT, G_WHITE_BROKEN, G_WHITE_SOLID, G_YELLOW, G_STOP, G_CROSSWALK = range(7)
G_SIDEWALK, G_CURB, G_DIRT, G_PARKING = 7, 8, 9, 10


@dataclass(frozen=True)
class Style:
    """A render style: a look on the shared geometry."""

    name: str
    kernel_id: int
    ground_albedo: np.ndarray  # (n_ground_materials, 3) linear RGB
    box_albedo: np.ndarray  # (N_MATERIALS, 3) linear RGB, used where a box has no colour
    blur: float  # 0..1 weight of the 3x3 blur
    vignette: float  # darkening at the corners
    noise: float  # sensor noise, 8-bit levels (1 sigma)
    description: str = ""


def _table(rows: dict[int, tuple[float, float, float]], n: int) -> np.ndarray:
    out = np.zeros((n, 3), np.float64)
    for k, v in rows.items():
        out[int(k)] = v
    out.flags.writeable = False
    return out


_BOX_ALBEDO = _table({
    Material.CONCRETE: (0.33, 0.31, 0.28), Material.BRICK: (0.30, 0.11, 0.06),
    Material.GLASS: (0.10, 0.13, 0.17), Material.WALL: (0.28, 0.27, 0.25),
    Material.FENCE: (0.22, 0.17, 0.12), Material.BARK: (0.09, 0.055, 0.03),
    Material.FOLIAGE: (0.035, 0.09, 0.02), Material.METAL: (0.18, 0.18, 0.2),
    Material.SIGN: (0.5, 0.5, 0.5), Material.CAR_PAINT: (0.3, 0.02, 0.02),
    Material.CAR_WINDOW: (0.02, 0.025, 0.03), Material.CLOTH: (0.15, 0.15, 0.2),
    Material.SKIN: (0.45, 0.28, 0.18), Material.LAMP_RED_ON: (0.3, 0.02, 0.02),
    Material.LAMP_YELLOW_ON: (0.3, 0.2, 0.02), Material.LAMP_GREEN_ON: (0.02, 0.3, 0.1),
    Material.LAMP_OFF: (0.02, 0.02, 0.02), Material.HEDGE: (0.03, 0.075, 0.02),
}, N_MATERIALS)

_FLAT_GROUND = _table({
    G_GRASS: (0.09, 0.2, 0.04), G_ASPHALT: (0.085, 0.085, 0.09),
    G_WHITE_BROKEN: (0.7, 0.7, 0.7), G_WHITE_SOLID: (0.7, 0.7, 0.7), G_YELLOW: (0.7, 0.45, 0.02),
    G_STOP: (0.7, 0.7, 0.7), G_CROSSWALK: (0.7, 0.7, 0.7), G_SIDEWALK: (0.3, 0.27, 0.26),
    G_CURB: (0.4, 0.4, 0.4), G_DIRT: (0.2, 0.13, 0.07), G_PARKING: (0.11, 0.11, 0.115),
}, 16)

_TEXTURED_GROUND = _table({
    G_GRASS: (0.04, 0.075, 0.018), G_ASPHALT: (0.065, 0.064, 0.066),
    G_WHITE_BROKEN: (0.5, 0.5, 0.47), G_WHITE_SOLID: (0.5, 0.5, 0.47),
    G_YELLOW: (0.55, 0.35, 0.04), G_STOP: (0.5, 0.5, 0.47), G_CROSSWALK: (0.5, 0.5, 0.47),
    G_SIDEWALK: (0.2, 0.19, 0.175), G_CURB: (0.28, 0.28, 0.27), G_DIRT: (0.12, 0.08, 0.045),
    G_PARKING: (0.08, 0.078, 0.08),
}, 16)

STYLES: dict[str, Style] = {
    "flat": Style("flat", FLAT, _FLAT_GROUND, _BOX_ALBEDO, 0.0, 0.0, 0.0,
                  "CARLA-like flat albedo per material, Lambert sun + ambient, no noise"),
    "textured": Style("textured", TEXTURED, _TEXTURED_GROUND, _BOX_ALBEDO, 0.35, 0.35, 1.6,
                      "procedural textures, shadows, night lights, tone curve, lens and sensor"),
}


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", inline="always")
def _tex(tex, ch, x, y):
    """Nearest sample of tileable noise channel `ch` at texel coordinates (x, y)."""
    return tex[ch, int(math.floor(y)) & 255, int(math.floor(x)) & 255]


@njit(cache=True, error_model="numpy", nogil=True)
def _texb(tex, ch, x, y):
    """Bilinear sample of tileable noise channel `ch` at texel coordinates (x, y)."""
    fx = math.floor(x)
    fy = math.floor(y)
    ax = x - fx
    ay = y - fy
    j = int(fx) & 255
    i = int(fy) & 255
    j2 = (j + 1) & 255
    i2 = (i + 1) & 255
    top = tex[ch, i, j] + ax * (tex[ch, i, j2] - tex[ch, i, j])
    bot = tex[ch, i2, j] + ax * (tex[ch, i2, j2] - tex[ch, i2, j])
    return top + ay * (bot - top)


@njit(cache=True, error_model="numpy", inline="always")
def _hash(a, b, c):
    """Deterministic hash of three ints -> [0, 1)."""
    h = (a * 374761393 + b * 668265263 + c * 1013904223) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFFFF) * (1.0 / 16777216.0)


@njit(cache=True, error_model="numpy", inline="always")
def _clamp01(x):
    return min(max(x, 0.0), 1.0)


@njit(cache=True, error_model="numpy", inline="always")
def _smooth(e0, e1, x):
    t = _clamp01((x - e0) / (e1 - e0))
    return t * t * (3.0 - 2.0 * t)


@njit(cache=True, error_model="numpy", nogil=True)
def _sun_visibility(zmax, ox, oy, inv_res, x, y, z, kx, ky, bias):
    """1 where the static scene does not hide the sun from (x, y, z), 0 in shadow (soft edges)."""
    nr, nc = zmax.shape
    fx = (x + kx * z - ox) * inv_res - 0.5
    fy = (y + ky * z - oy) * inv_res - 0.5
    j = int(math.floor(fx))
    i = int(math.floor(fy))
    if i < 0 or j < 0 or i + 1 >= nr or j + 1 >= nc:
        return 1.0
    ax = fx - j
    ay = fy - i
    lim = z + bias
    o00 = 1.0 if zmax[i, j] > lim else 0.0
    o01 = 1.0 if zmax[i, j + 1] > lim else 0.0
    o10 = 1.0 if zmax[i + 1, j] > lim else 0.0
    o11 = 1.0 if zmax[i + 1, j + 1] > lim else 0.0
    top = o00 + ax * (o01 - o00)
    bot = o10 + ax * (o11 - o10)
    return 1.0 - (top + ay * (bot - top))


@njit(cache=True, error_model="numpy", nogil=True)
def _lamp_light(lamp, ox, oy, inv_res, x, y):
    """Bilinear sample of the baked street-lamp light (3 channels) at world (x, y)."""
    nr, nc, _ = lamp.shape
    fx = (x - ox) * inv_res - 0.5
    fy = (y - oy) * inv_res - 0.5
    j = int(math.floor(fx))
    i = int(math.floor(fy))
    if i < 0 or j < 0 or i + 1 >= nr or j + 1 >= nc:
        return 0.0, 0.0, 0.0
    ax = fx - j
    ay = fy - i
    w00 = (1 - ax) * (1 - ay)
    w01 = ax * (1 - ay)
    w10 = (1 - ax) * ay
    w11 = ax * ay
    r = w00 * lamp[i, j, 0] + w01 * lamp[i, j + 1, 0] + w10 * lamp[i + 1, j, 0] + w11 * lamp[i + 1, j + 1, 0]
    g = w00 * lamp[i, j, 1] + w01 * lamp[i, j + 1, 1] + w10 * lamp[i + 1, j, 1] + w11 * lamp[i + 1, j + 1, 1]
    b = w00 * lamp[i, j, 2] + w01 * lamp[i, j + 1, 2] + w10 * lamp[i + 1, j, 2] + w11 * lamp[i + 1, j + 1, 2]
    return r, g, b


# --------------------------------------------------------------------------------------------
# Sky
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", nogil=True)
def _sky(style, wp, tex, dx, dy, dz):
    """Sky colour (linear RGB) seen along the world direction (dx, dy, dz)."""
    inv = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
    ux = dx * inv
    uy = dy * inv
    uz = dz * inv
    e = max(uz, 0.0)
    g = 1.0 - (1.0 - e) * (1.0 - e)
    if style == FLAT:
        g = e
    r = wp[W_HOR] + (wp[W_ZEN] - wp[W_HOR]) * g
    gg = wp[W_HOR + 1] + (wp[W_ZEN + 1] - wp[W_HOR + 1]) * g
    b = wp[W_HOR + 2] + (wp[W_ZEN + 2] - wp[W_HOR + 2]) * g
    if style == FLAT:
        return r, gg, b
    # sun glow and disk
    cs = ux * wp[W_SUN] + uy * wp[W_SUN + 1] + uz * wp[W_SUN + 2]
    if cs > 0.0 and wp[W_SUN + 2] > -0.1:
        c2 = cs * cs
        c8 = c2 * c2 * c2 * c2
        glow = 0.05 * c8 + 0.25 * c8 * c8 * c8 * c8
        if cs > 0.99985:
            glow += 12.0
        r += wp[W_SUNCOL] * glow
        gg += wp[W_SUNCOL + 1] * glow
        b += wp[W_SUNCOL + 2] * glow
    # clouds on a plane far above, fading towards the horizon
    cloud = wp[W_CLOUD]
    if cloud > 0.0 and uz > 0.01:
        k = 60.0 / uz
        px = ux * k
        py = uy * k
        n = _texb(tex, 3, px, py) + 0.5 * _tex(tex, 2, px * 2.3, py * 2.3)
        cover = _smooth(0.55 - cloud * 0.9, 1.0 - cloud * 0.6, n + 0.5)
        cover *= _smooth(0.01, 0.25, uz)
        shade = 0.85 + 0.25 * _tex(tex, 1, px * 1.7 + 31.0, py * 1.7)
        if wp[W_NIGHT] > 0.5:
            cr = 0.006 * shade
            cg = 0.007 * shade
            cb = 0.01 * shade
        else:
            cr = (wp[W_HOR] * 0.9 + 0.12 * wp[W_SUNCOL]) * shade
            cg = (wp[W_HOR + 1] * 0.9 + 0.12 * wp[W_SUNCOL + 1]) * shade
            cb = (wp[W_HOR + 2] * 0.9 + 0.12 * wp[W_SUNCOL + 2]) * shade
        r += (cr - r) * cover
        gg += (cg - gg) * cover
        b += (cb - b) * cover
    elif wp[W_NIGHT] > 0.5 and uz > 0.05:
        # stars
        k = 900.0
        hs = _hash(int(math.floor(ux * k)), int(math.floor(uy * k)), int(math.floor(uz * k)))
        if hs > 0.9993:
            v = (hs - 0.9993) * 400.0
            r += v
            gg += v
            b += v * 1.1
    return r, gg, b


# --------------------------------------------------------------------------------------------
# Ground
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", inline="always")
def _ground_textured(gm, albedo, tex, x, y, fp):
    """Textured ground albedo at world (x, y) of ground material gm; fp: metres per pixel.

    Returns r, g, b and a gloss factor (how much the surface can shine when wet)."""
    r = albedo[gm, 0]
    g = albedo[gm, 1]
    b = albedo[gm, 2]
    near = fp < 0.15
    fine = _tex(tex, 0, x * 40.0, y * 40.0) * min(0.02 / fp, 1.0)
    med = _texb(tex, 1, x * 6.0, y * 6.0) if near else _tex(tex, 1, x * 6.0, y * 6.0)
    coarse = _tex(tex, 3, x * 0.7, y * 0.7)
    gloss = 1.0
    if gm == G_ASPHALT or gm == G_PARKING:
        k = 1.0 + 0.55 * fine + 0.25 * med + 0.35 * coarse
        patch = _texb(tex, 2, x * 0.25 + 17.0, y * 0.25)
        k *= 1.0 - 0.28 * _smooth(0.38, 0.46, patch)  # repaired patches
        r *= k
        g *= k
        b *= k
    elif gm == G_GRASS or gm == G_DIRT:
        k = 1.0 + 0.5 * fine + 0.35 * med
        dry = _clamp01(0.5 + coarse * 1.2)
        r = r * k * (0.8 + 0.8 * dry)
        g = g * k * (0.9 + 0.3 * dry)
        b = b * k
        gloss = 0.2
    elif gm == G_SIDEWALK:
        tx = x * (1.0 / 0.6)
        ty = y * (1.0 / 0.6)
        ftx = math.floor(tx)
        fty = math.floor(ty)
        k = (0.88 + 0.24 * _hash(int(ftx), int(fty), 7)) * (1.0 + 0.3 * fine + 0.12 * med)
        if fp < 0.3:
            grout = 0.045 * min(0.36 / fp, 1.0)
            if tx - ftx < grout or ty - fty < grout:
                k *= 0.55
        r *= k
        g *= k
        b *= k
        gloss = 0.6
    else:  # paint (lane markings, stop lines, crosswalks) and curbs
        wear = _clamp01(0.5 + 0.9 * med + 0.4 * coarse)
        k = 1.0 + 0.25 * fine
        if gm != G_CURB:
            base = albedo[G_ASPHALT, 0]
            q = 0.35 + 0.65 * wear
            r = base + (r - base) * q
            g = base + (g - base) * q
            b = base + (b - base) * q
        r *= k
        g *= k
        b *= k
        gloss = 0.8
    return r, g, b, gloss


# --------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", inline="always")
def _facade(boxes, bi, mat, br, bg, bb, face, s, t, hgt, fp, night, tex):
    """Building wall (concrete, brick or glass) with a window grid, face-local (s, t) metres.
    Returns albedo (3), emission (3), specular weight."""
    inst = int(boxes[bi, INST])
    rnd = boxes[bi, RND]
    cinv = boxes[bi, CELL_INV_X] if face < 2 else boxes[bi, CELL_INV_Y]
    fx = s * cinv
    fy = t * boxes[bi, FLOOR_INV]
    colf = math.floor(fx)
    flof = math.floor(fy)
    ux = fx - colf
    uy = fy - flof
    col = int(colf)
    flo = int(flof)
    top_floor = flof >= boxes[bi, NFLOORS] or t > hgt - 0.8
    if mat == M_GLASS:
        mull = 0.06
        if not top_floor and ux > mull and ux < 1.0 - mull and uy > 0.09 and uy < 1.0 - mull:
            v = 0.7 + 0.6 * _hash(inst, col, flo)
            er = 0.0
            eg = 0.0
            eb = 0.0
            if night > 0.5 and _hash(inst * 3 + face, col, flo) < 0.3:
                e = 0.05 + 0.12 * _hash(col, flo, inst)
                er = e
                eg = e * 0.85
                eb = e * 0.6
            return 0.03 * v + 0.4 * br, 0.035 * v + 0.4 * bg, 0.045 * v + 0.4 * bb, er, eg, eb, 0.55
        return 0.07 + 0.3 * br, 0.07 + 0.3 * bg, 0.08 + 0.3 * bb, 0.0, 0.0, 0.0, 0.0
    stain = 0.2 * _texb(tex, 2, s * 0.9, t * 0.15) + 0.2 * _tex(tex, 3, s * 0.2, t * 0.2)
    r = br * (1.0 + stain)
    g = bg * (1.0 + stain)
    b = bb * (1.0 + stain)
    if mat == M_BRICK:
        if fp < 0.06:
            detail = _clamp01((0.06 - fp) * 25.0)
            by = t * (1.0 / 0.075)
            row = math.floor(by)
            bx = s * (1.0 / 0.24) + 0.5 * (int(row) & 1)
            bcol = math.floor(bx)
            if by - row < 0.14 or bx - bcol < 0.05:  # mortar
                r += (0.27 - r) * detail
                g += (0.26 - g) * detail
                b += (0.24 - b) * detail
            else:
                k = 1.0 + (0.4 * _hash(int(row), int(bcol), inst) - 0.2) * detail
                r *= k
                g *= k
                b *= k
    else:
        k = 1.0 + 0.08 * _tex(tex, 1, s * 8.0, t * 8.0)
        if uy < 0.04 and flo > 0:
            k *= 0.75  # slab line at each floor
        r *= k
        g *= k
        b *= k
    if top_floor:
        return r, g, b, 0.0, 0.0, 0.0, 0.0
    ground_floor = flo == 0
    if ground_floor:
        wx0 = 0.1
        wy0 = 0.12
        wy1 = 0.78
    else:
        wx0 = 0.22 + 0.08 * rnd
        wy0 = 0.28
        wy1 = 0.82
    wx1 = 1.0 - wx0
    if ux > wx0 and ux < wx1 and uy > wy0 and uy < wy1:
        fw = 0.04  # window frame, as a fraction of the cell
        if ux < wx0 + fw or ux > wx1 - fw or uy < wy0 + fw or uy > wy1 - fw:
            return 0.3, 0.3, 0.3, 0.0, 0.0, 0.0, 0.0
        h = _hash(inst * 7 + face, col, flo)
        blind = _hash(col, flo, inst * 5 + 1)
        gr = 0.02 + 0.02 * h
        gg = 0.025 + 0.02 * h
        gb = 0.035 + 0.025 * h
        sp = 0.5
        if blind < 0.25 and not ground_floor:  # curtains / blinds behind the glass
            if uy > wy1 - (wy1 - wy0) * (0.3 + 2.4 * blind):
                gr = 0.25
                gg = 0.22
                gb = 0.18
                sp = 0.2
        er = 0.0
        eg = 0.0
        eb = 0.0
        if night > 0.5:
            if ground_floor:
                if h < 0.6:
                    er = 0.12
                    eg = 0.09
                    eb = 0.05
            elif h < 0.33:
                e = 0.03 + 0.1 * _hash(col, flo, inst + 11)
                er = e
                eg = e * (0.7 + 0.15 * blind)
                eb = e * 0.45
        return gr, gg, gb, er, eg, eb, sp
    if ux > wx0 and ux < wx1 and uy > wy0 - 0.04 and uy <= wy0:  # sill
        return r * 1.3 + 0.05, g * 1.3 + 0.05, b * 1.3 + 0.05, 0.0, 0.0, 0.0, 0.0
    return r, g, b, 0.0, 0.0, 0.0, 0.0


@njit(cache=True, error_model="numpy", inline="always")
def _wheels(s, z, wdt):
    """0 outside, 1 on a tyre, 2 on a hub: wheel discs at 20% and 80% of a side face's length,
    centred 0.34 m above the ground (z: world height)."""
    rr = 0.34
    dt = z - rr
    if dt > rr:
        return 0
    for k in range(2):
        ds = s - (0.2 + 0.6 * k) * wdt
        d2 = ds * ds + dt * dt
        if d2 < rr * rr:
            return 2 if d2 < 0.3 * rr * rr else 1
    return 0


@njit(cache=True, error_model="numpy", inline="always")
def _car(br, bg, bb, face, s, t, z, wdt, hgt, bottom, night):
    """A painted vehicle box (body, or a cabin on top of a body): windows, pillars, wheels,
    lamps, grille and bumpers. s, t face-local metres, z world height."""
    if face >= 4:
        return br, bg, bb, 0.0, 0.0, 0.0, 0.3
    if bottom > 0.6:  # a cabin box on top of the body
        if t > 0.1 * hgt and t < 0.92 * hgt and s > 0.1 and s < wdt - 0.1:
            if face >= 2:
                pillar = s / wdt * 2.0
                pillar -= math.floor(pillar)
                if pillar > 0.94 or pillar < 0.06:
                    return br, bg, bb, 0.0, 0.0, 0.0, 0.35
            return 0.015, 0.018, 0.022, 0.0, 0.0, 0.0, 0.7
        return br, bg, bb, 0.0, 0.0, 0.0, 0.3
    top = bottom + hgt
    body_top = top
    if hgt > 1.05:  # one box for the whole vehicle: windows in its upper part
        body_top = bottom + 0.55 * hgt
        if z > body_top + 0.03 and z < top - 0.08 and s > 0.15 and s < wdt - 0.15:
            return 0.015, 0.018, 0.022, 0.0, 0.0, 0.0, 0.7
    if face >= 2:  # sides: wheels, a dark sill
        wh = _wheels(s, z, wdt)
        if wh == 2:
            return 0.12, 0.12, 0.13, 0.0, 0.0, 0.0, 0.1
        if wh == 1:
            return 0.015, 0.015, 0.015, 0.0, 0.0, 0.0, 0.0
        if z < 0.38:
            return br * 0.35, bg * 0.35, bb * 0.35, 0.0, 0.0, 0.0, 0.1
        return br, bg, bb, 0.0, 0.0, 0.0, 0.3
    # front (+x) and back (-x): lamps in the upper part of the body, grille, bumper
    u = s / wdt
    lamp0 = 0.62 * body_top + 0.38 * max(bottom, 0.3)
    if z > lamp0 and z < body_top - 0.06 and (u < 0.24 or u > 0.76) and u > 0.05 and u < 0.95:
        if face == 0:
            k = 3.5 if night > 0.5 else 0.0
            return 0.6, 0.6, 0.6, k, k * 0.95, k * 0.8, 0.3
        k = 1.2 if night > 0.5 else 0.0
        return 0.35, 0.02, 0.02, k, 0.02 * k, 0.01 * k, 0.3
    if z < 0.45:
        return 0.03, 0.03, 0.03, 0.0, 0.0, 0.0, 0.05
    if face == 0 and z < lamp0 and u > 0.3 and u < 0.7:
        return 0.02, 0.02, 0.02, 0.0, 0.0, 0.0, 0.05
    return br, bg, bb, 0.0, 0.0, 0.0, 0.3


@njit(cache=True, error_model="numpy", inline="always")
def _box_textured(boxes, bi, mat, br, bg, bb, face, s, t, wdt, hgt, bottom, fp, night, tex,
                  lx, ly, z):
    """Textured surface of a box face.

    s, t: face-local coordinates in metres (along the face, up from the box's bottom);
    wdt, hgt: the face's size; lx, ly: box-local x, y (for top faces); z: world height.
    Returns albedo (3), emission (3), specular weight (reflects the sky)."""
    vertical = face < 4
    if mat <= M_GLASS:  # buildings
        if not vertical:  # roofs: dark gravel
            k = 0.09 * (1.0 + 0.35 * _tex(tex, 1, lx * 4.0, ly * 4.0))
            return k, k * 0.97, k * 0.94, 0.0, 0.0, 0.0, 0.0
        return _facade(boxes, bi, mat, br, bg, bb, face, s, t, hgt, fp, night, tex)
    if mat == M_CAR_PAINT:
        return _car(br, bg, bb, face, s, t, z, wdt, hgt, bottom, night)
    if mat == M_CAR_WINDOW:
        # glass cabin: painted roof, pillars and a sill in the body colour (if it has one)
        if br + bg + bb > 0.0:
            if not vertical or t < 0.06 or t > hgt - 0.05:
                return br, bg, bb, 0.0, 0.0, 0.0, 0.35
            if face >= 2:
                pillar = s / wdt * 2.0
                pillar -= math.floor(pillar)
                if pillar > 0.95 or pillar < 0.05:
                    return br, bg, bb, 0.0, 0.0, 0.0, 0.35
            elif s < 0.08 or s > wdt - 0.08:
                return br, bg, bb, 0.0, 0.0, 0.0, 0.35
        return 0.012, 0.015, 0.02, 0.0, 0.0, 0.0, 0.75
    tag = int(boxes[bi, TAG])
    if mat == M_METAL and tag >= 13 and tag <= 19:  # a vehicle's chassis: dark, with wheels
        if face >= 2 and face < 4:
            wh = _wheels(s, z, wdt)
            if wh == 2:
                return 0.12, 0.12, 0.13, 0.0, 0.0, 0.0, 0.1
            if wh == 1:
                return 0.015, 0.015, 0.015, 0.0, 0.0, 0.0, 0.0
        return 0.025, 0.025, 0.027, 0.0, 0.0, 0.0, 0.05
    if mat == M_FOLIAGE or mat == M_HEDGE:
        sc = 2.0 if mat == M_FOLIAGE else 3.5
        n1 = _texb(tex, 1, s * sc + lx, t * sc + ly)
        if fp < 0.05:
            n0 = _texb(tex, 0, s * 9.0, t * 9.0)
        else:
            n0 = _tex(tex, 0, s * 9.0, t * 9.0) * min(0.03 / fp, 1.0)
        k = 0.8 + 0.7 * n1 + 0.35 * n0
        # darker towards the face borders: crowns look rounder than boxes
        e = min(min(s, wdt - s), min(t, hgt - t)) / (0.3 * min(wdt, hgt) + 1e-3)
        k *= 0.55 + 0.45 * _smooth(0.0, 1.0, e)
        k = max(k, 0.15) * (0.85 + 0.3 * boxes[bi, RND])
        grey = (br + bg + bb) * (1.0 / 3.0)
        r = (br + 0.25 * (grey - br)) * k * 1.15
        g = (bg + 0.25 * (grey - bg)) * k * 0.85
        b = (bb + 0.25 * (grey - bb)) * k * 0.8
        return r, g, b, 0.0, 0.0, 0.0, 0.0
    if mat == M_BARK:
        k = 1.0 + 0.5 * _tex(tex, 1, s * 20.0, t * 1.5) + 0.3 * _tex(tex, 0, s * 30.0, t * 30.0)
        return br * k, bg * k, bb * k, 0.0, 0.0, 0.0, 0.0
    if mat == M_WALL:
        k = 1.0 + 0.15 * _tex(tex, 2, s, t)
        if fp < 0.1:
            by = t * 5.0
            row = math.floor(by)
            bx = s * 2.5 + 0.5 * (int(row) & 1)
            k += 0.1 * (_hash(int(row), int(math.floor(bx)), int(boxes[bi, INST])) - 0.5)
            if (by - row) < 0.07 or (bx - math.floor(bx)) < 0.035:
                k *= 1.0 - 0.35 * _clamp01((0.1 - fp) * 16.0)
        return br * k, bg * k, bb * k, 0.0, 0.0, 0.0, 0.0
    if mat == M_FENCE:
        if vertical:
            slat = s * (1.0 / 0.14)
            slat -= math.floor(slat)
            if slat < 0.22 and fp < 0.07:
                k = 1.0 - 0.7 * _clamp01((0.07 - fp) * 25.0)
                return br * k, bg * k, bb * k, 0.0, 0.0, 0.0, 0.0
            k = 1.0 + 0.25 * _tex(tex, 1, s * 3.0, t * 12.0)
            return br * k, bg * k, bb * k, 0.0, 0.0, 0.0, 0.0
        return br, bg, bb, 0.0, 0.0, 0.0, 0.0
    if mat == M_METAL:
        k = 1.0 + 0.15 * _tex(tex, 2, s * 2.0, t * 2.0)
        return br * k, bg * k, bb * k, 0.0, 0.0, 0.0, 0.25
    if mat == M_SIGN:
        if vertical and (s < 0.05 or s > wdt - 0.05 or t < 0.05 or t > hgt - 0.05):
            return 0.6, 0.6, 0.6, 0.0, 0.0, 0.0, 0.2
        return br, bg, bb, 0.0, 0.0, 0.0, 0.2
    if mat == M_CLOTH:
        k = 1.0 + 0.25 * _tex(tex, 0, s * 40.0, t * 40.0) * min(0.02 / fp, 1.0)
        k *= 0.8 + 0.3 * _clamp01(t / max(hgt, 0.1))
        return br * k, bg * k, bb * k, 0.0, 0.0, 0.0, 0.0
    if mat == M_LAMP_RED or mat == M_LAMP_YELLOW or mat == M_LAMP_GREEN:
        return br, bg, bb, 0.0, 0.0, 0.0, 0.3  # emission comes from the material table
    return br, bg, bb, 0.0, 0.0, 0.0, 0.0


# --------------------------------------------------------------------------------------------
# The shading kernel
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", nogil=True)
def shade(style, wp, origin, rot, f, far, zbuf, fid, boxes, ground, gparams, gtag,
          galbedo, balbedo, bemit, usecolor, zmax, ao, sparams, lamp, lparams,
          gsun, gao, glight, tex, foglut, want, sem, depth, inst, col):
    """Turn the visible surfaces into the output streams.

    want: (4,) bool: semantic, depth, instance, rgb. The outputs not wanted may be 1x1 dummies.
    ground: (H, W) uint8 ground materials, gparams = (origin x, origin y, resolution).
    zmax, ao: baked static shadow and occlusion rasters, sparams = (origin x, origin y, res).
    lamp: (H, W, 3) baked street-lamp light, lparams likewise.
    foglut: fog transmittance at depth k * far / (len - 1).
    col: (h, w, 3) float32 linear RGB out (before the tone curve).
    """
    h, w = zbuf.shape
    cx = 0.5 * w
    cy = 0.5 * h
    want_sem = want[0]
    want_depth = want[1]
    want_inst = want[2]
    want_rgb = want[3]
    gnr, gnc = ground.shape
    gox = gparams[0]
    goy = gparams[1]
    gres = gparams[2]
    sox = sparams[0]
    soy = sparams[1]
    sres = sparams[2]
    sinv = 1.0 / sres
    lox = lparams[0]
    loy = lparams[1]
    linv = 1.0 / lparams[2]
    ginv = 1.0 / gres
    fog_scale = (foglut.shape[0] - 1) / far
    sunx = wp[W_SUN]
    suny = wp[W_SUN + 1]
    sunz = wp[W_SUN + 2]
    kx = 0.0
    ky = 0.0
    bias = 0.0
    if sunz > 0.05:
        kx = -sunx / sunz
        ky = -suny / sunz
        bias = 0.15 + 1.5 * sres * sunz / max(math.sqrt(sunx * sunx + suny * suny), 0.1)
    fog = wp[W_FOG]
    night = wp[W_NIGHT]
    wet = wp[W_WET]
    textured = style == TEXTURED
    use_shadows = textured and sunz > 0.05
    use_lamps = night > 0.0 and lamp.shape[0] > 1
    inv_f = 1.0 / f
    for i in range(h):
        bq = -(i + 0.5 - cy) * inv_f
        for j in range(w):
            code = fid[i, j]
            a = (j + 0.5 - cx) * inv_f
            dx = rot[0, 0] + rot[1, 0] * a + rot[2, 0] * bq
            dy = rot[0, 1] + rot[1, 1] * a + rot[2, 1] * bq
            dz = rot[0, 2] + rot[1, 2] * a + rot[2, 2] * bq
            if code == FID_SKY:
                if want_sem:
                    sem[i, j] = 11
                if want_depth:
                    depth[i, j] = far
                if want_inst:
                    inst[i, j] = 0
                if want_rgb:
                    r, g, b = _sky(style, wp, tex, dx, dy, dz)
                    col[i, j, 0] = r
                    col[i, j, 1] = g
                    col[i, j, 2] = b
                continue
            t = 1.0 / zbuf[i, j]
            px = origin[0] + t * dx
            py = origin[1] + t * dy
            pz = origin[2] + t * dz
            if code == FID_GROUND:
                gj = int(math.floor((px - gox) * ginv))
                gi = int(math.floor((py - goy) * ginv))
                gm = 0
                if gi >= 0 and gj >= 0 and gi < gnr and gj < gnc:
                    gm = ground[gi, gj]
                if want_sem:
                    sem[i, j] = gtag[gm]
                if want_depth:
                    depth[i, j] = t
                if want_inst:
                    inst[i, j] = 0
                if not want_rgb:
                    continue
                vis = 1.0
                occl = 1.0
                gloss = 0.0
                puddle = 0.0
                if textured:
                    # pixel footprint on the ground (metres), grows at grazing angles
                    inv_len = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
                    graze = max(-dz * inv_len, 0.03)
                    fp = t * inv_f / graze
                    # worn, slightly irregular material borders in the image (labels unchanged)
                    gm2 = gm
                    if fp < 0.06:
                        jit = 0.035 * _tex(tex, 0, px * 23.0, py * 23.0)
                        gj = int(math.floor((px + jit - gox) * ginv))
                        gi = int(math.floor((py - jit - goy) * ginv))
                        gm2 = 0
                        if gi >= 0 and gj >= 0 and gi < gnr and gj < gnc:
                            gm2 = ground[gi, gj]
                    ar, ag, ab, gloss = _ground_textured(gm2, galbedo, tex, px, py, fp)
                    if use_shadows:
                        vis = _sun_visibility(zmax, sox, soy, sinv, px, py, 0.0, kx, ky, bias)
                    vis *= gsun[i, j]
                    ai = int((py - soy) * sinv)
                    aj = int((px - sox) * sinv)
                    if ai >= 0 and aj >= 0 and ai < ao.shape[0] and aj < ao.shape[1]:
                        occl = ao[ai, aj]
                    occl *= gao[i, j]
                else:
                    ar = galbedo[gm, 0]
                    ag = galbedo[gm, 1]
                    ab = galbedo[gm, 2]
                direct = max(sunz, 0.0) * vis
                # artificial light: street lamps and headlights
                er = 0.0
                eg = 0.0
                eb = 0.0
                if use_lamps:
                    er, eg, eb = _lamp_light(lamp, lox, loy, linv, px, py)
                hl = glight[i, j]
                if hl > 0.0:
                    er += hl
                    eg += hl * 0.95
                    eb += hl * 0.82
                lr = wp[W_SUNCOL] * direct + wp[W_AMB] * occl + er
                lg = wp[W_SUNCOL + 1] * direct + wp[W_AMB + 1] * occl + eg
                lb = wp[W_SUNCOL + 2] * direct + wp[W_AMB + 2] * occl + eb
                if textured and wet > 0.0:
                    puddle = _smooth(0.1, 0.35, _texb(tex, 3, px * 0.35, py * 0.35))
                    dampen = 1.0 - wet * (0.3 + 0.35 * puddle) * gloss
                    ar *= dampen
                    ag *= dampen
                    ab *= dampen
                r = ar * lr
                g = ag * lg
                b = ab * lb
                if textured and wet > 0.0 and gloss > 0.0:
                    inv_len = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
                    c = max(-dz * inv_len, 0.0)
                    m1 = 1.0 - c
                    m2 = m1 * m1
                    m5 = m2 * m2 * m1
                    fres = (0.02 + 0.6 * m5) * wet * gloss * (0.15 + 0.85 * puddle)
                    sr, sg, sb = _sky(FLAT, wp, tex, dx, dy, -dz)
                    r += fres * sr
                    g += fres * sg
                    b += fres * sb
                    # glare of lamps and headlights on the wet surface
                    k = 0.05 * wet * gloss * (0.3 + puddle)
                    r += k * er
                    g += k * eg
                    b += k * eb
            else:
                bi = code // 6
                face = code - bi * 6
                if want_sem:
                    sem[i, j] = np.uint8(boxes[bi, TAG])
                if want_depth:
                    depth[i, j] = t
                if want_inst:
                    inst[i, j] = np.int32(boxes[bi, INST])
                if not want_rgb:
                    continue
                mat = int(boxes[bi, MAT])
                c = boxes[bi, COS]
                s = boxes[bi, SIN]
                axis = face >> 1
                sign = 1.0 - 2.0 * (face & 1)
                if axis == 0:
                    nx = sign * c
                    ny = sign * s
                    nz = 0.0
                elif axis == 1:
                    nx = -sign * s
                    ny = sign * c
                    nz = 0.0
                else:
                    nx = 0.0
                    ny = 0.0
                    nz = sign
                br = boxes[bi, CR]
                bg = boxes[bi, CG]
                bb = boxes[bi, CB]
                if ((not usecolor[mat]) or (br + bg + bb) == 0.0) and not (
                        textured and mat == M_CAR_WINDOW):
                    br = balbedo[mat, 0]
                    bg = balbedo[mat, 1]
                    bb = balbedo[mat, 2]
                er = bemit[mat, 0]
                eg = bemit[mat, 1]
                eb = bemit[mat, 2]
                vis = 1.0
                occl = 1.0
                spec = 0.0
                if textured:
                    qx = px - boxes[bi, BX]
                    qy = py - boxes[bi, BY]
                    lx = c * qx + s * qy
                    ly = -s * qx + c * qy
                    hx = boxes[bi, HX]
                    hy = boxes[bi, HY]
                    hz = boxes[bi, HZ]
                    bottom = boxes[bi, BOTTOM]
                    tt = pz - bottom
                    if axis == 0:
                        ss = ly + hy
                        wdt = 2.0 * hy
                        if sign < 0:
                            ss = wdt - ss
                    else:
                        ss = lx + hx
                        wdt = 2.0 * hx
                        if sign > 0:
                            ss = wdt - ss
                    fp = t * inv_f
                    ar, ag, ab, xr, xg, xb, spec = _box_textured(
                        boxes, bi, mat, br, bg, bb, face, ss, tt, wdt, 2.0 * hz, bottom, fp,
                        night, tex, lx, ly, pz)
                    er += xr
                    eg += xg
                    eb += xb
                    ndots = nx * sunx + ny * suny + nz * sunz
                    if use_shadows and ndots > 0.0:
                        vis = _sun_visibility(zmax, sox, soy, sinv, px, py, pz, kx, ky, bias)
                    occl = 1.0
                    if nz < 0.5 and pz < 1.5:
                        q = 1.0 - pz * (1.0 / 1.5)
                        occl = 1.0 - 0.45 * q * q
                    if mat == M_FOLIAGE or mat == M_HEDGE:
                        ndots = 0.35 + 0.65 * ndots  # light wraps around leaves
                else:
                    ar = br
                    ag = bg
                    ab = bb
                    ndots = nx * sunx + ny * suny + nz * sunz
                direct = max(ndots, 0.0) * vis
                up = 0.5 + 0.5 * nz
                lr = wp[W_SUNCOL] * direct + (wp[W_AMB] * up + wp[W_AMBG] * (1.0 - up)) * occl
                lg = wp[W_SUNCOL + 1] * direct + (wp[W_AMB + 1] * up + wp[W_AMBG + 1] * (1.0 - up)) * occl
                lb = wp[W_SUNCOL + 2] * direct + (wp[W_AMB + 2] * up + wp[W_AMBG + 2] * (1.0 - up)) * occl
                if use_lamps:
                    fall = max(0.0, 1.0 - pz / 9.0) * 0.6
                    if fall > 0.0:
                        qr, qg, qb = _lamp_light(lamp, lox, loy, linv, px + nx * 0.6, py + ny * 0.6)
                        lr += qr * fall
                        lg += qg * fall
                        lb += qb * fall
                r = ar * lr + er
                g = ag * lg + eg
                b = ab * lb + eb
                if spec > 0.0:
                    # reflect the sky around the face normal
                    dn = dx * nx + dy * ny + dz * nz
                    rx = dx - 2.0 * dn * nx
                    ry = dy - 2.0 * dn * ny
                    rz = dz - 2.0 * dn * nz
                    inv_len = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
                    cth = min(max(-dn * inv_len, 0.0), 1.0)
                    m1 = 1.0 - cth
                    m2 = m1 * m1
                    m5 = m2 * m2 * m1
                    fres = spec * (0.06 + 0.94 * m5) * (0.5 + 0.5 * vis)
                    sr, sg, sb = _sky(FLAT, wp, tex, rx, ry, max(rz, 0.0) + 0.02)
                    r += fres * sr
                    g += fres * sg
                    b += fres * sb
            # fog (aerial perspective)
            if fog > 0.0:
                tr = foglut[min(int(t * fog_scale), foglut.shape[0] - 1)]
                r = wp[W_FOGCOL] + (r - wp[W_FOGCOL]) * tr
                g = wp[W_FOGCOL + 1] + (g - wp[W_FOGCOL + 1]) * tr
                b = wp[W_FOGCOL + 2] + (b - wp[W_FOGCOL + 2]) * tr
            col[i, j, 0] = r
            col[i, j, 1] = g
            col[i, j, 2] = b


@njit(cache=True, error_model="numpy", nogil=True)
def glows(origin, rot, f, zbuf, points, colors, radius, facing, fog, col):
    """Add the glow of light sources (lamp heads, headlights) to `col`, where not hidden.

    points (K, 3) world; colors (K, 3); radius (K,) metres of the halo; facing (K, 3): the
    direction a light shines (zeros: all around)."""
    h, w = zbuf.shape
    cx = 0.5 * w
    cy = 0.5 * h
    for k in range(points.shape[0]):
        dx = points[k, 0] - origin[0]
        dy = points[k, 1] - origin[1]
        dz = points[k, 2] - origin[2]
        X = rot[0, 0] * dx + rot[0, 1] * dy + rot[0, 2] * dz
        if X < 0.3:
            continue
        Y = rot[1, 0] * dx + rot[1, 1] * dy + rot[1, 2] * dz
        Z = rot[2, 0] * dx + rot[2, 1] * dy + rot[2, 2] * dz
        dist = math.sqrt(dx * dx + dy * dy + dz * dz)
        gain = 1.0
        fl = facing[k, 0] * facing[k, 0] + facing[k, 1] * facing[k, 1] + facing[k, 2] * facing[k, 2]
        if fl > 0.0:
            cosang = -(facing[k, 0] * dx + facing[k, 1] * dy + facing[k, 2] * dz) / dist
            if cosang <= 0.0:
                continue
            gain = cosang * cosang
        u = cx + f * Y / X
        v = cy - f * Z / X
        rpx = f * radius[k] / X * (1.0 + 6.0 * fog * min(dist, 60.0))
        rpx = min(max(rpx, 1.2), 0.25 * w)
        j0 = max(int(u - rpx), 0)
        j1 = min(int(u + rpx) + 1, w - 1)
        i0 = max(int(v - rpx), 0)
        i1 = min(int(v + rpx) + 1, h - 1)
        if j0 > j1 or i0 > i1:
            continue
        # hidden if something nearer covers the light's own pixel
        ic = min(max(int(v), 0), h - 1)
        jc = min(max(int(u), 0), w - 1)
        if zbuf[ic, jc] > 1.0 / max(X - 0.6, 0.05):
            continue
        att = gain * math.exp(-fog * dist)
        inv_r2 = 1.0 / (rpx * rpx)
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                du = j + 0.5 - u
                dv = i + 0.5 - v
                q = (du * du + dv * dv) * inv_r2
                if q >= 1.0:
                    continue
                fall = (1.0 - q) * (1.0 - q) * att
                core = 3.0 * fall * fall * fall
                col[i, j, 0] += colors[k, 0] * (fall * 0.5 + core)
                col[i, j, 1] += colors[k, 1] * (fall * 0.5 + core)
                col[i, j, 2] += colors[k, 2] * (fall * 0.5 + core)
