"""Training one model on one version of an index table: :func:`train_from_table`.

The run is the runner's (:mod:`training.runner`): the same selection of training and held-out
clips (:func:`training.selection.select`), the same family fit, scoring, record and
publication. What differs is where the clips come from: a :class:`TableStore`, one pinned
version of the view's index table on a storage (a folder or S3), read through the shard
objects that version names. The run record names the table, the version and its digest
(:attr:`RunRecord.table_uri`, ``table_version``, ``table_digest``).

Families that read their clips as arrays (the vector classifiers, and the Keras models with
their clips in memory) train this way; the clip arrays of the selection are read into memory,
object by object. Keras runs that stream their clips (``TrainConfig.stream``) read whole
shard objects one at a time instead (:mod:`training.table_source`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from feature_store.engine.arrays import assemble
from feature_store.engine.index import predicates
from feature_store.engine.shards import read_shard
from feature_store.engine.store import Tensors
from feature_store.errors import ParameterError
from feature_store.integrity import DIGEST_PREFIX
from feature_store.params import FeatureParams, validate_clip_seconds
from training.families.base import ModelFamily
from training.lake_feed import TablePin, pin_version
from training.record import RunRecord
from training.runner import fit_and_publish, plan_run
from training.table_source import TableReader, signed_digests


class TableStore:
    """One pinned version of a view's index table, queried as the runner queries a store.

    Implements what :func:`training.selection.select` and the families call on a
    :class:`~feature_store.engine.store.ViewStore`: :meth:`clips`, :meth:`tensors` and
    :meth:`describe`. ``hdf5_row`` is a clip's position in ``clip_id`` order within the version.

    Parameters
    ----------
    storage : Storage
    view : FeatureView
    clip_seconds : int
    rows : pl.DataFrame
        Every row of the version (:meth:`IndexTable.scan`).
    pin : TablePin
    """

    def __init__(self, *, storage: Any, view: Any, clip_seconds: int, rows: pl.DataFrame, pin: TablePin) -> None:
        self.storage, self.view, self.pin = storage, view, pin
        self.clip_seconds = validate_clip_seconds(clip_seconds)
        self.root = f"{pin.uri}@v{pin.version}"
        self._rows = rows.sort("clip_id").with_row_index("hdf5_row").with_columns(pl.col("hdf5_row").cast(pl.Int64))

    def describe(self) -> dict[str, Any]:
        """What the table records about the view beyond its rows: nothing (no extraction costs)."""
        return {"clip_lengths": {}}

    def _select(self, clip_seconds: int, *, genre: Any, split: Any, scheme: str, song_ids: Any) -> pl.DataFrame:
        if validate_clip_seconds(clip_seconds) != self.clip_seconds:
            raise ParameterError(f"this table holds {self.clip_seconds} s clips, not {clip_seconds} s")
        preds = predicates(genre=genre, split=split, scheme=scheme, song_ids=song_ids, source=self._rows)
        return self._rows.filter(*preds) if preds else self._rows

    def clips(self, *, clip_seconds: int, genre: Any = None, split: Any = None, scheme: str = "seed",
              song_ids: Sequence[str] | None = None) -> pl.LazyFrame:
        """The version's rows that the query selects, without digests, in ``hdf5_row`` order."""
        df = self._select(clip_seconds, genre=genre, split=split, scheme=scheme, song_ids=song_ids)
        return df.drop([c for c in df.columns if c.startswith(DIGEST_PREFIX)]).lazy()

    def tensors(self, *, clip_seconds: int, genre: Any = None, split: Any = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, arrays: Sequence[str] | None = None,
                dtype: str = "float32") -> Tensors:
        """The arrays of the selected clips, read object by object (each fetched once, every row
        checked against the version's digest), in ``hdf5_row`` order."""
        specs = {s.name: s for s in self.view.array_specs(self.clip_seconds) if s.hdf5}
        names = tuple(self.view.default_arrays if arrays is None else ([arrays] if isinstance(arrays, str) else arrays))
        unknown = [n for n in names if n not in specs]
        if unknown or not names:
            raise ParameterError(f"the {self.view.name} view has no array {unknown or list(names)!r}; "
                                 f"valid arrays are {list(specs)}")
        df = self._select(clip_seconds, genre=genre, split=split, scheme=scheme, song_ids=song_ids)
        out = {n: np.empty((df.height, *specs[n].shape), dtype=specs[n].dtype) for n in names}
        for (key,), part in df.with_row_index("_at").group_by("object_key", maintain_order=True):
            got = self.read_object(str(key), signed_digests(part), arrays=names)
            at = part["_at"].to_numpy()
            for n in names:
                out[n][at] = got[n]
        index = df.drop([c for c in df.columns if c.startswith(DIGEST_PREFIX)])
        x = assemble([out[n] for n in names], names, dtype=dtype)
        return Tensors(x=x, y=index["label"].to_numpy().astype(np.int64), index=index, arrays=names)

    @property
    def version_rows(self) -> pl.DataFrame:
        """Every row of the version, with digests (uint64) and ``hdf5_row``, in ``hdf5_row`` order."""
        return self._rows

    def read_object(self, key: str, rows: pl.DataFrame, *, arrays: Sequence[str]) -> dict[str, np.ndarray]:
        """The arrays of ``rows`` (digests as int64) of the object ``key``, fetched once and checked."""
        got = read_shard(self.storage, key, view=self.view, clip_seconds=self.clip_seconds, rows=rows,
                         arrays=list(arrays))
        return {n: got.arrays[n] for n in arrays}

    def stream_order(self, index: pl.DataFrame) -> pl.DataFrame:
        """``index`` (rows of this version) in the order of their objects and rows within them."""
        where = self._rows.select("clip_id", pl.col("object_key").alias("_key"), pl.col("object_row").alias("_row"))
        return (index.join(where, on="clip_id", how="left", maintain_order="left")
                .sort("_key", "_row", maintain_order=True).drop("_key", "_row"))

    def rows(self, *, clip_seconds: int) -> TableReader:
        """A reader of the version's clips by position, object by object (:class:`TableReader`)."""
        if validate_clip_seconds(clip_seconds) != self.clip_seconds:
            raise ParameterError(f"this table holds {self.clip_seconds} s clips, not {clip_seconds} s")
        return TableReader(self, arrays=self.view.default_arrays)

    def table(self, name: str, **_: Any) -> Any:
        raise ParameterError(f"a table version holds the view's arrays, not its {name!r} table: train this "
                             f"model from a store folder")


