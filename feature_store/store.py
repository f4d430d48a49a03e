"""The feature store: chunked HDF5 + Parquet per clip length, built once, queried often.

Layout under a store root::

    catalog.parquet                     the validated audio catalog
    splits.parquet                      one column per split scheme
    cache/mel-<spectral hash>/<sha256>.npy   full-length mel of each song (float32)
    features/mel-<params hash>/
        registry.json                   params, hash, code version, counts, times
        clip-05s/
            current -> gen-<id>         symlink, swapped atomically
            gen-<id>/mel.h5             dataset ``mel`` (clips, n_mels, frames)
            gen-<id>/index.parquet      one row per clip: ids, genre, splits, segment, row
            gen-<id>/summary.parquet    per-band mean and std of each clip

Each build of a clip length writes a new generation folder and then swaps ``current``, so
a reader that resolves ``current`` once sees one consistent generation, never a mix of
old and new rows, and a build killed at any moment leaves the previous store intact.
Builds take the cache lock and then a lock file per clip length, always in that order, so
two concurrent builds of the same store queue up instead of corrupting each other.

A build is one pass: worker processes (:mod:`feature_store.worker`) decode each missing
song and put its full-length mel in the cache, while this process writes the rows of every
clip length being rebuilt as each song's mel arrives (cached songs first), as compressed
chunks, into temporary HDF5 files that a background thread keeps flushing. When the workers
are done, each clip length is published as a new generation; if a song failed on the way,
its clip lengths are written again from the cache without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import json
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from filelock import FileLock, Timeout

from feature_store import atomic
from feature_store import h5 as h5lib
from feature_store.audio import AUDIO_POLICY
from feature_store.catalog import resolve_in_root
from feature_store.errors import ParameterError, StoreError, StoreLockedError
from feature_store.features import clip_starts
from feature_store.params import (
    CLIP_SECONDS,
    FEATURE_CODE_VERSION,
    GENRES,
    FeatureParams,
    validate_clip_seconds,
    validate_genre,
)
from feature_store.splits import EXCLUDED, SCHEMES, validate_scheme
from feature_store.worker import (
    CHANGED,
    Job,
    compute_song,
    compute_songs,
    encode_clips,
    single_threaded_worker,
    warm_up,
)

CATALOG_FILE = "catalog.parquet"
SPLITS_FILE = "splits.parquet"
REGISTRY_FILE = "registry.json"
#: Seconds between background flushes of the HDF5 files a build is writing.
FLUSH_SECONDS = 1.0
#: From this many worker processes on, the workers compress the clips they compute (the
#: main process copies the chunks in); with fewer, the main process has the CPU to spare
#: and compressing there saves the round trip of the chunks through a file.
WORKERS_TO_ENCODE = 4
#: Songs a worker computes per task when a build has many.
MAX_SONGS_PER_TASK = 4
#: Generations kept besides ``current``, for readers that resolved the previous one.
KEEP_OLD_GENERATIONS = 1
#: Seconds to wait for another build of the same store before giving up.
DEFAULT_LOCK_TIMEOUT = 3600.0


def clip_dirname(clip_seconds: int) -> str:
    """Folder name of a clip length: ``clip-05s``."""
    return f"clip-{validate_clip_seconds(clip_seconds):02d}s"


class Tensors(NamedTuple):
    """Result of :meth:`FeatureStore.tensors`.

    Attributes
    ----------
    x : np.ndarray [shape=(clips, n_mels, frames)]
    y : np.ndarray [shape=(clips,), dtype=int64]
        Genre labels, index into :data:`feature_store.params.GENRES`.
    index : pl.DataFrame
        The index rows of ``x``, in the same order.
    """

    x: np.ndarray
    y: np.ndarray
    index: pl.DataFrame


@dataclasses.dataclass
class BuildReport:
    """What one :meth:`FeatureStore.build` did.

    Attributes
    ----------
    computed : list of str
        Song ids whose mel was computed in this build (empty on an unchanged re-run).
    cached : int
        Songs whose mel came from the cache.
    failed : pl.DataFrame
        Songs that failed at the feature stage, with ``song_id`` and ``reason``.
    clip_lengths : dict
        Per clip length: ``status`` (``built``, ``reindexed`` or ``unchanged``), ``clips``,
        ``songs``, ``skipped_short`` (songs too short for it), ``path`` and ``bytes``.
    seconds : float
    """

    computed: list[str]
    cached: int
    failed: pl.DataFrame
    clip_lengths: dict[int, dict[str, Any]]
    seconds: float


# ---------------------------------------------------------------------------------------
# writing a build: HDF5 writers fed as songs arrive, and their background flusher
# ---------------------------------------------------------------------------------------
class _Flusher:
    """While a build streams rows, flush the writers' files to disk in a background thread.

    Publishing a generation fsyncs its files; the data of a large store would otherwise all
    reach the disk then, with every CPU idle. Flushing every :data:`FLUSH_SECONDS` while
    the workers compute moves that wait into time the build spends anyway. The thread only
    calls ``fdatasync`` (the kernel orders it against concurrent writes); it is stopped
    before any file is closed.
    """

    def __init__(self, writers: dict[int, _ClipWriter]) -> None:
        import threading

        self.writers = writers
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gtzan-flush", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(FLUSH_SECONDS):
            for w in list(self.writers.values()):
                with contextlib.suppress(Exception):
                    os.fdatasync(w.fd)

    def __enter__(self) -> _Flusher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class _ClipWriter:
    """Writes the HDF5 rows of one clip length as songs' full-length mels arrive, in any order.

    The file is created at a temporary path; :meth:`finish` checks that every row was
    written and moves it into a generation folder, :meth:`abort` deletes it.
    """

    def __init__(self, path: Path, target: pl.DataFrame, clip_seconds: int, params: FeatureParams) -> None:
        h5py = h5lib.h5py()
        self.path = path
        self.target = target
        self.frames = params.clip_frames(clip_seconds)
        self.dtype = np.dtype(params.dtype)
        n = target.height
        self.rows: dict[str, list[tuple[int, int]]] = {}
        for sha, row, start in target.select("sha256", "hdf5_row", "start_frame").iter_rows():
            self.rows.setdefault(sha, []).append((row, start))
        self.written = np.zeros(n, dtype=bool)
        self.summaries = np.zeros((n, 2 * params.n_mels), dtype=np.float32)
        # no chunk cache: each chunk is written once and never read back by the writer
        self.file = h5py.File(path, "w", rdcc_nbytes=0)
        self.fd: int = self.file.id.get_vfd_handle()
        self.ds = self.file.create_dataset(
            "mel",
            shape=(n, params.n_mels, self.frames),
            dtype=self.dtype,
            chunks=(1, params.n_mels, self.frames) if n else None,
            **(h5lib.compression() if n else {}),
        )
        self.file.create_dataset("clip_id", data=np.array(target["clip_id"].to_list(), dtype=object),
                                 dtype=h5py.string_dtype())
        self.file.attrs["params"] = json.dumps(params.to_dict(), sort_keys=True)
        self.file.attrs["params_hash"] = params.hash()
        self.file.attrs["clip_seconds"] = clip_seconds
        self.file.attrs["layout"] = "(clips, n_mels, frames)"
        self.file.attrs["compression"] = h5lib.COMPRESSION_NAME
        self.file.attrs["index_sha256"] = ids_digest(target["clip_id"].to_list())

    def windows(self, sha256: str) -> list[tuple[int, int]]:
        """The ``(start, frames)`` windows this writer takes from the song's mel."""
        return [(start, self.frames) for _, start in self.rows.get(sha256, ())]

    def add(self, sha256: str, mel: np.ndarray) -> int:
        """Encode and write the clips of the song with this content hash; returns how many."""
        payload, chunks, summaries = encode_clips(mel, windows=self.windows(sha256), dtype=self.dtype.name)
        return self.add_encoded(sha256, memoryview(payload), chunks, summaries)

    def add_encoded(self, sha256: str, payload: memoryview, chunks: dict, summaries: dict) -> int:
        """Write the song's clips from chunks that :func:`~feature_store.worker.encode_clips`
        made (in a worker): each goes into the file as it is. Returns how many."""
        rows = self.rows.get(sha256, ())
        for row, start in rows:
            offset, length = chunks[(start, self.frames)]
            self.ds.id.write_direct_chunk((row, 0, 0), payload[offset : offset + length])
            self.summaries[row] = summaries[(start, self.frames)]
            self.written[row] = True
        return len(rows)

    def finish(self, dest: Path) -> pl.DataFrame:
        """Close the file, move it to ``dest`` and return the summary table."""
        if not self.written.all():
            missing = self.target.filter(pl.Series(~self.written))["clip_id"].head(3).to_list()
            raise StoreError(f"{int((~self.written).sum())} clips were never written, e.g. {missing}")
        self.file.close()
        os.replace(self.path, dest)
        t, p = self.target, self.summaries
        n_mels = p.shape[1] // 2
        cols: dict[str, Any] = {"clip_id": t["clip_id"], "song_id": t["song_id"], "genre": t["genre"]}
        for b in range(n_mels):
            cols[f"mean_{b:03d}"] = p[:, b]
        for b in range(n_mels):
            cols[f"std_{b:03d}"] = p[:, n_mels + b]
        return pl.DataFrame(cols)

    def abort(self) -> None:
        """Close and delete the temporary file (nothing when :meth:`finish` moved it)."""
        with contextlib.suppress(Exception):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class GenerationalStore:
    """What every store of clip views shares: per-clip-length generations, locks, registry.

    Subclasses set ``root``, ``params`` and a ``store_dir`` property, the file a generation
    keeps its arrays in (``data_file``), what they are called in messages (:meth:`_what`),
    and how to build them (``build_hint``).
    """

    root: Path
    params: FeatureParams
    data_file: str = "mel.h5"
    build_hint: str = "`gtzan features build`"

    @property
    def store_dir(self) -> Path:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _what(self) -> str:
        return "feature store"

    @property
    def registry_path(self) -> Path:
        return self.store_dir / REGISTRY_FILE

    def clip_dir(self, clip_seconds: int) -> Path:
        return self.store_dir / clip_dirname(clip_seconds)

    def _lock(self, name: str, timeout: float) -> FileLock:
        locks = self.store_dir / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / f"{name}.lock"), timeout=timeout)

    def _read_registry(self) -> dict[str, Any] | None:
        if not self.registry_path.exists():
            return None
        return json.loads(self.registry_path.read_text())

    def describe(self) -> dict[str, Any]:
        """The registry: params, hashes, code version, counts and creation times.

        Raises
        ------
        StoreError
            If no such store was built under this root.
        """
        reg = self._read_registry()
        if reg is None:
            raise StoreError(f"no {self._what()} under {self.root}; build it first ({self.build_hint})")
        return reg

    def available_clip_seconds(self) -> list[int]:
        """Clip lengths that have a built store."""
        return [c for c in CLIP_SECONDS if atomic.resolve_current(self.clip_dir(c)) is not None]

    def generation(self, clip_seconds: int) -> Path:
        """The folder of the current generation of a clip length.

        Raises
        ------
        StoreError
            If that clip length has not been built.
        """
        c = validate_clip_seconds(clip_seconds)
        current = atomic.resolve_current(self.clip_dir(c))
        if current is None:
            built = self.available_clip_seconds()
            raise StoreError(
                f"no {c} s {self._what()} under {self.store_dir}; built clip lengths: {built or 'none'}. "
                f"Build it with {self.build_hint}"
            )
        return current

    def _write_registry(
        self,
        report: dict[int, dict[str, Any]],
        *,
        first: dict[str, Any],
        every: dict[str, Any],
        catalog: pl.DataFrame,
        failed: pl.DataFrame,
        lock_timeout: float,
    ) -> None:
        """Record a build in ``registry.json`` under the registry lock, atomically.

        ``first`` is written when the registry is created, ``every`` on each build; the
        catalog counts and per-clip-length entries are refreshed, and a clip length left
        ``unchanged`` keeps its creation time.
        """
        with self._held("registry", lock_timeout, f"another build is writing {self.registry_path}"):
            reg = self._read_registry() or {**first, "created_at": _now(), "clip_lengths": {}}
            reg.update(every)
            reg["audio_policy"] = AUDIO_POLICY
            reg["package_version"] = _package_version()
            reg["updated_at"] = _now()
            reg["catalog"] = {
                "files": catalog.height,
                "ok": int((catalog["status"] == "ok").sum()),
                "quarantined": int((catalog["status"] == "quarantined").sum()),
                "feature_failures": failed.to_dicts(),
            }
            for c, info in report.items():
                entry = {k: v for k, v in info.items() if k != "status"}
                prev = reg["clip_lengths"].get(str(c), {})
                unchanged = info["status"] == "unchanged" and prev
                entry["created_at"] = prev.get("created_at", _now()) if unchanged else _now()
                reg["clip_lengths"][str(c)] = entry
            atomic.write_json_atomic(self.registry_path, reg)

    @contextlib.contextmanager
    def _held(self, name: str, timeout: float, busy: str) -> Any:
        """Hold the lock file ``name``; :class:`StoreLockedError` with ``busy`` after ``timeout``."""
        lock = self._lock(name, timeout)
        try:
            lock.acquire()
        except Timeout as exc:
            raise StoreLockedError(busy) from exc
        try:
            yield lock
        finally:
            lock.release()

    @contextlib.contextmanager
    def _clip_lock(self, clip_seconds: int, timeout: float) -> Any:
        """Hold the build lock of one clip length; :class:`StoreLockedError` after ``timeout``."""
        cdir = self.clip_dir(clip_seconds)
        cdir.mkdir(parents=True, exist_ok=True)
        name = clip_dirname(clip_seconds)
        busy = (f"another build is writing {cdir}; it holds {self.store_dir / '.locks' / (name + '.lock')}. "
                "Try again when it ends")
        with self._held(name, timeout, busy):
            atomic.remove_stale_temps(cdir)
            yield cdir

    @contextlib.contextmanager
    def _cache_lock(self, cache_dir: Path, timeout: float) -> Any:
        """Hold the lock of a per-song cache; stale temporaries of killed writers are removed."""
        cache_dir.mkdir(parents=True, exist_ok=True)
        with self._held("cache", timeout, f"another build is filling {cache_dir}; try again later"):
            atomic.remove_stale_temps(cache_dir)
            yield

    @staticmethod
    def _status_against(current: Path | None, target: pl.DataFrame) -> str:
        """``unchanged`` (same rows and columns), ``reindexed`` (same clips and content,
        other index values: the arrays can be linked) or ``built`` (arrays rewritten)."""
        if current is None:
            return "built"
        old = pl.read_parquet(current / "index.parquet")
        if not old.select("clip_id", "sha256").equals(target.select("clip_id", "sha256")):
            return "built"
        return "unchanged" if old.columns == target.columns and old.equals(target) else "reindexed"

    def _read_generation(
        self, clip_seconds: int, read: Any, *, genre: Any, split: Any, scheme: str, song_ids: Any
    ) -> tuple[pl.DataFrame, Any]:
        """Query the index and ``read(h5, rows)`` the arrays, both from one generation.

        Resolves ``current`` once. A generation never changes once published, so its index
        and open HDF5 file are kept (one generation per clip length) until ``current``
        moves on; if a generation is collected before it is opened (a rebuild finished
        meanwhile), the new one is tried. The HDF5 ``clip_id`` rows must match the index
        (checked once, when the generation is opened), else :class:`StoreError` (a torn
        store).
        """
        for attempt in range(5):
            gen = self.generation(clip_seconds)
            try:
                source, h5 = self._open_generation(gen)
                preds = _predicates(gen, genre=genre, split=split, scheme=scheme, song_ids=song_ids, source=source)
                index = source.filter(*preds) if preds else source  # source is in row order
                rows = index["hdf5_row"].to_numpy()
                data = read(h5, rows)
                break
            except (FileNotFoundError, OSError):
                # the generation was collected between resolving and opening it: retry
                self._close_generation(gen)
                if attempt == 4:
                    raise
                time.sleep(0.05)
        return index, data

    def _open_generation(self, gen: Path) -> tuple[pl.DataFrame, Any]:
        h5py = h5lib.h5py()

        opened = self.__dict__.setdefault("_opened", {})
        key = gen.parent.name
        hit = opened.get(key)
        if hit is not None and hit[0] == gen:
            return hit[1], hit[2]
        self._close_generation(hit[0] if hit else None)
        h5 = h5py.File(gen / self.data_file, "r")
        try:
            source = pl.read_parquet(gen / "index.parquet")
            if not np.array_equal(source["hdf5_row"].to_numpy(), np.arange(source.height)):
                source = source.sort("hdf5_row")  # the writer stores rows in order; older stores too
            ids = source["clip_id"].to_list()
            digest = h5.attrs.get("index_sha256")
            # the writer records a digest of its clip ids; older files are compared row by row
            same = digest == ids_digest(ids) if digest is not None else list(h5["clip_id"].asstr()[:]) == ids
            if not same or not np.array_equal(source["hdf5_row"].to_numpy(), np.arange(source.height)):
                raise StoreError(f"torn store at {gen}: HDF5 rows do not match the index")
        except BaseException:
            h5.close()
            raise
        opened[key] = (gen, source, h5)
        return source, h5

    def _close_generation(self, gen: Path | None) -> None:
        opened = self.__dict__.get("_opened", {})
        for key, (g, _, h5) in list(opened.items()):
            if gen is None or g == gen:
                with contextlib.suppress(Exception):
                    h5.close()
                del opened[key]

    def close(self) -> None:
        """Close the HDF5 files that queries keep open (also done when the store is collected)."""
        self._close_generation(None)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class FeatureStore(GenerationalStore):
    """Read and build the mel feature store under ``root`` for one set of parameters.

    Parameters
    ----------
    root : path
        Store root (holds ``catalog.parquet``, ``splits.parquet``, ``features/``).
    params : FeatureParams, optional
        Feature parameters; their hash selects the store folder.

    Examples
    --------
    >>> store = FeatureStore("data/store")                          # doctest: +SKIP
    >>> store.clips(clip_seconds=5, genre="jazz", split="test").collect()  # doctest: +SKIP
    >>> x, y, index = store.tensors(clip_seconds=5, split="train")  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str], *, params: FeatureParams | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.params = params if params is not None else FeatureParams()
        if not isinstance(self.params, FeatureParams):
            raise ParameterError(f"params must be a FeatureParams, got {type(self.params).__name__}")

    # -- paths ----------------------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def splits_path(self) -> Path:
        return self.root / SPLITS_FILE

    @property
    def store_dir(self) -> Path:
        return self.root / "features" / f"mel-{self.params.hash()}"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache" / f"mel-{self.params.spectral_hash()}"

    def _what(self) -> str:
        return f"feature store for params {self.params.hash()}"

    # -- catalog and splits ---------------------------------------------------------------
    def catalog(self) -> pl.DataFrame:
        """The catalog table; raises :class:`StoreError` if ingest has not run."""
        if not self.catalog_path.exists():
            raise StoreError(f"no catalog at {self.catalog_path}; run ingest first (`gtzan ingest`)")
        return pl.read_parquet(self.catalog_path)

    def splits(self) -> pl.DataFrame:
        """The split table; raises :class:`StoreError` if splits were not made."""
        if not self.splits_path.exists():
            raise StoreError(f"no split table at {self.splits_path}; run ingest first (`gtzan ingest`)")
        return pl.read_parquet(self.splits_path)

    # -- build ----------------------------------------------------------------------------
    def build(
        self,
        *,
        audio_root: str | os.PathLike[str],
        clip_seconds: Iterable[int] = CLIP_SECONDS,
        workers: int | None = None,
        progress: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> BuildReport:
        """Compute what is missing and (re)write the stores of ``clip_seconds``.

        Songs already in the cache are not decoded again, and a clip length whose stored
        rows already match the catalog and splits is left untouched.

        Parameters
        ----------
        audio_root : path
            The genres folder the catalog's relative paths point into.
        clip_seconds : iterable of int
            Clip lengths to write (default all of :data:`CLIP_SECONDS`).
        workers : int, optional
            Worker processes for decoding and mel (default: CPU count).
        progress : bool
            Show a progress bar on stderr.
        lock_timeout : float
            Seconds to wait for a concurrent build of the same store;
            :class:`StoreLockedError` after that (0 fails at once).

        Returns
        -------
        BuildReport

        Raises
        ------
        ParameterError
            If ``audio_root`` is missing or holds no audio files, or ``clip_seconds`` is bad.
        StoreError
            If ingest has not run.
        StoreLockedError
            If another build holds the lock for longer than ``lock_timeout``.
        """
        lengths = sorted({validate_clip_seconds(c) for c in clip_seconds})
        if not lengths:
            raise ParameterError(f"clip_seconds must name at least one of {list(CLIP_SECONDS)}")
        t0 = time.perf_counter()
        from feature_store.catalog import find_genre_root

        genre_root, _ = find_genre_root(audio_root)
        dirs = [d for d in genre_root.iterdir() if d.is_dir() and not d.name.startswith(".")]
        if not any(f.is_file() and not f.name.startswith(".") for d in dirs for f in d.iterdir()):
            raise ParameterError(f"audio folder {str(genre_root)!r} holds no audio files")
        catalog = self.catalog()
        splits = self.splits()
        ok = catalog.filter(pl.col("status") == "ok")
        writers: dict[int, _ClipWriter] = {}
        with contextlib.ExitStack() as stack:
            # the cache lock, then the clip-length locks in increasing order: every build
            # takes them in this order, so two builds never wait on each other in a cycle
            stack.enter_context(self._cache_lock(self.cache_dir, lock_timeout))
            cdirs = {c: stack.enter_context(self._clip_lock(c, lock_timeout)) for c in lengths}
            stack.callback(lambda: [w.abort() for w in writers.values()])
            todo, cached, failed = self._plan_cache(ok, genre_root)
            # Rows are written as each song's mel arrives (in one pass over the cache, for
            # every clip length at once), into the layout the build will publish if no song
            # fails now; the rare build where one does rewrites from the cache instead.
            provisional = ok.filter(~pl.col("song_id").is_in([f["song_id"] for f in failed]))

            def open_writers() -> None:  # called once the workers are starting
                for c in lengths:
                    target = self._target_index(c, provisional, splits)
                    if self._status_against(self._resolve_current(cdirs[c]), target) == "built":
                        writers[c] = _ClipWriter(atomic.tmp_name(cdirs[c] / "mel.h5"), target, c, self.params)

            with _Flusher(writers):
                computed = self._fill_cache(
                    todo, cached, failed, genre_root=genre_root, writers=writers, open_writers=open_writers,
                    workers=workers, progress=progress,
                )
            failed_df = pl.DataFrame(failed, schema={"song_id": pl.String, "reason": pl.String})
            usable = ok.filter(~pl.col("song_id").is_in(failed_df["song_id"].implode()))
            # one clip length after another: HDF5 calls must not run in two threads at once
            # (the background flushes have left little for the fsyncs of publishing)
            report = {
                c: self._write_clip_length(c, cdirs[c], usable, splits, writer=writers.get(c), progress=progress)
                for c in lengths
            }
        self._update_registry(report, catalog=catalog, failed=failed_df, lock_timeout=lock_timeout)
        return BuildReport(
            computed=computed,
            cached=usable.height - len(computed),
            failed=failed_df,
            clip_lengths=report,
            seconds=time.perf_counter() - t0,
        )

    def cache_file(self, sha256: str) -> Path:
        """Cache file of the full-length mel of the audio with this content hash."""
        if not (len(sha256) == 64 and all(ch in "0123456789abcdef" for ch in sha256)):
            raise ParameterError(f"not a sha256 hex digest: {sha256!r}")
        return self.cache_dir / f"{sha256}.npy"

    def _plan_cache(
        self, ok: pl.DataFrame, genre_root: Path
    ) -> tuple[list[Job], list[tuple[str, list[tuple[str, str]]]], list[dict[str, str]]]:
        """Plan the cache fill, one entry per content hash.

        Returns the jobs for what the cache lacks;
        the content hashes already cached, with their ``(song id, relative path)``; and the
        songs that fail before any work (a path outside the audio root).
        """
        groups: dict[str, list[tuple[str, str]]] = {}
        for sid, rel, sha in ok.select("song_id", "path", "sha256").iter_rows():
            groups.setdefault(sha, []).append((sid, rel))
        todo: list[Job] = []
        cached: list[tuple[str, list[tuple[str, str]]]] = []
        failed: list[dict[str, str]] = []
        for sha, members in groups.items():
            if self.cache_file(sha).exists():
                cached.append((sha, members))
            elif (job := self._job(sha, members, genre_root, failed)) is not None:
                todo.append(job)
        return todo, cached, failed

    def _job(
        self, sha: str, members: list[tuple[str, str]], genre_root: Path, failed: list[dict[str, str]]
    ) -> Job | None:
        sids: list[str] = []
        paths: list[str] = []
        for sid, rel in members:
            try:
                paths.append(str(resolve_in_root(genre_root, rel)))
            except ParameterError as exc:
                failed.append({"song_id": sid, "reason": str(exc)})
                continue
            sids.append(sid)
        return Job(sids, paths, sha, str(self.cache_file(sha))) if sids else None

    def _fill_cache(
        self,
        todo: list[Job],
        cached: list[tuple[str, list[tuple[str, str]]]],
        failed: list[dict[str, str]],
        *,
        genre_root: Path,
        writers: dict[int, _ClipWriter],
        open_writers: Any,
        workers: int | None,
        progress: bool,
    ) -> list[str]:
        """Compute the mels of ``todo`` into the cache in worker processes, and hand every
        song's clips to ``writers`` in this process: the cached songs while the workers
        compute, then each new one as it lands. ``open_writers()`` fills ``writers``; it runs
        while the workers start up. With :data:`WORKERS_TO_ENCODE` workers or more, the
        workers also compress the clips the writers want
        (:func:`~feature_store.worker.encode_clips`) and leave the chunks in a file beside
        the cache, which this process copies into the HDF5 files as they are; otherwise (and
        for cached songs) this process encodes them. Jobs go to the workers a few songs at a
        time.

        A cached mel that cannot be read (a power cut before it reached the disk) is
        computed again here. Songs that fail are appended to ``failed``; returns the song
        ids computed.
        """
        computed: list[str] = []
        bar = _progress(len(todo), "mel", enabled=progress)
        params_dict = self.params.to_dict()
        n_workers = min(workers or os.cpu_count() or 1, len(todo))

        def windows(sha: str) -> list[tuple[int, int]]:
            return sorted({win for w in writers.values() for win in w.windows(sha)})

        def with_chunks(job: Job) -> Job:
            """The job, plus the windows the writers want and a file for their chunks."""
            if not writers or n_workers < WORKERS_TO_ENCODE:
                return job
            chunk_file = str(atomic.tmp_name(self.cache_dir / f"{job.sha256}.chunks"))
            return job._replace(windows=windows(job.sha256), chunk_file=chunk_file)

        def feed_mel(sha: str, mel: np.ndarray) -> None:
            payload, chunks, summaries = encode_clips(mel, windows=windows(sha), dtype=self.params.dtype)
            feed_chunks(sha, memoryview(payload), chunks, summaries)

        def feed_chunks(sha: str, payload: memoryview, chunks: dict, summaries: dict) -> None:
            for w in writers.values():
                w.add_encoded(sha, payload, chunks, summaries)

        def feed_cached() -> None:
            for sha, members in cached if writers else ():
                try:
                    mel = self._load_cached(sha)
                except StoreError:
                    self.cache_file(sha).unlink(missing_ok=True)
                    job = self._job(sha, members, genre_root, failed)
                    if job is None:
                        continue
                    res = compute_song(job, params_dict)
                    _collect_song(job, res, computed, failed)
                    if not res["ok"]:
                        continue
                    mel = self._load_cached(sha)
                feed_mel(sha, mel)

        def done(job: Job, res: dict) -> None:
            _collect_song(job, res, computed, failed)
            chunk_file = Path(job.chunk_file) if job.chunk_file else None
            try:
                if res["ok"] and writers:
                    if "chunks" in res:
                        feed_chunks(job.sha256, memoryview(chunk_file.read_bytes()), res["chunks"], res["summaries"])
                    else:
                        feed_mel(job.sha256, self._load_cached(job.sha256))
            finally:
                if chunk_file is not None:
                    chunk_file.unlink(missing_ok=True)
            bar.update()

        try:
            if n_workers <= 1 or len(todo) <= 2:
                open_writers()
                feed_cached()
                for job in map(with_chunks, todo):
                    done(job, compute_song(job, params_dict))
            else:
                import multiprocessing as mp

                with ProcessPoolExecutor(
                    n_workers, mp_context=mp.get_context("spawn"), initializer=single_threaded_worker
                ) as pool:
                    # start the workers, then decide what to write while they import
                    for _ in range(n_workers):
                        pool.submit(warm_up, params_dict)
                    open_writers()
                    jobs = [with_chunks(job) for job in todo]
                    # a few songs per task, but enough tasks that the workers finish together
                    size = max(1, min(MAX_SONGS_PER_TASK, len(jobs) // (16 * n_workers)))
                    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
                    futs = {pool.submit(compute_songs, chunk, params_dict): chunk for chunk in chunks}
                    try:
                        feed_cached()
                        for fut in as_completed(futs):
                            for job, res in zip(futs[fut], fut.result(), strict=True):
                                done(job, res)
                    except BaseException:
                        for fut in futs:
                            fut.cancel()
                        raise
        finally:
            bar.close()
        return computed

    def _load_cached(self, sha256: str) -> np.ndarray:
        path = self.cache_file(sha256)
        try:
            mel = _load_npy(path, (self.params.n_mels, self.params.song_frames))
        except (OSError, ValueError, EOFError) as exc:
            raise StoreError(f"the cached mel {path} cannot be read ({exc})") from exc
        want = (self.params.n_mels, self.params.song_frames)
        if mel.shape != want or mel.dtype != np.float32:
            raise StoreError(f"the cached mel {path} has shape {mel.shape} and dtype {mel.dtype}, not {want} float32")
        return mel

    def _target_index(self, clip_seconds: int, songs: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
        frames = self.params.clip_frames(clip_seconds)
        rows = []
        for sid, genre, sha, duration in songs.select("song_id", "genre", "sha256", "duration").iter_rows():
            for seg, start in clip_starts(params=self.params, clip_seconds=clip_seconds, duration=duration):
                rows.append((f"{sid}#{clip_seconds:02d}s#{seg:02d}", sid, genre, GENRES.index(genre), sha, seg,
                             start * self.params.hop_length / self.params.sr, start))
        index = pl.DataFrame(
            rows,
            schema={
                "clip_id": pl.String, "song_id": pl.String, "genre": pl.String, "label": pl.Int64,
                "sha256": pl.String, "segment": pl.Int64, "start_seconds": pl.Float64, "start_frame": pl.Int64,
            },
            orient="row",
        ).sort("genre", "song_id", "segment")
        scheme_cols = [s for s in SCHEMES if s in splits.columns]
        index = index.join(splits.select("song_id", *scheme_cols), on="song_id", how="left")
        index = index.with_columns([pl.col(s).fill_null(EXCLUDED) for s in scheme_cols])
        index = index.with_columns(
            pl.lit(clip_seconds, pl.Int64).alias("clip_seconds"),
            pl.lit(frames, pl.Int64).alias("frames"),
            pl.int_range(pl.len(), dtype=pl.Int64).alias("hdf5_row"),
        )
        return index

    def _write_clip_length(
        self,
        clip_seconds: int,
        cdir: Path,
        songs: pl.DataFrame,
        splits: pl.DataFrame,
        *,
        writer: _ClipWriter | None,
        progress: bool,
    ) -> dict[str, Any]:
        """Publish one clip length (its lock held by the caller).

        ``writer`` holds the rows streamed during the build; they are used when its layout
        is the final one, else the file is written again from the cache.
        """
        target = self._target_index(clip_seconds, songs, splits)
        skipped_short = songs.filter(~pl.col("song_id").is_in(target["song_id"].implode()))["song_id"].to_list()
        current = self._resolve_current(cdir)
        status = self._status_against(current, target)
        if status != "unchanged":
            with atomic.new_generation(cdir, keep_old=KEEP_OLD_GENERATIONS) as tmp:
                if status == "reindexed":
                    os.link(current / "mel.h5", tmp / "mel.h5")
                    os.link(current / "summary.parquet", tmp / "summary.parquet")
                else:
                    if writer is not None and writer.target.equals(target):
                        summary = writer.finish(tmp / "mel.h5")
                    else:
                        summary = self._write_hdf5(tmp / "mel.h5", target, clip_seconds, progress=progress)
                    summary.write_parquet(tmp / "summary.parquet", compression="zstd")
                target.write_parquet(tmp / "index.parquet", compression="zstd")
            current = self._resolve_current(cdir)
        return {
            "status": status,
            "clips": target.height,
            "songs": target["song_id"].n_unique(),
            "skipped_short": skipped_short,
            "frames": self.params.clip_frames(clip_seconds),
            "generation": current.name,
            "path": str(current / "mel.h5"),
            "index_path": str(current / "index.parquet"),
            "bytes": sum(f.stat().st_size for f in current.iterdir()),
        }

    def _write_hdf5(self, path: Path, index: pl.DataFrame, clip_seconds: int, *, progress: bool) -> pl.DataFrame:
        """Write one clip length's HDF5 file from the cache; returns its summary table."""
        writer = _ClipWriter(atomic.tmp_name(path), index, clip_seconds, self.params)
        try:
            bar = _progress(index.height, f"write {clip_seconds}s", enabled=progress)
            for sha in index["sha256"].unique(maintain_order=True).to_list():
                bar.update(writer.add(sha, self._load_cached(sha)))
            bar.close()
            return writer.finish(path)
        finally:
            writer.abort()

    @staticmethod
    def _resolve_current(cdir: Path) -> Path | None:
        return atomic.resolve_current(cdir)

    def _update_registry(
        self, report: dict[int, dict[str, Any]], *, catalog: pl.DataFrame, failed: pl.DataFrame, lock_timeout: float
    ) -> None:
        first = {
            "params": self.params.to_dict(),
            "params_hash": self.params.hash(),
            "spectral_hash": self.params.spectral_hash(),
            "feature_code_version": FEATURE_CODE_VERSION,
        }
        every = {"hdf5_compression": h5lib.COMPRESSION_NAME}
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
        """Lazy query over the clip index of one clip length.

        Parameters
        ----------
        clip_seconds : int
            One of :data:`CLIP_SECONDS`.
        genre : str or list of str, optional
            Keep these genres.
        split : str or list of str, optional
            Keep these parts of ``scheme`` (``train``/``test`` for ``seed``,
            ``train``/``valid``/``test`` for ``fault_filtered``, ``fold0``... for
            ``stratified``).
        scheme : str
            Split scheme that ``split`` refers to.
        song_ids : list of str, optional
            Keep these songs.

        Returns
        -------
        pl.LazyFrame
            Columns ``clip_id, song_id, genre, label, sha256, segment, start_seconds,
            start_frame, <schemes>, clip_seconds, frames, hdf5_row``.
        """
        gen = self.generation(clip_seconds)
        return self._query(gen, genre=genre, split=split, scheme=scheme, song_ids=song_ids)

    def _query(self, gen: Path, *, genre: Any, split: Any, scheme: str, song_ids: Any) -> pl.LazyFrame:
        return _query_index(gen, genre=genre, split=split, scheme=scheme, song_ids=song_ids)

    def tensors(
        self,
        *,
        clip_seconds: int,
        genre: str | Sequence[str] | None = None,
        split: str | Sequence[str] | None = None,
        scheme: str = "seed",
        song_ids: Sequence[str] | None = None,
        dtype: str = "float32",
    ) -> Tensors:
        """Mel arrays and labels of the clips that :meth:`clips` selects.

        Index and arrays come from the same generation, so a concurrent rebuild can
        never mix old and new rows.

        Returns
        -------
        Tensors
            ``x`` [shape=(clips, n_mels, frames)], ``y`` [shape=(clips,)] and the index.
        """
        index, x = self._read_generation(
            clip_seconds,
            lambda h5, rows: _read_rows(h5["mel"], rows).astype(dtype, copy=False),
            genre=genre, split=split, scheme=scheme, song_ids=song_ids,
        )
        return Tensors(x=x, y=index["label"].to_numpy().astype(np.int64), index=index)

    def summary(
        self,
        *,
        clip_seconds: int,
        genre: str | Sequence[str] | None = None,
        split: str | Sequence[str] | None = None,
        scheme: str = "seed",
        song_ids: Sequence[str] | None = None,
    ) -> pl.LazyFrame:
        """Per-band mean/std summary features joined with the clip index."""
        gen = self.generation(clip_seconds)
        idx = self._query(gen, genre=genre, split=split, scheme=scheme, song_ids=song_ids)
        summ = pl.scan_parquet(gen / "summary.parquet").drop("song_id", "genre")
        return idx.join(summ, on="clip_id", how="inner", maintain_order="left").sort("hdf5_row")


