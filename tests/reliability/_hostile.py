"""A hostile GTZAN folder, written from scratch: the twelve bad-input cases of issue 7.

Every case is a few files dropped among good songs (the synthetic demo corpus, two 6 s songs
per genre), and says what must become of each of its files:

* ``status`` and a ``reason`` pattern (quarantined) or ``notes`` pattern (processed under a
  recorded policy) in the catalog;
* ``clips``: how many clips each clip length gets from the file (``first`` mode), so that a
  file too short for a length is counted in that length's ``skipped_short``;
* ``check``: the asset check whose evaluation names the file, if any.

:data:`CASES` is the single source of the README table "bad input -> outcome".
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050
#: The audio root has a space and non-ASCII letters in its name (part of case 12).
AUDIO_DIRNAME = "Mÿ Müsic — corpus"
GOOD_SONGS_PER_GENRE = 2
GOOD_SECONDS = 6.0
ALL_LENGTHS = (1, 5, 15, 30)


def _tone(seconds: float, sr: int = SR, *, freq: float = 330.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    return (amp * env * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _clips(seconds: float) -> dict[int, int]:
    """Clips per length in ``first`` mode for a song of ``seconds`` (95 % coverage rule)."""
    return {c: int(seconds >= 0.95 * c) for c in ALL_LENGTHS}


NO_CLIPS = dict.fromkeys(ALL_LENGTHS, 0)


@dataclasses.dataclass(frozen=True)
class Expect:
    """What must become of one file."""

    rel: str  # path under genres_original/
    song_id: str
    status: str  # ok | quarantined
    reason: str | None = None  # regex on the catalog reason
    notes: str | None = None  # regex on the catalog notes
    clips: dict[int, int] = dataclasses.field(default_factory=lambda: dict(NO_CLIPS))
    duplicate_of: str | None = None
    check: str | None = None  # the asset check that reports it


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad-input case: how to write it, what must happen, and the README wording."""

    key: str
    title: str
    outcome: str
    write: Callable[[Path], None]
    files: tuple[Expect, ...]


# ---------------------------------------------------------------------------------------
# writers: each gets the genres folder
# ---------------------------------------------------------------------------------------
def _random_bytes(g: Path) -> None:
    (g / "blues" / "blues.00090.wav").write_bytes(np.random.default_rng(90).bytes(4096))


def _truncated_wav(g: Path) -> None:
    path = g / "classical" / "classical.00091.wav"
    sf.write(path, _tone(10.0), SR, subtype="PCM_16")  # the header says 10 s ...
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 2 * int(6.0 * SR)])  # ... the file holds 6 s


def _empty(g: Path) -> None:
    (g / "country" / "country.00092.wav").write_bytes(b"")


def _text_au(g: Path) -> None:
    (g / "disco" / "disco.00093.au").write_text("These are my liner notes, not audio.\n" * 40)


def _stereo_44k(g: Path) -> None:
    left, right = _tone(30.0, 44100, freq=220.0), _tone(30.0, 44100, freq=440.0)
    sf.write(g / "hiphop" / "hiphop.00094.wav", np.stack([left, right], axis=1), 44100, subtype="PCM_16")


def _mono_8k(g: Path) -> None:
    sf.write(g / "jazz" / "jazz.00095.wav", _tone(30.0, 8000), 8000, subtype="PCM_16")


def _four_seconds(g: Path) -> None:
    sf.write(g / "metal" / "metal.00096.wav", _tone(4.0), SR, subtype="PCM_16")


def _silence(g: Path) -> None:
    sf.write(g / "pop" / "pop.00097.wav", np.zeros(int(6 * SR), np.float32), SR, subtype="PCM_16")


def _clipping_and_non_finite(g: Path) -> None:
    square = np.sign(_tone(6.0)).astype(np.float32)  # every sample at full scale
    sf.write(g / "reggae" / "reggae.00098.wav", square, SR, subtype="PCM_16")
    y = _tone(6.0)
    y[1000:1500] = np.nan
    y[SR : SR + 10] = np.inf
    y[2 * SR] = -np.inf
    sf.write(g / "reggae" / "reggae.00099.wav", y, SR, subtype="FLOAT")


def _identical(g: Path) -> None:
    shutil.copyfile(g / "rock" / "rock.00000.wav", g / "rock" / "rock.00050.wav")


def _not_a_genre(g: Path) -> None:
    (g / "polka").mkdir()
    sf.write(g / "polka" / "polka.00000.wav", _tone(6.0), SR, subtype="PCM_16")


def _odd_names(g: Path) -> None:
    sf.write(g / "classical" / "Für Elise – take 2 (live).wav", _tone(6.0, freq=261.6), SR, subtype="PCM_16")


