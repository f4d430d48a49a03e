"""Streaming the clips of a table version to Keras: whole shard objects, one at a time.

A run on a version of an index table (:mod:`training.table_train`) that streams its clips
(``TrainConfig.stream``) reads them here instead of from one HDF5 file:

* **Training batches** come from a :class:`ShardFeeder`: a :class:`~training.feeding.Feeder`
  whose clips are those of a :class:`~training.lake_feed.ShardFeed` (shard objects in an order
  seeded per epoch, each fetched once, mixed in a bounded shuffle buffer), then weighted,
  augmented and normalised as the feeder does for clips in memory.
* **Validation, the normaliser's pass and scoring** read their clips in order through a
  :class:`TableReader`: the source's clips are put in object order
  (:meth:`TableStore.stream_order`), so that a pass in order fetches each object once and
  holds one object's rows at a time.

Memory is therefore the shuffle buffer and one object's rows, whatever the size of the
version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl

from feature_store.engine.arrays import assemble
from feature_store.errors import ParameterError
from feature_store.integrity import DIGEST_PREFIX
from training.feeding import Feeder
from training.lake_feed import DEFAULT_BUFFER, ShardFeed


def signed_digests(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with its digest columns as the table stores them (int64, bit-reinterpreted)."""
    cols = [pl.col(c).reinterpret(signed=True) for c in rows.columns
            if c.startswith(DIGEST_PREFIX) and rows.schema[c] == pl.UInt64]
    return rows.with_columns(cols) if cols else rows


class TableReader:
    """The clips of one table version by position (``hdf5_row``), read whole object by object.

    The last object read is kept, so a pass over positions in object order
    (:meth:`TableStore.stream_order`) fetches every object once. What :class:`ClipSource`
    calls on a store's row reader: :attr:`index`, :meth:`read`, :meth:`close`, :attr:`gen`.

    Parameters
    ----------
    store : TableStore
    arrays : sequence of str
        The arrays of each clip's ``x`` (:func:`assemble` puts them together).
    """

    def __init__(self, store: Any, *, arrays: Sequence[str]) -> None:
        self.store, self.arrays, self.gen = store, tuple(arrays), store.root
        self.index = store.version_rows
        keys = self.index["object_key"].to_numpy()
        self._keys = keys
        self._key: str | None = None
        self._x: np.ndarray | None = None
        self._at: dict[int, int] = {}
        #: Fetches per object key since the reader was made.
        self.fetches: dict[str, int] = {}

    def _load(self, key: str) -> np.ndarray:
        part = self.index.filter(pl.col("object_key") == key)
        arrays = self.store.read_object(key, signed_digests(part), arrays=self.arrays)
        self.fetches[key] = self.fetches.get(key, 0) + 1
        self._x = assemble([arrays[n] for n in self.arrays], self.arrays, dtype="float32")
        self._at = {int(r): i for i, r in enumerate(part["hdf5_row"].to_list())}
        self._key = key
        return self._x

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The clips at positions ``rows``, as float32 ``(n, *shape)``, in the order asked."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.index.height):
            raise ParameterError(f"rows must be in 0..{self.index.height - 1}, got {rows.min()}..{rows.max()}")
        out: np.ndarray | None = None
        keys = self._keys[rows]
        for key in dict.fromkeys(keys.tolist()):  # objects in the order first asked for
            x = self._x if key == self._key and self._x is not None else self._load(key)
            if out is None:
                out = np.empty((rows.size, *x.shape[1:]), dtype=np.float32)
            sel = np.flatnonzero(keys == key)
            out[sel] = x[[self._at[int(r)] for r in rows[sel]]]
        return out if out is not None else np.zeros((0,), dtype=np.float32)

    def close(self) -> None:
        """Drop the object held (it is fetched again if read again)."""
        self._key, self._x, self._at = None, None, {}


@dataclasses.dataclass
class ShardFeeder(Feeder):
    """A :class:`Feeder` whose training clips stream from :attr:`shard_feed`, not by position.

    ``positions`` say how many clips an epoch holds (``repeats`` passes of the feed, for
    random crops); the feed's ``batch_size`` is the feeder's.
    """

    shard_feed: ShardFeed | None = None
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.shard_feed is None or self.shard_feed.batch_size != self.batch_size:
            raise ParameterError("a ShardFeeder needs a shard_feed of its own batch_size")

    @property
    def feed(self) -> ShardFeed:
        if self.shard_feed is None:
            raise ParameterError("this ShardFeeder has no shard_feed")
        return self.shard_feed

    @property
    def n_batches(self) -> int:
        return self.repeats * -(-self.feed.clips // self.batch_size)

    def batches(self, *, with_labels: bool = True) -> Iterator[Any]:
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        epoch, self.epoch = self.epoch, self.epoch + 1
        for k in range(self.repeats):
            for x, y in self.feed.batches(epoch * self.repeats + k):
                yield self.finish(x, y, rng, with_labels=with_labels)


def shard_feeder(store: Any, index: pl.DataFrame, *, labels: Sequence[str], repeats: int = 1,
                 buffer: int = DEFAULT_BUFFER, **feeder: Any) -> ShardFeeder:
    """A :class:`ShardFeeder` over the clips of ``index`` (rows of ``store``, a :class:`TableStore`).

    ``labels`` are the run's classes (``y`` is a clip's position in them); ``feeder`` the
    :class:`Feeder` fields (``source``, ``positions``, ``normalizer``, ``layout``, ...).
    """
    rows = store.version_rows.join(index.select("clip_id"), on="clip_id", how="semi")
    feed = ShardFeed(storage=store.storage, view=store.view, clip_seconds=store.clip_seconds, rows=rows,
                     labels=labels, batch_size=feeder["batch_size"], buffer=buffer, seed=feeder["seed"])
    return ShardFeeder(shard_feed=feed, repeats=repeats, **feeder)