def _query_index(
    gen: Path, *, genre: Any, split: Any, scheme: str, song_ids: Any, source: pl.DataFrame | None = None
) -> pl.LazyFrame:
    """Filter the index of generation ``gen``; bad arguments name the valid values.

    ``source`` is that generation's index already in memory (the files of a generation never
    change once published, so readers may keep it); otherwise the Parquet file is scanned.
    """
    lf = source.lazy() if source is not None else pl.scan_parquet(gen / "index.parquet")
    preds = _predicates(gen, genre=genre, split=split, scheme=scheme, song_ids=song_ids, source=source)
    return lf.filter(*preds) if preds else lf


def _predicates(
    gen: Path, *, genre: Any, split: Any, scheme: str, song_ids: Any, source: pl.DataFrame | None = None
) -> list[pl.Expr]:
    """The filters of a query on the index, after checking every argument."""
    validate_scheme(scheme)
    preds: list[pl.Expr] = []
    if genre is not None:
        genres = [genre] if isinstance(genre, str) else list(genre)
        for g in genres:
            validate_genre(g)
        preds.append(pl.col("genre").is_in(genres))
    if split is not None:
        parts = [split] if isinstance(split, str) else list(split)
        valid = _parts(gen, scheme, source)
        for s in parts:
            if s not in valid:
                raise ParameterError(f"unknown split {s!r} for scheme {scheme!r}; valid splits are {valid}")
        preds.append(pl.col(scheme).is_in(parts))
    if song_ids is not None:
        if isinstance(song_ids, str):
            raise ParameterError("song_ids must be a list of song ids, not one string")
        preds.append(pl.col("song_id").is_in(list(song_ids)))
    return preds


