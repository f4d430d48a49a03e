"""Building a view's stores: plan, compute in workers, stream rows, publish generations.

A build is one pass. Worker processes (:mod:`feature_store.engine.worker`) decode each song
the cache lacks and prepare its features; this process writes the rows of every clip length
being rebuilt as each song's features arrive (cached songs first), into temporary HDF5 files
that a background thread keeps flushing. When the workers are done, each clip length is
published as a new generation; if a song failed on the way, its clip lengths are written
again from the cache without it. ``clip``-scope views (a network) compute their rows here,
in this process, as the workers' prepared songs arrive, and cache them.

Locks: the cache lock, then the clip-length locks in increasing order, then (briefly) the
registry lock; every build takes them in this order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from feature_store import atomic, integrity, manifest
from feature_store.engine import locks, plugins, registry
from feature_store.engine.cache import CacheError, SongCache
from feature_store.engine.index import (
    INDEX_FILE,
    index_schema,
    read_index,
    status_against,
    target_index,
    write_index,
)
from feature_store.engine.verify import verify_generation
from feature_store.engine.worker import CHANGED, Job, JobResult, run_job, run_jobs, single_threaded_worker, warm_up
from feature_store.engine.writer import ClipWriter, Flusher
from feature_store.errors import ParameterError
from feature_store.features import clip_starts
from feature_store.integrity import DIGEST_PREFIX, IntegrityError
from feature_store.params import CLIP_SECONDS, validate_clip_seconds
from feature_store.procs import worker_pool
from feature_store.tables import resolve_in_root

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.engine.store import ViewStore

#: From this many worker processes on, the workers encode the rows of the songs they compute
#: (``song`` scope); with fewer, this process has the CPU to spare.
WORKERS_TO_ENCODE = 4
#: Songs a worker task holds when a build has many.
MAX_SONGS_PER_TASK = 4
#: Generations kept besides ``current``, for readers that resolved the previous one.
KEEP_OLD_GENERATIONS = 1


@dataclasses.dataclass
class BuildReport:
    """What one build did.

    Attributes
    ----------
    computed : list of str
        Song ids computed in this build (empty on an unchanged re-run).
    cached : int
        Songs whose features all came from the cache.
    failed : pl.DataFrame
        Songs that failed at the feature stage (``song_id``, ``reason``); the rest are stored.
    clip_lengths : dict
        Per clip length: ``status`` (``built``, ``reindexed`` or ``unchanged``), ``clips``,
        ``songs``, ``skipped_short`` (songs too short for it), ``frames``, ``generation``,
        ``path`` (the HDF5 file), ``index_path``, ``bytes``, and the view's own facts.
    seconds : float
    provenance : dict
        What computed the numbers beyond the params (the embeddings' weights sha256...).
    """

    computed: list[str]
    cached: int
    failed: pl.DataFrame
    clip_lengths: dict[int, dict[str, Any]]
    seconds: float
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # the provenance's facts read as attributes (``report.weights_sha256``)
        prov = self.__dict__.get("provenance") or {}
        if name in prov:
            return prov[name]
        raise AttributeError(name)


@dataclasses.dataclass
class _Song:
    """One content hash of the catalog: the songs that have it, and its duration."""

    sha256: str
    members: list[tuple[str, str]]
    duration: float
    size: int


class Builder:
    """One build of one store (see the module docstring); :meth:`run` does it."""

    def __init__(self, store: ViewStore, *, clip_seconds: Iterable[int], workers: int | None, progress: bool,
                 lock_timeout: float, on_wait: Callable[[str], None] | None = None, threads: int | None = None) -> None:
        self.store, self.view = store, store.view
        self.lengths = sorted({validate_clip_seconds(c) for c in clip_seconds})
        if not self.lengths:
            raise ParameterError(f"clip_seconds must name at least one of {list(CLIP_SECONDS)}")
        self.workers, self.progress, self.lock_timeout, self.on_wait = workers, progress, lock_timeout, on_wait
        self.threads = threads
        self.writers: dict[int, ClipWriter] = {}
        self.computed: list[str] = []
        self.failed: list[dict[str, str]] = []
        self.labels: tuple[str, ...] | None = None
        self.force: set[int] = set()
        self._verified: dict[Path, bool] = {}

    # -- the build ----------------------------------------------------------------------------
    def run(self, audio_root: str | os.PathLike[str]) -> BuildReport:
        t0 = time.perf_counter()
        catalog, splits, ok, songs = self.prepare(audio_root)
        genre_root = self.genre_root
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.store.cache_lock(self.cache.folder, self.lock_timeout, on_wait=self.on_wait))
            cdirs = {c: stack.enter_context(self.store.clip_lock(c, self.lock_timeout, on_wait=self.on_wait))
                     for c in self.lengths}
            stack.callback(lambda: [w.abort() for w in self.writers.values()])
            # rows are written as each song arrives, into the layout the build will publish if no
            # song fails now; the rare build where one does rewrites from the cache instead
            provisional = ok.filter(~pl.col("song_id").is_in([f["song_id"] for f in self.failed]))

            def open_writers() -> None:  # called once the workers are starting
                for c in self.lengths:
                    target = self._target(c, provisional, splits)
                    if self._status(c, cdirs[c], target) == "built":
                        tmp = atomic.tmp_name(cdirs[c] / self.view.data_file)
                        self.writers[c] = ClipWriter(tmp, target, c, self.view, self.provenance)

            self.view.before_build(threads=self.threads)
            with Flusher(self.writers):
                self._compute(songs, genre_root, open_writers)
            failed = pl.DataFrame(self.failed, schema={"song_id": pl.String, "reason": pl.String})
            usable = ok.filter(~pl.col("song_id").is_in(failed["song_id"].implode()))
            # one clip length after another: HDF5 calls must not run in two threads at once
            report = {c: self._publish(c, cdirs[c], usable, splits, songs) for c in self.lengths}
        registry.update(self.store, report, catalog=catalog, failed=failed, provenance=self.provenance,
                        lock_timeout=self.lock_timeout)
        return BuildReport(computed=self.computed, cached=usable.height - len(self.computed), failed=failed,
                           clip_lengths=report, seconds=time.perf_counter() - t0, provenance=self.provenance)

    def stream_one(self, folder: Path, ok: pl.DataFrame, splits: pl.DataFrame, songs: dict[str, _Song], *,
                   lock: str) -> tuple[ClipWriter, pl.DataFrame]:
        """A shard task's build (:mod:`feature_store.engine.shards`: no generation, no registry):
        compute ``songs`` under the lock ``lock`` (the shard's, not the whole cache's) into a writer,
        in ``folder``, of the one clip length. Returns it filled, unfinished, and the failed songs."""
        (c,) = self.lengths
        self.cache.folder.mkdir(parents=True, exist_ok=True)
        try:
            with locks.held(self.store.store_dir / ".locks", lock, timeout=self.lock_timeout, on_wait=self.on_wait,
                            busy=f"another task is computing the songs of {lock}"):
                provisional = ok.filter(~pl.col("song_id").is_in([f["song_id"] for f in self.failed]))
                self.view.before_build(threads=self.threads)
                with Flusher(self.writers):
                    self._compute(songs, self.genre_root, lambda: self.writers.update({c: ClipWriter(
                        atomic.tmp_name(folder / self.view.data_file), self._target(c, provisional, splits), c,
                        self.view, self.provenance, chunk_table=True)}))
                failed = pl.DataFrame(self.failed, schema={"song_id": pl.String, "reason": pl.String})
                target = self._target(c, ok.filter(~pl.col("song_id").is_in(failed["song_id"].implode())), splits)
                writer = self.writers.get(c)
                if writer is None or not writer.target.equals(target):
                    writer = self._write_from_cache(c, folder, target, songs, chunk_table=True)
        except BaseException:
            for w in self.writers.values():
                w.abort()
            raise
        return writer, failed

    # -- planning -----------------------------------------------------------------------------
    def prepare(self, audio_root: str | os.PathLike[str], *,
                select: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
                ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, _Song]]:
        """Read the catalog and splits, set the labels, provenance and cache, and plan the songs.

        Returns ``(catalog, splits, ok, songs)``: ``ok`` the catalog's usable rows (those
        ``select`` keeps, when given), ``songs`` their content hashes.
        """
        self.genre_root = _genre_root_with_files(self.store.root, audio_root)
        catalog, splits = self.store.catalog(), self.store.splits()
        self.labels = plugins.store_labels(self.store.root, catalog)
        ok = catalog.filter(pl.col("status") == "ok")
        if select is not None:
            ok = select(ok)
        self.provenance = self.view.provenance()
        self.cache = SongCache(self.store.root / "cache" / self.view.cache_folder(self.provenance))
        return catalog, splits, ok, self._plan(ok, self.genre_root)

    def _plan(self, ok: pl.DataFrame, genre_root: Path) -> dict[str, _Song]:
        songs: dict[str, _Song] = {}
        for sid, rel, sha, duration, size in ok.select("song_id", "path", "sha256", "duration", "bytes").iter_rows():
            try:
                resolve_in_root(genre_root, rel)
            except ParameterError as exc:
                self.failed.append({"song_id": sid, "reason": str(exc)})
                continue
            song = songs.setdefault(sha, _Song(sha, [], float(duration), int(size)))
            song.members.append((sid, rel))
        self.genre_root = genre_root
        return songs

    def _missing(self, song: _Song) -> list[int]:
        """Clip lengths whose cache entry the song lacks (every length if a ``song`` entry is)."""
        if self.view.cache_scope == "song":
            return [] if self.cache.entry_path(song.sha256).exists() else list(self.lengths)
        return [c for c in self.lengths if not self.cache.rows_path(song.sha256, c).exists()]

    def _clips(self, song: _Song, c: int) -> list[tuple[int, int]]:
        """``(segment, view-grid start)`` of the song's clips at ``c``."""
        starts = clip_starts(params=self.view.clip_params, clip_seconds=c, duration=song.duration)
        return [(seg, self.view.view_frame(start)) for seg, start in starts]

    def _target(self, c: int, songs: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
        return target_index(self.view.clip_params, c, songs, splits, self.view.index_columns(c), labels=self.labels)

    def _status(self, c: int, cdir: Path, target: pl.DataFrame) -> str:
        """How the clip length's current generation compares with ``target``; one that was
        made by other weights, or cannot be read, or fails its checksums, counts as absent."""
        current = atomic.resolve_current(cdir)
        if current is None or c in self.force:
            return "built"
        if self.provenance and registry.stored_provenance(current / self.view.data_file,
                                                          self.provenance) != self.provenance:
            return "built"
        try:
            status = status_against(read_index(current, index_schema(self.view, c)), target)
        except (IntegrityError, FileNotFoundError):
            return "built"
        if status != "built" and not self._sound(current, c):
            return "built"
        return status

    def _sound(self, gen: Path, c: int) -> bool:
        """Whether generation ``gen`` passes :func:`verify_generation` (checked once per build)."""
        if gen not in self._verified:
            check = verify_generation(gen, self.view, c)
            self._verified[gen] = check.ok
            if not check.ok and self.on_wait is not None:
                self.on_wait(f"{len(check.problems)} problems in {gen}, rewriting it: {check.problems[0]}")
        return self._verified[gen]

    # -- computing ----------------------------------------------------------------------------
    def _job(self, song: _Song) -> Job:
        return Job(song_ids=[s for s, _ in song.members],
                   paths=[str(resolve_in_root(self.genre_root, rel)) for _, rel in song.members],
                   sha256=song.sha256, size=song.size, cache_folder=str(self.cache.folder))

    def _compute(self, songs: dict[str, _Song], genre_root: Path, open_writers: Callable[[], None]) -> None:
        todo = [s for s in songs.values() if self._missing(s)]
        n_workers = min(self.workers or self.view.default_workers() or os.cpu_count() or 1, len(todo))
        encode = self.view.cache_scope == "song" and n_workers >= WORKERS_TO_ENCODE
        bar = _progress(len(todo), self.view.name, enabled=self.progress)
        pending = {s.sha256 for s in todo}
        spec = self.view.to_spec()
        try:
            if n_workers <= 1 or len(todo) <= 2:
                open_writers()
                self._feed_cached(songs, pending)
                for song in todo:
                    self._done(song, run_job(self._job(song), spec), bar)
                return
            with worker_pool(n_workers, initializer=single_threaded_worker, what="build") as pool:
                for _ in range(n_workers):  # start the workers, then decide what to write while they import
                    pool.submit(warm_up, spec)
                open_writers()
                jobs = [(song, self._job(song)) for song in todo]
                if encode:
                    for song, job in jobs:
                        job.wanted = self._wanted(song) or None
                size = max(1, min(MAX_SONGS_PER_TASK, len(jobs) // (16 * n_workers)))
                tasks = iter([jobs[i: i + size] for i in range(0, len(jobs), size)])
                for task, results in _bounded(pool, tasks, lambda t: (run_jobs, [j for _, j in t], spec),
                                              window=4 * n_workers, before=lambda: self._feed_cached(songs, pending)):
                    for (song, _), res in zip(task, results, strict=True):
                        self._done(song, res, bar)
        finally:
            bar.close()

    def _wanted(self, song: _Song) -> dict[int, list[int]]:
        return {c: w.starts(song.sha256) for c, w in self.writers.items() if w.starts(song.sha256)}

    def _feed_cached(self, songs: dict[str, _Song], pending: set[str]) -> None:
        """Hand the writers the rows of every song the cache already holds."""
        if not self.writers:
            return
        for sha, song in songs.items():
            if sha not in pending:
                self._feed(song)

    def _feed(self, song: _Song) -> None:
        """Give every writer the song's rows from the cache (recomputing a damaged entry)."""
        wanted = self._wanted(song)
        if not wanted:
            return
        try:
            rows = self._cached_rows(song, wanted)
        except CacheError:
            # an entry a power cut left damaged: compute it again here
            self.cache.entry_path(song.sha256).unlink(missing_ok=True)
            for c in wanted:
                self.cache.rows_path(song.sha256, c).unlink(missing_ok=True)
            res = run_job(self._job(song), self.view.to_spec())
            self._record(song, res)
            if not res.ok:
                return
            rows = self._rows_from_result(song, res, list(wanted)) or self._cached_rows(song, wanted)
        for c, w in self.writers.items():
            if c in rows:
                w.add(song.sha256, rows[c])

    def _cached_rows(self, song: _Song, wanted: dict[int, list[int]]) -> dict[int, Any]:
        if self.view.cache_scope == "song":
            entry = self.cache.load_entry(song.sha256, self.view.entry_shape())
            return self.view.clip_rows(entry, wanted)
        out = {}
        for c in wanted:
            shapes = {s.name: s.shape for s in self.view.array_specs(c)}
            segments = [seg for seg, _ in self._clips(song, c)]
            out[c], _ = self.cache.load_rows(song.sha256, c, segments=segments, shapes=shapes)
        return out

    def _rows_from_result(self, song: _Song, res: JobResult, lengths: list[int]) -> dict[int, Any] | None:
        """``clip`` scope: compute (here), cache and return the rows of ``lengths``."""
        if self.view.cache_scope != "clip":
            return None
        out = {}
        for c in lengths:
            t0 = time.perf_counter()
            clips = self._clips(song, c)
            rows = self.view.clip_rows(res.prepared, {c: [s for _, s in clips]})[c]
            seconds = res.seconds + (time.perf_counter() - t0)
            self.cache.save_rows(song.sha256, c, segments=[seg for seg, _ in clips], rows=rows, seconds=seconds)
            out[c] = rows
        return out

    def _record(self, song: _Song, res: JobResult) -> None:
        changed = set(res.changed)
        self.failed.extend({"song_id": sid, "reason": CHANGED} for sid in res.changed)
        rest = [sid for sid, _ in song.members if sid not in changed]
        if res.ok:
            self.computed.extend(rest)
        else:
            self.failed.extend({"song_id": sid, "reason": res.reason or "failed"} for sid in rest)

    def _done(self, song: _Song, res: JobResult, bar: Any) -> None:
        """A worker's result: record it and give the writers the song's rows."""
        self._record(song, res)
        bar.update()
        if not res.ok:
            return
        missing = self._missing(song) if self.view.cache_scope == "clip" else []
        computed_rows = self._rows_from_result(song, res, missing) or {}
        if not self.writers:
            return
        if res.encoded:
            for c, enc in res.encoded.items():
                self.writers[c].add_encoded(song.sha256, enc)
            return
        wanted = self._wanted(song)
        rows = {c: computed_rows[c] for c in wanted if c in computed_rows}
        rest = {c: s for c, s in wanted.items() if c not in rows}
        if rest:
            rows.update(self._cached_rows(song, rest))
        for c, r in rows.items():
            self.writers[c].add(song.sha256, r)

    # -- publishing ---------------------------------------------------------------------------
    def _publish(self, c: int, cdir: Path, usable: pl.DataFrame, splits: pl.DataFrame,
                 songs: dict[str, _Song]) -> dict[str, Any]:
        """Publish one clip length (its lock held): link, stream or rewrite its arrays."""
        target = self._target(c, usable, splits)
        skipped_short = usable.filter(~pl.col("song_id").is_in(target["song_id"].implode()))["song_id"].to_list()
        status = self._status(c, cdir, target)
        current = atomic.resolve_current(cdir)
        if status != "unchanged":
            with atomic.new_generation(cdir, keep_old=KEEP_OLD_GENERATIONS) as tmp:
                if status == "reindexed":  # same rows, other index values: link the arrays
                    for f in current.iterdir():
                        if f.name not in (INDEX_FILE, manifest.MANIFEST_FILE):
                            os.link(f, tmp / f.name)
                    old = read_index(current, index_schema(self.view, c))
                    digests = [col for col in old.columns if col.startswith(DIGEST_PREFIX)]
                    index = target.join(old.select("clip_id", *digests), on="clip_id", how="left",
                                        maintain_order="left")
                else:
                    writer = self.writers.get(c)
                    if writer is None or not writer.target.equals(target):
                        writer = self._write_from_cache(c, cdir, target, songs)
                    index = writer.finish(tmp)
                write_index(index, tmp)
                manifest.write_manifest(tmp)  # last: it lists every file of the generation
            current = atomic.resolve_current(cdir)
        info = {
            "status": status, "clips": target.height, "songs": target["song_id"].n_unique(),
            "skipped_short": skipped_short, "frames": self.view.clip_params.clip_frames(c),
            **self.view.clip_info(c), **self.provenance,
            "generation": current.name, "path": str(current / self.view.data_file),
            "index_path": str(current / INDEX_FILE), "bytes": sum(f.stat().st_size for f in current.iterdir()),
        }
        if self.view.cost_name:
            info[self.view.cost_name] = self._cost_ms(target, c, songs)
        return info

    def _write_from_cache(self, c: int, cdir: Path, target: pl.DataFrame, songs: dict[str, _Song], *,
                          chunk_table: bool = False) -> ClipWriter:
        """A writer of ``target`` filled from the cache, in index order (a shard object's with its
        chunk table)."""
        self.writers.pop(c, None)
        writer = self.writers[c] = ClipWriter(atomic.tmp_name(cdir / self.view.data_file), target, c, self.view,
                                              self.provenance, chunk_table=chunk_table)
        bar = _progress(target.height, f"write {c}s", enabled=self.progress, unit="clip")
        for sha in target["sha256"].unique(maintain_order=True).to_list():
            rows = self._cached_rows(songs[sha], {c: writer.starts(sha)})
            bar.update(writer.add(sha, rows[c]))
        bar.close()
        return writer

    def _cost_ms(self, target: pl.DataFrame, c: int, songs: dict[str, _Song]) -> float | None:
        """Mean milliseconds to compute one clip (decode, prepare and rows), from the cache."""
        import numpy as np

        total, clips = 0.0, 0
        for sha in target["sha256"].unique().to_list():
            with contextlib.suppress(OSError, ValueError, KeyError, IntegrityError):
                z = integrity.read_npz(self.cache.rows_path(sha, c))
                total += float(z["compute_seconds"])
                clips += int(z["segments"].shape[0])
        return 1000.0 * total / clips if clips else None


def _genre_root_with_files(store_root: Path, audio_root: str | os.PathLike[str]) -> Path:
    genre_root = plugins.find_audio_root(store_root, audio_root)
    entries = [e for e in genre_root.iterdir() if not e.name.startswith(".")]
    files = [e for e in entries if e.is_file()] + [f for d in entries if d.is_dir() for f in d.iterdir()]
    if not any(f.is_file() and not f.name.startswith(".") for f in files):
        raise ParameterError(f"audio folder {str(genre_root)!r} holds no audio files")
    return genre_root


def _bounded(pool: ProcessPoolExecutor, tasks: Iterator[Any], submit: Callable[[Any], tuple],
             *, window: int, before: Callable[[], None]) -> Iterator[tuple[Any, Any]]:
    """Run ``tasks`` on ``pool`` with at most ``window`` in flight; yield ``(task, result)``
    as each completes. ``before()`` runs once the first tasks are submitted."""
    futs: dict[Future, Any] = {}

    def top_up() -> None:
        while len(futs) < window:
            task = next(tasks, None)
            if task is None:
                return
            fn, *args = submit(task)
            futs[pool.submit(fn, *args)] = task

    try:
        top_up()
        before()
        while futs:
            done, _ = wait(futs, return_when=FIRST_COMPLETED)
            for fut in done:
                task = futs.pop(fut)
                yield task, fut.result()
            top_up()
    except BaseException:
        for fut in futs:
            fut.cancel()
        raise


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, *, enabled: bool, unit: str = "song") -> Any:
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)
