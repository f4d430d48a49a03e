"""``gtzan features lake-verify [--repair]``: check a version of a view's published index
table and every shard object it references; rebuild the damaged shards from the audio.

The check and the repair are :func:`feature_store.engine.lake_verify.verify_table` and
:func:`~feature_store.engine.lake_verify.repair_table`, on the storage of
:func:`pipelines.cli.features_lake.store_storage` (``$GTZAN_STORE_URL``, else
``<store root>/objects``). ``gtzan features verify`` checks the store folder's generations;
this command checks what ``gtzan features publish`` wrote.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import click

from pipelines.cli.console import plural, quiet_tensorflow
from pipelines.cli.features_lake import (
    MAX_TABLE_VERSION,
    _published,
    _task_prefix,
    lineage_of,
    store_storage,
)
from pipelines.cli.group import EXIT_FAILURE, EXIT_USAGE, CLIError
from pipelines.cli.options import (
    SettingOption,
    feature_options,
    pass_workspace,
    store_option,
    view_options,
    workers_type,
)
from pipelines.cli.workspace import Workspace


@click.command("lake-verify")
@click.argument("audio_dir", required=False, type=click.Path(path_type=Path))
@click.option("--clip-seconds", "clip_seconds", default=None,
              help="Clip length: 1, 5, 15 or 30 (default: every clip length of the settings that is published).")
@click.option("--version", "version", type=click.IntRange(0, MAX_TABLE_VERSION), default=None,
              help="Check this table version (default: the newest; --repair repairs the newest only).")
@click.option("--repair", is_flag=True,
              help="Rebuild each damaged shard from the audio (AUDIO_DIR, else the folder ingest recorded) into "
                   "a new object, and replace its rows in the table in one commit, a new version.")
@click.option("--shards", cls=SettingOption, setting="shards", type=int,
              help="The shard count the table was published with ($GTZAN_SHARDS), for --repair.")
@click.option("--task-id", "task_id", default=None,
              help="Stable id of this repair: shard K's task is <TASK-ID>.shard-K (default: a new repair-<uuid>).")
@click.option("--workers", type=workers_type(), default=None, help="Worker processes of a repair.")
@view_options
@feature_options
@store_option
@pass_workspace
def lake_verify_command(ws: Workspace, audio_dir: Path | None, clip_seconds: str | None, version: int | None,
                        repair: bool, task_id: str | None, workers: int | None, view: str) -> None:
    """Check a published index table and every shard object it names.

    Reads each data file of the table version and each shard object its
    rows name, one at a time, through the checked readers: sizes, the
    object's sha256 on S3, the view and clip length it was written for, and
    every row of every array against the digest the table holds. Prints one
    line per damaged shard; exit code 1 when anything is damaged (and not
    repaired).

    \b
    Examples:
      gtzan features lake-verify --view timbre --clip-seconds 5
      gtzan features lake-verify --view timbre --clip-seconds 5 --version 2
      gtzan features lake-verify --view timbre --repair
    """
    from feature_store.engine.lake_verify import verify_table

    if repair and version is not None:
        raise CLIError("--repair repairs the newest version: leave out --version", EXIT_USAGE)
    prefix = _task_prefix(task_id) or f"repair-{uuid.uuid4().hex}"
    storage = store_storage(ws.settings)
    damaged = 0
    for c in _published(ws, view, clip_seconds):
        store = ws.view_store(view)
        check = verify_table(storage, store.view, clip_seconds=c, version=version)
        _print_check(view, c, check)
        if check.ok:
            continue
        if not repair:
            damaged += 1
            continue
        again = _repair(ws, store, storage=storage, check=check, clip_seconds=c, audio_dir=audio_dir,
                        task_prefix=prefix, workers=workers)
        damaged += 0 if again.ok else 1
    if damaged:
        raise CLIError(f"{plural(damaged, 'index table')} of {view} damaged; `gtzan features lake-verify --repair` "
                       "rebuilds the damaged shards from the audio", EXIT_FAILURE)


def _print_check(view: str, clip_seconds: int, check: Any) -> None:
    """The check's summary line, then one line per damaged shard and per damaged table file."""
    shards = check.damaged_shards
    state = "sound" if check.ok else ", ".join(
        x for x in (plural(len(shards), "shard") + " damaged" if shards else "",
                    plural(len(check.table), "table problem") if check.table else "") if x)
    click.echo(f"{view} {clip_seconds} s, version {check.version} of {check.uri}: "
               f"{plural(check.files_checked, 'table file')}, {plural(check.objects_checked, 'object')}, "
               f"{plural(check.rows_checked, 'row')} checked: {state}")
    for k, objects in shards.items():
        click.echo(f"  shard {k}: " + "; ".join(o.line() for o in objects))
    for line in check.table:
        click.echo(f"  table: {line}")


def _repair(ws: Workspace, store: Any, *, storage: Any, check: Any, clip_seconds: int, audio_dir: Path | None,
            task_prefix: str, workers: int | None) -> Any:
    """Rebuild the shards ``check`` found damaged, print each, and return a new check."""
    from pipelines.cli.features import _check_audio_root

    from feature_store.engine.lake_verify import repair_table, verify_table

    s = ws.settings
    root = _check_audio_root(ws, store, audio_dir)
    if store.view.main_process:
        quiet_tensorflow(s.debug)
    lineage = lineage_of(store.view, run_id=f"cli-{uuid.uuid4().hex}")
    done = repair_table(store, storage=storage, check=check, clip_seconds=clip_seconds, shards=s.shards,
                        audio_root=root, lineage=lineage, task_prefix=task_prefix,
                        workers=workers if workers is not None else (s.workers or None))
    for d in done:
        changed = f"; {plural(d.changed_rows, 'row')} differ from before the damage" if d.changed_rows else ""
        click.echo(f"  repaired shard {d.shard}: {plural(d.rows, 'row')}, new object {d.object_key}, "
                   f"version {d.version}{changed}")
    again = verify_table(storage, store.view, clip_seconds=clip_seconds)
    click.echo("  now sound" if again.ok else f"  still damaged: version {again.version}, "
               f"{plural(len(again.damaged_shards), 'shard')} and {plural(len(again.table), 'table problem')}")
    return again