def ids_digest(clip_ids: list[str]) -> str:
    """sha256 of the clip ids in row order: ties an HDF5 file to the index of its rows."""
    return hashlib.sha256("\n".join(clip_ids).encode()).hexdigest()


def _parts(gen: Path, scheme: str, source: pl.DataFrame | None = None) -> list[str]:
    if scheme == "seed":
        return ["train", "test", EXCLUDED]
    if scheme == "fault_filtered":
        return ["train", "valid", "test", EXCLUDED]
    lf = source.lazy() if source is not None else pl.scan_parquet(gen / "index.parquet")
    values = lf.select(pl.col(scheme).unique()).collect()[scheme]
    return sorted(set(values.to_list()) | {EXCLUDED})


def _read_rows(ds: Any, rows: np.ndarray) -> np.ndarray:
    """Read sorted rows of an HDF5 dataset, one slice per contiguous run."""
    out = np.empty((rows.size, *ds.shape[1:]), dtype=ds.dtype)
    if rows.size == 0:
        return out
    from h5py import h5s

    breaks = np.nonzero(np.diff(rows) != 1)[0] + 1
    fspace = ds.id.get_space()
    tail = tuple(ds.shape[1:])
    pos = 0
    # h5py's low-level read straight into the output: its slicing machinery costs more than
    # reading a few chunks
    for run in np.split(rows, breaks):
        fspace.select_hyperslab((int(run[0]),) + (0,) * len(tail), (run.size, *tail))
        ds.id.read(h5s.create_simple((run.size, *tail)), fspace, out[pos : pos + run.size])
        pos += run.size
    return out


