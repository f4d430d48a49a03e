"""``gtzan features publish|history|lake-query|vacuum``: the sharded store from the command line.

A view's songs are spread over ``$GTZAN_SHARDS`` shards by content hash; ``publish`` builds
each shard at each clip length into one new object and commits its rows to the index table
of the view and clip length (:mod:`feature_store.engine.sharded`), a Delta Lake table with
versions. ``history`` lists those versions, ``lake-query`` reads one of them (by number or
by time) and ``vacuum`` deletes what no kept version references.

Where the objects and tables live is decided once, by :attr:`Settings.objects_location
<pipelines.settings.Settings.objects_location>` (opened by :func:`store_storage`): the storage
of ``$GTZAN_STORE_URL``, else the local folder ``<store root>/objects``. This is opt-in and
beside the store of ``gtzan features build`` (its generations and ``index.parquet``), which
it does not change.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import click

from feature_store.engine.lake.upkeep import DEFAULT_RETAIN_VERSIONS, DEFAULT_RETENTION_HOURS
from pipelines.cli.console import plural, quiet_tensorflow
from pipelines.cli.group import EXIT_USAGE, CLIError
from pipelines.cli.options import (
    output_options,
    SettingOption,
    clip_list,
    feature_options,
    int_list,
    pass_workspace,
    split_values,
    store_option,
    view_options,
    workers_type,
)
from pipelines.cli.workspace import Workspace
from pipelines.settings import MAX_QUERY_LIMIT, Settings

#: The largest table version: Delta Lake numbers its versions with a signed 64-bit integer.
MAX_TABLE_VERSION = 2**63 - 1
#: The longest retention ``vacuum`` takes, in hours (a century): past it, times overflow.
MAX_RETENTION_HOURS = 100 * 366 * 24
#: Task ids and their prefixes (``--task-id``): what a Dagster run id or step key is made of.
_TASK_ID = re.compile(r"[A-Za-z0-9_.:|@=+-]{1,180}")


def store_storage(settings: Settings) -> Any:
    """The storage of the sharded store, at :attr:`Settings.objects_location`: the storage of
    ``settings.store_url`` (``s3://bucket/prefix``), else the local folder ``<store root>/objects``.

    The commands here place their objects and index tables with it; code below ``pipelines``
    (the Dagster resources) reads the same property and opens it with
    :func:`feature_store.engine.storage.open_storage`.

    Returns
    -------
    feature_store.engine.storage.Storage

    Raises
    ------
    ParameterError
        A malformed ``s3://`` URL or a refused S3 configuration.
    """
    from feature_store.engine.storage import open_storage

    return open_storage(settings.objects_location)


def lineage_of(view: Any, *, run_id: str) -> Any:
    """The lineage of a commit of ``view``'s rows (:func:`feature_store.engine.sharded.lineage_of`)."""
    from feature_store.engine.sharded import lineage_of as engine_lineage

    return engine_lineage(view, run_id=run_id)


def publish_hint(view: str, clip_seconds: int | None) -> str:
    """The command that publishes ``view`` (at ``clip_seconds``)."""
    parts = ["gtzan features publish", *([f"--view {view}"] if view != "mel" else []),
             *([f"--clip-seconds {clip_seconds}"] if clip_seconds else [])]
    return "`" + " ".join(parts) + "`"


def lake_table(ws: Workspace, view: str, clip_seconds: int, *, must_exist: bool = True) -> Any:
    """The index table of ``view`` at ``clip_seconds`` in :func:`store_storage`; with
    ``must_exist``, a one-line error naming the publish command when there is none."""
    from feature_store.engine.sharded import index_table

    table = index_table(store_storage(ws.settings), ws.view_store(view).view, clip_seconds=clip_seconds)
    if must_exist and not table.exists():
        raise CLIError(f"no published {view} index at {clip_seconds} s ({table.uri}); publish it first: "
                       f"{publish_hint(view, clip_seconds)}")
    return table


def _task_prefix(value: str | None) -> str | None:
    if value is not None and not _TASK_ID.fullmatch(value):
        raise CLIError(f"--task-id must be 1 to 180 letters, digits and _.:|@=+-, got {value!r}", EXIT_USAGE)
    return value


def _one_clip(value: str | None) -> int | None:
    from feature_store.params import validate_clip_seconds

    return None if value is None else validate_clip_seconds(value)


def _published(ws: Workspace, view: str, clip_seconds: str | None) -> dict[int, Any]:
    """The index tables of ``view``: at ``--clip-seconds`` (which must be published), else at
    every clip length of the settings that is; a one-line error when there is none."""
    one = _one_clip(clip_seconds)
    lengths = [one] if one is not None else list(ws.settings.clip_seconds)
    tables = {c: lake_table(ws, view, c, must_exist=one is not None) for c in lengths}
    tables = {c: t for c, t in tables.items() if one is not None or t.exists()}
    if not tables:
        raise CLIError(f"no published {view} index under {store_storage(ws.settings).url}; publish it first: "
                       f"{publish_hint(view, None)}")
    return tables


# ---------------------------------------------------------------------------------------
# publish
# ---------------------------------------------------------------------------------------
@click.command("publish")
@click.argument("audio_dir", required=False, type=click.Path(path_type=Path))
@click.option("--clip-seconds", "clip_seconds", cls=SettingOption, setting="clip_seconds", convert=clip_list,
              multiple=True, help="Clip lengths to publish: 1, 5, 15, 30 (repeat or separate with commas).")
@click.option("--shards", cls=SettingOption, setting="shards", type=int,
              help="Shards the view's songs are spread over ($GTZAN_SHARDS).")
@click.option("--shard", "shard_values", multiple=True,
              help="Publish only these shards (repeat or separate with commas; default: every shard).")
@click.option("--task-id", "task_id", default=None,
              help="Stable id of this publish: shard K's task is <TASK-ID>.shard-K, and two runs of the same "
                   "--task-id commit each shard once, even at the same time (default: a new cli-<uuid>). A shard "
                   "whose songs the table holds already is skipped, whatever the id.")
@click.option("--replace", is_flag=True,
              help="Rebuild a published shard whose songs changed into a new object and replace its rows in one "
                   "commit (earlier versions keep the old rows); a shard whose songs are unchanged is left as it is.")
@click.option("--workers", type=workers_type(), default=None, help="Worker processes (default: $GTZAN_WORKERS).")
@view_options
@feature_options
@store_option
@pass_workspace
def publish_command(ws: Workspace, audio_dir: Path | None, shard_values: tuple[str, ...], task_id: str | None,
                    replace: bool, workers: int | None, view: str) -> None:
    """Build a view's shards into objects and commit each to its index table.

    Each shard of each clip length is one task: its songs computed (songs
    already in the per-song cache are not computed again), written as one
    new HDF5 object, and its rows committed to the view's index table in
    one atomic commit, a new table version. A shard whose songs the table
    holds already is skipped; one whose songs changed since is rebuilt and
    its rows replaced in one commit with --replace. The objects and tables
    go to $GTZAN_STORE_URL, else to <store root>/objects. Run `gtzan ingest`
    first.

    \b
    Examples:
      gtzan features publish --view timbre --clip-seconds 5
      gtzan features publish --clip-seconds 5 --shard 0,1 --task-id nightly-2026-12-06
      gtzan features publish --clip-seconds 5 --replace
    """
    from pipelines.cli.features import _check_audio_root

    from feature_store.engine.sharded import publish_shard

    s = ws.settings
    shards = int_list("--shard", most=s.shards - 1)(shard_values) if shard_values else tuple(range(s.shards))
    prefix = _task_prefix(task_id)
    run_id = f"cli-{uuid.uuid4().hex}"
    store = ws.view_store(view)
    root = _check_audio_root(ws, store, audio_dir)
    store.view.provenance()  # what the view needs installed, named before any work
    if store.view.main_process:
        quiet_tensorflow(s.debug)
    storage = store_storage(s)
    lineage = lineage_of(store.view, run_id=run_id)
    for c in s.clip_seconds:
        held, empty = _songs_held(storage, store, clip_seconds=c, shards=s.shards)
        for k in sorted(set(shards)):
            songs, have = held.get(k, (0, 0))
            where = f"{view} {c:>2} s shard {k}"
            if songs == 0 or (have and not replace):
                click.echo(f"{where}: no songs; nothing to publish" if songs == 0 else
                           f"{where}: published before ({have} of its {plural(songs, 'song')} in the table); "
                           "nothing added")
                continue
            if k in empty and not replace:
                click.echo(f"{where}: published before, with no clips; nothing added")
                continue
            done = publish_shard(store, storage=storage, shard=k, shards=s.shards, clip_seconds=c, audio_root=root,
                                 task_id=f"{prefix or run_id}.shard-{k}", lineage=lineage,
                                 workers=workers if workers is not None else (s.workers or None), replace=replace)
            if done.committed:
                click.echo(f"{where}: {plural(done.rows, 'row')}, object {done.object_key}, version {done.version}")
            elif done.note:
                click.echo(f"{where}: {done.note}")
            else:
                first = _version_of_task(storage, store.view, clip_seconds=c, task_id=done.task_id)
                click.echo(f"{where}: task {done.task_id} committed before, in version "
                           f"{done.version if first is None else first}; nothing added")


def _songs_held(storage: Any, store: Any, *, clip_seconds: int,
                shards: int) -> tuple[dict[int, tuple[int, int]], set[int]]:
    """Per shard, its usable songs in the catalog and how many of them the newest version of
    the table already holds; and the shards whose commits added no row (no clip: songs too short).

    The table only appends: a shard whose songs it holds in part or in whole (published
    before, under any task id or shard count) is not published again, which would add
    its rows twice.
    """
    import polars as pl

    from feature_store.engine.sharded import index_table
    from feature_store.engine.shards import shards_of

    catalog = store.catalog()
    ok = catalog.filter(pl.col("status") == "ok").select("song_id", "sha256")
    ok = ok.with_columns(shards_of(ok["sha256"], shards=shards))
    table = index_table(storage, store.view, clip_seconds=clip_seconds)
    exists = table.exists()
    have = table.scan().select("song_id").unique().collect() if exists else pl.DataFrame(schema={"song_id": pl.String})
    commits = table.history() if exists else []
    added = {v.shard for v in commits if v.shard is not None and v.rows_added}
    empty = {v.shard for v in commits if v.shard is not None and v.operation == "WRITE"} - added
    counts = ok.with_columns(pl.col("song_id").is_in(have["song_id"].implode()).alias("held")).group_by("shard").agg(
        pl.len().alias("songs"), pl.col("held").sum().alias("held"))
    return {int(k): (int(n), int(h)) for k, n, h in counts.select("shard", "songs", "held").iter_rows()}, empty


def _version_of_task(storage: Any, view: Any, *, clip_seconds: int, task_id: str) -> int | None:
    """The version whose commit a task made, while the table's log still holds it."""
    from feature_store.engine.sharded import index_table

    found = [v.version for v in index_table(storage, view, clip_seconds=clip_seconds).history() if v.task_id == task_id]
    return found[0] if found else None


# ---------------------------------------------------------------------------------------
# history
# ---------------------------------------------------------------------------------------
def _utc(when: Any) -> str:
    """An aware time as ``2026-12-06T23:59:01Z``."""
    from datetime import UTC

    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.command("history")
@click.option("--clip-seconds", "clip_seconds", default=None,
              help="Clip length: 1, 5, 15 or 30 (default: every clip length of the settings that is published).")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@view_options
@feature_options
@store_option
@pass_workspace
def history_command(ws: Workspace, clip_seconds: str | None, as_json: bool, view: str) -> None:
    """List the versions of a view's index table and what wrote them.

    One line per version: the version, its time (UTC), the operation, the
    rows it added, the rows of the table then, and the run and task that
    wrote it.

    \b
    Examples:
      gtzan features history --view timbre --clip-seconds 5
      gtzan features history --clip-seconds 5 --json
    """
    tables = _published(ws, view, clip_seconds)
    out = []
    for c, table in tables.items():
        versions = table.history()
        if as_json:
            out.extend({"view": view, "clip_seconds": c, "version": v.version, "time": _utc(v.timestamp),
                        "operation": v.operation, "rows_added": v.rows_added, "rows_removed": v.rows_removed,
                        "total_rows": v.total_rows,
                        "run_id": v.run_id, "task_id": v.task_id, "shard": v.shard,
                        "code_version": v.code_version, "params_hash": v.params_hash} for v in versions)
            continue
        click.echo(f"{view} {c} s: {table.uri}")
        click.echo(f"  {'version':>7}  {'time (UTC)':<20}  {'operation':<12}  {'added':>7}  {'rows':>7}  run  task")
        for v in versions:
            click.echo(f"  {v.version:>7}  {_utc(v.timestamp):<20}  {v.operation:<12}  {v.rows_added:>7}  "
                       f"{v.total_rows:>7}  {v.run_id or '-'}  {v.task_id or '-'}")
    if as_json:
        click.echo(json.dumps(out, indent=2))


# ---------------------------------------------------------------------------------------
# lake-query
# ---------------------------------------------------------------------------------------
#: Columns of ``gtzan features lake-query`` shown as a table unless ``--columns`` says otherwise.
LAKE_COLUMNS = ("clip_id", "genre", "label", "shard", "object_row", "run_id")


def _labels_of(ws: Workspace, view: str, genres: list[str]) -> list[int] | None:
    """The labels of ``genres`` by the store's label order (None: every label)."""
    from feature_store.engine.plugins import store_labels

    if not genres:
        return None
    store = ws.view_store(view)
    labels = list(store_labels(store.root, store.catalog()))
    unknown = [g for g in genres if g not in labels]
    if unknown:
        raise CLIError(f"unknown genre {unknown[0]!r}; valid genres are {labels}", EXIT_USAGE)
    return [labels.index(g) for g in genres]


@click.command("lake-query")
@click.option("--clip-seconds", "clip_seconds", required=True, help="Clip length: 1, 5, 15 or 30.")
@click.option("--version", "version", type=click.IntRange(0, MAX_TABLE_VERSION), default=None,
              help="Read this table version (see `gtzan features history`; default: the newest).")
@click.option("--as-of", "as_of", default=None,
              help="Read the version that was newest at this time (ISO 8601, e.g. 2026-12-06T23:00:00Z; "
                   "no zone: UTC).")
@click.option("--genre", multiple=True, help="Keep these genres (repeat or separate with commas).")
@click.option("--split", multiple=True, help="Keep these parts of --scheme, e.g. train, test, valid, fold0.")
@click.option("--scheme", default="seed", show_default=True, help="Split scheme: seed | stratified | fault_filtered.")
@click.option("--count", "count", is_flag=True, help="Print the number of clips per genre instead of the rows.")
@click.option("--columns", default=None, help="Comma-separated columns to output (default: all; a few for tables).")
@click.option("--limit", type=click.IntRange(0, MAX_QUERY_LIMIT), default=None, help="At most this many rows.")
@output_options
@view_options
@feature_options
@store_option
@pass_workspace
def lake_query_command(ws: Workspace, clip_seconds: str, version: int | None, as_of: str | None,
                       genre: tuple[str, ...], split: tuple[str, ...], scheme: str, count: bool, columns: str | None,
                       limit: int | None, fmt: str | None, output: Path | None, view: str) -> None:
    """Select rows of one version of a view's published index table.

    A version is pinned by number (--version) or by time (--as-of); the
    rows are those the table held then, with their lineage (params hash,
    code version, run and task ids) and where their arrays are (object key
    and row). Only the files of the selected genres are read.

    \b
    Examples:
      gtzan features lake-query --view timbre --clip-seconds 5 --version 1
      gtzan features lake-query --clip-seconds 5 --as-of 2026-12-06T23:00:00Z --genre jazz --split test
      gtzan features lake-query --clip-seconds 5 --count
    """
    from pipelines.cli.features_query import format_of, select_columns, write_rows, write_table

    from feature_store.params import validate_clip_seconds

    c = validate_clip_seconds(clip_seconds)
    if version is not None and as_of is not None:
        raise CLIError("give --version or --as-of, not both", EXIT_USAGE)
    fmt = fmt or format_of(output)
    table = lake_table(ws, view, c)
    pinned = table.resolve(version=version, as_of=as_of)
    parts = split_values(split) or None
    df = table.scan(version=pinned, labels=_labels_of(ws, view, split_values(genre)), scheme=scheme,
                    parts=parts).collect().sort("clip_id")
    if count:
        import polars as pl

        df = df.group_by("genre").agg(pl.len().alias("clips")).sort("genre")
        click.echo(f"{view} {c} s, version {pinned}: {plural(int(df['clips'].sum()), 'clip')}")
        for g, n in df.iter_rows():
            click.echo(f"  {g:<12} {n}")
        return
    df = select_columns(df, columns)
    if fmt == "table":
        click.echo(f"{view} {c} s, version {pinned} of {table.uri}", err=output is not None)
        write_table(df, None if columns else list(LAKE_COLUMNS), limit, output)
    else:
        write_rows(df.head(limit) if limit is not None else df, fmt, output)


# ---------------------------------------------------------------------------------------
# vacuum
# ---------------------------------------------------------------------------------------
@click.command("vacuum")
@click.option("--clip-seconds", "clip_seconds", default=None,
              help="Clip length: 1, 5, 15 or 30 (default: every clip length of the settings that is published).")
@click.option("--retain-versions", "retain_versions", type=click.IntRange(1, MAX_TABLE_VERSION),
              default=DEFAULT_RETAIN_VERSIONS, show_default=True, help="Keep at least the newest N versions readable.")
@click.option("--retention-hours", "retention_hours", type=click.IntRange(0, MAX_RETENTION_HOURS),
              default=DEFAULT_RETENTION_HOURS, show_default=True,
              help="Keep every version written in the last N hours readable, and every object put in them.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@view_options
@feature_options
@store_option
@pass_workspace
def vacuum_command(ws: Workspace, clip_seconds: str | None, retain_versions: int, retention_hours: int,
                   dry_run: bool, view: str) -> None:
    """Delete what no kept version of a view's index table references.

    First the table's own data files that commits replaced (a compaction's
    or a replace's inputs) and no kept version reads; then the shard objects
    that no kept version's rows name (a task killed between its object and
    its commit) and that are older than --retention-hours (and than one hour
    in any case). An object a kept version references is never deleted, nor
    one a publish running meanwhile has put and is about to commit: it is new.

    \b
    Examples:
      gtzan features vacuum --view timbre --clip-seconds 5 --dry-run
      gtzan features vacuum --retain-versions 3 --retention-hours 0
    """
    from feature_store.engine.sharded import unreferenced_objects

    tables = _published(ws, view, clip_seconds)
    storage, verb = store_storage(ws.settings), "would delete" if dry_run else "deleted"
    for c, table in tables.items():
        report = table.vacuum(retain_versions=retain_versions, retention_hours=retention_hours, dry_run=dry_run)
        objects = unreferenced_objects(storage, ws.view_store(view).view, clip_seconds=c,
                                       retain_versions=retain_versions, retention_hours=retention_hours)
        if not dry_run:
            for key in objects:
                storage.delete(key)
        click.echo(f"{view} {c} s: kept {plural(len(report.kept_versions), 'version')}; {verb} "
                   f"{plural(len(report.deleted), 'table file')} and {plural(len(objects), 'object')}")
        for path in report.deleted:
            click.echo(f"  {verb} table file {path}")
        for key in objects:
            click.echo(f"  {verb} object {key}")


@click.command("compact")
@click.option("--clip-seconds", "clip_seconds", default=None,
              help="Clip length: 1, 5, 15 or 30 (default: every clip length of the settings that is published).")
@view_options
@feature_options
@store_option
@pass_workspace
def compact_command(ws: Workspace, clip_seconds: str | None, view: str) -> None:
    """Rewrite each label's small files of a view's index table as one per split part.

    A publish leaves up to eight small files per label (one per shard commit,
    compacted by eight); a new reader's selective query reads every file of its
    label, so run this once the shards are published, as the sharded assets'
    table asset does. The rows, their order by clip id and the data version do
    not change; earlier versions still read their files until a vacuum.

    \b
    Examples:
      gtzan features compact --view timbre --clip-seconds 5
    """
    from feature_store.engine.sharded import compact_table

    storage = store_storage(ws.settings)
    for c, table in _published(ws, view, clip_seconds).items():
        before = len(table.files())
        version = compact_table(storage, ws.view_store(view).view, clip_seconds=c)
        after = len(table.files())
        click.echo(f"{view} {c} s: " + (f"compacted {plural(before, 'table file')} into {plural(after, 'file')}, "
                                        f"version {version}" if version is not None
                                        else f"nothing to compact ({plural(before, 'table file')}, one per label and split part)"))


LAKE_COMMANDS = (publish_command, history_command, lake_query_command, vacuum_command, compact_command)
