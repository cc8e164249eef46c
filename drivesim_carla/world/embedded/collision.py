"""Oriented-box overlap tests on the ground plane (separating axis theorem)."""

from __future__ import annotations

import numpy as np


def obb_overlap(
    center: np.ndarray, half: np.ndarray, yaw: float,
    centers: np.ndarray, halves: np.ndarray, yaws: np.ndarray,
) -> np.ndarray:
    """Whether one box (center (2,), half (2,), yaw rad) overlaps each of N boxes: (N,) bool."""
    if len(centers) == 0:
        return np.zeros(0, bool)
    u0 = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])  # (2 axes, xy)
    c, s = np.cos(yaws), np.sin(yaws)
    u1 = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)  # (N, 2 axes, xy)
    d = centers - center  # (N, 2)
    separated = np.zeros(len(centers), bool)
    axes = [np.broadcast_to(u0[0], d.shape), np.broadcast_to(u0[1], d.shape), u1[:, 0], u1[:, 1]]
    for a in axes:
        r0 = half[0] * np.abs(a @ u0[0]) + half[1] * np.abs(a @ u0[1])
        r1 = halves[:, 0] * np.abs(np.sum(a * u1[:, 0], -1)) + halves[:, 1] * np.abs(
            np.sum(a * u1[:, 1], -1))
        separated |= np.abs(np.sum(d * a, -1)) > r0 + r1
    return ~separated
