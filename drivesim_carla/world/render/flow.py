"""Optical flow from known motion: every visible point is moved back to the previous frame and
projected with the previous camera pose.

flow[i, j] = (pixel of the point now) - (pixel of the same point at the previous frame), (du, dv)
with u right and v down, in pixels. Pixel centres are at integer + 0.5, as in the rasterizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ...types import Transform

FID_SKY = -1  # mirrors raster.py


@dataclass
class Motion:
    """How things moved since the previous frame (for the `flow` stream)."""

    prev_camera: Transform  # this camera's world pose at the previous frame
    # instance id -> 4x4 world -> world matrix taking a point on that object now to where it was
    # at the previous frame (T_prev @ inv(T_now)); instances not listed are static
    objects: dict[int, np.ndarray] = field(default_factory=dict)


def motion_index(instances: np.ndarray, objects: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per box: the index of its instance's matrix in the returned (K, 4, 4) stack, or -1."""
    n = len(instances)
    if not objects:
        return np.full(n, -1, np.int32), np.zeros((1, 4, 4), np.float64)
    keys = np.array(sorted(objects), np.int64)
    mats = np.ascontiguousarray(np.stack([np.asarray(objects[int(k)], np.float64) for k in keys]))
    pos = np.searchsorted(keys, instances)
    pos_c = np.minimum(pos, len(keys) - 1)
    hit = keys[pos_c] == instances
    return np.where(hit, pos_c, -1).astype(np.int32), mats


@njit(cache=True, error_model="numpy")
def flow_kernel(origin, rot, f, far, zbuf, fid, prev_w2c, box_motion, mats, out):
    """prev_w2c: (3, 4) world -> previous camera-local; box_motion: (N,) matrix index or -1;
    mats: (K, 4, 4); out: (h, w, 2) float32."""
    h, w = zbuf.shape
    cx = 0.5 * w
    cy = 0.5 * h
    inv_f = 1.0 / f
    for i in range(h):
        v = i + 0.5
        bq = -(v - cy) * inv_f
        for j in range(w):
            u = j + 0.5
            a = (u - cx) * inv_f
            code = fid[i, j]
            t = far if code == FID_SKY else 1.0 / zbuf[i, j]
            px = origin[0] + t * (rot[0, 0] + rot[1, 0] * a + rot[2, 0] * bq)
            py = origin[1] + t * (rot[0, 1] + rot[1, 1] * a + rot[2, 1] * bq)
            pz = origin[2] + t * (rot[0, 2] + rot[1, 2] * a + rot[2, 2] * bq)
            if code >= 0:
                k = box_motion[code // 6]
                if k >= 0:
                    m = mats[k]
                    qx = m[0, 0] * px + m[0, 1] * py + m[0, 2] * pz + m[0, 3]
                    qy = m[1, 0] * px + m[1, 1] * py + m[1, 2] * pz + m[1, 3]
                    qz = m[2, 0] * px + m[2, 1] * py + m[2, 2] * pz + m[2, 3]
                    px = qx
                    py = qy
                    pz = qz
            X = prev_w2c[0, 0] * px + prev_w2c[0, 1] * py + prev_w2c[0, 2] * pz + prev_w2c[0, 3]
            Y = prev_w2c[1, 0] * px + prev_w2c[1, 1] * py + prev_w2c[1, 2] * pz + prev_w2c[1, 3]
            Z = prev_w2c[2, 0] * px + prev_w2c[2, 1] * py + prev_w2c[2, 2] * pz + prev_w2c[2, 3]
            if X <= 1e-6 or not math.isfinite(X):
                out[i, j, 0] = 0.0  # behind the previous camera: no meaningful correspondence
                out[i, j, 1] = 0.0
                continue
            out[i, j, 0] = u - (cx + f * Y / X)
            out[i, j, 1] = v - (cy - f * Z / X)
