"""Shards as a Dagster partition dimension: one asset per pipeline view, ``<view>_shards``.

Each asset (group ``features_sharded``) is partitioned by clip length and shard
(:func:`shard_partitions`), so that a backfill of every partition is one task per (clip
length, shard), which dagster-celery or dagster-k8s hand to any worker host. A partition runs
:func:`feature_store.engine.sharded.publish_shard`: it builds the shard's songs into one new
immutable object and commits their rows to the index table of its view and clip length, on the
storage of :class:`assets.resources.ObjectStoreResource` (a local folder, or S3).

The task id is ``<run id>.<view>.<clip>.<shard>``: Dagster retries a step within its run, under
the same run id, so a retry adds no row twice; a new run is a new task, and adds a commit.

Downstream, :mod:`assets.index_tables` records each table version that the shards of a clip
length leave, with the digest of its rows' content as its data version, and
:mod:`assets.table_models` trains on it.

These assets are opt-in: :mod:`pipelines.definitions` registers them only when
``GTZAN_STORE_URL`` is set. Importing this module imports neither h5py nor deltalake; the
asset bodies do.
"""

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import dagster as dg
import polars as pl

from assets.ingest import song_splits
from assets.metadata import step_metadata
from assets.partitions import PIPELINE_VIEWS, clip_partitions
from assets.policies import RETRY_POLICY
from assets.resources import AudioSource, FeatureStoreResource, ObjectStoreResource
from feature_store.bounds import MAX_SHARDS
from feature_store.errors import ParameterError, StoreError
from feature_store.integrity import IntegrityError

#: The asset group of the sharded assets.
GROUP = "features_sharded"
#: The most partitions one sharded asset may have (shards x clip lengths): Dagster's UI slows
#: down with tens of thousands of partitions.
MAX_PARTITIONS = 4096
#: Columns left out of a shard's rows digest: where the rows are and what wrote them, which a
#: rebuild of the same data changes.
UNDIGESTED = ("object_key", "object_row", "run_id", "task_id", "code_version")


def sharded_asset_name(view: str) -> str:
    """The sharded asset of the view called ``view``: ``<view>_shards``."""
    return f"{view}_shards"


def shard_key(shard: int) -> str:
    """The ``shard`` partition key of shard ``shard``: four digits, ``0007``."""
    return f"{shard:04d}"


def shard_partitions(shards: int) -> dg.MultiPartitionsDefinition:
    """The partitions of a sharded asset: ``clip`` (clip lengths) by ``shard`` (``0000``.. ``S-1``).

    Raises
    ------
    ParameterError
        If ``shards`` is not in ``1..MAX_SHARDS``, or makes more than :data:`MAX_PARTITIONS`.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ParameterError(f"shards must be an integer in 1..{MAX_SHARDS}, got {shards!r}")
    clips = len(clip_partitions.get_partition_keys())
    if shards * clips > MAX_PARTITIONS:
        raise ParameterError(f"GTZAN_SHARDS={shards} makes {shards * clips} partitions of each sharded asset "
                             f"({clips} clip lengths); at most {MAX_PARTITIONS} keep Dagster's UI responsive, "
                             f"so GTZAN_SHARDS must be at most {MAX_PARTITIONS // clips}")
    return dg.MultiPartitionsDefinition({
        "clip": clip_partitions,
        "shard": dg.StaticPartitionsDefinition([shard_key(s) for s in range(shards)]),
    })


def task_id(*, run_id: str, view: str, clip_seconds: int, shard: int) -> str:
    """The id of one shard task: the same on every retry of a step within a run."""
    return f"{run_id}.{view}.{clip_seconds}.{shard_key(shard)}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardOutcome:
    """What one partition of a sharded asset did.

    Attributes
    ----------
    view, task_id, object_key, table_uri, rows_digest : str
        ``object_key`` is the object the task's rows name (an earlier try's, on a retry);
        ``rows_digest`` is ``sha256:<hex>`` of the task's rows, where and by what they were
        written left out (:data:`UNDIGESTED`).
    clip_seconds, shard, shards, table_version, rows, rows_added : int
        ``table_version`` holds the task's rows; ``rows_added`` is 0 when an earlier try committed.
    committed : bool
        Whether this call made the commit.
    params_hash : str
    """

    view: str
    clip_seconds: int
    shard: int
    shards: int
    task_id: str
    object_key: str
    table_uri: str
    table_version: int
    rows: int
    rows_added: int
    committed: bool
    rows_digest: str
    params_hash: str

    def data_version(self) -> dg.DataVersion:
        """The shard's data version: the view's parameters and the digest of its rows, read at
        the table version that holds them. A rebuild that stores the same rows (in a new
        object, a new commit) keeps it, so nothing downstream is marked stale."""
        return dg.DataVersion(f"{self.params_hash}:{self.rows_digest.removeprefix('sha256:')[:32]}")

    def metadata(self) -> dict[str, Any]:
        """The partition's metadata (what the UI shows)."""
        return {"view": self.view, "clip_seconds": self.clip_seconds, "shard": self.shard, "shards": self.shards,
                "task_id": self.task_id, "rows": self.rows, "rows_added": self.rows_added,
                "committed": self.committed, "object_key": self.object_key, "table_version": self.table_version,
                "table": self.table_uri, "rows_digest": self.rows_digest, "params_hash": self.params_hash}


