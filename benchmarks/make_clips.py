"""A 20-clip corpus for `msakit analyze DIR --meta` from the media in ../shared/data, plus the bad cases.

    python benchmarks/make_clips.py --out runs/clips20 [--source ../shared/data]

Makes OUT/clips/NN_*.{mp4,webm,avi,mkv,mov,mp3,flac} and OUT/meta.csv, deterministically:

- cuts of the MOUD video at its utterance boundaries (Spanish, one face) and of the MOSI
  video (English, one face), re-encoded with other codecs and containers, and the MOSI wav
  as mp3 and flac;
- English review sentences synthesised with espeak-ng and muxed over frames of the MOUD and
  MOSI videos (a face), or over drawn frames with no face (an on-screen-text graphic, a
  street-like texture);
- the bad cases: a video with no audio track, a silent track, no faces (the two drawn
  ones), an unsupported codec (a Matroska CodecID no FFmpeg knows), a language the default
  checkpoint's text encoder does not read (German espeak-ng speech; the MOUD cuts are
  Spanish), and a corrupt file in the middle of the folder (a truncated download: its
  index never arrives).

meta.csv gives each clip an outlet and a date. They are invented for this demo (three
fictional channels over the first half of 2024), so the aggregate plot has groups and
time to show; they say nothing about the sources. Nothing made here is committed.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import wave
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from media_factory import write_unknown_codec  # noqa: E402

FPS = 15
RATE = 16000

REVIEWS = {
    "camera": "The camera is excellent and the battery life is amazing.",
    "plot": "The plot was boring and the acting was terrible.",
    "soundtrack": "I love the soundtrack, but the ending was disappointing.",
    "food": "The service was friendly and the food was delicious.",
    "phone": "The new phone has a great screen, but the price is too high.",
    "hotel": "The hotel room was dirty and the staff were rude.",
    "laptop": "The screen is bright. The keyboard feels cheap and the speakers are weak.",
    "german": "Das Essen war ausgezeichnet, aber der Service war schrecklich.",
}


def speak(text: str, voice: str = "en-us") -> np.ndarray:
    """espeak-ng speech as (S,) float32 at 16 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
        with wave.open(str(wav)) as fh:
            rate = fh.getframerate()
            pcm = np.frombuffer(fh.readframes(fh.getnframes()), "<i2").astype(np.float32) / 32768
    t = np.arange(int(len(pcm) * RATE / rate)) / RATE
    return np.interp(t, np.arange(len(pcm)) / rate, pcm).astype(np.float32)


def video_frames(path: Path, start: float, end: float) -> list[np.ndarray]:
    from msakit.extract.media import sample_frames

    return [f for t, f in sample_frames(path, FPS) if start <= t < end]


