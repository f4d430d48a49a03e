"""``gtzan features build|describe|query|verify``: every feature view, with no per-view code.

Stores come from :meth:`Workspace.view_store` (the store engine's ``ViewStore`` of the view
``--view`` names); what a view has of its own (its summary, its describe lines, its flags)
comes from its declaration in ``feature_store/views/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pipelines.cli.console import plural, quiet_tensorflow
from pipelines.cli.features_lake import LAKE_COMMANDS
from pipelines.cli.features_lake_verify import lake_verify_command
from pipelines.cli.features_query import query_command
from pipelines.cli.group import EXIT_FAILURE, CLIError, OneLineErrors
from pipelines.cli.options import (
    SettingOption,
    clip_list,
    feature_options,
    pass_workspace,
    progress_enabled,
    progress_option,
    store_option,
    view_option_flags,
    view_options,
    workers_type,
)
from pipelines.cli.workspace import Workspace


@click.group("features", cls=OneLineErrors)
def features_group() -> None:
    """Build, describe, query and verify the feature store's views.

    Every view holds the same clips (clip lengths, modes and clip ids):
    {views}.

    \b
    Examples:
      gtzan features build --clip-seconds 5
      gtzan features describe
      gtzan features query --clip-seconds 5 --genre jazz --split test
      gtzan features build --view timbre --clip-seconds 5
      gtzan features verify --repair
    """


def views_help() -> str:
    """The views of the registry, for help texts: ``mel spectrograms (`--view mel`, the default), ...``."""
    from feature_store.views import VIEWS

    return ", ".join(f"{cls.title[:1].lower()}{cls.title[1:]} (`--view {name}`"
                     + (", the default)" if name == "mel" else ")") for name, cls in VIEWS.items())


features_group.help = (features_group.help or "").replace("{views}", views_help())
features_group.add_command(query_command)
for _command in LAKE_COMMANDS:
    features_group.add_command(_command)
features_group.add_command(lake_verify_command)


def build_hint(ws: Workspace, view: str, clip_seconds: int | None) -> str:
    """The command that builds ``view`` with the workspace's options (at ``clip_seconds``)."""
    store = ws.view_store(view)
    parts = ["gtzan features build", *([f"--view {view}"] if view != "mel" else []),
             *([f"--clip-seconds {clip_seconds}"] if clip_seconds else []), view_flags(store.view, only_changed=True)]
    return "`" + " ".join(p for p in parts if p) + "`"


def view_flags(view: Any, *, only_changed: bool = False) -> str:
    """The flags that select ``view``'s store: ``--mode first --embedding-model MTT_musicnn``;
    with ``only_changed``, only those whose value is not the default."""
    mine, default = view.options(), type(view)().options()
    return " ".join(f"--{name.replace('_', '-')} {mine[name]}" for name in view.reads
                    if not (only_changed and mine[name] == default[name]))


def other_stores(ws: Workspace, view: str) -> str:
    """The stores of ``view`` under the root, with the flags that select them (for error messages)."""
    from feature_store import integrity
    from feature_store.integrity import IntegrityError
    from feature_store.views import view_class

    cls = view_class(view)
    found = []
    for reg in sorted((ws.store_root / "features").glob("*/registry.json")):
        try:
            doc = integrity.read_json(reg)  # checked and size-bounded like every registry read
            same = doc.get("view", "mel" if reg.parent.name.startswith("mel-") else None) == view
            options = doc.get("options") or {"mode": doc["params"].get("mode"), "dtype": doc["params"].get("dtype")}
            built = ", ".join(sorted(doc.get("clip_lengths", {}), key=int))
        except (ValueError, KeyError, OSError, AttributeError, IntegrityError):
            continue
        if same:
            flags = " ".join(f"--{k.replace('_', '-')} {options.get(k)}" for k in cls().reads if k in options)
            found.append(f"{reg.parent.name} ({flags}; {built} s)")
    return f"; {view} stores under {ws.store_root}: {', '.join(found)}" if found else ""


# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------
@features_group.command("build")
@click.argument("audio_dir", required=False, type=click.Path(path_type=Path))
@click.option("--clip-seconds", "clip_seconds", cls=SettingOption, setting="clip_seconds", convert=clip_list,
              multiple=True, help="Clip lengths to build: 1, 5, 15, 30 (repeat or separate with commas).")
@click.option("--workers", type=workers_type(), default=None,
              help="Worker processes, at most MAX_WORKERS_PER_CPU (4) per CPU (default: $GTZAN_WORKERS, or "
                   "0 = the CPU count). For a view that "
                   "computes in this process (embeddings): decode processes beside it (default: a quarter "
                   "of the cores).")