@functools.lru_cache(maxsize=8)
def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _load_npy(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """``np.load(path, allow_pickle=False)``, without parsing the header when it is the
    float32 header of ``shape`` that the workers write (the cache's usual case)."""
    header = _npy_header(shape)
    with open(path, "rb") as fh:
        if fh.read(len(header)) == header:
            count = int(np.prod(shape))
            mel = np.fromfile(fh, dtype="<f4", count=count)
            if mel.size == count:
                return mel.reshape(shape)
    return np.load(path, allow_pickle=False)


def _collect_song(job: Job, res: dict, computed: list[str], failed: list[dict[str, str]]) -> None:
    """Record one :func:`~feature_store.worker.compute_song` result: every song of the job is computed or failed."""
    changed = set(res.get("changed", ()))
    for sid in changed:
        failed.append({"song_id": sid, "reason": CHANGED})
    rest = [sid for sid in job.song_ids if sid not in changed]
    if res["ok"]:
        computed.extend(rest)
    else:
        failed.extend({"song_id": sid, "reason": res["reason"]} for sid in rest)


def _collect(job: tuple, res: dict, computed: list[str], failed: list[dict[str, str]]) -> None:
    if res["ok"]:
        computed.append(job[0])
    else:
        failed.append({"song_id": job[0], "reason": res["reason"]})


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, *, enabled: bool) -> Any:
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="clip" if desc.startswith("write") else "song", leave=False)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _package_version() -> str:
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        return version("gtzan-pipeline")
    return "unknown"
