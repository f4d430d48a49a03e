"""Table versions as Dagster data versions: one asset per pipeline view, ``<view>_table``.

Each asset (group ``features_sharded``) is partitioned by clip length, and each partition
depends on every shard of that clip length of ``<view>_shards`` (the mapping from the shards'
``clip x shard`` partitions to the ``clip`` dimension). A partition reads the newest version of
the view's index table of that clip length, the one the shard tasks committed to, and records
it: its version number, rows, the shards and parameters that wrote them, and two digests:

* ``table_digest``: :meth:`~feature_store.engine.lake.IndexTable.version_digest`, the digest a
  model trained on the version records (it covers where the rows' arrays are stored);
* ``rows_digest``: the digest of the rows' *content* (:func:`content_digest`): ids, labels,
  split parts, array digests and parameters, but not which object, row, shard, run, task or
  code version wrote them.

The partition's Dagster **data version** is the content digest. A re-publish that changes no
row (the same shards published again, or rebuilt into new objects and a new table) gives the
same data version, so nothing downstream is stale and
:data:`assets.policies.ON_DEP_DATA_VERSION_CHANGED` trains no model; a changed, added or removed
clip, or new parameters, give another, and the models that read the partition become stale
(*Unsynced* in the UI) and are requested.

Why a materialized asset and not an observable source asset: a source asset has no upstream,
so Dagster would not relate the table to the shards that write it, nor run it after them in
one backfill, nor let ``eager()`` follow them. The table partition writes nothing: its
materialization *is* the observation of the version the shard tasks left, and the model
(:mod:`assets.table_models`) trains on exactly the version its upstream materialization
recorded, whatever was committed since.
"""

import dataclasses
from typing import Any

import dagster as dg
import polars as pl

from assets.metadata import step_metadata
from assets.partitions import PIPELINE_VIEWS, clip_partitions
from assets.policies import EAGER, RETRY_POLICY
from assets.resources import FeatureStoreResource, ObjectStoreResource
from assets.sharded import GROUP, UNDIGESTED, rows_digest, sharded_asset_name
from feature_store.errors import ParameterError, StoreError
from feature_store.integrity import IntegrityError

#: Columns left out of a table version's content digest: those of a shard's (where the rows
#: are, what wrote them) and the shard itself (the same clips in more shards are the same data).
TABLE_UNDIGESTED = (*UNDIGESTED, "shard")


class NoTableError(StoreError):
    """No shard of a view and clip length is published yet: a retry does not help."""


def table_asset_name(view: str) -> str:
    """The table asset of the view called ``view``: ``<view>_table``."""
    return f"{view}_table"


def content_digest(rows: pl.DataFrame) -> str:
    """``sha256:<hex>`` of a table version's rows, :data:`TABLE_UNDIGESTED` columns left out."""
    return rows_digest(rows, leave_out=TABLE_UNDIGESTED)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableObservation:
    """One version of a view's index table, as a ``<view>_table`` partition records it.

    Attributes
    ----------
    view, table_uri : str
    clip_seconds, version, rows : int
    shards : tuple of int
        The shards that have rows in the version.
    params_hashes : tuple of str
        The parameter hashes of its rows (one, unless the view's parameters changed).
    rows_digest : str
        :func:`content_digest` of its rows (``sha256:<hex>``): the data version.
    table_digest : str
        :meth:`IndexTable.version_digest` of the version: what a model trained on it records.
    """

    view: str
    clip_seconds: int
    table_uri: str
    version: int
    rows: int
    shards: tuple[int, ...]
    params_hashes: tuple[str, ...]
    rows_digest: str
    table_digest: str

    def data_version(self) -> dg.DataVersion:
        """The partition's data version: its content digest (32 hex digits, 128 bits)."""
        return dg.DataVersion(self.rows_digest.removeprefix("sha256:")[:32])

    def metadata(self) -> dict[str, Any]:
        """The partition's metadata (what the UI shows, and what the model step reads back)."""
        return {"view": self.view, "clip_seconds": self.clip_seconds, "table": self.table_uri,
                "table_version": self.version, "rows": self.rows, "shards_with_rows": len(self.shards),
                "params_hash": ", ".join(self.params_hashes), "rows_digest": self.rows_digest,
                "table_digest": self.table_digest}