def rows_digest(rows: pl.DataFrame, *, leave_out: Sequence[str] = UNDIGESTED) -> str:
    """``sha256:<hex>`` of some index rows in clip order, the ``leave_out`` columns left out.

    Each row's array digests are among the columns, so equal digests mean equal arrays. The
    rows are sorted by ``clip_id``, then by every other digested column, so that the digest
    does not depend on the order in which the table's files hold them.
    """
    cols = sorted(c for c in rows.columns if c not in leave_out)
    line = pl.concat_str([pl.col(c).cast(pl.String).fill_null("\x00") for c in cols], separator="\x1f").alias("r")
    h = hashlib.sha256("\x1f".join(cols).encode())
    # the text of one slice at a time: a table version's rows are millions
    for chunk in rows.select(cols).sort(["clip_id", *(c for c in cols if c != "clip_id")]).iter_slices(65536):
        h.update(("\n" + "\n".join(chunk.select(line)["r"].to_list())).encode())
    return f"sha256:{h.hexdigest()}"


def publish_partition(*, view: str, clip_seconds: int, shard: int, shards: int, run_id: str,
                      audio: AudioSource, features: FeatureStoreResource,
                      objects: ObjectStoreResource) -> ShardOutcome:
    """Build and commit one (clip length, shard) partition of ``view``'s sharded asset.

    Runs :func:`~feature_store.engine.sharded.publish_shard` with the task id of ``run_id``
    (:func:`task_id`) and lineage (parameter hash, package version, ``run_id``), then reads the
    shard's rows back at the table version that holds them, for their digest. A shard
    published before with the same songs is left as it is (its rows, digest and data version
    are those of the run that published it); one whose songs changed (a song's content moves
    it to another shard) is rebuilt and its rows replaced in one commit.

    Raises
    ------
    ParameterError
        Bad configuration (a view, clip length, shard or URL).
    StoreError
        Ingest has not run, or the storage or the commit failed (a retry may succeed).
    """
    from feature_store.engine.sharded import index_table, lineage_of, publish_shard

    store = features.view_store(view)
    storage = objects.storage(store_root=features.root)
    lineage = lineage_of(store.view, run_id=run_id)  # as `gtzan features publish` records it
    params_hash = lineage.params_hash
    tid = task_id(run_id=run_id, view=view, clip_seconds=clip_seconds, shard=shard)
    done = publish_shard(store, storage=storage, shard=shard, shards=shards, clip_seconds=clip_seconds,
                         audio_root=audio.genre_root(), task_id=tid, workers=features.workers_for(store.view),
                         lineage=lineage, replace=True)
    table = index_table(storage, store.view, clip_seconds=clip_seconds)
    # the shard's rows at the version that holds them: this task's, or those of the task that
    # published the same songs before (the engine commits a shard's rows only when they change)
    mine = table.scan(version=done.version).filter(pl.col("shard") == shard).collect()
    keys = mine["object_key"].unique().to_list()
    return ShardOutcome(view=view, clip_seconds=clip_seconds, shard=shard, shards=shards, task_id=tid,
                        object_key=done.object_key or (keys[0] if keys else ""), table_uri=table.uri,
                        table_version=done.version, rows=mine.height, rows_added=done.rows,
                        committed=done.committed, rows_digest=rows_digest(mine), params_hash=params_hash)


def sharded_asset(view: str, *, shards: int) -> dg.AssetsDefinition:
    """The sharded asset of the view called ``view``, over ``shards`` shards."""
    from feature_store.views import VIEWS

    partitions = shard_partitions(shards)

    @dg.asset(
        key=sharded_asset_name(view),
        group_name=GROUP,
        kinds={"hdf5", "deltalake"},
        deps=[song_splits],
        partitions_def=partitions,
        retry_policy=RETRY_POLICY,
        description=f"The {view} view built shard by shard: each partition (clip length x shard, of {shards} "
        f"shards by song content hash) writes one immutable HDF5 object and commits its rows, once per task, to "
        f"the view's Delta index table of that clip length. {VIEWS[view].description}",
    )
    def _asset(context: dg.AssetExecutionContext, audio: AudioSource, features: FeatureStoreResource,
               objects: ObjectStoreResource) -> dg.MaterializeResult:
        keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
        clip_seconds, shard = int(keys["clip"]), int(keys["shard"])
        try:
            out = publish_partition(view=view, clip_seconds=clip_seconds, shard=shard, shards=shards,
                                    run_id=context.run.run_id, audio=audio, features=features, objects=objects)
        except (ParameterError, IntegrityError) as exc:  # no retry fixes configuration, nor damaged data
            raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc
        except StoreError as exc:  # storage or a commit race: the retry policy tries again
            raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=True) from exc
        context.log.info(f"{view} {clip_seconds} s shard {shard_key(shard)}: {out.rows} rows in table version "
                         f"{out.table_version}" + ("" if out.committed else " (committed by an earlier try)"))
        return dg.MaterializeResult(metadata=step_metadata(out.metadata(), features), data_version=out.data_version())

    return _asset


def sharded_assets(*, shards: int) -> list[dg.AssetsDefinition]:
    """One sharded asset per pipeline view (:data:`assets.partitions.PIPELINE_VIEWS`)."""
    return [sharded_asset(view, shards=shards) for view in PIPELINE_VIEWS]