CASES: tuple[Case, ...] = (
    Case("random_bytes", "random bytes named `.wav`",
         "quarantined, reason `unreadable header: ... Format not recognised`; listed by the "
         "`catalog_quarantine` check (warns)",
         _random_bytes,
         (Expect("blues/blues.00090.wav", "blues.00090", "quarantined", reason=r"^unreadable header: .*not recognised",
                 check="catalog_quarantine"),)),
    Case("truncated_wav", "a WAV whose header promises more data than the file holds",
         "processed: the frames present are used; note `truncated: header promises N frames, M decoded`; "
         "clip lengths longer than what is left skip it (`skipped_short`)",
         _truncated_wav,
         (Expect("classical/classical.00091.wav", "classical.00091", "ok",
                 notes=r"truncated: header promises 220500 frames, 132300 decoded", clips=_clips(6.0)),)),
    Case("empty_file", "an empty file",
         "quarantined, reason `empty file (0 bytes)`; listed by `catalog_quarantine`",
         _empty,
         (Expect("country/country.00092.wav", "country.00092", "quarantined", reason=r"^empty file \(0 bytes\)$",
                 check="catalog_quarantine"),)),
    Case("text_au", "a text file named `.au`",
         "quarantined, reason `no audio header: libsndfile could only guess header-less raw data`; listed by "
         "`catalog_quarantine`",
         _text_au,
         (Expect("disco/disco.00093.au", "disco.00093", "quarantined", reason=r"^no audio header",
                 check="catalog_quarantine"),)),
    Case("stereo_44k", "stereo at 44.1 kHz",
         "processed: mixed to mono (mean of channels), resampled to 22050 Hz with soxr; note `2 channels mixed to mono`",
         _stereo_44k,
         (Expect("hiphop/hiphop.00094.wav", "hiphop.00094", "ok", notes=r"2 channels mixed to mono",
                 clips=_clips(30.0)),)),
    Case("mono_8k", "8 kHz mono",
         "processed: resampled to 22050 Hz with soxr; note `low sample rate 8000 Hz: upsampled, nothing above 4000 Hz`",
         _mono_8k,
         (Expect("jazz/jazz.00095.wav", "jazz.00095", "ok", notes=r"low sample rate 8000 Hz", clips=_clips(30.0)),)),
    Case("four_seconds", "a 4-second clip (shorter than 5, 15 and 30 s)",
         "processed: 1 s clips only; at 5, 15 and 30 s it is listed in the build's `skipped_short` "
         "(registry) and counted in the partition's `too_short_for_this_length`",
         _four_seconds,
         (Expect("metal/metal.00096.wav", "metal.00096", "ok", clips=_clips(4.0)),)),
    Case("silence", "pure silence",
         "processed: note `digital silence`; log-mel is finite, every value at the -100 dB floor "
         "(`features_sane` passes)",
         _silence,
         (Expect("pop/pop.00097.wav", "pop.00097", "ok", notes=r"digital silence", clips=_clips(6.0)),)),
    Case("clipping_non_finite", "full-scale clipping; NaN and ±inf samples in a float WAV",
         "processed: notes `X% of samples at full scale (clipping)` (above 1 %) and `N non-finite samples set "
         "to 0`; the mels are finite (`features_sane` passes)",
         _clipping_and_non_finite,
         (Expect("reggae/reggae.00098.wav", "reggae.00098", "ok", notes=r"100\.0% of samples at full scale \(clipping\)",
                 clips=_clips(6.0)),
          Expect("reggae/reggae.00099.wav", "reggae.00099", "ok", notes=r"^511 non-finite samples set to 0$",
                 clips=_clips(6.0)))),
    Case("identical_files", "two files with identical content under different names",
         "both kept; the later one gets `duplicate_of` (the first song id); both land in the same part of "
         "every split scheme, so nothing leaks; the mel is computed once (cache by sha256); "
         "`catalog_duplicates` warns",
         _identical,
         (Expect("rock/rock.00050.wav", "rock.00050", "ok", clips=_clips(GOOD_SECONDS), duplicate_of="rock.00000",
                 check="catalog_duplicates"),)),
    Case("not_a_genre", "a folder whose name is not one of the ten genres",
         "quarantined, reason `folder 'polka' is not a GTZAN genre`; listed by `catalog_quarantine`",
         _not_a_genre,
         (Expect("polka/polka.00000.wav", "polka.00000", "quarantined", reason=r"^folder 'polka' is not a GTZAN genre$",
                 check="catalog_quarantine"),)),
    Case("odd_names", "file and folder names with spaces and non-ASCII characters",
         "processed: song id `<genre>/<file name>`, extension included, with no file number (the seed split sorts it last in its "
         "genre); catalog paths, Parquet and HDF5 clip ids keep the UTF-8 names; the audio and store folders "
         "may have such names too",
         _odd_names,
         (Expect("classical/Für Elise – take 2 (live).wav", "classical/Für Elise – take 2 (live).wav", "ok",
                 clips=_clips(6.0)),)),
)


def write_corpus(parent: Path) -> Path:
    """Write the good songs and every case under ``parent / AUDIO_DIRNAME``; return that folder."""
    from feature_store.demo import write_demo_corpus

    root = parent / AUDIO_DIRNAME
    write_demo_corpus(root, songs_per_genre=GOOD_SONGS_PER_GENRE, duration=GOOD_SECONDS)
    genres = root / "genres_original"
    for case in CASES:
        case.write(genres)
    return root


def good_song_ids() -> list[str]:
    from feature_store.datasets.gtzan import GENRES

    return [f"{g}.{i:05d}" for g in GENRES for i in range(GOOD_SONGS_PER_GENRE)]


def expectations() -> list[tuple[str, Expect]]:
    """Every (case key, file expectation), for parametrised tests."""
    return [(c.key, e) for c in CASES for e in c.files]


def readme_table() -> str:
    """The README table: each bad-input case and its outcome."""
    rows = ["| bad input | outcome |", "|---|---|"]
    rows += [f"| {c.title} | {c.outcome} |" for c in CASES]
    return "\n".join(rows)