def open_table(*, storage: Any, view: Any, clip_seconds: int, version: int | None = None,
               as_of: datetime | str | None = None) -> TableStore:
    """The :class:`TableStore` of one version (default the newest) of ``view``'s index table."""
    from feature_store.engine.sharded import index_table

    table = index_table(storage, view, clip_seconds=clip_seconds)
    pin = pin_version(table, version=version, as_of=as_of)
    rows = table.scan(version=pin.version).collect()
    return TableStore(storage=storage, view=view, clip_seconds=clip_seconds, rows=rows, pin=pin)


def train_from_table(*, storage: Any, model_root: str | os.PathLike[str], model: str | ModelFamily,
                     clip_seconds: int, version: int | None = None, as_of: datetime | str | None = None,
                     params: FeatureParams | None = None, config: Any = None, progress: bool = False,
                     variant: str = "") -> RunRecord:
    """Train ``model`` on one version of its view's index table and publish the run.

    Parameters
    ----------
    storage : Storage or str
        Where the view's shards and index table are (a :class:`Storage`, a folder or ``s3://...``).
    model_root : path
        Model store root.
    model : str or ModelFamily
    clip_seconds : int
    version, as_of : optional
        The table version to train on: ``version``, the last one at ``as_of`` (a datetime or
        ISO 8601 time), or the newest (neither).
    params, config, progress
        As :func:`training.runner.train_model`.
    variant : str
        The run's variant (default ``table-v<version>``: a run of a table version never
        replaces a run of the store folder, nor one of another version).

    Returns
    -------
    RunRecord
        As :func:`training.runner.train_model`'s, with ``table_uri``, ``table_version`` and
        ``table_digest`` set; ``store_root`` is ``<table uri>@v<version>``.

    Raises
    ------
    ParameterError
        As :func:`train_model`; both ``version`` and ``as_of``; a model whose family reads
        something a table version does not hold (the mel baseline's summary table).
    StoreError
        No table, no such version, or a split that leaves no training or held-out clips.
    IntegrityError
        A shard object damaged, or a row that fails its digest.
    """
    from feature_store.engine.storage import open_storage

    plan = plan_run(model=model, clip_seconds=clip_seconds, params=params, config=config, variant=variant)
    storage = open_storage(storage) if isinstance(storage, (str, os.PathLike)) else storage
    store = open_table(storage=storage, view=plan.view.engine, clip_seconds=plan.clip_seconds, version=version,
                       as_of=as_of)
    # a run of a table version never takes the folder of a run of the store, nor of another version
    plan = dataclasses.replace(plan, variant=variant or f"table-v{store.pin.version}")
    pin = store.pin
    return fit_and_publish(plan, store, None, model_root=model_root, progress=progress,
                           extra={"table_uri": pin.uri, "table_version": pin.version, "table_digest": pin.digest})
