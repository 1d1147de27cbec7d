"""Make audio and video files in the formats ffmpeg handles, with PyAV (no binary fixtures)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

# name -> (file name ending, container format or None for the ending's, audio codec, rate,
# whether a video stream is added): the recordings people hold.
FORMATS: dict[str, tuple[str, str | None, str, int, bool]] = {
    "m4a-aac": (".m4a", "ipod", "aac", 44100, False),
    "mp4-video": (".mp4", None, "aac", 48000, True),
    "mov-video": (".mov", None, "aac", 44100, True),
    "mkv-video": (".mkv", None, "libopus", 48000, True),
    "webm-video": (".webm", None, "libopus", 48000, True),
    "wma": (".wma", "asf", "wmav2", 22050, False),
    "opus": (".opus", None, "libopus", 48000, False),
    "amr": (".amr", None, "libopencore_amrnb", 8000, False),
}


def encode(
    path: Path,
    tracks: Sequence[np.ndarray],
    rate: int,
    codec: str,
    container: str | None = None,
    video: bool = False,
) -> Path:
    """Write ``tracks`` (each float32 (frames, channels)) as audio streams of one file.

    ``video`` adds a short black video stream first, as a camera or screen recording has.
    """
    with av.open(str(path), "w", format=container) as out:
        picture = None
        if video:
            video_codec = "libvpx" if path.suffix == ".webm" else "mpeg4"
            picture = out.add_stream(video_codec, rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        streams = []
        for track in tracks:
            layout = "mono" if track.shape[1] == 1 else "stereo"
            stream = out.add_stream(codec, rate=rate, layout=layout)
            stream.bit_rate = 64000
            streams.append((stream, track, layout))
        for stream, track, layout in streams:
            # Encoders take their own sample format and frame size; the resampler adapts.
            resampler = av.AudioResampler(
                format=stream.codec_context.codec.audio_formats[0].name, layout=layout, rate=rate
            )
            planar = np.ascontiguousarray(track.T, np.float32)
            frames = [
                _frame(planar[:, i : i + 960], layout, rate, i)
                for i in range(0, planar.shape[1], 960)
            ]
            for frame in [*frames, None]:
                for converted in resampler.resample(frame):
                    out.mux(stream.encode(converted))
            out.mux(stream.encode(None))
        if picture is not None:
            for index in range(10):
                image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                image.pts = index
                out.mux(picture.encode(image))
            out.mux(picture.encode(None))
    return path


def _frame(planar: np.ndarray, layout: str, rate: int, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format="fltp", layout=layout)
    frame.sample_rate = rate
    frame.pts = pts
    return frame


def make(path_stem: Path, name: str, samples: np.ndarray, streams: int = 1) -> tuple[Path, int]:
    """``path_stem`` + the ending of format ``name`` holding ``samples`` (frames, channels)
    at the format's rate (``streams`` copies, the k-th scaled by 1/(k+1)); returns the path
    and rate."""
    ending, container, codec, rate, video = FORMATS[name]
    tracks = [samples / (k + 1) for k in range(streams)]
    path = path_stem.with_name(path_stem.name + ending)
    return encode(path, tracks, rate, codec, container, video), rate


def video_only(path: Path) -> Path:
    """An MP4 with a video stream and no audio."""
    with av.open(str(path), "w") as out:
        picture = out.add_stream("mpeg4", rate=10)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            image.pts = index
            out.mux(picture.encode(image))
        out.mux(picture.encode(None))
    return path
