"""Optical flow from known motion: every visible point is moved back to the previous frame and
projected with the previous camera pose.

flow[i, j] = (pixel of the point now) - (pixel of the same point at the previous frame), (du, dv)
with u right and v down, in pixels. Pixel centres are at integer + 0.5, as in the rasterizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ....types import Transform


@dataclass
class Motion:
    """How things moved since the previous frame (for the `flow` stream)."""

    prev_camera: Transform  # this camera's world pose at the previous frame
    # instance id -> 4x4 world -> world matrix taking a point on that object now to where it was
    # at the previous frame (T_prev @ inv(T_now)); instances not listed are static
    objects: dict[int, np.ndarray] = field(default_factory=dict)


def motion_index(instances: np.ndarray, objects: dict[int, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per box: 1 + the index of its instance's matrix in the returned list, or 0 (static)."""
    n = len(instances)
    if not objects:
        return np.zeros(n, np.int32), []
    keys = np.array(sorted(objects), np.int64)
    mats = [np.asarray(objects[int(k)], np.float64) for k in keys]
    pos = np.searchsorted(keys, instances)
    pos_c = np.minimum(pos, len(keys) - 1)
    hit = keys[pos_c] == instances
    return np.where(hit, pos_c + 1, 0).astype(np.int32), mats


def flow_coefficients(origin: np.ndarray, rot: np.ndarray, prev_w2c: np.ndarray,
                      mats: list[np.ndarray]) -> np.ndarray:
    """(1 + K, 4, 3): for static points (row 0) and each moving object, the previous-camera
    coordinates of the point at depth t on the ray (1, a, b) are c0 + t (q0 + a q1 + b q2)."""
    out = np.empty((1 + len(mats), 4, 3))
    for k, m in enumerate([np.eye(4)] + mats):
        a = (prev_w2c @ m)[:3]  # world now -> previous camera
        out[k, 0] = a[:, :3] @ origin + a[:, 3]
        out[k, 1:] = (a[:, :3] @ rot.T).T  # rows: forward, right, up in previous-camera axes
    return out


@njit(cache=True, error_model="numpy", nogil=True)
def flow_kernel(f, zbuf, fid, box_motion, coef, out):
    """zbuf: 1/depth (the sky holds 1/far); box_motion: (N,) row of `coef` per box (0: static);
    coef: see `flow_coefficients`; out: (h, w, 2) float32."""
    h, w = zbuf.shape
    cx = 0.5 * w
    cy = 0.5 * h
    inv_f = 1.0 / f
    for i in range(h):
        v = i + 0.5
        b = -(v - cy) * inv_f
        for j in range(w):
            u = j + 0.5
            a = (u - cx) * inv_f
            code = fid[i, j]
            k = box_motion[code // 6] if code >= 0 else 0
            z = zbuf[i, j]
            # X = c0x + vx / z etc., so Y / X = (c0y z + vy) / (c0x z + vx): one division
            vx = coef[k, 1, 0] + a * coef[k, 2, 0] + b * coef[k, 3, 0]
            vy = coef[k, 1, 1] + a * coef[k, 2, 1] + b * coef[k, 3, 1]
            vz = coef[k, 1, 2] + a * coef[k, 2, 2] + b * coef[k, 3, 2]
            den = coef[k, 0, 0] * z + vx
            if den <= 1e-9 * z:
                out[i, j, 0] = 0.0  # behind the previous camera: no meaningful correspondence
                out[i, j, 1] = 0.0
                continue
            inv = f / den
            out[i, j, 0] = u - (cx + (coef[k, 0, 1] * z + vy) * inv)
            out[i, j, 1] = v - (cy - (coef[k, 0, 2] * z + vz) * inv)
