"""One generic store for every feature view: paths, locks, generations, queries, builds.

Layout under a store root::

    catalog.parquet                         the validated audio catalog
    splits.parquet                          one column per split scheme
    cache/<view cache folder>/...           per-song cache (see engine.cache)
    features/<view>-<hash>/
        registry.json                       params, hashes, provenance, counts, times
        .locks/                             lock files: cache, one per clip length, registry
        clip-05s/
            current -> gen-<id>             symlink, swapped atomically
            gen-<id>/<view>.h5              one dataset per array (clips, ...), and clip_id
            gen-<id>/index.parquet          one row per clip: ids, genre, splits, segment, row
            gen-<id>/<table>.parquet        the view's Parquet tables, if any

Each build of a clip length writes a new generation folder and then swaps ``current``, so a
reader that resolves ``current`` once sees one consistent generation, never a mix of old and
new rows, and a build killed at any moment leaves the previous store intact.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from feature_store import atomic, integrity
from feature_store.engine import locks, registry
from feature_store.engine.arrays import assemble
from feature_store.engine.build import Builder, BuildReport
from feature_store.engine.index import index_schema, predicates, public, query, table_schema
from feature_store.engine.read import OpenGenerations, RowReader, damaged_h5, read_checked
from feature_store.engine.view import FeatureView
from feature_store.errors import ParameterError, StoreError
from feature_store.params import CLIP_SECONDS, validate_clip_seconds
from feature_store.procs import refuse_in_worker_bootstrap

CATALOG_FILE = "catalog.parquet"
SPLITS_FILE = "splits.parquet"
#: What to do about a damaged catalog or split table.
REINGEST = "run `gtzan ingest` again to rewrite it"
#: Seconds a build waits for another build of the same store before giving up.
DEFAULT_LOCK_TIMEOUT = 3600.0


def clip_dirname(clip_seconds: int) -> str:
    """Folder name of a clip length: ``clip-05s``."""
    return f"clip-{validate_clip_seconds(clip_seconds):02d}s"


class Tensors(NamedTuple):
    """Result of :meth:`ViewStore.tensors`.

    Attributes
    ----------
    x : np.ndarray
        ``(clips, *shape)`` for one array of a per-clip 2-d shape (the mel spectrograms);
        otherwise the named arrays flattened and side by side, ``(clips, features)``.
    y : np.ndarray [shape=(clips,), dtype=int64]
        Labels: the position of each clip's label in the store's label set (recorded at ingest).
    index : pl.DataFrame
        The index rows of ``x``, in the same order.
    arrays : tuple of str
        The arrays in ``x``, in column order.
    """

    x: np.ndarray
    y: np.ndarray
    index: pl.DataFrame
    arrays: tuple[str, ...]


class ViewStore:
    """Build and query one view's stores under ``root``.

    Parameters
    ----------
    root : path
        Store root (holds ``catalog.parquet``, ``splits.parquet``, ``features/``, ``cache/``).
    view : FeatureView
        The view (``feature_store.views.get_view(name, options)``).

    Examples
    --------
    >>> from feature_store.views import get_view                          # doctest: +SKIP
    >>> store = ViewStore("data/store", get_view("timbre"))                # doctest: +SKIP
    >>> store.build(audio_root="data/demo", clip_seconds=[5])              # doctest: +SKIP
    >>> x, y, index, arrays = store.tensors(clip_seconds=5, split="train")  # doctest: +SKIP
    """

    build_hint: str = ""

    def __init__(self, root: str | os.PathLike[str], view: FeatureView) -> None:
        if not isinstance(view, FeatureView):
            raise ParameterError(f"view must be a FeatureView, got {type(view).__name__}")
        self.root = Path(root).expanduser().resolve()
        self.view = view
        self._opened = OpenGenerations(view)

    # -- paths --------------------------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def splits_path(self) -> Path:
        return self.root / SPLITS_FILE

    @property
    def store_dir(self) -> Path:
        return self.root / "features" / self.view.folder

    @property
    def registry_path(self) -> Path:
        return self.store_dir / registry.REGISTRY_FILE

    def clip_dir(self, clip_seconds: int) -> Path:
        return self.store_dir / clip_dirname(clip_seconds)

    def _hint(self) -> str:
        view = "" if self.view.name == "mel" else f" --view {self.view.name}"  # mel: the command's default
        return self.build_hint or f"`gtzan features build{view}`"

    def _what(self) -> str:
        return self.view.label()

    # -- catalog and splits ---------------------------------------------------------------------
    def catalog(self) -> pl.DataFrame:
        """The catalog table (checked); :class:`StoreError` if ingest has not run or it is damaged."""
        if not self.catalog_path.exists():
            raise StoreError(f"no catalog at {self.catalog_path}; run ingest first (`gtzan ingest`)")
        from feature_store.tables import CATALOG_SCHEMA

        return integrity.read_parquet(self.catalog_path, schema=CATALOG_SCHEMA, remedy=REINGEST)

    def splits(self) -> pl.DataFrame:
        """The split table (checked); :class:`StoreError` if splits were not made or it is damaged."""
        if not self.splits_path.exists():
            raise StoreError(f"no split table at {self.splits_path}; run ingest first (`gtzan ingest`)")
        from feature_store.tables import SPLITS_SCHEMA

        return integrity.read_parquet(self.splits_path, schema=SPLITS_SCHEMA, remedy=REINGEST)

    # -- locks --------------------------------------------------------------------------------
    def _held(self, name: str, timeout: float, busy: str, on_wait: Callable[[str], None] | None = None) -> Any:
        return locks.held(self.store_dir / ".locks", name, timeout=timeout, busy=busy, on_wait=on_wait)

    @contextlib.contextmanager
    def clip_lock(self, clip_seconds: int, timeout: float, *, on_wait: Callable[[str], None] | None = None) -> Any:
        """Hold the build lock of one clip length; sweeps what killed writers left there."""
        cdir = self.clip_dir(clip_seconds)
        cdir.mkdir(parents=True, exist_ok=True)
        name = clip_dirname(clip_seconds)
        with self._held(name, timeout, f"another build is writing {cdir}", on_wait):
            atomic.remove_stale_temps(cdir)
            yield cdir

    @contextlib.contextmanager
    def cache_lock(self, cache_dir: Path, timeout: float, *, on_wait: Callable[[str], None] | None = None) -> Any:
        """Hold the lock of the view's per-song cache; sweeps stale temporaries."""
        cache_dir.mkdir(parents=True, exist_ok=True)
        with self._held("cache", timeout, f"another build is filling {cache_dir}", on_wait):
            atomic.remove_stale_temps(cache_dir)
            yield

    def registry_lock(self, timeout: float) -> Any:
        return self._held("registry", timeout, f"another build is writing {self.registry_path}")

    # -- build --------------------------------------------------------------------------------
    def build(
        self,
        *,
        audio_root: str | os.PathLike[str],
        clip_seconds: Iterable[int] = CLIP_SECONDS,
        workers: int | None = None,
        progress: bool = False,
        lock_timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        threads: int | None = None,
        rebuild: Iterable[int] = (),
    ) -> BuildReport:
        """Compute what is missing and (re)write the stores of ``clip_seconds``.

        Songs already in the cache are not decoded again, and a clip length whose stored
        rows already match the catalog, the splits and the view's provenance is left alone.

        Parameters
        ----------
        audio_root : path
            The genres folder the catalog's relative paths point into.
        clip_seconds : iterable of int
            Clip lengths to write (default all of :data:`CLIP_SECONDS`).
        workers : int, optional
            Worker processes (default: the view's choice, else the CPU count).
        progress : bool
            Show progress bars on stderr.
        lock_timeout : float, optional
            Seconds to wait for a concurrent build of the same store (default
            :data:`DEFAULT_LOCK_TIMEOUT`); :class:`StoreLockedError` after that, 0 fails at once.
        on_wait : callable(str), optional
            Told, in one line, whom the build waits for when another build holds a lock.
        threads : int, optional
            Threads of a view that computes in the build's own process (musicnn's TensorFlow).
        rebuild : iterable of int
            Clip lengths to write anew even if they look unchanged (a repair).

        Returns
        -------
        BuildReport

        Raises
        ------
        ParameterError
            If ``audio_root`` is missing or holds no audio files, or ``clip_seconds`` is bad.
        StoreError
            If ingest has not run, or the view cannot compute (its weights are not installed).
        StoreLockedError
            If another build holds a lock for longer than ``lock_timeout``.
        """
        refuse_in_worker_bootstrap("build")
        timeout = DEFAULT_LOCK_TIMEOUT if lock_timeout is None else float(lock_timeout)
        builder = Builder(self, clip_seconds=clip_seconds, workers=workers, progress=progress, lock_timeout=timeout,
                          on_wait=on_wait, threads=threads)
        builder.force = {validate_clip_seconds(c) for c in rebuild}
        return builder.run(audio_root)

    def verify(self) -> Any:
        """Check the root's tables, the registry and every row of every current generation.

        Returns
        -------
        feature_store.engine.repair.StoreCheck
        """
        from feature_store.engine.repair import verify_store

        return verify_store(self)

    def repair(self, check: Any, *, audio_root: str | os.PathLike[str], workers: int | None = None,
               progress: bool = False, lock_timeout: float | None = None,
               on_wait: Callable[[str], None] | None = None) -> Any:
        """Rewrite what :meth:`verify` found damaged, from the audio (see :mod:`feature_store.engine.repair`)."""
        from feature_store.engine.repair import repair_store

        return repair_store(self, check, audio_root=audio_root, workers=workers, progress=progress,
                            lock_timeout=lock_timeout, on_wait=on_wait)

    # -- what is built ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The registry: params, hashes, provenance, counts and creation times.

        Raises
        ------
        StoreError
            If no such store was built under this root.
        """
        reg = registry.read(self.registry_path)
        if reg is None:
            raise StoreError(f"no {self._what()} under {self.root}; build it first ({self._hint()})")
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
                f"Build it with {self._hint()}"
            )
        return current

    # -- queries ------------------------------------------------------------------------------
    def clips(self, *, clip_seconds: int, genre: str | Sequence[str] | None = None,
              split: str | Sequence[str] | None = None, scheme: str = "seed",
              song_ids: Sequence[str] | None = None) -> pl.LazyFrame:
        """Lazy query over the clip index of one clip length.

        Parameters
        ----------
        clip_seconds : int
            One of :data:`CLIP_SECONDS`.
        genre : str or list of str, optional
            Keep these genres.
        split : str or list of str, optional
            Keep these parts of ``scheme`` (``train``/``test`` for ``seed``,
            ``train``/``valid``/``test`` for ``fault_filtered``, ``fold0``... for ``stratified``).
        scheme : str
            Split scheme that ``split`` refers to.
        song_ids : list of str, optional
            Keep these songs.

        Returns
        -------
        pl.LazyFrame
            Columns ``clip_id, song_id, genre, label, sha256, segment, start_seconds,
            start_frame, <schemes>, clip_seconds, frames, hdf5_row`` and the view's own.
        """
        gen = self.generation(clip_seconds)
        return query(gen, genre=genre, split=split, scheme=scheme, song_ids=song_ids,
                     schema=index_schema(self.view, clip_seconds))

    def tensors(self, *, clip_seconds: int, genre: str | Sequence[str] | None = None,
                split: str | Sequence[str] | None = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, arrays: str | Sequence[str] | None = None,
                dtype: str = "float32") -> Tensors:
        """The arrays and labels of the clips that :meth:`clips` selects.

        Index and arrays come from the same generation, so a concurrent rebuild can never
        mix old and new rows.

        Parameters
        ----------
        arrays : str or list of str, optional
            Arrays to read (default the view's ``default_arrays``).
        dtype : str
            Dtype of ``x``.

        Returns
        -------
        Tensors
        """
        names = self.check_arrays(arrays, clip_seconds)
        index, parts = self._read(clip_seconds, names, genre=genre, split=split, scheme=scheme, song_ids=song_ids)
        index = public(index)
        x = assemble(parts, names, dtype=dtype)
        return Tensors(x=x, y=index["label"].to_numpy().astype(np.int64), index=index, arrays=names)

    def table(self, name: str, *, clip_seconds: int, genre: str | Sequence[str] | None = None,
              split: str | Sequence[str] | None = None, scheme: str = "seed",
              song_ids: Sequence[str] | None = None) -> pl.LazyFrame:
        """A Parquet table of the view (``summary`` for mel), joined with the clip index."""
        tables = {s.name: s for s in self.view.array_specs(validate_clip_seconds(clip_seconds)) if s.columns}
        if name not in tables:
            raise ParameterError(f"the {self.view.name} view has no table {name!r}; its tables are {list(tables)}")
        idx = self.clips(clip_seconds=clip_seconds, genre=genre, split=split, scheme=scheme, song_ids=song_ids)
        path = self.generation(clip_seconds) / f"{name}.parquet"
        values = integrity.read_parquet(path, schema=table_schema(tables[name])).lazy().drop("song_id", "genre")
        return idx.join(values, on="clip_id", how="inner", maintain_order="left").sort("hdf5_row")

    def rows(self, *, clip_seconds: int, array: str | None = None) -> RowReader:
        """A reader of one array's rows by ``hdf5_row`` in the current generation (streaming)."""
        name = self.check_arrays(array, clip_seconds)[0]
        return RowReader(self.generation(clip_seconds), self.view, clip_seconds, name)

    def check_arrays(self, arrays: str | Sequence[str] | None, clip_seconds: int) -> tuple[str, ...]:
        """The names of ``arrays`` (default: the view's), each checked to be one of its HDF5 arrays."""
        stored = [s.name for s in self.view.array_specs(validate_clip_seconds(clip_seconds)) if s.hdf5]
        names = self.view.default_arrays if arrays is None else ((arrays,) if isinstance(arrays, str) else tuple(arrays))
        if not names:
            raise ParameterError(f"arrays must name at least one of {stored}")
        for n in names:
            if n not in stored:
                raise ParameterError(f"the {self.view.name} view has no array {n!r}; valid arrays are {stored}")
        if len(set(names)) != len(names):
            raise ParameterError(f"arrays repeat a name: {list(names)}")
        return tuple(names)

    def _read(self, clip_seconds: int, names: tuple[str, ...], *, genre: Any, split: Any, scheme: str,
              song_ids: Any) -> tuple[pl.DataFrame, list[np.ndarray]]:
        """Query the index and read the arrays, both from one generation.

        Resolves ``current`` once; if that generation is collected before it is opened (a
        rebuild finished meanwhile), the new one is tried.
        """
        for attempt in range(5):
            gen = self.generation(clip_seconds)
            try:
                source, h5 = self._opened.get(gen, clip_seconds)
                preds = predicates(genre=genre, split=split, scheme=scheme, song_ids=song_ids, source=source)
                index = source.filter(*preds) if preds else source  # source is in row order
                rows = index["hdf5_row"].to_numpy()
                with damaged_h5(gen / self.view.data_file):
                    datasets = [h5[n] for n in names]
                return index, [read_checked(ds, rows, index, n) for ds, n in zip(datasets, names, strict=True)]
            except (FileNotFoundError, OSError):
                self._opened.close(gen)
                if attempt == 4:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the HDF5 files that queries keep open (also done when the store is collected)."""
        self._opened.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
