"""The embeddings view: musicnn clip embeddings in HDF5 + Parquet, one store per clip length.

Clips are the mel store's clips: the same ``FeatureParams`` (its ``mode``, ``sr`` and
``hop_length``) define them through :meth:`FeatureParams.segment_starts` and
:func:`feature_store.features.clip_starts`, and the index is built by the same code, so a
clip has the same ``clip_id``, ``segment`` and ``start_seconds`` in both views and they join.
The embedding of a clip is the mean, over the 3 s musicnn patches inside it, of each
layer (:data:`~feature_store.embeddings.musicnn.LAYERS`); a 1 s clip is repeat-padded to
one patch (see :func:`~feature_store.embeddings.musicnn.clip_patches`).

Layout under a store root (beside the mel store's folders)::

    cache/emb-<model>-<weights sha[:12]>-<hash>/<sha256>-05s.npz   per song and clip length
    features/emb-<model>-<hash>/
        registry.json                 model, weights sha256, params, counts, times
        .locks/                       one lock file per clip length, cache and registry
        clip-05s/
            current -> gen-<id>       symlink, swapped atomically
            gen-<id>/embeddings.h5    datasets max_pool (clips, 753), mean_pool (clips, 753),
                                      penultimate (clips, 200), tags (clips, 50), clip_id
            gen-<id>/index.parquet    the mel store's index columns, plus ``patches``

``<hash>`` (:meth:`EmbeddingStore.hash`) covers the model name, the clip geometry
(``sr``, ``hop_length``, ``mode``), musicnn's input constants and the embedding code
version; the weights' sha256 is recorded in the registry and in every HDF5 file, and it
names the cache, so new weights never mix with old rows. Publishing, locking and the
``unchanged``/``reindexed``/``built`` logic follow :mod:`feature_store.store`.

Builds run in parallel: TensorFlow runs the network in the calling process on every core,
and ``workers`` processes read, check, decode and log-mel the songs beside it. One network in
memory and one TensorFlow start-up measured faster on 2 cores than a network per worker
process, and decoding beside the network pays only when cores are left over, so the default
number of decode processes is a quarter of the cores (see BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from feature_store import atomic
from feature_store import h5 as h5lib
from feature_store.audio import decode
from feature_store.catalog import resolve_in_root
from feature_store.errors import AudioError, ParameterError, StoreError
from feature_store.features import clip_starts
from feature_store.params import CLIP_SECONDS, FeatureParams, _digest, validate_clip_seconds
from feature_store.store import (
    DEFAULT_LOCK_TIMEOUT,
    KEEP_OLD_GENERATIONS,
    FeatureStore,
    GenerationalStore,
    _collect,
    _progress,
    _read_rows,
)
from feature_store.embeddings import musicnn as mn

#: Bump when the numbers an embedding store holds would change.
EMBEDDING_CODE_VERSION = "1"
#: Layers that :meth:`EmbeddingStore.tensors` concatenates by default (753 + 200 + 50).
DEFAULT_LAYERS: tuple[str, ...] = ("max_pool", "penultimate", "tags")
H5_FILE = "embeddings.h5"


def default_workers() -> int:
    """Decode processes of a build by default: a quarter of the CPU cores, at least 1.

    The network takes every core through TensorFlow's own threads; decoding beside it pays
    only when cores are left over (on 2 cores a second decode process halved the 30 s
    throughput).
    """
    return max(1, (os.cpu_count() or 1) // 4)


def validate_layers(layers: str | Sequence[str]) -> tuple[str, ...]:
    """Return ``layers`` as a tuple, or raise :class:`ParameterError` naming the valid layers."""
    names = (layers,) if isinstance(layers, str) else tuple(layers)
    if not names:
        raise ParameterError(f"layers must name at least one of {list(mn.LAYERS)}")
    for name in names:
        if name not in mn.LAYERS:
            raise ParameterError(f"unknown embedding layer {name!r}; valid layers are {list(mn.LAYERS)}")
    if len(set(names)) != len(names):
        raise ParameterError(f"layers repeat a name: {list(names)}")
    return names


def musicnn_start(params: FeatureParams, start_frame: int) -> int:
    """The musicnn frame where a clip that starts at mel frame ``start_frame`` starts.

    The clip starts ``start_frame * hop_length / sr`` seconds into the song, which is frame
    ``round(seconds * 16000 / 256)`` of musicnn's log-mel.
    """
    return int(round(start_frame * params.hop_length / params.sr * mn.SR / mn.HOP_LENGTH))


def song_clip_embeddings(
    embedder: mn.MusicnnEmbedder, mel: np.ndarray, *, duration: float, params: FeatureParams, clip_seconds: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Embeddings of the clips that one song yields at ``clip_seconds``.

    Parameters
    ----------
    embedder : MusicnnEmbedder
    mel : np.ndarray [shape=(frames, 96)]
        :func:`~feature_store.embeddings.musicnn.log_mel` of the song at 16 kHz, padded to
        the nominal 30 s as :func:`feature_store.audio.decode` does.
    duration : float
        Seconds of real audio; :func:`feature_store.features.clip_starts` keeps the clips
        that are at least 95 % real audio, exactly as in the mel store.
    params : FeatureParams
        Clip definitions (``mode``, ``sr``, ``hop_length``).
    clip_seconds : int

    Returns
    -------
    segments : np.ndarray [shape=(clips,), dtype=int64]
    layers : dict of str to np.ndarray [shape=(clips, width)]
    """
    clips = clip_starts(params=params, clip_seconds=clip_seconds, duration=duration)
    starts = [musicnn_start(params, s) for _, s in clips]
    out = embedder.embed_clips(mel, starts=starts, frames=mn.clip_frames(clip_seconds))
    return np.asarray([k for k, _ in clips], np.int64), out


