"""Training batches from one version of an index table, streamed whole shard object by object.

A :class:`ShardFeed` reads the clips that one pinned version of a view's index table
(:func:`feature_store.engine.sharded.index_table`) selects. Each epoch it visits the shard
objects in an order shuffled by ``(seed, epoch)``, fetches each object once
(:func:`feature_store.engine.shards.read_shard`, every row checked against the digest the
version gives), and passes its clips through a shuffle buffer of ``buffer`` clips: a clip
leaves the buffer at a random slot when a new one arrives, and the buffer is drained in a
random order at the end of the epoch. Batches are ``(x, y)``: ``x`` the view's arrays
(:func:`feature_store.engine.arrays.assemble`: one multi-dimensional array as it is, vectors
side by side) and ``y`` the position of each clip's label in :attr:`ShardFeed.labels`.

Memory: the arrays held at any time are at most ``buffer`` clips in the buffer, one batch
being filled, and the clips of one shard object (its bytes while it is decoded, then its rows
while they move into the buffer), whatever the size of the corpus. :attr:`ShardFeed.stats`
counts them. The index rows of the selection (ids and digests, no arrays) are held too, as a
table of a few hundred bytes per clip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from feature_store.engine.arrays import assemble
from feature_store.engine.shards import read_shard
from feature_store.engine.storage.base import DEFAULT_MAX_GET_BYTES
from feature_store.errors import ParameterError
from feature_store.integrity import DIGEST_PREFIX
from feature_store.params import validate_clip_seconds

#: Default clips of the shuffle buffer.
DEFAULT_BUFFER = 1024
#: Default clips of one batch.
DEFAULT_BATCH = 64


@dataclasses.dataclass(frozen=True, kw_only=True)
class TablePin:
    """One version of an index table, pinned: what a run records about the data it read.

    Attributes
    ----------
    uri : str
        The table (a local folder or ``s3://...``).
    version : int
    digest : str
        :meth:`IndexTable.version_digest` of that version (``sha256:<hex>``).
    """

    uri: str
    version: int
    digest: str


@dataclasses.dataclass
class FeedStats:
    """What a feed held and fetched, for the memory bound (counts, not bytes).

    Attributes
    ----------
    objects_fetched : dict of str to int
        Fetches per object key, over every epoch so far.
    peak_objects_held : int
        Most shard objects whose rows were held at once.
    peak_rows_buffered : int
        Most clips in the shuffle buffer at once.
    peak_rows_held : int
        Most clips held at once: the buffer's plus those of the objects held.
    """

    objects_fetched: dict[str, int] = dataclasses.field(default_factory=dict)
    peak_objects_held: int = 0
    peak_rows_buffered: int = 0
    peak_rows_held: int = 0


def pin_version(table: Any, *, version: int | None = None, as_of: datetime | str | None = None) -> TablePin:
    """The version of ``table`` (an :class:`IndexTable`) a run reads: ``version``, the last one
    at ``as_of``, or the newest; with its digest.

    Raises
    ------
    StoreError
        No such version, or no table.
    ParameterError
        Both ``version`` and ``as_of``, or a malformed ``as_of``.
    """
    v = table.resolve(version=version, as_of=as_of)
    return TablePin(uri=str(table.uri), version=v, digest=table.version_digest(v))


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class ShardFeed:
    """Seeded, shuffled batches of the clips of some index rows, read whole object by object.

    Parameters
    ----------
    storage : Storage
        Where the shard objects are.
    view : FeatureView
        The view that wrote them.
    clip_seconds : int
    rows : pl.DataFrame
        Index rows of one table version (:meth:`IndexTable.scan`): ``object_key``,
        ``object_row``, ``clip_id``, ``genre`` and the digests (uint64) of ``arrays``.
    labels : sequence of str, optional
        The classes, in the order of ``y`` (default: the sorted distinct ``genre`` of ``rows``).
    arrays : sequence of str, optional
        Arrays of ``x`` (default: the view's ``default_arrays``).
    batch_size, buffer : int
        Clips per batch; clips of the shuffle buffer.
    seed : int
        With the epoch, the shard order and the buffer's draws.
    max_object_bytes : int
        The largest object fetched (a larger one is refused before it is read).
    """

    def __init__(self, *, storage: Any, view: Any, clip_seconds: int, rows: pl.DataFrame,
                 labels: Sequence[str] | None = None, arrays: Sequence[str] | None = None,
                 batch_size: int = DEFAULT_BATCH, buffer: int = DEFAULT_BUFFER, seed: int = 0,
                 max_object_bytes: int = DEFAULT_MAX_GET_BYTES) -> None:
        self.storage, self.view = storage, view
        self.clip_seconds = validate_clip_seconds(clip_seconds)
        self.batch_size, self.buffer = _positive("batch_size", batch_size), _positive("buffer", buffer)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ParameterError(f"seed must be an integer, got {seed!r}")
        self.seed, self.max_object_bytes = seed, max_object_bytes
        specs = {s.name: s for s in view.array_specs(self.clip_seconds) if s.hdf5}
        self.arrays = tuple(view.default_arrays if arrays is None else arrays)
        unknown = [n for n in self.arrays if n not in specs]
        if unknown or not self.arrays:
            raise ParameterError(f"the {view.name} view has no array {unknown or list(self.arrays)!r}; "
                                 f"its arrays are {list(specs)}")
        self.input_shape = _input_shape([specs[n].shape for n in self.arrays])
        self.labels = sorted(set(rows["genre"].to_list())) if labels is None else list(labels)
        codes = {g: i for i, g in enumerate(self.labels)}
        unlabelled = sorted(set(rows["genre"].to_list()) - set(codes))
        if unlabelled:
            raise ParameterError(f"rows hold labels {unlabelled[:3]} that labels {self.labels} lack")
        keep = ["object_key", "object_row", "clip_id", *(f"{DIGEST_PREFIX}{n}" for n in self.arrays)]
        missing = [c for c in [*keep, "genre"] if c not in rows.columns]
        if missing:
            raise ParameterError(f"the rows to feed lack the columns {missing}")
        signed = [pl.col(c).reinterpret(signed=True) for c in keep[3:] if rows.schema[c] == pl.UInt64]
        coded = rows.select(*keep, pl.col("genre").replace_strict(codes, return_dtype=pl.Int64).alias("_y"))
        coded = coded.with_columns(signed) if signed else coded  # read_shard takes digests as the table stores them
        self._objects = {str(k): part for (k,), part in coded.sort("object_key", "object_row")
                         .group_by("object_key", maintain_order=True)}
        self.clips = int(rows.height)
        self.epoch = 0
        self.stats = FeedStats()

    @property
    def object_keys(self) -> list[str]:
        """The shard objects of the selection, sorted."""
        return list(self._objects)

    def shard_order(self, epoch: int) -> list[str]:
        """The order in which epoch ``epoch`` visits the objects (a permutation seeded by seed and epoch)."""
        rng = np.random.default_rng([self.seed, epoch, 19])
        keys = self.object_keys
        return [keys[i] for i in rng.permutation(len(keys))]

    def read_object(self, key: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(x, y, clip ids)`` of the selected rows of one object, fetched once and checked.

        Raises
        ------
        IntegrityError
            One line: the object is damaged, foreign, or a row fails its digest.
        """
        part = self._objects[key]
        self.stats.objects_fetched[key] = self.stats.objects_fetched.get(key, 0) + 1
        got = read_shard(self.storage, key, view=self.view, clip_seconds=self.clip_seconds, rows=part,
                         arrays=list(self.arrays), max_bytes=self.max_object_bytes)
        x = assemble([got.arrays[n] for n in self.arrays], self.arrays, dtype="float32")
        return x, part["_y"].to_numpy(), got.clip_ids

    def clip_stream(self, epoch: int) -> Iterator[tuple[np.ndarray, int, str]]:
        """Every selected clip once, ``(x, y, clip_id)``, shards shuffled then mixed in the buffer."""
        rng = np.random.default_rng([self.seed, epoch, 23])
        buf_x: np.ndarray | None = None
        buf_y = np.empty(self.buffer, dtype=np.int64)
        buf_id: list[str] = [""] * self.buffer
        n = 0
        for key in self.shard_order(epoch):
            x, y, ids = self.read_object(key)
            if buf_x is None:
                buf_x = np.empty((self.buffer, *x.shape[1:]), dtype=np.float32)
            self._note(objects=1, buffered=n, held=n + len(y))
            for i in range(len(y)):
                if n < self.buffer:
                    buf_x[n], buf_y[n], buf_id[n] = x[i], y[i], ids[i]
                    n += 1
                    continue
                j = int(rng.integers(n))
                yield buf_x[j].copy(), int(buf_y[j]), buf_id[j]
                buf_x[j], buf_y[j], buf_id[j] = x[i], y[i], ids[i]
            self._note(objects=1, buffered=n, held=n + len(y))
            del x, y, ids  # the object's rows are in the buffer now, or were passed on
        if buf_x is None:  # no object: nothing to drain
            return
        for j in rng.permutation(n):
            yield buf_x[j].copy(), int(buf_y[j]), buf_id[j]

    def _note(self, *, objects: int, buffered: int, held: int) -> None:
        s = self.stats
        s.peak_objects_held = max(s.peak_objects_held, objects)
        s.peak_rows_buffered = max(s.peak_rows_buffered, buffered)
        s.peak_rows_held = max(s.peak_rows_held, held)

    def batches(self, epoch: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches ``(x, y)`` of one epoch (default: the next one); the last may be short.

        ``x`` [shape=(n, *input_shape), dtype=float32], ``y`` [shape=(n,), dtype=int64].
        """
        if epoch is None:
            epoch, self.epoch = self.epoch, self.epoch + 1
        xs: list[np.ndarray] = []
        ys: list[int] = []
        for x, y, _ in self.clip_stream(epoch):
            xs.append(x)
            ys.append(y)
            if len(ys) == self.batch_size:
                yield np.stack(xs), np.asarray(ys, dtype=np.int64)
                xs, ys = [], []
        if ys:
            yield np.stack(xs), np.asarray(ys, dtype=np.int64)

    def dataset(self) -> Any:
        """A ``tf.data.Dataset`` of :meth:`batches`: each pass over it is the next epoch.

        Its signature: ``x`` float32 ``(None, *input_shape)``, ``y`` int64 ``(None,)``.
        """
        from feature_store.quiet_tf import import_tensorflow

        tf = import_tensorflow()
        sig = (tf.TensorSpec((None, *self.input_shape), tf.float32), tf.TensorSpec((None,), tf.int64))
        ds = tf.data.Dataset.from_generator(lambda: self.batches(), output_signature=sig)
        n_batches = -(-self.clips // self.batch_size)
        return ds.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(1)


def _input_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The shape of one clip's ``x``, as :func:`assemble` makes it."""
    if len(shapes) == 1 and len(shapes[0]) > 1:
        return tuple(shapes[0])
    return (int(sum(int(np.prod(s)) for s in shapes)),)


def table_feed(*, storage: Any, view: Any, clip_seconds: int, version: int | None = None,
               as_of: datetime | str | None = None, scheme: str | None = None, parts: Sequence[str] | None = None,
               **kwargs: Any) -> tuple[ShardFeed, TablePin]:
    """A :class:`ShardFeed` over the rows of one version of the view's index table, and the pin.

    Parameters
    ----------
    storage : Storage
    view : FeatureView
    clip_seconds : int
    version, as_of : optional
        The version to read (:meth:`IndexTable.resolve`; default the newest).
    scheme, parts : optional
        Keep the rows of these split parts (e.g. ``seed``, ``["train"]``).
    **kwargs
        Passed on to :class:`ShardFeed` (``labels``, ``arrays``, ``batch_size``, ``buffer``, ``seed``).
    """
    from feature_store.engine.sharded import index_table

    table = index_table(storage, view, clip_seconds=clip_seconds)
    pin = pin_version(table, version=version, as_of=as_of)
    rows = table.scan(version=pin.version, scheme=scheme, parts=parts).collect()
    return ShardFeed(storage=storage, view=view, clip_seconds=clip_seconds, rows=rows, **kwargs), pin
