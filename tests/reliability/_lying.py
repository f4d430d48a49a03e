"""A GTZAN folder of small files whose headers lie (issue 13), written from scratch.

Each file claims a sample rate, a frame count or a duration that has nothing to do with its
bytes. Decoding what a header claims (a 40 KB WAV "at 1 Hz" lasts 5.5 hours, resampled to
22050 Hz it is 1.7 GB of float32) is what made ingest, build and predict take gigabytes;
every file here is under 1 MB. :data:`FILES` says what must become of each one, and
:data:`README_ROWS` is what README.md's bad-input table says about them.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050
HOUR = 3600
#: How much audio the truthful part of a lying file holds.
PRESENT_SECONDS = 8


def wav_bytes(*, sr: int, frames: int, channels: int = 1, bits: int = 16, claim_frames: int | None = None,
              seed: int = 0) -> bytes:
    """A PCM WAV written byte by byte: any sample rate, and a data chunk that may claim
    more frames than follow it (the RIFF and data sizes are capped at 32 bits)."""
    rng = np.random.default_rng(seed)
    n = frames * channels
    if bits == 8:  # unsigned
        pcm = (128 + rng.normal(0, 20, n)).clip(0, 255).astype(np.uint8).tobytes()
    else:
        pcm = rng.normal(0, 3000, n).clip(-32768, 32767).astype("<i2").tobytes()
    align = channels * bits // 8
    size = len(pcm) if claim_frames is None else min(claim_frames * align, 0xFFFFFFFF - 36)
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, sr, (sr * align) & 0xFFFFFFFF, align, bits)
    return b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack("<I", size) + pcm


def set_flac_total(path: Path, total: int) -> None:
    """Rewrite the 36-bit total-samples field of a FLAC's STREAMINFO (0 means unknown)."""
    d = bytearray(path.read_bytes())
    assert d[:4] == b"fLaC" and d[4] & 0x7F == 0, "STREAMINFO must come first"
    d[21] = (d[21] & 0xF0) | ((total >> 32) & 0x0F)
    d[22:26] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    path.write_bytes(bytes(d))


def _tone(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 330 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)


# ---------------------------------------------------------------------------------------
# writers: each gets the file's path
# ---------------------------------------------------------------------------------------
def _one_hz(kb: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(wav_bytes(sr=1, frames=kb * 1000 // 2))
    return write


def _rate(sr: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(wav_bytes(sr=sr, frames=20000))
    return write


def _wav_more_frames(path: Path) -> None:
    """The data chunk claims a billion frames; 8 s follow."""
    path.write_bytes(wav_bytes(sr=SR, frames=PRESENT_SECONDS * SR, claim_frames=1 << 30))


def _wav_huge_duration(path: Path) -> None:
    """8-bit mono at 4 kHz claiming 4 GB of data (298 hours); 800 KB (200 s) follow."""
    path.write_bytes(wav_bytes(sr=4000, frames=800_000, bits=8, claim_frames=1 << 40))


def _flac_claims_an_hour(path: Path) -> None:
    sf.write(path, _tone(PRESENT_SECONDS), SR, subtype="PCM_16")
    set_flac_total(path, HOUR * SR)


def _flac_unknown_length(path: Path) -> None:
    sf.write(path, _tone(PRESENT_SECONDS), SR, subtype="PCM_16")
    set_flac_total(path, 0)


def _hour_of_silence(path: Path) -> None:
    """44.1 kHz stereo, an hour of digital silence: about 600 KB of FLAC."""
    with sf.SoundFile(path, "w", samplerate=44100, channels=2, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((44100 * 300, 2), np.int16)
        for _ in range(HOUR // 300):
            f.write(block)


def _text_au(path: Path) -> None:
    path.write_text("These are my liner notes, not audio.\n" * 40)


@dataclasses.dataclass(frozen=True)
class Lie:
    """One lying file and what must become of it."""

    rel: str  # under genres_original/
    write: Callable[[Path], None]
    status: str  # ok | quarantined
    reason: str | None = None  # exact catalog reason when quarantined
    notes: str | None = None  # exact catalog notes when ok
    duration: float | None = None  # catalog duration when ok


_RATE = "sample rate {} Hz is outside 4000..384000 Hz"

FILES: tuple[Lie, ...] = (
    Lie("blues/blues.00090.wav", _one_hz(40), "quarantined", reason=_RATE.format(1)),
    Lie("blues/blues.00091.wav", _one_hz(800), "quarantined", reason=_RATE.format(1)),
    Lie("country/country.00092.wav", _rate(2000), "quarantined", reason=_RATE.format(2000)),
    Lie("country/country.00093.wav", _rate(1_000_000), "quarantined", reason=_RATE.format(1000000)),
    Lie("disco/disco.00094.au", _text_au, "quarantined",
        reason="no audio header: libsndfile could only guess header-less raw data"),
    Lie("classical/classical.00095.wav", _wav_more_frames, "ok", duration=PRESENT_SECONDS,
        notes=f"truncated: header promises {1 << 30} frames, {PRESENT_SECONDS * SR} decoded"),
    Lie("hiphop/hiphop.00096.wav", _wav_huge_duration, "ok", duration=200.0,
        notes=f"truncated: header promises {(0xFFFFFFFF - 36)} frames, 800000 decoded; "
              "low sample rate 4000 Hz: upsampled, nothing above 2000 Hz"),
    Lie("jazz/jazz.00097.flac", _flac_claims_an_hour, "ok", duration=PRESENT_SECONDS,
        notes=f"truncated: header promises {HOUR * SR} frames, {PRESENT_SECONDS * SR} decoded"),
    Lie("metal/metal.00098.flac", _flac_unknown_length, "ok", duration=PRESENT_SECONDS),
    Lie("pop/pop.00099.flac", _hour_of_silence, "ok", duration=float(HOUR),
        notes="2 channels mixed to mono; digital silence"),
)

README_ROWS: tuple[str, ...] = (
    "| a WAV whose header says 1 Hz (40 KB or 800 KB: 5.5 or 111 hours), 2 kHz or 1 MHz | quarantined: "
    "`sample rate N Hz is outside 4000..384000 Hz`; `gtzan predict` refuses it with the same reason |",
    "| a WAV whose header claims a billion frames, or 4 GB of data (298 hours), with 8 s or 200 s present | "
    "processed: the frames present are used, only the first 31 s are decoded; note `truncated: header "
    "promises N frames, M decoded` |",
    "| a FLAC whose STREAMINFO claims an hour but holds 8 s, or gives no length | processed: the frames present "
    "are counted block by block (the hour is never allocated); the first gets the `truncated` note |",
    "| a FLAC of an hour of silence (600 KB) | processed: duration 3600 s from the header, checked by decoding "
    "its last frames; only the first 31 s are decoded; notes `2 channels mixed to mono; digital silence` |",
)


def write_corpus(parent: Path) -> Path:
    """The demo corpus (one 6 s song per genre) with every lying file; returns the root."""
    from feature_store.demo import write_demo_corpus

    root = parent / "lying"
    write_demo_corpus(root, songs_per_genre=1, duration=6.0)
    for lie in FILES:
        path = root / "genres_original" / lie.rel
        lie.write(path)
        assert path.stat().st_size < 1_000_000, lie.rel
    return root