class EmbeddingTensors(NamedTuple):
    """Result of :meth:`EmbeddingStore.tensors`.

    Attributes
    ----------
    x : np.ndarray [shape=(clips, sum of the layers' widths), dtype=float32]
        The requested layers side by side, in the order asked for.
    y : np.ndarray [shape=(clips,), dtype=int64]
        Genre labels, index into :data:`feature_store.params.GENRES`.
    index : pl.DataFrame
        The index rows of ``x``, in the same order.
    layers : tuple of str
        The layers of ``x``, in column order.
    """

    x: np.ndarray
    y: np.ndarray
    index: pl.DataFrame
    layers: tuple[str, ...]


@dataclasses.dataclass
class EmbeddingBuildReport:
    """What one :meth:`EmbeddingStore.build` did.

    Attributes
    ----------
    computed : list of str
        Song ids embedded in this build (empty on an unchanged re-run).
    cached : int
        Songs whose embeddings all came from the cache.
    failed : pl.DataFrame
        Songs that failed (``song_id``, ``reason``); the rest are stored.
    clip_lengths : dict
        Per clip length: ``status`` (``built``, ``reindexed`` or ``unchanged``), ``clips``,
        ``songs``, ``skipped_short``, ``path``, ``bytes``, ``embed_ms_per_clip``.
    weights_sha256 : str
    seconds : float
    """

    computed: list[str]
    cached: int
    failed: pl.DataFrame
    clip_lengths: dict[int, dict[str, Any]]
    weights_sha256: str
    seconds: float


# ---------------------------------------------------------------------------------------
# one song -> cached clip embeddings for the clip lengths it misses
# ---------------------------------------------------------------------------------------
def _decode_song(path: str, sha256: str) -> dict:
    """Read, check, decode and log-mel one song (runs in a worker process). Never raises for bad audio."""
    try:
        t0 = time.perf_counter()
        data = Path(path).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            return {"ok": False, "reason": "file changed since it was cataloged; re-run ingest"}
        audio = decode(path, sr=mn.SR)
        mel = mn.log_mel(audio.y)
        return {"ok": True, "mel": mel, "duration": audio.duration, "seconds": time.perf_counter() - t0}
    except (AudioError, OSError, ParameterError) as exc:
        return {"ok": False, "reason": str(exc)}