def drawn_frames(kind: str, seconds: float, size: tuple[int, int] = (480, 360)) -> list[np.ndarray]:
    """Frames with no face: a news-style graphic with on-screen text, or a moving street-like texture."""
    import cv2

    w, h = size
    rng = np.random.default_rng(0)
    texture = rng.integers(40, 200, (h // 8, w // 8, 3), dtype=np.uint8)
    frames = []
    for k in range(int(seconds * FPS)):
        if kind == "graphic":
            img = np.zeros((h, w, 3), np.uint8)
            img[:] = (20, 40, 90)
            cv2.rectangle(img, (0, h - 90), (w, h - 30), (200, 30, 30), -1)
            cv2.putText(img, "PRODUCT REVIEW", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 3)
            cv2.putText(img, f"Phone test {k // FPS:02d}s", (20, h - 48), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255,) * 3, 2)
            cv2.putText(img, "Screen 9/10  Price 4/10", (40, 180), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (230, 230, 0), 2)
        else:
            img = cv2.resize(np.roll(texture, k, axis=1), (w, h), interpolation=cv2.INTER_NEAREST)
            cv2.rectangle(img, (0, int(h * 0.6)), (w, h), (90, 90, 90), -1)  # a road
        frames.append(img)
    return frames


def write_media(
    path: Path,
    frames: list[np.ndarray] | None,
    audio: np.ndarray | None,
    *,
    vcodec: str = "libx264",
    acodec: str = "aac",
    arate: int = RATE,
) -> Path:
    """Encode frames (RGB, FPS per second) and/or mono audio (16 kHz float) into `path` with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        vstream = astream = None
        if frames:
            h, w = frames[0].shape[:2]
            vstream = container.add_stream(vcodec, rate=FPS)
            vstream.width, vstream.height = w // 2 * 2, h // 2 * 2
            vstream.pix_fmt = "yuvj420p" if vcodec == "mjpeg" else "yuv420p"
        if audio is not None:
            astream = container.add_stream(acodec, rate=arate)
            astream.layout = "mono"
        if vstream is not None:
            for k, img in enumerate(frames or []):
                even = np.ascontiguousarray(img[: vstream.height, : vstream.width])
                frame = av.VideoFrame.from_ndarray(even, format="rgb24")
                frame.pts, frame.time_base = k, Fraction(1, FPS)
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode())
        if astream is not None and audio is not None:
            resampler = av.AudioResampler(format=astream.codec_context.format, layout="mono", rate=arate)
            source = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="flt", layout="mono")
            source.sample_rate, source.pts = RATE, 0
            for chunk in (*resampler.resample(source), *resampler.resample(None)):
                container.mux(astream.encode(chunk))
            container.mux(astream.encode())
    return path


def audio_cut(path: Path, start: float, end: float) -> np.ndarray:
    from msakit.extract.media import load_audio

    samples = load_audio(path)
    return samples[int(start * RATE) : int(end * RATE)]


def make(source: Path, out: Path) -> list[dict[str, str]]:
    clips = out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    moud, mosi_v = source / "moud/101_movies.mp4", source / "mosi/media/Oz06ZWiO20M_6.mp4"
    mosi_a = source / "mosi/media/03bSnISJMiM_1.wav"
    with (source / "moud/101_movies.csv").open() as fh:
        cuts = [(float(r["#starttime"]), float(r["#endtime"])) for r in csv.DictReader(fh, delimiter=";")]
    moud_frames = video_frames(moud, 0, 34)
    mosi_frames = video_frames(mosi_v, 0, 8)

    def over(frames: list[np.ndarray], speech: np.ndarray, offset: int = 0) -> list[np.ndarray]:
        n = int(np.ceil(len(speech) / RATE * FPS)) + FPS // 2
        return [frames[(offset + k) % len(frames)] for k in range(n)]

    def moud_cut(k: int) -> tuple[list[np.ndarray], np.ndarray]:
        a, b = cuts[k]
        return moud_frames[int(a * FPS) : int(b * FPS)], audio_cut(moud, a, b)

    rows: list[tuple[str, str, str, str]] = []  # (file, outlet, date, how it was made)

    def add(name: str, outlet: str, date: str, how: str, path: Path) -> None:
        assert path.name == name
        rows.append((name, outlet, date, how))

    f, a = moud_cut(0)
    add("01_moud_u1.mp4", "Channel A", "2024-01-08", "MOUD utterance 1, h264/aac mp4",
        write_media(clips / "01_moud_u1.mp4", f, a))  # fmt: skip
    f, a = moud_cut(1)
    add("02_moud_u2.webm", "Channel B", "2024-01-15", "MOUD utterance 2, vp9/opus webm",
        write_media(clips / "02_moud_u2.webm", f, a, vcodec="libvpx-vp9", acodec="libopus", arate=48000))  # fmt: skip
    f, a = moud_cut(2)
    add("03_moud_u3.avi", "Channel C", "2024-01-22", "MOUD utterance 3, mpeg4/mp3 avi",
        write_media(clips / "03_moud_u3.avi", f, a, vcodec="mpeg4", acodec="libmp3lame"))  # fmt: skip
    f, a = moud_cut(4)
    add("04_moud_u5.mkv", "Channel A", "2024-02-05", "MOUD utterance 5, mjpeg/pcm mkv",
        write_media(clips / "04_moud_u5.mkv", f, a, vcodec="mjpeg", acodec="pcm_s16le"))  # fmt: skip
    a = audio_cut(mosi_v, 0, 7.5)
    add("05_mosi.mp4", "Channel B", "2024-02-12", "MOSI Oz06ZWiO20M_6 re-encoded, h264/aac mp4",
        write_media(clips / "05_mosi.mp4", mosi_frames, a))  # fmt: skip
    add("06_mosi.webm", "Channel C", "2024-02-19", "MOSI Oz06ZWiO20M_6, vp8/opus webm",
        write_media(clips / "06_mosi.webm", mosi_frames, a, vcodec="libvpx", acodec="libopus",
                    arate=48000))  # fmt: skip
    wav = audio_cut(mosi_a, 0, 4)
    add("07_mosi_audio.mp3", "Channel A", "2024-03-04", "MOSI 03bSnISJMiM_1 wav as mp3 (audio only)",
        write_media(clips / "07_mosi_audio.mp3", None, wav, acodec="libmp3lame"))  # fmt: skip
    add("08_mosi_audio.flac", "Channel B", "2024-03-11", "MOSI 03bSnISJMiM_1 wav as flac (audio only)",
        write_media(clips / "08_mosi_audio.flac", None, wav, acodec="flac"))  # fmt: skip
    s = speak(REVIEWS["camera"])
    add("09_tts_camera.mp4", "Channel C", "2024-03-18", "espeak-ng review over MOUD frames, h264/aac mp4",
        write_media(clips / "09_tts_camera.mp4", over(moud_frames, s, 60), s))  # fmt: skip
    # the corrupt file sits in the middle of the folder: a truncated download (the mp4 index never arrived)
    s = speak(REVIEWS["plot"])
    full = write_media(clips / "10_truncated.mp4", over(moud_frames, s, 200), s)
    full.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    add("10_truncated.mp4", "Channel A", "2024-03-25", "corrupt: an mp4 cut to its first third", full)
    s = speak(REVIEWS["plot"])
    add("11_tts_plot.avi", "Channel B", "2024-04-01", "espeak-ng review over MOSI frames, mpeg4/mp3 avi",
        write_media(clips / "11_tts_plot.avi", over(mosi_frames, s), s, vcodec="mpeg4",
                    acodec="libmp3lame"))  # fmt: skip
    s = speak(REVIEWS["soundtrack"])
    add("12_tts_soundtrack.mkv", "Channel C", "2024-04-08", "espeak-ng review over MOUD frames, hevc/aac mkv",
        write_media(clips / "12_tts_soundtrack.mkv", over(moud_frames, s, 400), s, vcodec="libx265"))  # fmt: skip
    s = speak(REVIEWS["food"])
    add("13_tts_food.webm", "Channel A", "2024-04-15", "espeak-ng review over MOSI frames, vp9/opus webm",
        write_media(clips / "13_tts_food.webm", over(mosi_frames, s), s, vcodec="libvpx-vp9", acodec="libopus",
                    arate=48000))  # fmt: skip
    s = speak(REVIEWS["phone"])
    add("14_no_face_graphic.mp4", "Channel B", "2024-04-22", "no faces: espeak-ng over a drawn on-screen-text graphic",
        write_media(clips / "14_no_face_graphic.mp4", drawn_frames("graphic", len(s) / RATE + 0.5), s))  # fmt: skip
    s = speak(REVIEWS["hotel"])
    add("15_no_face_street.mov", "Channel C", "2024-05-06", "no faces: espeak-ng over a drawn street texture, mov",
        write_media(clips / "15_no_face_street.mov", drawn_frames("street", len(s) / RATE + 0.5), s))  # fmt: skip
    f, _ = moud_cut(3)
    add("16_no_audio.mp4", "Channel A", "2024-05-13", "no audio track: MOUD utterance 4, video only",
        write_media(clips / "16_no_audio.mp4", f, None))  # fmt: skip
    f, a = moud_cut(3)
    add("17_silent.mp4", "Channel B", "2024-05-20", "silent track: MOUD utterance 4 with its audio zeroed",
        write_media(clips / "17_silent.mp4", f, np.zeros_like(a)))  # fmt: skip
    add("18_unknown_codec.mkv", "Channel C", "2024-06-03", "unsupported codec: a Matroska CodecID no FFmpeg knows",
        write_unknown_codec(clips / "18_unknown_codec.mkv", seconds=2.0))  # fmt: skip
    s = speak(REVIEWS["german"], voice="de")
    add("19_german.mp4", "Channel A", "2024-06-10", "language: German espeak-ng speech over MOSI frames",
        write_media(clips / "19_german.mp4", over(mosi_frames, s), s))  # fmt: skip
    s = speak(REVIEWS["laptop"])
    add("20_tts_laptop.mov", "Channel B", "2024-06-17", "espeak-ng review (3 sentences) over MOUD frames, mov",
        write_media(clips / "20_tts_laptop.mov", over(moud_frames, s, 700), s))  # fmt: skip
    meta = [{"file": n, "outlet": o, "date": d, "made_from": h} for n, o, d, h in rows]
    with (out / "meta.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["file", "outlet", "date", "made_from"])
        writer.writeheader()
        writer.writerows(meta)
    return meta


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "clips20")
    args = parser.parse_args(list(argv) if argv is not None else None)
    rows = make(args.source, args.out)
    for r in rows:
        print(f"{r['file']:<24} {r['outlet']:<10} {r['date']}  {r['made_from']}")
    print(f"{len(rows)} clips in {args.out / 'clips'}; meta: {args.out / 'meta.csv'}")


if __name__ == "__main__":
    main()
