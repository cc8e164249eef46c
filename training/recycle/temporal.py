"""Temporal consistency of translated video: the warping error between consecutive frames.

For frames t and t+1 and their translations O_t, O_{t+1}, the error is the mean absolute
difference, over the pixels of frame t+1 whose point is visible in frame t, between O_{t+1} and
O_t warped to t+1 by the optical flow (Lai et al., "Learning Blind Video Temporal Consistency",
2018, with L1 on [0, 1] intensities), averaged over the pairs. The same figure for the
untranslated frames is the reference point: a translator that adds no flicker of its own scores
about what its input does.

Flow: the embedded world's `flow` stream at t+1 maps frame t onto frame t+1 (see `flow.warp`), and
its `depth` stream marks occlusions: a pixel counts when its source lies inside frame t and the
depth there (nearest pixel) agrees with its own within 5 % plus a margin for how far things moved
in one frame. Without a recorded flow, OpenCV's Farneback flow is estimated on the untranslated
frames, and a pixel counts when the backward and forward flows agree (Sundaram et al. 2010:
|b + f(p + b)|^2 <= 0.01 (|b|^2 + |f(p + b)|^2) + 0.5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ...errors import DrivesimError
from .flow import warp

log = logging.getLogger(__name__)

FlowMode = Literal["auto", "gt", "farneback"]
DEPTH_REL = 0.05  # depth agreement, relative
DEPTH_MARGIN = 0.5  # metres, plus the ego's travel in one frame: other traffic moves too
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


# ----- flow and visibility ----------------------------------------------------------------------------
def _t(x: np.ndarray) -> torch.Tensor:
    """`h w [c]` array -> `1 c h w` float32 tensor."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return (t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]).contiguous()