def _embed_song(
    embedder: mn.MusicnnEmbedder, decoded: dict, todo: list[tuple[int, str]], params: FeatureParams
) -> dict:
    """Cache the clip embeddings of each clip length in ``todo`` from one decoded song."""
    if not decoded["ok"]:
        return decoded
    try:
        for c, cache_file in todo:
            t1 = time.perf_counter()
            segments, out = song_clip_embeddings(
                embedder, decoded["mel"], duration=decoded["duration"], params=params, clip_seconds=c
            )
            seconds = time.perf_counter() - t1
            with atomic.atomic_path(cache_file) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(
                        fh,
                        segments=segments,
                        decode_seconds=np.float64(decoded["seconds"]),
                        embed_seconds=np.float64(seconds),
                        **out,
                    )
        return {"ok": True}
    except (OSError, ParameterError) as exc:
        return {"ok": False, "reason": str(exc)}


class EmbeddingStore(GenerationalStore):
    """Build and query the musicnn embeddings view under ``root``.

    A sibling of :class:`~feature_store.store.FeatureStore` on the same root: it reads the
    same catalog and split tables, defines clips the same way (from ``params``) and answers
    the same queries, with embedding vectors in place of mel spectrograms.

    Parameters
    ----------
    root : path
        Store root (holds ``catalog.parquet``, ``splits.parquet``, ``features/``).
    model : {'MSD_musicnn', 'MTT_musicnn'}
        Which musicnn weights embed the clips.
    params : FeatureParams, optional
        Clip definitions: its ``mode``, ``sr`` and ``hop_length`` (the mel parameters
        proper do not matter here). Default ``FeatureParams()``: the first N seconds.

    Examples
    --------
    >>> store = EmbeddingStore("data/store", model="MSD_musicnn")            # doctest: +SKIP
    >>> store.build(audio_root="data/demo/genres_original", clip_seconds=[5])  # doctest: +SKIP
    >>> store.clips(clip_seconds=5, genre="jazz", split="test").collect()      # doctest: +SKIP
    >>> x, y, index, layers = store.tensors(clip_seconds=5, split="train")     # doctest: +SKIP
    """

    def __init__(
        self, root: str | os.PathLike[str], *, model: str = "MSD_musicnn", params: FeatureParams | None = None
    ) -> None:
        self.model = mn.validate_model(model)
        self._mel = FeatureStore(root, params=params)
        self.root = self._mel.root
        self.params = self._mel.params

    data_file = H5_FILE
    build_hint = "EmbeddingStore.build / build_embeddings"

    def _what(self) -> str:
        return f"{self.model} embedding store ({self.hash()}, mode {self.params.mode!r})"

    # -- identity and paths ---------------------------------------------------------------
    def hash(self) -> str:
        """Short hash of the model name, clip geometry, musicnn input and code version."""
        p = self.params
        return _digest(
            {
                "model": self.model,
                "sr": p.sr,
                "hop_length": p.hop_length,
                "mode": p.mode,
                "musicnn": [mn.SR, mn.N_FFT, mn.HOP_LENGTH, mn.N_MELS, mn.PATCH_FRAMES],
                "code": EMBEDDING_CODE_VERSION,
            }
        )

    @property
    def store_dir(self) -> Path:
        return self.root / "features" / f"emb-{self.model}-{self.hash()}"

    def cache_dir(self, weights_sha256: str) -> Path:
        """Cache folder of the per-song embeddings made with these weights."""
        return self.root / "cache" / f"emb-{self.model}-{weights_sha256[:12]}-{self.hash()}"

    def cache_file(self, weights_sha256: str, sha256: str, clip_seconds: int) -> Path:
        """Cache file of one song's clip embeddings at one clip length."""
        if not (len(sha256) == 64 and all(ch in "0123456789abcdef" for ch in sha256)):
            raise ParameterError(f"not a sha256 hex digest: {sha256!r}")
        return self.cache_dir(weights_sha256) / f"{sha256}-{validate_clip_seconds(clip_seconds):02d}s.npz"

    # -- build ----------------------------------------------------------------------------
    def build(
        self,
        *,
        audio_root: str | os.PathLike[str],
        clip_seconds: Iterable[int] = CLIP_SECONDS,
        workers: int | None = None,
        threads: int | None = None,
        progress: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> EmbeddingBuildReport:
        """Embed what is missing and (re)write the stores of ``clip_seconds``.

        Songs whose embeddings are cached (by content hash, weights and clip length) are
        not decoded again, and a clip length whose rows already match the catalog, the
        splits and the weights is left untouched.

        Parameters
        ----------
        audio_root : path
            The genres folder the catalog's relative paths point into.
        clip_seconds : iterable of int
            Clip lengths to write (default all of :data:`CLIP_SECONDS`).
        workers : int, optional
            Worker processes that read, decode and log-mel the songs while the network runs
            in this process on every core (one network in memory, one TensorFlow start-up).
            With 1, everything runs in this process. Default :func:`default_workers`: a
            quarter of the cores, so 1 on 2 cores, where decoding beside the network only
            slowed the network down (BENCHMARKS.md).
        threads : int, optional
            TensorFlow's threads in this process (default: TensorFlow's own choice; it can
            only be set before TensorFlow has run in this process).
        progress : bool
            Show a progress bar on stderr.
        lock_timeout : float
            Seconds to wait for a concurrent build of the same store;
            :class:`StoreLockedError` after that.

        Returns
        -------
        EmbeddingBuildReport

        Raises
        ------
        MusicnnWeightsError
            If the musicnn package is not installed (the message names the command).
        StoreError
            If ingest has not run.
        StoreLockedError
            If another build holds a lock for longer than ``lock_timeout``.
        """
        lengths = sorted({validate_clip_seconds(c) for c in clip_seconds})
        if not lengths:
            raise ParameterError(f"clip_seconds must name at least one of {list(CLIP_SECONDS)}")
        t0 = time.perf_counter()
        weights = mn.weights_sha256(self.model)
        from feature_store.catalog import find_genre_root

        genre_root, _ = find_genre_root(audio_root)
        catalog = self._mel.catalog()
        splits = self._mel.splits()
        ok = catalog.filter(pl.col("status") == "ok")
        computed, failed = self._fill_cache(
            ok, genre_root, lengths, weights, workers=workers, threads=threads, progress=progress,
            lock_timeout=lock_timeout,
        )
        failed_df = pl.DataFrame(failed, schema={"song_id": pl.String, "reason": pl.String})
        usable = ok.filter(~pl.col("song_id").is_in(failed_df["song_id"].implode()))
        report: dict[int, dict[str, Any]] = {}
        for c in lengths:
            report[c] = self._write_clip_length(c, usable, splits, weights, lock_timeout=lock_timeout, progress=progress)
        self._update_registry(report, weights=weights, catalog=catalog, failed=failed_df, lock_timeout=lock_timeout)
        return EmbeddingBuildReport(
            computed=computed,
            cached=usable.height - len(computed),
            failed=failed_df,
            clip_lengths=report,
            weights_sha256=weights,
            seconds=time.perf_counter() - t0,
        )

    def _fill_cache(
        self,
        ok: pl.DataFrame,
        genre_root: Path,
        lengths: list[int],
        weights: str,
        *,
        workers: int | None,
        threads: int | None,
        progress: bool,
        lock_timeout: float,
    ) -> tuple[list[str], list[dict[str, str]]]:
        with self._cache_lock(self.cache_dir(weights), lock_timeout):
            jobs: list[tuple[str, str, str, list[tuple[int, str]]]] = []
            failed: list[dict[str, str]] = []
            seen: set[str] = set()
            for sid, rel, sha in ok.select("song_id", "path", "sha256").iter_rows():
                if sha in seen:
                    continue
                seen.add(sha)
                todo = [(c, str(self.cache_file(weights, sha, c))) for c in lengths]
                todo = [(c, f) for c, f in todo if not Path(f).exists()]
                if not todo:
                    continue
                try:
                    path = resolve_in_root(genre_root, rel)
                except ParameterError as exc:
                    failed.append({"song_id": sid, "reason": str(exc)})
                    continue
                jobs.append((sid, str(path), sha, todo))
            computed: list[str] = []
            bar = _progress(len(jobs), f"musicnn {self.model}", enabled=progress)
            n_workers = min(workers if workers is not None else default_workers(), len(jobs))
            if jobs:
                mn.configure_threads(threads)
            if n_workers <= 1:
                embedder = mn.shared_embedder(self.model) if jobs else None
                for job in jobs:
                    res = _embed_song(embedder, _decode_song(job[1], job[2]), job[3], self.params)
                    _collect(job, res, computed, failed)
                    bar.update()
            else:
                import multiprocessing as mp

                # decoding in worker processes overlaps with the network in this process
                with ProcessPoolExecutor(n_workers, mp_context=mp.get_context("spawn")) as pool:
                    pending = iter(jobs)
                    window = 4 * n_workers  # bounds the decoded songs held in memory
                    futs = {pool.submit(_decode_song, j[1], j[2]): j for j in itertools.islice(pending, window)}
                    embedder = mn.shared_embedder(self.model)
                    while futs:
                        done, _ = wait(futs, return_when=FIRST_COMPLETED)
                        for fut in done:
                            job = futs.pop(fut)
                            _collect(job, _embed_song(embedder, fut.result(), job[3], self.params), computed, failed)
                            bar.update()
                            nxt = next(pending, None)
                            if nxt is not None:
                                futs[pool.submit(_decode_song, nxt[1], nxt[2])] = nxt
            bar.close()
            return computed, failed

    def _target_index(self, clip_seconds: int, songs: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
        index = self._mel._target_index(clip_seconds, songs, splits)
        return index.with_columns(pl.lit(mn.patch_count(mn.clip_frames(clip_seconds)), pl.Int64).alias("patches"))

    def _write_clip_length(
        self,
        clip_seconds: int,
        songs: pl.DataFrame,
        splits: pl.DataFrame,
        weights: str,
        *,
        lock_timeout: float,
        progress: bool,
    ) -> dict[str, Any]:
        with self._clip_lock(clip_seconds, lock_timeout) as cdir:
            target = self._target_index(clip_seconds, songs, splits)
            skipped_short = songs.filter(~pl.col("song_id").is_in(target["song_id"].implode()))["song_id"].to_list()
            current = atomic.resolve_current(cdir)
            same_weights = current is not None and _stored_weights(current) == weights
            status = self._status_against(current, target) if same_weights else "built"
            if status != "unchanged":
                with atomic.new_generation(cdir, keep_old=KEEP_OLD_GENERATIONS) as tmp:
                    if status == "reindexed":
                        os.link(current / H5_FILE, tmp / H5_FILE)
                    else:
                        self._write_hdf5(tmp / H5_FILE, target, clip_seconds, weights, progress=progress)
                    target.write_parquet(tmp / "index.parquet", compression="zstd")
                current = atomic.resolve_current(cdir)
            return {
                "status": status,
                "clips": target.height,
                "songs": target["song_id"].n_unique(),
                "skipped_short": skipped_short,
                "patches_per_clip": mn.patch_count(mn.clip_frames(clip_seconds)),
                "weights_sha256": weights,
                "embed_ms_per_clip": self._embed_cost(target, clip_seconds, weights),
                "generation": current.name,
                "path": str(current / H5_FILE),
                "index_path": str(current / "index.parquet"),
                "bytes": sum(f.stat().st_size for f in current.iterdir()),
            }

    def _embed_cost(self, index: pl.DataFrame, clip_seconds: int, weights: str) -> float | None:
        """Mean milliseconds to embed one clip (decode + log-mel + network), from the cache."""
        total, clips = 0.0, 0
        for sha in index["sha256"].unique().to_list():
            with np.load(self.cache_file(weights, sha, clip_seconds), allow_pickle=False) as z:
                total += float(z["decode_seconds"]) + float(z["embed_seconds"])
                clips += int(z["segments"].shape[0])
        return 1000.0 * total / clips if clips else None

    def _write_hdf5(self, path: Path, index: pl.DataFrame, clip_seconds: int, weights: str, *, progress: bool) -> None:
        h5py = h5lib.h5py()

        n = index.height
        bar = _progress(n, f"write {clip_seconds}s", enabled=progress)
        with h5py.File(path, "w") as h5:
            dsets = {
                name: h5.create_dataset(
                    name,
                    shape=(n, width),
                    dtype="float32",
                    chunks=(min(n, 256), width) if n else None,
                    **(h5lib.compression() if n else {}),
                )
                for name, width in mn.LAYERS.items()
            }
            h5.create_dataset("clip_id", data=np.array(index["clip_id"].to_list(), dtype=object),
                              dtype=h5py.string_dtype())
            h5.attrs["model"] = self.model
            h5.attrs["weights_sha256"] = weights
            h5.attrs["params"] = json.dumps(self.params.to_dict(), sort_keys=True)
            h5.attrs["embedding_hash"] = self.hash()
            h5.attrs["clip_seconds"] = clip_seconds
            h5.attrs["layout"] = "(clips, width) per layer"
            h5.attrs["tags"] = json.dumps(list(mn.tag_names(self.model)))
            bufs = {name: np.zeros((n, width), np.float32) for name, width in mn.LAYERS.items()}
            for sha, group in index.group_by("sha256", maintain_order=True):
                with np.load(self.cache_file(weights, sha[0], clip_seconds), allow_pickle=False) as z:
                    rows = group["hdf5_row"].to_numpy()
                    pos = {int(k): i for i, k in enumerate(z["segments"])}
                    missing = [int(k) for k in group["segment"] if int(k) not in pos]
                    if missing:
                        raise StoreError(f"cached embeddings of {sha[0]} lack segments {missing}; delete the cache file")
                    take = np.asarray([pos[int(k)] for k in group["segment"]], np.int64)
                    for name in mn.LAYERS:
                        bufs[name][rows] = z[name][take]
                bar.update(group.height)
            for name, ds in dsets.items():
                if n:
                    ds[...] = bufs[name]
        bar.close()

    def _update_registry(
        self,
        report: dict[int, dict[str, Any]],
        *,
        weights: str,
        catalog: pl.DataFrame,
        failed: pl.DataFrame,
        lock_timeout: float,
    ) -> None:
        first = {
            "view": "embeddings",
            "model": self.model,
            "embedding_hash": self.hash(),
            "params": self.params.to_dict(),
            "params_hash": self.params.hash(),
            "embedding_code_version": EMBEDDING_CODE_VERSION,
        }
        every = {
            "weights_sha256": weights,
            "weights_package": mn.MUSICNN_PACKAGE,
            "weights_folder": str(mn.weights_folder(self.model)),
            "layers": dict(mn.LAYERS),
            "input": {
                "sr": mn.SR, "n_fft": mn.N_FFT, "hop_length": mn.HOP_LENGTH, "n_mels": mn.N_MELS,
                "patch_frames": mn.PATCH_FRAMES, "log": "log10(10000 * S + 1)",
                "clip": "mean over non-overlapping 3 s patches; clips under 3 s repeat-padded",
            },
        }
        self._write_registry(report, first=first, every=every, catalog=catalog, failed=failed, lock_timeout=lock_timeout)

    # -- queries --------------------------------------------------------------------------
    def clips(
        self,
        *,
        clip_seconds: int,
        genre: str | Sequence[str] | None = None,
        split: str | Sequence[str] | None = None,
        scheme: str = "seed",
        song_ids: Sequence[str] | None = None,
    ) -> pl.LazyFrame:
        """Lazy query over the clip index of one clip length (as :meth:`FeatureStore.clips`).

        Returns
        -------
        pl.LazyFrame
            The mel store's index columns (``clip_id, song_id, genre, label, sha256,
            segment, start_seconds, start_frame, <schemes>, clip_seconds, frames,
            hdf5_row``) plus ``patches``, the 3 s patches averaged per clip.
        """
        gen = self.generation(clip_seconds)
        return self._mel._query(gen, genre=genre, split=split, scheme=scheme, song_ids=song_ids)

    def tensors(
        self,
        *,
        clip_seconds: int,
        layers: str | Sequence[str] = DEFAULT_LAYERS,
        genre: str | Sequence[str] | None = None,
        split: str | Sequence[str] | None = None,
        scheme: str = "seed",
        song_ids: Sequence[str] | None = None,
    ) -> EmbeddingTensors:
        """Embeddings and labels of the clips that :meth:`clips` selects.

        Parameters
        ----------
        layers : str or list of str
            Layers of :data:`~feature_store.embeddings.musicnn.LAYERS` to concatenate.

        Returns
        -------
        EmbeddingTensors
            ``x`` [shape=(clips, sum of widths)], ``y`` [shape=(clips,)], the index, the layers.
        """
        names = validate_layers(layers)
        index, parts = self._read_generation(
            clip_seconds,
            lambda h5, rows: [_read_rows(h5[name], rows) for name in names],
            genre=genre, split=split, scheme=scheme, song_ids=song_ids,
        )
        x = np.concatenate(parts, axis=1).astype(np.float32, copy=False)
        return EmbeddingTensors(x=x, y=index["label"].to_numpy().astype(np.int64), index=index, layers=names)


def _stored_weights(gen: Path) -> str | None:
    h5py = h5lib.h5py()

    try:
        with h5py.File(gen / H5_FILE, "r") as h5:
            return str(h5.attrs.get("weights_sha256", ""))
    except OSError:
        return None


def build_embeddings(
    *,
    store_root: str | os.PathLike[str],
    audio_root: str | os.PathLike[str],
    clip_seconds: Iterable[int] = CLIP_SECONDS,
    model: str = "MSD_musicnn",
    params: FeatureParams | None = None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> EmbeddingBuildReport:
    """Build the embeddings view of ``store_root`` (ingest must have run there).

    One call per Dagster partition (``clip_seconds=[c]``) or for all clip lengths at once;
    see :meth:`EmbeddingStore.build` for the parameters.
    """
    return EmbeddingStore(store_root, model=model, params=params).build(
        audio_root=audio_root, clip_seconds=clip_seconds, workers=workers, threads=threads, progress=progress,
        lock_timeout=lock_timeout,
    )


class FileEmbeddings(NamedTuple):
    """Result of :func:`embed_file`.

    Attributes
    ----------
    x : np.ndarray [shape=(clips, sum of widths), dtype=float32]
    index : pl.DataFrame
        ``segment``, ``start_seconds`` of each clip.
    layers : tuple of str
    seconds : float
        Wall time of decode + log-mel + network (the embedding cost of this file).
    """

    x: np.ndarray
    index: pl.DataFrame
    layers: tuple[str, ...]
    seconds: float


def embed_file(
    path: str | os.PathLike[str],
    *,
    clip_seconds: int,
    params: FeatureParams | None = None,
    model: str = "MSD_musicnn",
    layers: str | Sequence[str] = DEFAULT_LAYERS,
    embedder: mn.MusicnnEmbedder | None = None,
) -> FileEmbeddings:
    """Embed the clips of one audio file, as the store would (for ``gtzan predict``).

    Parameters
    ----------
    path : path
        Any file that :func:`feature_store.audio.decode` reads.
    clip_seconds : int
    params : FeatureParams, optional
        Clip definitions (``mode``); default ``FeatureParams()``.
    model : str
    layers : str or list of str
    embedder : MusicnnEmbedder, optional
        The network (default: :func:`~feature_store.embeddings.musicnn.shared_embedder`).

    Returns
    -------
    FileEmbeddings

    Raises
    ------
    AudioError
        If the file cannot be decoded.
    StoreError
        If the file is too short for one clip of ``clip_seconds``.
    """
    c = validate_clip_seconds(clip_seconds)
    names = validate_layers(layers)
    params = params or FeatureParams()
    embedder = embedder or mn.shared_embedder(model)
    t0 = time.perf_counter()
    audio = decode(path, sr=mn.SR)
    mel = mn.log_mel(audio.y)
    segments, out = song_clip_embeddings(embedder, mel, duration=audio.duration, params=params, clip_seconds=c)
    if segments.size == 0:
        raise StoreError(f"{Path(path).name} lasts {audio.duration:.1f} s, too short for one {c} s clip")
    x = np.concatenate([out[n] for n in names], axis=1)
    starts = params.segment_starts(c)
    index = pl.DataFrame(
        {
            "segment": segments.tolist(),
            "start_seconds": [starts[k] * params.hop_length / params.sr for k in segments.tolist()],
        },
        schema={"segment": pl.Int64, "start_seconds": pl.Float64},
    )
    return FileEmbeddings(x=x, index=index, layers=names, seconds=time.perf_counter() - t0)