@click.option("--lock-timeout", cls=SettingOption, setting="lock_timeout", type=click.FloatRange(min=0),
              help="Seconds to wait for another build of the same store before giving up.")
@view_options
@feature_options
@store_option
@progress_option
@pass_workspace
def build_command(ws: Workspace, audio_dir: Path | None, workers: int | None, view: str,
                  progress: bool | None) -> None:
    """Compute a view's features and write its HDF5 + Parquet stores.

    Each song is decoded once and every clip length cut from it; songs
    already computed are not decoded again. AUDIO_DIR is the folder you
    ingested (default $GTZAN_DIR, else the demo corpus).

    \b
    Examples:
      gtzan features build --clip-seconds 5
      gtzan features build --clip-seconds 1,5,15,30 --mode segments --workers 8
      gtzan features build --view embeddings --clip-seconds 5,30
      gtzan features build --view timbre
    """
    store = ws.view_store(view)
    root = _check_audio_root(ws, store, audio_dir)
    s = ws.settings
    provenance = store.view.provenance()  # what the view needs installed, named before any work
    if store.view.main_process:
        quiet_tensorflow(s.debug)
    chosen = workers if workers is not None else (s.embedding_workers if store.view.main_process else s.workers)
    report = store.build(audio_root=root, clip_seconds=list(s.clip_seconds), workers=chosen or None,
                         progress=progress_enabled(progress), lock_timeout=s.lock_timeout,
                         on_wait=lambda line: click.echo(f"gtzan: {line}", err=True))
    click.echo(f"{view} {store.store_dir} ({store.view.summary(provenance)}): {len(report.computed)} songs computed, "
               f"{report.cached} cached, {report.failed.height} failed in {report.seconds:.1f} s")
    for sid, reason in report.failed.iter_rows():
        click.echo(f"  failed {sid}: {reason}")
    for c, info in sorted(report.clip_lengths.items()):
        short = len(info.get("skipped_short", []))
        click.echo(f"  {c:>2} s  {info['status']:<9} {info['clips']} clips of {info['songs']} songs"
                   + store.view.describe_clip(info) + (f", {short} songs too short" if short else "")
                   + f"  {store.clip_dir(c) / 'current' / 'index.parquet'}")


def _check_audio_root(ws: Workspace, store: Any, audio_dir: Path | None) -> Path:
    """The audio folder to build from, checked to hold the files the store's catalog lists, and
    the split table checked not to leak (the check of the blocking ``split_leakage`` asset check)."""
    from feature_store.engine.plugins import find_audio_root
    from feature_store.splits import require_no_leakage
    from feature_store.tables import resolve_in_root

    root = ws.audio_root(audio_dir, write_demo=False).path
    genre_root = find_audio_root(store.root, root)
    catalog = store.catalog()
    require_no_leakage(store.splits(), where=str(store.splits_path))
    ok = catalog.filter(catalog["status"] == "ok")
    if ok.height:
        first = ok["path"][0]
        if not resolve_in_root(genre_root, first).exists():
            raise CLIError(
                f"{genre_root} does not hold the cataloged files (no {first}); pass the folder you "
                f"ingested, or ingest this one first (`gtzan ingest {root}`)"
            )
    return root


# ---------------------------------------------------------------------------------------
# describe
# ---------------------------------------------------------------------------------------
@features_group.command("describe")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
@view_options
@feature_options
@store_option
@pass_workspace
def describe_command(ws: Workspace, as_json: bool, view: str) -> None:
    """Show a view's parameters, counts and file paths.

    The paths printed here are stable (they go through the `current` link),
    so DuckDB or polars can query them directly.

    \b
    Examples:
      gtzan features describe
      gtzan features describe --mode segments --json
      gtzan features describe --view embeddings
    """
    from feature_store.errors import StoreError

    store = ws.view_store(view)
    try:
        reg = store.describe()
    except StoreError as exc:
        raise CLIError(f"{exc}; from the command line: {build_hint(ws, view, None)}{other_stores(ws, view)}") from exc
    if as_json:
        click.echo(json.dumps(reg, indent=2, sort_keys=True))
        return
    v, cat = store.view, reg.get("catalog", {})
    lines = {
        "store": str(store.store_dir),
        "view": f"{v.name}: {v.title}",
        "hash": f"{reg.get('view_hash', reg.get('params_hash'))} (package {reg.get('package_version')})",
        "params": " ".join(f"{k}={val}" for k, val in reg.get("view_params", reg["params"]).items()),
        "clips": f"mode={reg['params'].get('mode')} sr={reg['params'].get('sr')} "
                 f"hop_length={reg['params'].get('hop_length')} (clip params {reg.get('params_hash')})",
        **v.describe_fields(reg),
        "catalog": f"{store.catalog_path}: {cat.get('files')} files, {cat.get('ok')} ok, {cat.get('quarantined')} "
                   f"quarantined, {len(cat.get('feature_failures', []))} feature failures",
        "splits": str(store.splits_path),
        "updated": str(reg.get("updated_at")),
    }
    for label, text in lines.items():
        click.echo(f"{label:<11} {text}")
    for c in sorted(reg.get("clip_lengths", {}), key=int):
        info = reg["clip_lengths"][c]
        click.echo(f"{int(c):>2} s clips  {info.get('clips')} clips of {info.get('songs')} songs"
                   f"{v.describe_clip(info)}, {info.get('frames')} frames, {info.get('bytes', 0) / 1e6:.1f} MB, "
                   f"built {info.get('created_at')}")
        for label, path in _files(store, int(c)):
            click.echo(f"    {label:<11} {path}")