def inside(flow: np.ndarray) -> np.ndarray:
    """`h w` bool: pixels whose source `p - flow` lies inside the image."""
    h, w = flow.shape[:2]
    x = np.arange(w, dtype=np.float32)[None] - flow[..., 0]
    y = np.arange(h, dtype=np.float32)[:, None] - flow[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def visible(flow: np.ndarray, depth_prev: np.ndarray | None = None, depth_next: np.ndarray | None = None,
            travel: float = 0.0) -> np.ndarray:
    """`h w` bool: pixels of frame t+1 whose point frame t shows, for the recorded `flow` (`h w 2`) of
    t+1; with depths (`h w` metres), also depth-consistent (`travel`: metres the ego moved)."""
    ok = inside(flow)
    if depth_prev is not None and depth_next is not None:
        src = warp(_t(depth_prev), _t(flow), mode="nearest")[0, 0].numpy()
        ok &= np.abs(src - depth_next) <= DEPTH_REL * depth_next + DEPTH_MARGIN + travel
    return ok


def farneback(prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flow `h w 2` float32 in the world's convention, valid `h w` bool) between two `h w 3` uint8
    RGB frames, from OpenCV's Farneback flow both ways and their forward-backward check."""
    import cv2

    a, b = (cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in (prev, nxt))
    back = cv2.calcOpticalFlowFarneback(b, a, None, **FARNEBACK)  # next(p) ~ prev(p + back(p))
    fwd = cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK)  # prev(q) ~ next(q + fwd(q))
    flow = -back
    fwd_at = warp(_t(fwd), _t(flow))[0].permute(1, 2, 0).numpy()  # fwd at q = p + back(p)
    err = ((back + fwd_at) ** 2).sum(-1)
    scale = (back**2).sum(-1) + (fwd_at**2).sum(-1)
    return flow.astype(np.float32), inside(flow) & (err <= 0.01 * scale + 0.5)


def pair_error(prev: np.ndarray, nxt: np.ndarray, flow: np.ndarray, valid: np.ndarray) -> float:
    """Mean |next - warp(prev, flow)| over valid pixels and channels, on [0, 1] intensities;
    `prev`, `nxt` are `h w 3` uint8 (or floats in [0, 1])."""
    scale = 255.0 if prev.dtype == np.uint8 else 1.0
    moved = warp(_t(prev) / scale, _t(flow))[0].permute(1, 2, 0).numpy()
    diff = np.abs(nxt.astype(np.float32) / scale - moved)
    n = int(valid.sum())
    return float(diff[valid].sum() / (3 * n)) if n else float("nan")


# ----- sources of consecutive frames --------------------------------------------------------------------
@dataclass
class FrameData:
    """One frame of a source: `rgb` `h w 3` uint8 and, from recordings, the other streams asked for
    (`flow` of this frame w.r.t. the previous one), `travel`: metres the ego moved since then."""

    rgb: np.ndarray
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None
    depth: np.ndarray | None = None
    flow: np.ndarray | None = None
    travel: float = 0.0


class SessionFrames:
    """The frames of one camera of a recorded session."""

    def __init__(self, path: str | Path, camera: str | None, streams: Sequence[str], use_flow: bool):
        from ...recorders.session import Session

        self.session = Session(path)
        info = self.session.camera(camera)
        self.camera, self.name = info.name, str(path)
        self.has_flow = use_flow and "flow" in info.streams
        extra = ["flow"] if self.has_flow else []
        if self.has_flow and "depth" in info.streams:
            extra.append("depth")  # for the occlusion test
        self.streams = tuple(dict.fromkeys(("rgb", *streams, *extra)))
        self.session.check_streams(self.camera, self.streams)

    def __len__(self) -> int:
        return len(self.session)

    def frame(self, i: int) -> FrameData:
        s = self.session.read(i, self.camera, self.streams)
        return FrameData(rgb=s.rgb, semantic=s.semantic, instance=s.instance, depth=s.depth, flow=s.flow,
                         travel=float(s.speed) / self.session.fps)


class FolderFrames:
    """A folder of consecutive frames (PNG/JPEG in sorted order)."""

    has_flow = False
    camera = "front"

    def __init__(self, path: str | Path):
        from ...recorders.datasets import ImageFolder

        self.images, self.name = ImageFolder(path), str(path)

    def __len__(self) -> int:
        return len(self.images)

    def frame(self, i: int) -> FrameData:
        return FrameData(rgb=self.images.rgb(i))


def frame_sources(paths: Sequence[str | Path], camera: str | None = None, streams: Sequence[str] = ("rgb",),
                  flow: FlowMode = "auto") -> list:
    """Sources of consecutive frames: session files, folders of sessions, folders of frames."""
    from ...recorders.datasets import SESSION_SUFFIXES

    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise DrivesimError(f"--data {p}: not found; give session files (.h5), folders of them or a folder "
                                "of consecutive frames")
        if p.is_dir() and not any(q.suffix in SESSION_SUFFIXES for q in p.iterdir()):
            if set(streams) - {"rgb"}:
                raise DrivesimError(f"--data {p}: a folder of frames has RGB only, and this model takes "
                                    f"{', '.join(s for s in streams if s != 'rgb')}; give recorded sessions")
            out.append(FolderFrames(p))
            continue
        files = sorted(q for q in p.iterdir() if q.suffix in SESSION_SUFFIXES) if p.is_dir() else [p]
        out += [SessionFrames(f, camera, streams, flow != "farneback") for f in files]
    if flow == "gt":
        lacking = [s.name for s in out if not s.has_flow]
        if lacking:
            raise DrivesimError(f"--flow gt: {lacking[0]} has no recorded flow; record with the flow stream "
                                "or use --flow auto")
    return out


# ----- the metric ---------------------------------------------------------------------------------------
@dataclass
class SourceScore:
    name: str
    flow: str  # "recorded" or "farneback"
    pairs: int
    warping_error: float  # translated frames, mean over pairs
    input_warping_error: float  # the source frames themselves
    valid_fraction: float  # of the pixels of all pairs


@dataclass
class WarpResult:
    warping_error: float
    input_warping_error: float
    pairs: int
    valid_fraction: float
    flow: str
    sources: list[SourceScore] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def score_source(source, translate: Callable[[FrameData], np.ndarray], frames: int | None = None) -> SourceScore:
    """The warping error of `translate` (FrameData -> `h w 3` uint8) over the first `frames` frames."""
    n = len(source) if frames is None else min(frames, len(source))
    if n < 2:
        raise DrivesimError(f"{source.name}: {len(source)} frame(s); the warping error needs at least 2 "
                            "consecutive frames (--frames 2 or more)")
    errors, inputs, valid_px, total_px = [], [], 0, 0
    prev = source.frame(0)
    prev_out = translate(prev)
    for i in range(1, n):
        cur = source.frame(i)
        cur_out = translate(cur)
        if source.has_flow:
            flow, valid = cur.flow, visible(cur.flow, prev.depth, cur.depth, cur.travel)
        else:
            flow, valid = farneback(prev.rgb, cur.rgb)
        if prev_out.shape != prev.rgb.shape:
            raise DrivesimError(f"the translation is {prev_out.shape}, the frame {prev.rgb.shape}; a translator "
                                "must keep the frame's size")
        if valid.any():
            errors.append(pair_error(prev_out, cur_out, flow, valid))
            inputs.append(pair_error(prev.rgb, cur.rgb, flow, valid))
        valid_px, total_px = valid_px + int(valid.sum()), total_px + valid.size
        prev, prev_out = cur, cur_out
    if not errors:
        raise DrivesimError(f"{source.name}: no pixel is visible in consecutive frames (all occluded or out "
                            "of view); use other frames")
    return SourceScore(source.name, "recorded" if source.has_flow else "farneback", len(errors),
                       float(np.mean(errors)), float(np.mean(inputs)), valid_px / total_px)


def combine(scores: Sequence[SourceScore]) -> WarpResult:
    """Pair-weighted means over sources."""
    pairs = sum(s.pairs for s in scores)
    mean = lambda key: float(sum(getattr(s, key) * s.pairs for s in scores) / pairs)  # noqa: E731
    kinds = sorted({s.flow for s in scores})
    return WarpResult(mean("warping_error"), mean("input_warping_error"), pairs, mean("valid_fraction"),
                      kinds[0] if len(kinds) == 1 else "mixed", list(scores))


def synth_translator(synth, camera: str = "front") -> Callable[[FrameData], np.ndarray]:
    """`FrameData -> h w 3 uint8` through a loop synthesizer (`synth.load_synthesizer`), as `drivesim
    run --synth` paints each frame."""
    from ...types import CameraData, CameraSpec, Control, EgoState, Frame, Transform

    ego = EgoState(Transform(), (0.0, 0.0, 0.0), 0.0, Control())

    def translate(f: FrameData) -> np.ndarray:
        h, w = f.rgb.shape[:2]
        cam = CameraData(CameraSpec(camera, w, h, streams=("rgb",)), Transform(), rgb=f.rgb, semantic=f.semantic,
                         instance=f.instance)
        return np.asarray(synth(Frame(0, 0.0, ego, {camera: cam})))

    return translate


def warping_error(model: str | Path, data: Sequence[str | Path], *, camera: str | None = None,
                  frames: int | None = None, flow: FlowMode = "auto", device: str = "auto") -> WarpResult:
    """The warping error of a saved generator (run or model directory) run as the loop runs it
    (`--synth`), on recorded sessions or folders of frames, beside that of the frames themselves."""
    from ...synth import GeneratorSynth, load_synthesizer

    if frames is not None and frames < 2:
        raise DrivesimError(f"--frames {frames}: the warping error needs at least 2 consecutive frames")
    synth = load_synthesizer(str(model), device=device, precision="fp32")
    if not isinstance(synth, GeneratorSynth):
        raise DrivesimError("--model none is the world's own render; give a generator's run or model directory")
    try:
        scores = []
        for source in frame_sources(data, camera, synth.streams, flow):
            log.info("warping error on %s (%s flow)", source.name, "recorded" if source.has_flow else "estimated")
            scores.append(score_source(source, synth_translator(synth, source.camera), frames))
    finally:
        synth.close()
    return combine(scores)