def observe_table(*, view: str, clip_seconds: int, features: FeatureStoreResource,
                  objects: ObjectStoreResource) -> TableObservation:
    """The newest version of ``view``'s index table at ``clip_seconds``, with its digests.

    Raises
    ------
    ParameterError
        Bad configuration (a view, clip length or URL).
    NoTableError
        No shard published yet (no table).
    StoreError
        The storage failed.
    """
    from feature_store.engine.sharded import index_table

    store = features.view_store(view)
    table = index_table(objects.storage(store_root=features.root), store.view, clip_seconds=clip_seconds)
    if not table.exists():
        raise NoTableError(f"no shard of the {view} view at {clip_seconds} s is published (no index table at "
                         f"{table.uri}): materialize {sharded_asset_name(view)} first")
    version = table.latest_version()
    rows = table.scan(version=version).collect()
    return TableObservation(
        view=view, clip_seconds=clip_seconds, table_uri=table.uri, version=version, rows=rows.height,
        shards=tuple(sorted(set(rows["shard"].to_list()))),
        params_hashes=tuple(sorted(set(rows["params_hash"].to_list()))),
        rows_digest=content_digest(rows), table_digest=table.version_digest(version))


def settle_table(*, view: str, clip_seconds: int, features: FeatureStoreResource,
                 objects: ObjectStoreResource) -> int | None:
    """Compact ``view``'s index table at ``clip_seconds`` once its shards are materialized
    (:func:`feature_store.engine.sharded.compact_table`): the compaction's version, or None.
    It moves rows and adds none, so the content digest, and the data version, stay."""
    from feature_store.engine.sharded import compact_table

    store = features.view_store(view)
    return compact_table(objects.storage(store_root=features.root), store.view, clip_seconds=clip_seconds)


def table_asset(view: str, *, shards: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The table asset of the view called ``view``, downstream of its sharded asset ``shards``."""

    @dg.asset(
        key=table_asset_name(view),
        group_name=GROUP,
        kinds={"deltalake"},
        # every shard of the partition's clip length: Dagster infers the mapping from the shards'
        # clip x shard partitions to their clip dimension (MultiToSingleDimensionPartitionMapping)
        deps=[shards],
        partitions_def=clip_partitions,
        retry_policy=RETRY_POLICY,
        automation_condition=EAGER,
        description=f"The newest version of the {view} view's Delta index table of each clip length, which "
        f"every shard of {sharded_asset_name(view)} of that length commits to. Its data version is the digest of "
        "the rows' content (ids, labels, splits, array digests, parameters; not where they are stored nor what "
        "wrote them): a re-publish that changes no row keeps it, so no model retrains. It first compacts the "
        "table (one file per label and split part, the same rows), so that a new reader's query reads one file. Metadata: the "
        "version, rows, shards, and the digests.",
    )
    def _asset(context: dg.AssetExecutionContext, features: FeatureStoreResource,
               objects: ObjectStoreResource) -> dg.MaterializeResult:
        clip_seconds = int(context.partition_key)
        try:
            compacted = settle_table(view=view, clip_seconds=clip_seconds, features=features, objects=objects)
            seen = observe_table(view=view, clip_seconds=clip_seconds, features=features, objects=objects)
        except (ParameterError, IntegrityError, NoTableError) as exc:  # no retry fixes these
            raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc
        except StoreError as exc:  # the storage may recover: the retry policy tries again
            raise dg.Failure(description=f"StoreError: {exc}", allow_retries=True) from exc
        context.log.info(f"{view} {clip_seconds} s: table version {seen.version}, {seen.rows} rows of "
                         f"{len(seen.shards)} shards, data version {seen.data_version().value}"
                         + ("" if compacted is None else f" (compacted in version {compacted})"))
        return dg.MaterializeResult(metadata=step_metadata(seen.metadata(), features), data_version=seen.data_version())

    return _asset


def table_assets(*, shards: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """One table asset per pipeline view, each downstream of that view's sharded asset in ``shards``."""
    by_key = {a.key: a for a in shards}
    return [table_asset(view, shards=by_key[dg.AssetKey(sharded_asset_name(view))]) for view in PIPELINE_VIEWS]