def _files(store: Any, c: int) -> list[tuple[str, Path]]:
    """The files of a clip length's current generation, labelled (index, the arrays, the tables)."""
    cur = store.clip_dir(c) / "current"
    stem = Path(store.view.data_file).stem
    out = [("index", cur / "index.parquet"), (stem, cur / store.view.data_file)]
    for spec in store.view.array_specs(c):
        if spec.columns:
            out.append((spec.name if spec.name != stem else f"{spec.name}.parquet", cur / f"{spec.name}.parquet"))
    return out


# ---------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------
@features_group.command("verify")
@click.argument("audio_dir", required=False, type=click.Path(path_type=Path))
@click.option("--repair", is_flag=True,
              help="Rewrite what is damaged: the songs of damaged rows are decoded again and computed again, "
                   "into a new generation (a damaged catalog: ingest again). The audio is read from AUDIO_DIR, "
                   "else from the folder ingest recorded, each file checked against the catalog's sha256.")
@click.option("--view", "views", multiple=True,
              help="Only these views (repeat or separate with commas; default: every view built here).")
@click.option("--workers", type=workers_type(), default=None,
              help="Worker processes of a repair (at most 4 per CPU).")
@view_option_flags
@feature_options
@store_option
@pass_workspace
def verify_command(ws: Workspace, audio_dir: Path | None, repair: bool, views: tuple[str, ...],
                   workers: int | None) -> None:
    """Check every row of every current generation against its checksum.

    Reads the catalog and split table, each view's registry and every row
    of every clip length that `current` points to, and prints each damaged
    file or row on a line. Exit code 1 when anything is damaged (and not
    repaired).

    \b
    Examples:
      gtzan features verify
      gtzan features verify --view mel --repair
    """
    from feature_store.views import VIEWS

    from pipelines.cli.options import split_values

    names = split_values(views) or [n for n in VIEWS if ws.view_store(n).registry_path.exists()]
    if not names:
        raise CLIError(f"no feature store under {ws.store_root}; build one first (`gtzan features build`)")
    damaged = 0
    for name in names:
        store = ws.view_store(name)
        check = store.verify()
        click.echo(f"{name}: {plural(len(check.clip_lengths), 'clip length')}, "
                   f"{plural(check.rows_checked, 'row')} checked: " + ("sound" if check.ok else
                                                                         plural(len(check.problems), "problem")))
        for problem in check.problems:
            click.echo(f"  {problem}")
        if check.ok:
            continue
        if not repair:
            damaged += 1
            continue
        root = _repair_audio_root(ws, store, check, audio_dir)
        done = store.repair(check, audio_root=root, workers=workers, lock_timeout=ws.settings.lock_timeout)
        again = store.verify()
        songs = ", ".join(done.recomputed_songs) or "none"
        click.echo(f"  repaired: {'ingested again, ' if done.reingested else ''}songs computed again: {songs}; "
                   + ("now sound" if again.ok else f"still {plural(len(again.problems), 'problem')}"))
        damaged += 0 if again.ok else 1
    if damaged:
        raise CLIError(f"{plural(damaged, 'view')} damaged; `gtzan features verify --repair` rewrites them "
                       "from the audio", EXIT_FAILURE)



def _repair_audio_root(ws: Workspace, store: Any, check: Any, audio_dir: Path | None) -> Path:
    """AUDIO_DIR when given; else the folder ingest recorded, its files checked against the
    catalog's sha256 (a folder is asked for, in one line, only when files moved or changed);
    else, for a store that records none, $GTZAN_DIR or the demo corpus."""
    from feature_store.engine.repair import locate_audio

    if audio_dir is None:
        found = locate_audio(store, check)
        if found is not None:
            return found
    return ws.audio_root(audio_dir, write_demo=False).path
