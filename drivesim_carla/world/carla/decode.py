"""Decoders for CARLA camera payloads: raw sensor bytes -> the arrays of `types.CameraData`.

Pure numpy, no `carla` import, so they are testable anywhere. Camera images arrive as BGRA8
(`carla.Image.raw_data`); optical flow as two float32 per pixel (`carla.OpticalFlowImage.raw_data`).

- rgb: BGRA -> RGB uint8.
- semantic: the CARLA tag is in the red channel.
- depth: 24-bit in R, G, B: (R + G*256 + B*65536) / (256**3 - 1) * 1000 metres.
- instance: the tag in red, the object id in green (low byte) and blue (high byte).
- flow: screen-space motion, current minus previous position, in normalised device units
  (x right, y up; the whole image spans 2 units, so values lie in [-2, 2]); pixels are
  (x * width / 2, -y * height / 2), which gives (du, dv) with v down, as `CameraData.flow`.
"""

from __future__ import annotations

import numpy as np

DEPTH_FAR = 1000.0  # metres at the largest 24-bit code
_DEPTH_SCALE = np.float32(DEPTH_FAR / (256**3 - 1))


def bgra(raw: bytes | memoryview | np.ndarray, width: int, height: int) -> np.ndarray:
    """A read-only (h w 4) uint8 view of a BGRA8 buffer."""
    buf = np.frombuffer(raw, np.uint8)
    if buf.size != width * height * 4:
        raise ValueError(f"BGRA buffer of {buf.size} bytes does not hold {width}x{height} pixels")
    return buf.reshape(height, width, 4)


def decode_rgb(raw: bytes | memoryview | np.ndarray, width: int, height: int) -> np.ndarray:
    """(h w 3) uint8 RGB."""
    px = bgra(raw, width, height)
    out = np.empty((height, width, 3), np.uint8)
    out[:, :, 0], out[:, :, 1], out[:, :, 2] = px[:, :, 2], px[:, :, 1], px[:, :, 0]
    return out


def decode_semantic(raw: bytes | memoryview | np.ndarray, width: int, height: int) -> np.ndarray:
    """(h w) uint8 CARLA semantic tags (red channel)."""
    return np.ascontiguousarray(bgra(raw, width, height)[:, :, 2])


def decode_depth(raw: bytes | memoryview | np.ndarray, width: int, height: int) -> np.ndarray:
    """(h w) float32 metres along the optical axis."""
    px = bgra(raw, width, height)
    code = px[:, :, 0] * np.float32(65536.0)  # integers below 2**24 are exact in float32
    code += px[:, :, 1] * np.float32(256.0)
    code += px[:, :, 2]
    code *= _DEPTH_SCALE
    return code


def decode_instance(raw: bytes | memoryview | np.ndarray, width: int, height: int) -> np.ndarray:
    """(h w) int32 object ids (green + 256 * blue); 0 where no object was tagged."""
    px = bgra(raw, width, height)
    ids = px[:, :, 0].astype(np.int32)
    ids <<= 8
    ids |= px[:, :, 1]
    return ids


def decode_flow(raw: bytes | memoryview | np.ndarray, width: int, height: int) -> np.ndarray:
    """(h w 2) float32 pixels (du, dv): where the point now at each pixel was one frame ago is
    (u - du, v - dv)."""
    buf = np.frombuffer(raw, np.float32)
    if buf.size != width * height * 2:
        raise ValueError(f"flow buffer of {buf.size} floats does not hold {width}x{height} pixels")
    scale = np.array([width / 2.0, -height / 2.0], np.float32)
    return buf.reshape(height, width, 2) * scale


DECODERS = {
    "rgb": decode_rgb,
    "semantic": decode_semantic,
    "depth": decode_depth,
    "instance": decode_instance,
    "flow": decode_flow,
}
