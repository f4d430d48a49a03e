"""A deterministic synthetic corpus of genre-like music, in the Kaggle GTZAN layout.

Real GTZAN cannot be shipped, so ``make run`` works on this instead. Each genre has its own
tempo range, drum pattern, timbre, harmony and bass line (a 12-bar blues shuffle, a
four-on-the-floor disco groove, a one-drop reggae skank with off-beat chords, distorted
power chords over double kick for metal, swung ride and walking bass for jazz, bowed
strings with no drums for classical...). Per song the key, the tempo within the genre's
range, the mix levels, the swing and the noise floor are drawn at random from a seed, so
the task is learnable but not trivial. The same seed always writes the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from feature_store.bounds import MAX_DEMO_SECONDS, MAX_DEMO_SONGS_PER_GENRE, MAX_SEED
from feature_store.errors import ParameterError
from feature_store.datasets.gtzan import GENRES

#: Bump when the generator's output changes, so that cached demo files are rewritten.
DEMO_VERSION = 1

# Chords as semitone offsets from the key's root; progressions as (root offset, chord).
MAJ, MIN, DOM7, MIN7, MAJ7, POWER, MIN9 = (0, 4, 7), (0, 3, 7), (0, 4, 7, 10), (0, 3, 7, 10), (0, 4, 7, 11), (0, 7, 12), (0, 3, 7, 10, 14)


@dataclasses.dataclass(frozen=True)
class GenreStyle:
    """How one genre is rendered."""

    tempo: tuple[float, float]
    kick: str  # 16 steps per bar, 'x' = hit
    snare: str
    hat: str
    progression: tuple[tuple[int, tuple[int, ...]], ...]
    instrument: str  # pluck | strings | piano | dist | synth | organ
    comp: str  # how chords are played: strum | arp | sustain | offbeat | stab | power
    bass: str  # root | walk | octave | sub | none | follow
    swing: tuple[float, float] = (0.0, 0.0)
    ride: bool = False
    brightness: float = 1.0  # harmonic roll-off: higher is brighter
    drive: float = 0.0  # distortion gain
    noise_db: tuple[float, float] = (-45.0, -30.0)
    octave: int = 0


STYLES: dict[str, GenreStyle] = {
    "blues": GenreStyle((68, 96), "x.....x.x.......", "....x.......x...", "x..xx..xx..xx..x",
                        ((0, DOM7),) * 4 + ((5, DOM7),) * 2 + ((0, DOM7),) * 2 + ((7, DOM7), (5, DOM7), (0, DOM7), (7, DOM7)),
                        "pluck", "strum", "root", swing=(0.25, 0.4), brightness=1.2, drive=1.5),
    "classical": GenreStyle((56, 92), "................", "................", "................",
                            ((0, MAJ), (5, MAJ), (7, MAJ), (0, MAJ), (9, MIN), (2, MIN), (7, DOM7), (0, MAJ)),
                            "strings", "arp", "follow", brightness=0.8, noise_db=(-60, -45), octave=1),
    "country": GenreStyle((96, 132), "x.......x.......", "....x.......x...", "..x...x...x...x.",
                          ((0, MAJ), (0, MAJ), (5, MAJ), (7, MAJ)), "pluck", "strum", "octave",
                          brightness=1.6, octave=1),
    "disco": GenreStyle((114, 128), "x...x...x...x...", "....x.......x...", "..x...x...x...x.",
                        ((0, MIN7), (5, MIN7)), "synth", "stab", "octave", brightness=1.4),
    "hiphop": GenreStyle((82, 98), "x......x..x.....", "....x.......x...", "x.x.x.x.x.x.x.xx",
                         ((0, MIN), (8, MAJ)), "piano", "sustain", "sub", swing=(0.1, 0.25), brightness=0.7,
                         noise_db=(-40, -28)),
    "jazz": GenreStyle((100, 170), "x...............", "......x.......x.", "................",
                       ((2, MIN7), (7, DOM7), (0, MAJ7), (9, DOM7)), "piano", "stab", "walk",
                       swing=(0.3, 0.45), ride=True, brightness=0.9),
    "metal": GenreStyle((140, 200), "xxxxxxxxxxxxxxxx", "....x.......x...", "x.x.x.x.x.x.x.x.",
                        ((0, POWER), (8, POWER), (10, POWER), (0, POWER)), "dist", "power", "follow",
                        brightness=2.0, drive=12.0, noise_db=(-35, -25)),
    "pop": GenreStyle((100, 126), "x.......x.x.....", "....x.......x...", "x.x.x.x.x.x.x.x.",
                      ((0, MAJ), (7, MAJ), (9, MIN), (5, MAJ)), "synth", "sustain", "root", brightness=1.3,
                      octave=1),
    "reggae": GenreStyle((62, 84), "........x.......", "........x.......", "x.x.x.x.x.x.x.x.",
                         ((0, MAJ), (5, MAJ)), "organ", "offbeat", "root", swing=(0.0, 0.15), brightness=1.0),
    "rock": GenreStyle((108, 144), "x.....x.x.......", "....x.......x...", "x.x.x.x.x.x.x.x.",
                       ((0, POWER), (10, POWER), (5, POWER), (0, POWER)), "dist", "strum", "root",
                       brightness=1.6, drive=4.0, noise_db=(-40, -28)),
}


def _env(n: int, sr: int, attack: float, decay: float, sustain: float = 0.0) -> np.ndarray:
    t = np.arange(n) / sr
    a = np.clip(t / max(attack, 1e-4), 0, 1)
    d = sustain + (1 - sustain) * np.exp(-t / max(decay, 1e-4))
    rel = np.clip((n - np.arange(n)) / (0.01 * sr), 0, 1)  # 10 ms release, no clicks
    return a * d * rel


_TONE_CACHE: dict[tuple, np.ndarray] = {}


def _tone(freq: float, dur: float, sr: int, instrument: str, brightness: float, rng: np.random.Generator) -> np.ndarray:
    """One note; notes repeat bar after bar, so they are memoised (the result is read-only)."""
    n = max(int(dur * sr), 16)
    key = (round(freq, 4), n, sr, instrument, brightness)
    cached = _TONE_CACHE.get(key)
    if cached is None:
        if len(_TONE_CACHE) > 4096:
            _TONE_CACHE.clear()
        cached = _TONE_CACHE[key] = _render_tone(freq, n, sr, instrument, brightness)
        cached.flags.writeable = False
    return cached


def _render_tone(freq: float, n: int, sr: int, instrument: str, brightness: float) -> np.ndarray:
    dur = n / sr
    t = np.arange(n) / sr
    if instrument == "strings":
        vib = 1 + 0.004 * np.sin(2 * np.pi * 5.2 * t)
        phase = 2 * np.pi * freq * np.cumsum(vib) / sr
        harm = [1 / h ** (1.6 / brightness) for h in range(1, 9)]
        env = _env(n, sr, 0.12, dur, 0.8)
    elif instrument == "organ":
        phase = 2 * np.pi * freq * t
        harm = [1, 0.6, 0.0, 0.45, 0.0, 0.3, 0, 0.2]
        env = _env(n, sr, 0.005, 0.08, 0.6)
    elif instrument == "synth":
        phase = 2 * np.pi * freq * t
        harm = [1 / h ** (1.0 / brightness) for h in range(1, 12)]
        env = _env(n, sr, 0.01, 0.3, 0.5)
    elif instrument == "piano":
        phase = 2 * np.pi * freq * t
        harm = [1 / h ** (2.0 / brightness) for h in range(1, 9)]
        env = _env(n, sr, 0.003, 0.5, 0.1)
    else:  # pluck, dist
        phase = 2 * np.pi * freq * t
        harm = [1 / h ** (1.3 / brightness) for h in range(1, 10)]
        env = _env(n, sr, 0.002, 0.25 if instrument == "pluck" else 0.8, 0.05 if instrument == "pluck" else 0.5)
    nyq = sr / 2
    wave = sum(a * np.sin(h * phase) for h, a in enumerate(harm, 1) if h * freq < nyq)
    return (wave * env).astype(np.float32)


def _drum(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "kick":
        n = int(0.3 * sr)
        t = np.arange(n) / sr
        f = 45 + 90 * np.exp(-t / 0.03)
        return (np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)).astype(np.float32)
    if kind == "snare":
        n = int(0.2 * sr)
        t = np.arange(n) / sr
        noise = rng.standard_normal(n) * np.exp(-t / 0.06)
        body = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)
        return (0.6 * noise + 0.7 * body).astype(np.float32) * 0.8
    if kind == "ride":
        n = int(0.5 * sr)
        t = np.arange(n) / sr
        parts = sum(np.sin(2 * np.pi * f * t) for f in (3100, 4270, 5830, 7310))
        return (0.15 * parts * np.exp(-t / 0.3) + 0.1 * rng.standard_normal(n) * np.exp(-t / 0.1)).astype(np.float32)
    n = int(0.06 * sr)  # closed hat
    t = np.arange(n) / sr
    noise = np.diff(rng.standard_normal(n + 1))
    return (0.35 * noise * np.exp(-t / 0.015)).astype(np.float32)


def _add(buf: np.ndarray, sig: np.ndarray, at: int, gain: float) -> None:
    if at >= buf.size or at < 0:
        return
    m = min(sig.size, buf.size - at)
    buf[at : at + m] += gain * sig[:m]


def synthesize_song(genre: str, *, seed: int, duration: float = 30.0, sr: int = 22050) -> np.ndarray:
    """Render one song of ``genre``.

    Parameters
    ----------
    genre : str
        One of :data:`feature_store.datasets.gtzan.GENRES`.
    seed : int
        Draws the key, tempo, swing, mix levels and noise.
    duration : float > 0
        Seconds.
    sr : int > 0
        Sample rate.

    Returns
    -------
    np.ndarray [shape=(round(duration * sr),), dtype=float32]
        Peak-normalised mono audio in [-1, 1].
    """
    if genre not in STYLES:
        raise ParameterError(f"unknown genre {genre!r}; valid genres are {list(GENRES)}")
    if not duration > 0 or not sr > 0:
        raise ParameterError(f"duration and sr must be positive, got {duration!r}, {sr!r}")
    st = STYLES[genre]
    rng = np.random.default_rng(seed)
    n = int(round(duration * sr))
    drums = np.zeros(n, np.float32)
    harm = np.zeros(n, np.float32)
    bass = np.zeros(n, np.float32)
    tempo = rng.uniform(*st.tempo)
    key = int(rng.integers(0, 12))
    swing = rng.uniform(*st.swing)
    root_hz = 110.0 * 2 ** (key / 12) * 2**st.octave
    beat = 60.0 / tempo
    step = beat / 4
    bar = 4 * beat
    hits = {k: _drum(k, sr, rng) for k in ("kick", "snare", "hat", "ride")}
    levels = {k: rng.uniform(0.5, 1.0) for k in ("kick", "snare", "hat", "harm", "bass")}

    def at(bar_i: int, s: int) -> int:
        t = bar_i * bar + s * step + (swing * step if s % 2 else 0.0)
        t += rng.normal(0, 0.004)  # human timing
        return int(t * sr)

    n_bars = int(np.ceil(duration / bar))
    for b in range(n_bars):
        deg, chord = st.progression[b % len(st.progression)]
        chord_root = root_hz * 2 ** (deg / 12)
        for s in range(16):
            vel = rng.uniform(0.8, 1.0)
            if st.kick[s] == "x":
                _add(drums, hits["kick"], at(b, s), levels["kick"] * vel)
            if st.snare[s] == "x":
                _add(drums, hits["snare"], at(b, s), levels["snare"] * vel)
            if st.hat[s] == "x":
                _add(drums, hits["hat"], at(b, s), levels["hat"] * vel * 0.5)
            if st.ride and s in (0, 4, 6, 8, 12, 14):
                _add(drums, hits["ride"], at(b, s), 0.5 * vel)
        _comp(harm, st, chord_root, chord, b, at, step, sr, rng)
        _bassline(bass, st, chord_root, chord, b, at, step, sr, rng)
    if st.drive:
        harm = np.tanh(st.drive * harm / (np.abs(harm).max() + 1e-9)).astype(np.float32)
    mix = drums / (np.abs(drums).max() + 1e-9) * 0.8 + levels["harm"] * harm / (np.abs(harm).max() + 1e-9)
    if st.bass != "none":
        mix += levels["bass"] * 0.8 * bass / (np.abs(bass).max() + 1e-9)
    noise_db = rng.uniform(*st.noise_db)
    mix += (10 ** (noise_db / 20)) * _pink(n, rng) * np.abs(mix).max()
    mix /= np.abs(mix).max() + 1e-9
    return (mix * rng.uniform(0.5, 0.95)).astype(np.float32)


def _comp(buf, st: GenreStyle, root: float, chord, b: int, at, step: float, sr: int, rng) -> None:
    freqs = [root * 2 ** (c / 12) for c in chord]
    if st.comp == "arp":
        for s in range(0, 16, 2):
            f = freqs[(s // 2) % len(freqs)] * (2 if (s // 8) % 2 else 1)
            _add(buf, _tone(f, 4 * step, sr, st.instrument, st.brightness, rng), at(b, s), 0.5)
    elif st.comp == "sustain":
        for f in freqs:
            _add(buf, _tone(f, 16 * step, sr, st.instrument, st.brightness, rng), at(b, 0), 0.35)
    elif st.comp == "offbeat":
        for s in (2, 6, 10, 14):
            for f in freqs:
                _add(buf, _tone(f * 2, 0.8 * step, sr, st.instrument, st.brightness, rng), at(b, s), 0.35)
    elif st.comp == "stab":
        pattern = [s for s in range(16) if rng.random() < 0.25] or [0]
        for s in pattern:
            for f in freqs:
                _add(buf, _tone(f, 2 * step, sr, st.instrument, st.brightness, rng), at(b, s), 0.3)
    elif st.comp == "power":
        for s in range(0, 16, 2):
            for f in freqs:
                _add(buf, _tone(f, 1.6 * step, sr, st.instrument, st.brightness, rng), at(b, s), 0.4)
    else:  # strum
        for s in (0, 4, 8, 12):
            for j, f in enumerate(freqs):
                _add(buf, _tone(f, 4 * step, sr, st.instrument, st.brightness, rng), at(b, s) + j * int(0.012 * sr), 0.35)


def _bassline(buf, st: GenreStyle, root: float, chord, b: int, at, step: float, sr: int, rng) -> None:
    f0 = root / 2 if root > 80 else root
    if st.bass == "none":
        return
    if st.bass == "walk":
        scale = [0, 2, 3, 5, 7, 9, 10]
        for s in (0, 4, 8, 12):
            f = f0 * 2 ** (scale[int(rng.integers(0, len(scale)))] / 12)
            _add(buf, _tone(f, 4 * step, sr, "pluck", 0.6, rng), at(b, s), 0.8)
    elif st.bass == "octave":
        for s in range(0, 16, 2):
            _add(buf, _tone(f0 * (2 if s % 4 else 1), 2 * step, sr, "synth", 0.6, rng), at(b, s), 0.7)
    elif st.bass == "sub":
        _add(buf, _tone(f0 / 2, 8 * step, sr, "piano", 0.3, rng), at(b, 0), 1.0)
        _add(buf, _tone(f0 / 2, 6 * step, sr, "piano", 0.3, rng), at(b, 10), 0.9)
    elif st.bass == "follow":
        for s in range(0, 16, 4):
            _add(buf, _tone(f0, 4 * step, sr, "strings" if st.instrument == "strings" else "pluck", 0.6, rng), at(b, s), 0.7)
    else:  # root
        for s in (0, 8):
            _add(buf, _tone(f0, 8 * step, sr, "pluck", 0.6, rng), at(b, s), 0.8)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.arange(1, spec.size + 1))
    x = np.fft.irfft(spec, n)
    return (x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def song_seed(seed: int, genre: str, index: int) -> int:
    """The per-song seed: stable across Python runs (no ``hash()`` randomisation)."""
    return seed * 1_000_003 + GENRES.index(genre) * 10_007 + index


def _check_demo(*, songs_per_genre: int, duration: float, seed: int) -> None:
    """Refuse demo settings past the bounds of :mod:`feature_store.bounds`, in one line."""
    import math

    def whole(value: Any) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)

    if not whole(songs_per_genre) or not 1 <= songs_per_genre <= MAX_DEMO_SONGS_PER_GENRE:
        raise ParameterError(f"songs_per_genre must be an integer in 1..{MAX_DEMO_SONGS_PER_GENRE}, "
                             f"got {songs_per_genre!r}")
    number = isinstance(duration, int | float | np.number) and not isinstance(duration, bool)
    if not number or not math.isfinite(duration) or not 0 < duration <= MAX_DEMO_SECONDS:
        raise ParameterError(f"duration must be a number of seconds in (0, {MAX_DEMO_SECONDS:g}], got {duration!r}")
    if not whole(seed) or not 0 <= seed <= MAX_SEED:
        raise ParameterError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")


def _check_room(root: Path, *, n_bytes: int) -> None:
    """Refuse, in one line, a corpus larger than the free space of the disk it would go to.

    The bounds allow corpora of hundreds of GB, so the disk is the limit a user meets first;
    finding out before the first file beats a full disk hours later.
    """
    import shutil

    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if n_bytes > free:
        def size(n: int) -> str:
            return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"

        raise ParameterError(f"the demo corpus needs {size(n_bytes)} and {probe} has {size(free)} free; "
                             f"ask for fewer songs or seconds")


def write_demo_corpus(
    root: str | os.PathLike[str],
    *,
    songs_per_genre: int = 10,
    duration: float = 30.0,
    sr: int = 22050,
    seed: int = 0,
    genres: tuple[str, ...] = GENRES,
) -> Path:
    """Write the synthetic corpus as 16-bit WAV in the Kaggle layout.

    Files are ``<root>/genres_original/<genre>/<genre>.000NN.wav``. A manifest
    (``<root>/demo-manifest.json``) records the settings and each file's sha256, so a
    second call with the same settings rewrites nothing.

    Parameters
    ----------
    root : path
        Folder to write into.
    songs_per_genre : int in 1..MAX_DEMO_SONGS_PER_GENRE
    duration : float in (0, MAX_DEMO_SECONDS]
        Seconds per song (GTZAN: 30).
    sr : int > 0
    seed : int in 0..MAX_SEED
    genres : tuple of str
        Subset of :data:`GENRES`.

    Returns
    -------
    Path
        The ``genres_original`` folder (what ``GTZAN_DIR`` may point at).

    Raises
    ------
    ParameterError
        One line naming the value and its bound (:mod:`feature_store.bounds`), before
        anything is written.
    """
    import soundfile as sf

    from feature_store.atomic import atomic_path

    _check_demo(songs_per_genre=songs_per_genre, duration=duration, seed=seed)
    if not isinstance(sr, int | np.integer) or not 8000 <= sr <= 192_000:
        raise ParameterError(f"sr must be an integer in 8000..192000, got {sr!r}")
    for g in genres:
        if g not in GENRES:
            raise ParameterError(f"unknown genre {g!r}; valid genres are {list(GENRES)}")
    _check_room(Path(root), n_bytes=len(genres) * songs_per_genre * (int(duration * sr) * 2 + 44))
    from feature_store import integrity
    from feature_store.atomic import write_json_atomic
    from feature_store.errors import StoreError
    from feature_store.manifest import sha256_file

    out = Path(root) / "genres_original"
    manifest_path = Path(root) / "demo-manifest.json"
    settings = {"seed": seed, "sr": sr, "duration": duration, "generator": DEMO_VERSION}
    manifest = {"settings": settings, "files": {}}
    # the manifest only spares work: a missing, damaged or unchecksummed one writes every file anew
    with contextlib.suppress(OSError, StoreError):
        old = integrity.read_json(manifest_path, remedy="the demo corpus is written again")
        if old.get("settings") == settings and isinstance(old.get("files"), dict):
            manifest["files"] = old["files"]
    for genre in genres:
        gdir = out / genre
        gdir.mkdir(parents=True, exist_ok=True)
        for i in range(songs_per_genre):
            target = gdir / f"{genre}.{i:05d}.wav"
            rel = target.relative_to(out).as_posix()
            known = manifest["files"].get(rel)
            if known and target.is_file() and sha256_file(target) == known:
                continue
            y = synthesize_song(genre, seed=song_seed(seed, genre, i), duration=duration, sr=sr)
            pcm = np.round(y * 32767).astype(np.int16)
            with atomic_path(target) as tmp:
                sf.write(tmp, pcm, sr, subtype="PCM_16", format="WAV")
            manifest["files"][rel] = sha256_file(target)
    write_json_atomic(manifest_path, integrity.with_checksum(manifest))
    return out
