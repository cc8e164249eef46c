"""Numba kernels of the software rasterizer: visibility (ground seed + box faces), ground decals
(contact shadows, headlight pools) and the per-weather bakes (static shadows, ground occlusion,
street-lamp light).

Conventions shared by every kernel of this package
--------------------------------------------------
- Camera: `origin` (3,) world position and `rot` (3, 3) whose rows are the camera's forward,
  right and up axes in world coordinates, so camera-local = rot @ (p - origin).
- Pixel (i, j) has its centre at u = j + 0.5, v = i + 0.5. A camera-local point (X, Y, Z)
  projects to u = w/2 + f Y/X, v = h/2 - f Z/X (CARLA's pinhole). The ray through a pixel
  centre is D = fwd + right a + up b with a = (u - w/2)/f, b = -(v - h/2)/f: its camera-local
  X is 1, so the point at depth t (along the optical axis) is origin + t D.
- `zbuf` holds 1/depth. 1/depth is affine in (u, v) on any plane, so no per-pixel division.
- `fid` holds what a pixel sees: FID_SKY, FID_GROUND, or box_index * 6 + face, faces ordered
  +x, -x, +y, -y, +z, -z in the box's own frame.
- Boxes are packed as float64 rows (see `pack_boxes`), static boxes first, dynamic after.

Kernel sources must not import constants from other modules: numba's cache only watches the
file a kernel lives in.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..scene import Boxes

FID_SKY = -1
FID_GROUND = -2

# Columns of a packed box row. The last four are the facade layout of the textured style:
# 1 / floor height, 1 / window-cell width on the +-x faces and on the +-y faces, floor count.
BX, BY, BZ, HX, HY, HZ, COS, SIN, TAG, INST, MAT, CR, CG, CB, RND, BOTTOM = range(16)
FLOOR_INV, CELL_INV_X, CELL_INV_Y, NFLOORS = range(16, 20)
BOX_COLS = 20

NEAR = 0.05  # metres: near clipping plane


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def pack_boxes(boxes: Boxes, seed: int = 0) -> np.ndarray:
    """Boxes -> (N, BOX_COLS) float64 rows for the kernels (colours made linear)."""
    n = len(boxes)
    out = np.empty((n, BOX_COLS), np.float64)
    if n == 0:
        return out
    out[:, BX:BZ + 1] = boxes.center
    out[:, HX:HZ + 1] = boxes.half
    out[:, COS] = np.cos(boxes.yaw)
    out[:, SIN] = np.sin(boxes.yaw)
    out[:, TAG] = boxes.tag
    out[:, INST] = boxes.instance
    out[:, MAT] = boxes.material
    out[:, CR:CB + 1] = srgb_to_linear(boxes.color)
    # A per-object random number (shared by the boxes of one instance) for texture variation.
    key = (boxes.instance.astype(np.uint64) * np.uint64(2654435761) + np.uint64(seed * 97 + 13))
    key = (key ^ (key >> np.uint64(15))) * np.uint64(2246822519) & np.uint64(0xFFFFFFFF)
    out[:, RND] = (key & np.uint64(0xFFFFFF)).astype(np.float64) / float(1 << 24)
    out[:, BOTTOM] = boxes.center[:, 2] - boxes.half[:, 2]
    rnd = out[:, RND]
    floor_h = 3.0 + 0.8 * rnd
    cell_w = 2.4 + 1.6 * ((rnd * 7.31) % 1.0)
    out[:, FLOOR_INV] = 1.0 / floor_h
    out[:, CELL_INV_X] = np.maximum(np.round(2 * boxes.half[:, 1] / cell_w), 1) / np.maximum(2 * boxes.half[:, 1], 1e-6)
    out[:, CELL_INV_Y] = np.maximum(np.round(2 * boxes.half[:, 0] / cell_w), 1) / np.maximum(2 * boxes.half[:, 0], 1e-6)
    out[:, NFLOORS] = np.floor(2 * boxes.half[:, 2] / floor_h)
    return out


# --------------------------------------------------------------------------------------------
# Polygon helpers
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", nogil=True)
def _clip_near(px, py, pz, n, near, qx, qy, qz):
    """Sutherland-Hodgman clip of a camera-space polygon against X >= near. Returns the count."""
    m = 0
    for k in range(n):
        k2 = (k + 1) % n
        ax, ay, az = px[k], py[k], pz[k]
        bx, by, bz = px[k2], py[k2], pz[k2]
        ina = ax >= near
        inb = bx >= near
        if ina:
            qx[m] = ax
            qy[m] = ay
            qz[m] = az
            m += 1
        if ina != inb:
            s = (near - ax) / (bx - ax)
            qx[m] = near
            qy[m] = ay + s * (by - ay)
            qz[m] = az + s * (bz - az)
            m += 1
    return m


@njit(cache=True, error_model="numpy", nogil=True)
def _project(qx, qy, qz, m, f, cx, cy, us, vs):
    for k in range(m):
        us[k] = cx + f * qy[k] / qx[k]
        vs[k] = cy - f * qz[k] / qx[k]


@njit(cache=True, error_model="numpy", nogil=True)
def _row_range(vs, m, h):
    """Rows whose pixel centre lies in [vmin, vmax) of the polygon, clamped to the image."""
    vmin = vs[0]
    vmax = vs[0]
    for k in range(1, m):
        vmin = min(vmin, vs[k])
        vmax = max(vmax, vs[k])
    vmin = max(vmin, -1.0)
    vmax = min(vmax, h + 1.0)
    i0 = max(int(math.ceil(vmin - 0.5)), 0)
    i1 = min(int(math.ceil(vmax - 0.5)) - 1, h - 1)
    return i0, i1


@njit(cache=True, error_model="numpy", nogil=True)
def _span(us, vs, m, vc, w):
    """Columns whose pixel centre lies in [xl, xr) where the convex polygon crosses row vc."""
    xl = 1e30
    xr = -1e30
    for k in range(m):
        k2 = k + 1 if k + 1 < m else 0
        va = vs[k]
        vb = vs[k2]
        if va == vb:
            continue
        lo = min(va, vb)
        hi = max(va, vb)
        if vc < lo or vc > hi:
            continue
        x = us[k] + (vc - va) * (us[k2] - us[k]) / (vb - va)
        xl = min(xl, x)
        xr = max(xr, x)
    if xr < xl:
        return 0, -1
    xl = max(xl, -1.0)
    xr = min(xr, w + 1.0)
    j0 = max(int(math.ceil(xl - 0.5)), 0)
    j1 = min(int(math.ceil(xr - 0.5)) - 1, w - 1)
    return j0, j1


@njit(cache=True, error_model="numpy", nogil=True)
def _hull(px, py, n, hx, hy):
    """Convex hull (monotone chain) of n <= 16 points; returns the vertex count (cyclic order)."""
    # insertion sort by (x, y)
    idx = np.empty(n, np.int64)
    for k in range(n):
        idx[k] = k
    for a in range(1, n):
        key = idx[a]
        b = a - 1
        while b >= 0 and (px[idx[b]] > px[key] or (px[idx[b]] == px[key] and py[idx[b]] > py[key])):
            idx[b + 1] = idx[b]
            b -= 1
        idx[b + 1] = key
    m = 0
    for t in range(n):  # lower hull
        k = idx[t]
        while m >= 2 and ((hx[m - 1] - hx[m - 2]) * (py[k] - hy[m - 2])
                          - (hy[m - 1] - hy[m - 2]) * (px[k] - hx[m - 2])) <= 0.0:
            m -= 1
        hx[m] = px[k]
        hy[m] = py[k]
        m += 1
    lower = m + 1
    for t in range(n - 2, -1, -1):  # upper hull
        k = idx[t]
        while m >= lower and ((hx[m - 1] - hx[m - 2]) * (py[k] - hy[m - 2])
                              - (hy[m - 1] - hy[m - 2]) * (px[k] - hx[m - 2])) <= 0.0:
            m -= 1
        hx[m] = px[k]
        hy[m] = py[k]
        m += 1
    return m - 1


@njit(cache=True, error_model="numpy", nogil=True)
def _ground_polygon_to_screen(gx, gy, n, origin, rot, f, cx, cy, us, vs):
    """World ground polygon (z = 0) -> clipped screen polygon; returns the vertex count."""
    px = np.empty(8)
    py = np.empty(8)
    pz = np.empty(8)
    qx = np.empty(16)
    qy = np.empty(16)
    qz = np.empty(16)
    for k in range(n):
        dx = gx[k] - origin[0]
        dy = gy[k] - origin[1]
        dz = -origin[2]
        px[k] = rot[0, 0] * dx + rot[0, 1] * dy + rot[0, 2] * dz
        py[k] = rot[1, 0] * dx + rot[1, 1] * dy + rot[1, 2] * dz
        pz[k] = rot[2, 0] * dx + rot[2, 1] * dy + rot[2, 2] * dz
    m = _clip_near(px, py, pz, n, NEAR, qx, qy, qz)
    if m >= 3:
        _project(qx, qy, qz, m, f, cx, cy, us, vs)
    return m


# --------------------------------------------------------------------------------------------
# Visibility
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", nogil=True)
def rasterize(origin, rot, f, far, boxes, zbuf, fid):
    """Fill `zbuf` (1/depth) and `fid` with the ground plane, the sky and every box face.

    boxes: (N, BOX_COLS) packed rows. Returns the number of boxes that survived culling.
    """
    h, w = zbuf.shape
    cx = 0.5 * w
    cy = 0.5 * h
    inv_far = 1.0 / far
    oz = origin[2]

    # Ground seed: 1/depth of the plane z = 0 is -D.z / oz, affine in the pixel.
    for i in range(h):
        b = -(i + 0.5 - cy) / f
        dz0 = rot[0, 2] + rot[2, 2] * b
        for j in range(w):
            a = (j + 0.5 - cx) / f
            inv = -(dz0 + rot[1, 2] * a) / oz if oz > 0.0 else 0.0
            if inv > inv_far:
                zbuf[i, j] = inv
                fid[i, j] = FID_GROUND
            else:
                zbuf[i, j] = inv_far
                fid[i, j] = FID_SKY

    tx = cx / f
    ty = cy / f
    nx = 1.0 / math.sqrt(1.0 + tx * tx)
    ny = 1.0 / math.sqrt(1.0 + ty * ty)
    fx = np.empty(4)
    fy = np.empty(4)
    fz = np.empty(4)
    qx = np.empty(8)
    qy = np.empty(8)
    qz = np.empty(8)
    us = np.empty(8)
    vs = np.empty(8)
    ax = np.empty(3)  # the box's scaled axes in camera space
    ay = np.empty(3)
    az = np.empty(3)
    loc = np.empty(3)
    half = np.empty(3)
    drawn = 0
    for bi in range(boxes.shape[0]):
        hx = boxes[bi, HX]
        hy = boxes[bi, HY]
        hz = boxes[bi, HZ]
        dx = boxes[bi, BX] - origin[0]
        dy = boxes[bi, BY] - origin[1]
        dz = boxes[bi, BZ] - origin[2]
        ccx = rot[0, 0] * dx + rot[0, 1] * dy + rot[0, 2] * dz
        ccy = rot[1, 0] * dx + rot[1, 1] * dy + rot[1, 2] * dz
        ccz = rot[2, 0] * dx + rot[2, 1] * dy + rot[2, 2] * dz
        r = math.sqrt(hx * hx + hy * hy + hz * hz)
        if ccx + r < NEAR or ccx - r > far:
            continue
        if (ccy - tx * ccx) * nx > r or (-ccy - tx * ccx) * nx > r:
            continue
        if (ccz - ty * ccx) * ny > r or (-ccz - ty * ccx) * ny > r:
            continue
        drawn += 1
        c = boxes[bi, COS]
        s = boxes[bi, SIN]
        # camera position in the box frame decides which faces are front-facing
        loc[0] = -(c * dx + s * dy)
        loc[1] = -(-s * dx + c * dy)
        loc[2] = -dz
        half[0] = hx
        half[1] = hy
        half[2] = hz
        for k in range(3):
            ax[k] = (rot[k, 0] * c + rot[k, 1] * s) * hx
            ay[k] = (-rot[k, 0] * s + rot[k, 1] * c) * hy
            az[k] = rot[k, 2] * hz
        for face in range(6):
            axis = face // 2
            sign = 1.0 - 2.0 * (face % 2)
            if sign * loc[axis] <= half[axis]:
                continue  # back face (or camera in its plane)
            if axis == 0:
                ex, ey, ez = ax[0], ax[1], ax[2]
                e1x, e1y, e1z = ay[0], ay[1], ay[2]
                e2x, e2y, e2z = az[0], az[1], az[2]
            elif axis == 1:
                ex, ey, ez = ay[0], ay[1], ay[2]
                e1x, e1y, e1z = ax[0], ax[1], ax[2]
                e2x, e2y, e2z = az[0], az[1], az[2]
            else:
                ex, ey, ez = az[0], az[1], az[2]
                e1x, e1y, e1z = ax[0], ax[1], ax[2]
                e2x, e2y, e2z = ay[0], ay[1], ay[2]
            pcx = ccx + sign * ex
            pcy = ccy + sign * ey
            pcz = ccz + sign * ez
            for k in range(4):
                s1 = 1.0 if (k == 0 or k == 3) else -1.0
                s2 = 1.0 if k < 2 else -1.0
                fx[k] = pcx + s1 * e1x + s2 * e2x
                fy[k] = pcy + s1 * e1y + s2 * e2y
                fz[k] = pcz + s1 * e1z + s2 * e2z
            m = _clip_near(fx, fy, fz, 4, NEAR, qx, qy, qz)
            if m < 3:
                continue
            _project(qx, qy, qz, m, f, cx, cy, us, vs)
            # plane n.p = d in camera space -> 1/X = (n.x + n.y a + n.z b) / d
            inv_e = sign / half[axis]
            ncx = ex * inv_e
            ncy = ey * inv_e
            ncz = ez * inv_e
            d = ncx * pcx + ncy * pcy + ncz * pcz
            ka = ncy / (f * d)
            kb = -ncz / (f * d)
            kc = (ncx - ncy * cx / f + ncz * cy / f) / d
            code = bi * 6 + face
            i0, i1 = _row_range(vs, m, h)
            for i in range(i0, i1 + 1):
                vc = i + 0.5
                j0, j1 = _span(us, vs, m, vc, w)
                row = kb * vc + kc
                for j in range(j0, j1 + 1):
                    z = ka * (j + 0.5) + row
                    if z > zbuf[i, j]:
                        zbuf[i, j] = z
                        fid[i, j] = code
    return drawn


# --------------------------------------------------------------------------------------------
# Ground decals: what dynamic objects do to the ground around them
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", nogil=True)
def ground_decals(origin, rot, f, boxes, first, sun, shadows, headlights, zbuf, fid,
                  gsun, gao, glight):
    """Contact occlusion and sun shadows of the dynamic boxes `boxes[first:]` on the ground, and
    headlight pools, drawn into screen buffers (only where the ground is visible).

    gsun: sun visibility (1 lit), gao: ambient occlusion (1 open), glight: headlight intensity.
    sun: (3,) unit vector towards the sun; shadows: bool, draw sun shadows.
    headlights: (V, 4) x, y, z, yaw(rad): the light leaves (x, y) along yaw.
    """
    h, w = zbuf.shape
    cx = 0.5 * w
    cy = 0.5 * h
    gx = np.empty(16)
    gy = np.empty(16)
    hx_ = np.empty(17)
    hy_ = np.empty(17)
    us = np.empty(16)
    vs = np.empty(16)
    kx = 0.0
    ky = 0.0
    if sun[2] > 0.05:
        kx = -sun[0] / sun[2]
        ky = -sun[1] / sun[2]
    for bi in range(first, boxes.shape[0]):
        bottom = boxes[bi, BOTTOM]
        if bottom > 2.5:
            continue  # high up (traffic-light lamps): neither contact nor a shadow worth drawing
        c = boxes[bi, COS]
        s = boxes[bi, SIN]
        hx = boxes[bi, HX]
        hy = boxes[bi, HY]
        top = boxes[bi, BZ] + boxes[bi, HZ]
        bxc = boxes[bi, BX]
        byc = boxes[bi, BY]
        margin = 0.15 + 0.35 * min(hx, hy)
        strength = 0.65 * min(1.0, top / 1.2)
        # 1) contact occlusion: the footprint grown by `margin`, with a soft falloff
        for k in range(4):
            s1 = 1.0 if (k == 0 or k == 3) else -1.0
            s2 = 1.0 if k < 2 else -1.0
            lx = s1 * (hx + margin)
            ly = s2 * (hy + margin)
            gx[k] = bxc + c * lx - s * ly
            gy[k] = byc + s * lx + c * ly
        m = _ground_polygon_to_screen(gx, gy, 4, origin, rot, f, cx, cy, us, vs)
        if m >= 3 and bottom < 0.6:
            i0, i1 = _row_range(vs, m, h)
            for i in range(i0, i1 + 1):
                vc = i + 0.5
                j0, j1 = _span(us, vs, m, vc, w)
                bb = -(vc - cy) / f
                for j in range(j0, j1 + 1):
                    if fid[i, j] != FID_GROUND:
                        continue
                    a = (j + 0.5 - cx) / f
                    t = 1.0 / zbuf[i, j]
                    px = origin[0] + t * (rot[0, 0] + rot[1, 0] * a + rot[2, 0] * bb) - bxc
                    py = origin[1] + t * (rot[0, 1] + rot[1, 1] * a + rot[2, 1] * bb) - byc
                    qx = abs(c * px + s * py) - hx
                    qy = abs(-s * px + c * py) - hy
                    dist = math.sqrt(max(qx, 0.0) ** 2 + max(qy, 0.0) ** 2)
                    e = min(dist / margin, 1.0)
                    v = 1.0 - strength * (1.0 - e) * (1.0 - e)
                    if v < gao[i, j]:
                        gao[i, j] = v
        # 2) sun shadow: hull of the box's corners pushed along the sun onto the ground
        if shadows and sun[2] > 0.05:
            n = 0
            for k in range(4):
                s1 = 1.0 if (k == 0 or k == 3) else -1.0
                s2 = 1.0 if k < 2 else -1.0
                lx = s1 * hx
                ly = s2 * hy
                x0 = bxc + c * lx - s * ly
                y0 = byc + s * lx + c * ly
                gx[n] = x0 + kx * max(bottom, 0.0)
                gy[n] = y0 + ky * max(bottom, 0.0)
                gx[n + 1] = x0 + kx * top
                gy[n + 1] = y0 + ky * top
                n += 2
            hn = _hull(gx, gy, n, hx_, hy_)
            m = _ground_polygon_to_screen(hx_, hy_, hn, origin, rot, f, cx, cy, us, vs)
            if m >= 3:
                i0, i1 = _row_range(vs, m, h)
                for i in range(i0, i1 + 1):
                    j0, j1 = _span(us, vs, m, i + 0.5, w)
                    for j in range(j0, j1 + 1):
                        gsun[i, j] = 0.0
    for li in range(headlights.shape[0]):
        x0 = headlights[li, 0]
        y0 = headlights[li, 1]
        c = math.cos(headlights[li, 3])
        s = math.sin(headlights[li, 3])
        reach = 28.0
        spread = 0.33  # lateral growth per metre
        w0 = 1.0
        for k in range(4):
            along = 0.0 if k < 2 else reach
            lat = 1.6 * (w0 + spread * along) * (1.0 if (k == 0 or k == 3) else -1.0)
            gx[k] = x0 + c * along - s * lat
            gy[k] = y0 + s * along + c * lat
        m = _ground_polygon_to_screen(gx, gy, 4, origin, rot, f, cx, cy, us, vs)
        if m < 3:
            continue
        i0, i1 = _row_range(vs, m, h)
        for i in range(i0, i1 + 1):
            vc = i + 0.5
            j0, j1 = _span(us, vs, m, vc, w)
            bb = -(vc - cy) / f
            for j in range(j0, j1 + 1):
                if fid[i, j] != FID_GROUND:
                    continue
                a = (j + 0.5 - cx) / f
                t = 1.0 / zbuf[i, j]
                px = origin[0] + t * (rot[0, 0] + rot[1, 0] * a + rot[2, 0] * bb) - x0
                py = origin[1] + t * (rot[0, 1] + rot[1, 1] * a + rot[2, 1] * bb) - y0
                along = c * px + s * py
                lat = -s * px + c * py
                if along <= 0.0:
                    continue
                width = 0.5 * w0 + 0.5 * spread * along
                ramp = min(along / 2.5, 1.0)
                fall = 1.0 - along / reach
                g = lat / width
                glight[i, j] += ramp * fall * fall * math.exp(-g * g) * 1.5


# --------------------------------------------------------------------------------------------
# Bakes (once per renderer): static shadows, ground occlusion, street-lamp light
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", nogil=True)
def bake_shadows(boxes, sun, ox, oy, res, zmax, ao):
    """Top-down rasters of the static scene.

    zmax[r, c]: the highest point at which the sun ray leaving the ground cell's centre exits a
    box (0: none). A point at height z above the ray's foot is in shadow iff zmax > z.
    ao[r, c]: ambient occlusion of the ground next to boxes that stand on it (1: open).
    Cell (r, c) is centred at (ox + (c + 0.5) res, oy + (r + 0.5) res).
    """
    nr, nc = zmax.shape
    use_sun = sun[2] > 0.05
    kx = 0.0
    ky = 0.0
    if use_sun:
        kx = -sun[0] / sun[2]
        ky = -sun[1] / sun[2]
    gx = np.empty(16)
    gy = np.empty(16)
    hx_ = np.empty(17)
    hy_ = np.empty(17)
    us = np.empty(17)
    vs = np.empty(17)
    for bi in range(boxes.shape[0]):
        c = boxes[bi, COS]
        s = boxes[bi, SIN]
        hx = boxes[bi, HX]
        hy = boxes[bi, HY]
        hz = boxes[bi, HZ]
        bxc = boxes[bi, BX]
        byc = boxes[bi, BY]
        bzc = boxes[bi, BZ]
        bottom = bzc - hz
        top = bzc + hz
        if use_sun and top > 0.0:
            n = 0
            for k in range(4):
                s1 = 1.0 if (k == 0 or k == 3) else -1.0
                s2 = 1.0 if k < 2 else -1.0
                x0 = bxc + c * s1 * hx - s * s2 * hy
                y0 = byc + s * s1 * hx + c * s2 * hy
                zb = max(bottom, 0.0)
                gx[n] = (x0 + kx * zb - ox) / res
                gy[n] = (y0 + ky * zb - oy) / res
                gx[n + 1] = (x0 + kx * top - ox) / res
                gy[n + 1] = (y0 + ky * top - oy) / res
                n += 2
            m = _hull(gx, gy, n, hx_, hy_)
            if m < 3:
                m = 0
            for k in range(m):
                us[k] = hx_[k]
                vs[k] = hy_[k]
            i0, i1 = _row_range(vs, m, nr) if m >= 3 else (0, -1)
            for i in range(i0, i1 + 1):
                j0, j1 = _span(us, vs, m, i + 0.5, nc)
                gyw = oy + (i + 0.5) * res - byc
                for j in range(j0, j1 + 1):
                    gxw = ox + (j + 0.5) * res - bxc
                    # slab test of the ray g + t sun (t >= 0) against the box, in its frame
                    px = c * gxw + s * gyw
                    py = -s * gxw + c * gyw
                    pz = -bzc
                    dxl = c * sun[0] + s * sun[1]
                    dyl = -s * sun[0] + c * sun[1]
                    t0 = 0.0
                    t1 = 1e30
                    if abs(dxl) < 1e-12:
                        if abs(px) > hx:
                            continue
                    else:
                        ta = (-hx - px) / dxl
                        tb = (hx - px) / dxl
                        t0 = max(t0, min(ta, tb))
                        t1 = min(t1, max(ta, tb))
                    if abs(dyl) < 1e-12:
                        if abs(py) > hy:
                            continue
                    else:
                        ta = (-hy - py) / dyl
                        tb = (hy - py) / dyl
                        t0 = max(t0, min(ta, tb))
                        t1 = min(t1, max(ta, tb))
                    ta = (-hz - pz) / sun[2]
                    tb = (hz - pz) / sun[2]
                    t0 = max(t0, min(ta, tb))
                    t1 = min(t1, max(ta, tb))
                    if t1 > t0:
                        zexit = t1 * sun[2]
                        if zexit > zmax[i, j]:
                            zmax[i, j] = zexit
        # ambient occlusion of the ground around boxes that stand on it
        if bottom < 0.3 and top > 0.2:
            margin = min(0.4 + 0.5 * min(hx, hy), 2.0)
            strength = 0.55 * min(1.0, top / 3.0) + 0.1
            ext = max(hx, hy) * 1.4143 + margin
            r0 = max(int((byc - ext - oy) / res), 0)
            r1 = min(int((byc + ext - oy) / res) + 1, nr - 1)
            c0 = max(int((bxc - ext - ox) / res), 0)
            c1 = min(int((bxc + ext - ox) / res) + 1, nc - 1)
            for i in range(r0, r1 + 1):
                gyw = oy + (i + 0.5) * res - byc
                for j in range(c0, c1 + 1):
                    gxw = ox + (j + 0.5) * res - bxc
                    qx = abs(c * gxw + s * gyw) - hx
                    qy = abs(-s * gxw + c * gyw) - hy
                    dist = math.sqrt(max(qx, 0.0) ** 2 + max(qy, 0.0) ** 2)
                    if dist >= margin:
                        continue
                    e = dist / margin
                    v = 1.0 - strength * (1.0 - e) * (1.0 - e)
                    if v < ao[i, j]:
                        ao[i, j] = v


@njit(cache=True, error_model="numpy", nogil=True)
def bake_lamps(pos, color, radius, ox, oy, res, out):
    """Light that street lamps pour on the ground: out[r, c, :] (linear RGB irradiance)."""
    nr, nc, _ = out.shape
    for li in range(pos.shape[0]):
        lx = pos[li, 0]
        ly = pos[li, 1]
        lz = max(pos[li, 2], 0.5)
        rad = radius[li]
        r0 = max(int((ly - rad - oy) / res), 0)
        r1 = min(int((ly + rad - oy) / res) + 1, nr - 1)
        c0 = max(int((lx - rad - ox) / res), 0)
        c1 = min(int((lx + rad - ox) / res) + 1, nc - 1)
        for i in range(r0, r1 + 1):
            dy = oy + (i + 0.5) * res - ly
            for j in range(c0, c1 + 1):
                dx = ox + (j + 0.5) * res - lx
                d2 = dx * dx + dy * dy
                q = d2 / (rad * rad)
                if q >= 1.0:
                    continue
                win = (1.0 - q) * (1.0 - q)
                r2 = d2 + lz * lz
                e = win * lz / math.sqrt(r2) * (lz * lz * 3.0) / r2
                for k in range(3):
                    out[i, j, k] += color[li, k] * e
