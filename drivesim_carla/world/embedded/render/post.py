"""Camera effects after shading: blur, vignetting, rain streaks, tone curve, sensor noise; and the
pre-generated noise that textures and the sensor draw from."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

LUT_SIZE = 16384
LUT_MAX = 4.0  # linear values at or above this saturate the tone curve
NOISE_BANK = 1 << 18


def make_textures(seed: int) -> np.ndarray:
    """(4, 256, 256) float32 tileable value noise, from fine (0) to coarse (3), std ~0.4."""
    rng = np.random.default_rng([seed, 0x7E47])
    freq = np.fft.fftfreq(256)
    f2 = freq[:, None] ** 2 + freq[None, :] ** 2
    out = np.empty((4, 256, 256), np.float32)
    for k, sigma in enumerate((0.45, 1.5, 4.0, 12.0)):
        n = rng.standard_normal((256, 256))
        g = np.exp(-2.0 * math.pi**2 * sigma**2 * f2)
        v = np.real(np.fft.ifft2(np.fft.fft2(n) * g))
        v = (v - v.mean()) / (v.std() + 1e-12) * 0.4
        out[k] = v
    return out


def make_streaks(seed: int, size: int = 512, count: int = 500) -> np.ndarray:
    """(size, size) float32 rain streaks (0..1): thin slanted lines, tileable by wrapping."""
    rng = np.random.default_rng([seed, 0x5EA])
    out = np.zeros((size, size), np.float32)
    for _ in range(count):
        x0, y0 = rng.uniform(0, size, 2)
        length = rng.uniform(6, 28)
        slope = 0.14 + rng.uniform(-0.03, 0.03)
        val = rng.uniform(0.25, 1.0)
        for s in range(int(length)):
            y = int(y0 + s) % size
            x = x0 + slope * s
            xi = int(math.floor(x))
            fx = x - xi
            k = val * (1.0 - abs(2.0 * s / length - 1.0) ** 2)
            out[y, xi % size] += k * (1.0 - fx)
            out[y, (xi + 1) % size] += k * fx
    return np.minimum(out, 1.0)


def make_noise_bank(seed: int) -> np.ndarray:
    """(NOISE_BANK,) float32 standard normal sensor noise."""
    return np.random.default_rng([seed, 0x5E5]).standard_normal(NOISE_BANK).astype(np.float32)


def _srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def tone_lut(textured: bool, exposure: float) -> np.ndarray:
    """(3, LUT_SIZE) float32: linear value (index / LUT_SIZE * LUT_MAX) -> 8-bit display value."""
    x = (np.arange(LUT_SIZE) + 0.5) * (LUT_MAX / LUT_SIZE) * exposure
    if not textured:
        y = np.stack([_srgb(x)] * 3)
    else:
        # ACES filmic fit, then a mild grade: cool shadows, warm highlights, a touch of contrast
        a = x * 0.9
        t = np.clip((a * (2.51 * a + 0.03)) / (a * (2.43 * a + 0.59) + 0.14), 0.0, 1.0)
        s = _srgb(t)
        s = s + 0.06 * s * (1.0 - s) * (2.0 * s - 1.0) * 4.0
        y = np.stack([s * (0.97 + 0.05 * s), s, s * (1.04 - 0.07 * s)])
        y = 0.015 + 0.985 * y  # slightly lifted blacks
    return np.ascontiguousarray(np.clip(y * 255.0, 0.0, 255.0), np.float32)


@njit(cache=True, error_model="numpy", nogil=True)
def _hblur_row(col, i, wc, ws, ring, slot):
    w = col.shape[1]
    for j in range(w):
        jl = j - 1 if j > 0 else 0
        jr = j + 1 if j < w - 1 else w - 1
        for k in range(3):
            ring[slot, j, k] = wc * col[i, j, k] + ws * (col[i, jl, k] + col[i, jr, k])


@njit(cache=True, error_model="numpy", nogil=True)
def finish(col, out, lut, blur, vignette, noise, noise_amp, row_off, streaks, rain,
           soff_i, soff_j, streak_color, ring):
    """Linear colour (h w 3) float32 -> display (h w 3) uint8.

    blur: weight of the neighbours in a separable 3-tap blur; vignette: corner darkening;
    noise: bank read for row i from row_off[i] on (3 values a pixel), scaled by noise_amp
    (8-bit levels); streaks: texture added with weight `rain` (colour streak_color) at offset
    (soff_i, soff_j). ring: (>= 4, w, 3) float32 scratch.
    """
    h, w, _ = col.shape
    n = lut.shape[1]
    scale = np.float32(n / 4.0)
    wc = np.float32(1.0 - blur)
    ws = np.float32(0.5 * blur)
    smask_i = streaks.shape[0] - 1
    smask_j = streaks.shape[1] - 1
    cx = 0.5 * w
    cy = 0.5 * h
    inv_r2 = 1.0 / (cx * cx + cy * cy)
    # per-column vignette terms
    vcol = np.empty(w, np.float32)
    for j in range(w):
        vcol[j] = (j + 0.5 - cx) ** 2
    if blur > 0.0:
        _hblur_row(col, 0, wc, ws, ring, 0)
        if h > 1:
            _hblur_row(col, 1, wc, ws, ring, 1)
    x = ring[3]  # (w, 3) the row about to be tone mapped
    sc0 = np.float32(rain * streak_color[0])
    sc1 = np.float32(rain * streak_color[1])
    sc2 = np.float32(rain * streak_color[2])
    nmax = n - 1
    for i in range(h):
        if blur > 0.0 and i >= 1 and i + 1 < h:
            _hblur_row(col, i + 1, wc, ws, ring, (i + 1) % 3)
        up = (i - 1) % 3 if i > 0 else 0
        mid = i % 3
        dn = (i + 1) % 3 if i + 1 < h else mid
        dv = np.float32((i + 0.5 - cy) ** 2)
        # 1) blur, vignette and streaks: branch-free, vectorizes
        if blur > 0.0:
            for j in range(w):
                for k in range(3):
                    x[j, k] = wc * ring[mid, j, k] + ws * (ring[up, j, k] + ring[dn, j, k])
        else:
            for j in range(w):
                for k in range(3):
                    x[j, k] = col[i, j, k]
        if vignette > 0.0:
            vk = np.float32(vignette)
            ir2 = np.float32(inv_r2)
            for j in range(w):
                q = (vcol[j] + dv) * ir2
                v = np.float32(1.0) - vk * q * q
                for k in range(3):
                    x[j, k] *= v
        if rain > 0.0:
            si = (i + soff_i) & smask_i
            for j in range(w):
                st = streaks[si, (j + soff_j) & smask_j]
                x[j, 0] += st * sc0
                x[j, 1] += st * sc1
                x[j, 2] += st * sc2
        # 2) tone curve, sensor noise, quantization
        if noise_amp > 0.0:
            base = row_off[i]
            for j in range(w):
                for k in range(3):
                    idx = min(max(int(x[j, k] * scale), 0), nmax)
                    y = lut[k, idx] + noise_amp * noise[base + 3 * j + k] + 0.5
                    out[i, j, k] = int(min(max(y, 0.0), 255.0))
        else:
            for j in range(w):
                for k in range(3):
                    idx = min(max(int(x[j, k] * scale), 0), nmax)
                    out[i, j, k] = int(min(lut[k, idx] + 0.5, 255.0))
