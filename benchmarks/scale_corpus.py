"""The synthetic corpus of ``bench_shard_scale.py``: distinct songs of the demo corpus's
generator, rendered once per base song and copied with one sample's lowest bit flipped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

SR = 22050


def _render(task: tuple[str, int, float, str]) -> None:
    import soundfile as sf

    from feature_store.demo import song_seed, synthesize_song

    genre, i, duration, target = task
    y = synthesize_song(genre, seed=song_seed(0, genre, i), duration=duration, sr=SR)
    sf.write(target + ".part", np.round(y * 32767).astype(np.int16), SR, subtype="PCM_16", format="WAV")
    os.replace(target + ".part", target)


def _copy(task: tuple[str, int, str]) -> None:
    import soundfile as sf

    src, k, target = task
    data, sr = sf.read(src, dtype="int16")
    data[k] = np.int16(int(data[k]) ^ 1)
    sf.write(target + ".part", data, sr, subtype="PCM_16", format="WAV")
    os.replace(target + ".part", target)


def make_corpus(dst: Path, *, size: int, base: int, duration: float, workers: int) -> dict:
    """``size`` distinct songs (10 genres x size/10) under ``dst/genres_original``; existing files kept."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from feature_store.demo import GENRES

    per_genre, t0 = size // len(GENRES), time.perf_counter()
    renders, copies = [], []
    for g in GENRES:
        out = dst / "genres_original" / g
        out.mkdir(parents=True, exist_ok=True)
        for i in range(per_genre):
            target = out / f"{g}.{i:05d}.wav"
            if target.exists():
                continue
            if i < base:
                renders.append((g, i, duration, str(target)))
            else:
                copies.append((str(out / f"{g}.{i % base:05d}.wav"), i // base, str(target)))
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_render, renders, chunksize=4))
        list(pool.map(_copy, copies, chunksize=64))
    return {"rendered": len(renders), "copied": len(copies), "seconds": round(time.perf_counter() - t0, 1)}
