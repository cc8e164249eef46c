"""H.264 video files that browsers and chat tools play: PyAV (FFmpeg's libx264), yuv420p, mp4 with
the index at the front (`+faststart`).

`VideoWriter` writes to `<stem>.partial<suffix>` and renames to the final name only when closed
with frames in it, so a file under the final name is always whole.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import DrivesimError

log = logging.getLogger(__name__)

CODEC = "libx264"


def partial_path(path: Path) -> Path:
    if not path.suffix:
        raise DrivesimError(f"video path {path} has no extension; use a name such as out.mp4")
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def check_video_path(path: Path) -> None:
    """Raise one clear error unless a video can be written at `path`."""
    partial_path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DrivesimError(f"cannot write video {path}: folder {folder} does not exist; "
                            "create it or choose another --video path")
    if not os.access(folder, os.W_OK):
        raise DrivesimError(f"cannot write video {path}: folder {folder} is not writable; "
                            "choose another --video path")


class VideoWriter:
    """RGB frames (`h w 3` uint8) into an H.264 mp4 of `width x height` at `fps`.

    Frames of another size are letterboxed (scaled to fit, black bars); odd sizes are padded by a
    pixel (yuv420p needs even ones). `crf` and `preset` are libx264's quality and speed knobs."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int, *, crf: int = 23,
                 preset: str = "veryfast"):
        import av

        self.path = Path(path)
        check_video_path(self.path)
        self.partial = partial_path(self.path)
        self.size = (height + height % 2, width + width % 2)
        self.frames = 0
        try:
            self._container = av.open(str(self.partial), mode="w", options={"movflags": "+faststart"})
            self._stream = self._container.add_stream(CODEC, rate=Fraction(fps).limit_denominator(1001))
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise DrivesimError(f"cannot write video {self.path}: {e}; choose another --video path") from None
        self._stream.height, self._stream.width = self.size
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset}
        self._canvas = np.zeros((*self.size, 3), np.uint8)

    def write(self, rgb: np.ndarray) -> None:
        import av

        if rgb.shape[:2] == self.size:
            image = np.ascontiguousarray(rgb[..., :3])
        else:
            letterbox(rgb, self._canvas)
            image = self._canvas
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> int:
        """Finish the file; it takes its final name if it holds frames (else it is removed).
        Returns the number of frames written."""
        if self._container is None:
            return self.frames
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
        if self.frames:
            os.replace(self.partial, self.path)
            log.info("wrote %d frames to %s", self.frames, self.path)
        else:
            self.partial.unlink(missing_ok=True)
            log.warning("no frames were written; no video at %s", self.path)
        return self.frames

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def letterbox(rgb: np.ndarray, out: np.ndarray) -> None:
    """Fit an RGB image into `out`, keeping its aspect; black bars elsewhere."""
    import cv2

    H, W = out.shape[:2]
    h, w = rgb.shape[:2]
    k = min(H / h, W / w, 1.0)
    nh, nw = max(1, int(h * k)), max(1, int(w * k))
    img = rgb if (nh, nw) == (h, w) else cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    out[:] = 0
    y, x = (H - nh) // 2, (W - nw) // 2
    out[y:y + nh, x:x + nw] = img[..., :3]
