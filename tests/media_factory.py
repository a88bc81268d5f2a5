"""Tiny media made inside the tests (numpy + wave + PyAV): nothing is committed or downloaded."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def write_wav(path: Path, seconds: float = 1.0, freq: float = 220.0, amplitude: float = 0.3, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (amplitude * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(samples.tobytes())
    return path


def write_video(
    path: Path, seconds: float = 1.0, *, audio: bool = True, fps: int = 10, size: tuple[int, int] = (64, 48)
) -> Path:
    """A grey gradient video (no face) in mp4 (mpeg4 + optional AAC 220 Hz tone)."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=16000) if audio else None
        for k in range(int(seconds * fps)):
            img = np.full((size[1], size[0], 3), (k * 20) % 255, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            t = np.arange(int(seconds * 16000)) / 16000
            tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            for start in range(0, len(tone), 1024):
                frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
                frame.sample_rate = 16000
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def write_unknown_codec(path: Path, seconds: float = 1.0, fps: int = 10, size: tuple[int, int] = (64, 48)) -> Path:
    """A Matroska file whose video stream names a codec no FFmpeg knows (its CodecID is overwritten)."""
    import av

    with av.open(str(path), "w", format="matroska") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        for k in range(int(seconds * fps)):
            img = np.full((size[1], size[0], 3), (k * 20) % 255, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    data = path.read_bytes()
    assert data.count(b"V_MPEG4/ISO/ASP") == 1
    path.write_bytes(data.replace(b"V_MPEG4/ISO/ASP", b"V_XXXXX/ISO/ZZZ"))  # same length: the file stays valid
    return path
