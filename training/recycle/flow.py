"""Backward warping, and the unsupervised Recycle-GAN's synthetic optical flow.

Flow convention (the embedded world's `flow` stream, docs/recording-format.md): `flow[:, :, y, x]`
is (du, dv) in pixels, u right and v down, the displacement of the point now at (x, y) since the
previous frame. So the previous frame, sampled at `p - flow(p)`, gives the current one:
`warp(frame[t], flow[t + 1]) ~= frame[t + 1]`. The reference's `util.warp` samples at `p - flow`
too, so its synthetic flows and the world's recorded ones warp the same way.

The synthetic flow follows wangkaihong/Unsup_Recycle_GAN `models/unsup_model_single.py`
(`GenerateFakeFlow`, `GenerateFakeData`, `GaussianNoise`, after ReReVST): a random smooth field,
`N(0, motion_level)` on a grid of one value per 100 pixels, upsampled bilinearly, plus one
random integer shift in [-shift_level, shift_level] per axis, smoothed by a 100x100 box filter;
or, with `scale_level > 0`, a zoom about a random centre. The second frame is the first warped by
that flow plus Gaussian noise of std `noise_level * (1 + U(0, 1))`. Random draws use the torch
generator given (the global one by default, which the trainer seeds and checkpoints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

GRID = 100  # pixels per random flow value, and the box filter's width (the reference's constants)
SCALE_STEP = 0.01  # the zoom flow's coordinate step per pixel (the reference's np.arange(-3, 3, 0.01))


def warp(x: Tensor, flow: Tensor, padding_mode: str = "border", mode: str = "bilinear") -> Tensor:
    """Backward warp: `out[..., y, x] = x[..., y - flow_v, x - flow_u]` (bilinear; outside the image
    the border pixel, as the reference). `x` is `b c h w`, `flow` `b 2 h w` or `2 h w` in pixels.

    The reference normalizes pixel coordinates by (size - 1), the `align_corners=True` convention
    of the PyTorch it was written for; here that convention is explicit, so a zero flow is exactly
    the identity.
    """
    b, _, h, w = x.shape
    if flow.ndim == 3:
        flow = flow.expand(b, -1, -1, -1)
    ys = torch.arange(h, device=x.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=flow.dtype).view(1, 1, w)
    gx = (xs - flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys - flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([gx, gy], -1).to(x.dtype)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def synthetic_flow(h: int, w: int, *, motion_level: float = 8.0, shift_level: int = 10, scale_level: float = 0.0,
                   generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """One random flow field `2 h w` (float32, pixels) in the reference's three modes."""
    if scale_level > 0:
        return _zoom_flow(h, w, scale_level, generator, device)
    shift = _randint(-shift_level, shift_level, 2, generator).to(device=device, dtype=torch.float32).view(2, 1, 1)
    if motion_level <= 0:
        return shift.expand(2, h, w).clone()
    coarse = torch.randn(1, 2, max(1, h // GRID), max(1, w // GRID), generator=generator) * motion_level
    field = F.interpolate(coarse.to(device), size=(h, w), mode="bilinear", align_corners=False)[0]
    return box_blur(field + shift, GRID)


def synthetic_pair(first: Tensor, *, motion_level: float = 8.0, shift_level: int = 10, scale_level: float = 0.0,
                   noise_level: float = 0.001, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(second frame `b c h w`, its flow `2 h w`): `first` warped by one synthetic flow (shared by the
    batch), plus Gaussian noise (`GenerateFakeData`)."""
    flow = synthetic_flow(first.shape[-2], first.shape[-1], motion_level=motion_level, shift_level=shift_level,
                          scale_level=scale_level, generator=generator, device=first.device)
    second = warp(first, flow)
    return add_noise(second, noise_level, generator), flow


def add_noise(x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    """x + N(0, s) per element, s = level * (1 + U(0, 1)) drawn once per call (`GaussianNoise`)."""
    if level <= 0:
        return x
    std = level * (1 + float(torch.rand((), generator=generator)))
    if generator is None:
        return x + std * torch.randn_like(x)
    return x + std * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)


def box_blur(x: Tensor, size: int) -> Tensor:
    """`c h w` mean over a `size x size` window (cv2.blur: anchor at the centre, mirrored borders
    without repeating the edge), the window shrunk to fit images smaller than it."""
    kh, kw = min(size, x.shape[-2]), min(size, x.shape[-1])
    y = x[None]
    if kh > 1:
        y = F.avg_pool2d(F.pad(y, (0, 0, kh // 2, kh - 1 - kh // 2), mode="reflect"), (kh, 1), stride=1)
    if kw > 1:
        y = F.avg_pool2d(F.pad(y, (kw // 2, kw - 1 - kw // 2, 0, 0), mode="reflect"), (1, kw), stride=1)
    return y[0]


def _zoom_flow(h: int, w: int, level: float, generator, device) -> Tensor:
    """Flow proportional to the position in a window of [-3, 3) at 0.01 a pixel: a zoom by a factor
    in [-level, level] about the window's origin (the reference's `scale_level > 0` branch)."""
    factor = (torch.rand((), generator=generator) * 2 - 1) * level
    n = int(round(6 / SCALE_STEP))
    x0 = int(_randint(0, max(0, n - w), 1, generator))
    y0 = int(_randint(0, max(0, n - h), 1, generator))
    xs = (torch.arange(w) + x0) * SCALE_STEP - 3
    ys = (torch.arange(h) + y0) * SCALE_STEP - 3
    flow = torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)]) * factor
    return flow.float().to(device)


def _randint(low: int, high: int, n: int, generator) -> Tensor:
    """`n` integers uniform in [low, high], both ends included (Python's random.randint)."""
    return torch.randint(int(low), int(high) + 1, (n,), generator=generator)
