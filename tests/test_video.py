"""The H.264 writer: what PyAV reads back, letterboxing, odd sizes, partial files."""

from __future__ import annotations

import av
import numpy as np
import pytest

from drivesim_carla.errors import DrivesimError
from drivesim_carla.video import VideoWriter


def _read(path):
    with av.open(str(path)) as video:
        stream = video.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(stream)]
        return stream.codec_context.name, float(stream.average_rate), frames


def test_frames_come_back_as_written(tmp_path):
    path = tmp_path / "v.mp4"
    shades = [np.full((48, 64, 3), v, np.uint8) for v in (30, 120, 220)]
    with VideoWriter(path, 12.5, 64, 48) as w:
        for img in shades:
            w.write(img)
        assert not path.exists()  # the final name only once the file is whole
    codec, rate, frames = _read(path)
    assert codec == "h264" and rate == pytest.approx(12.5) and len(frames) == 3
    for img, got in zip(shades, frames):
        assert np.abs(got.astype(int) - img).mean() < 3  # flat colours survive the encoder
    assert not (tmp_path / "v.partial.mp4").exists()


def test_odd_sizes_are_padded_and_other_sizes_letterboxed(tmp_path):
    path = tmp_path / "v.mp4"
    with VideoWriter(path, 20, 63, 31) as w:
        w.write(np.full((31, 63, 3), 200, np.uint8))
        w.write(np.full((10, 63, 3), 200, np.uint8))  # wide: black bars above and below
    _, _, frames = _read(path)
    assert frames[0].shape == (32, 64, 3)
    assert frames[1][16, 32].mean() > 150 and frames[1][2, 32].mean() < 40


def test_no_frames_no_file_and_bad_paths(tmp_path):
    VideoWriter(tmp_path / "empty.mp4", 20, 32, 32).close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DrivesimError, match="no extension"):
        VideoWriter(tmp_path / "noext", 20, 32, 32)
    with pytest.raises(DrivesimError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "v.mp4", 20, 32, 32)
