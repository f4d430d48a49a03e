"""``gtzan features build|describe|query``: the feature store, mel spectrograms or musicnn embeddings.

Every store is made by :meth:`Workspace.view_store`, so that the commands name a view, not
the class that stores it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from pipelines.cli.console import patches, plural, quiet_tensorflow
from pipelines.cli.group import EXIT_USAGE, CLIError, OneLineErrors
from pipelines.cli.options import (
    SettingOption,
    clip_list,
    feature_options,
    pass_workspace,
    progress_enabled,
    progress_option,
    split_values,
    store_option,
    view_options,
)
from pipelines.cli.workspace import Workspace
from pipelines.settings import Settings

#: Columns of ``gtzan features query`` shown as a table unless ``--columns`` says otherwise.
TABLE_COLUMNS = ("clip_id", "genre", "segment", "start_seconds", "seed", "fault_filtered", "stratified", "hdf5_row")
#: Rows shown by the table format unless ``--limit`` says otherwise.
TABLE_ROWS = 20


@click.group("features", cls=OneLineErrors)
def features_group() -> None:
    """Build, describe and query the feature store: mel spectrograms or musicnn embeddings.

    `--view embeddings` works on the pretrained musicnn embeddings of the same
    clips (same clip lengths, modes and clip ids) instead of the mel spectrograms.

    \b
    Examples:
      gtzan features build --clip-seconds 5
      gtzan features describe
      gtzan features query --clip-seconds 5 --genre jazz --split test
      gtzan features build --view embeddings --clip-seconds 5
    """


def build_hint(ws: Workspace, clip_seconds: int | None) -> str:
    """The command that builds the embeddings view of ``ws`` (at ``clip_seconds``)."""
    model = ws.settings.embedding_model
    clip = f" --clip-seconds {clip_seconds}" if clip_seconds else ""
    emb = "" if model == Settings().embedding_model else f" --embedding-model {model}"
    return f"`gtzan features build --view embeddings{clip}{emb}`"


# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------
@features_group.command("build")
@click.argument("audio_dir", required=False, type=click.Path(path_type=Path))
@click.option("--clip-seconds", "clip_seconds", cls=SettingOption, setting="clip_seconds", convert=clip_list,
              multiple=True, help="Clip lengths to build: 1, 5, 15, 30 (repeat or separate with commas).")
@click.option("--workers", type=int, default=None,
              help="Worker processes (default: $GTZAN_WORKERS, or 0 = the CPU count). With --view "
                   "embeddings: decode processes beside the network (default: a quarter of the cores).")
@click.option("--lock-timeout", cls=SettingOption, setting="lock_timeout", type=click.FloatRange(min=0),
              help="Seconds to wait for another build of the same store before giving up.")
@view_options
@feature_options
@store_option
@progress_option
@pass_workspace
def build_command(ws: Workspace, audio_dir: Path | None, workers: int | None, view: str,
                  progress: bool | None) -> None:
    """Compute mel spectrograms (or musicnn embeddings) and write the HDF5 + Parquet stores.

    One STFT per song, every clip length sliced from it; songs already computed
    are not decoded again. AUDIO_DIR is the folder you ingested (default
    $GTZAN_DIR, else the demo corpus). With --view embeddings, each clip of the
    mel store is embedded by the pretrained musicnn network instead (the mean
    over the 3 s patches inside the clip of its max_pool, mean_pool,
    penultimate and tags layers).

    \b
    Examples:
      gtzan features build --clip-seconds 5
      gtzan features build --clip-seconds 1,5,15,30 --mode segments --workers 8
      gtzan features build --view embeddings --clip-seconds 5,30
    """
    if workers is not None and workers < 0:
        raise CLIError(f"--workers must be 0 (the CPU count) or more, got {workers}", EXIT_USAGE)
    mel = ws.view_store("mel")
    root = _check_audio_root(ws, mel, audio_dir)
    if view == "embeddings":
        _build_embeddings(ws, root, workers if workers is not None else ws.settings.embedding_workers, progress)
        return
    s = ws.settings
    report = mel.build(audio_root=root, clip_seconds=list(s.clip_seconds), workers=(s.workers if workers is None
                       else workers) or None, progress=progress_enabled(progress), lock_timeout=s.lock_timeout)
    _echo_build(
        f"features {mel.store_dir} (mode {mel.params.mode}, {mel.params.dtype}): "
        f"{len(report.computed)} songs computed, {report.cached} cached, {report.failed.height} failed "
        f"in {report.seconds:.1f} s",
        report,
        mel,
    )


def _check_audio_root(ws: Workspace, mel: Any, audio_dir: Path | None) -> Path:
    """The audio folder to build from, checked to hold the files the store's catalog lists."""
    from feature_store.catalog import find_genre_root, resolve_in_root

    root = ws.audio_root(audio_dir, write_demo=False).path
    genre_root, _ = find_genre_root(root)
    catalog = mel.catalog()
    ok = catalog.filter(catalog["status"] == "ok")
    if ok.height:
        first = ok["path"][0]
        if not resolve_in_root(genre_root, first).exists():
            raise CLIError(
                f"{genre_root} does not hold the cataloged files (no {first}); pass the folder you "
                f"ingested, or ingest this one first (`gtzan ingest {root}`)"
            )
    return root


def _echo_build(head: str, report: Any, store: Any, detail: Any = lambda info: "") -> None:
    """Print a build's summary line, its failed songs and a line per clip length
    (``detail(info)`` adds to that line)."""
    click.echo(head)
    for sid, reason in report.failed.iter_rows():
        click.echo(f"  failed {sid}: {reason}")
    for c, info in sorted(report.clip_lengths.items()):
        short = len(info.get("skipped_short", []))
        click.echo(
            f"  {c:>2} s  {info['status']:<9} {info['clips']} clips of {info['songs']} songs"
            + detail(info)
            + (f", {short} songs too short" if short else "")
            + f"  {store.clip_dir(c) / 'current' / 'index.parquet'}"
        )


def _build_embeddings(ws: Workspace, root: Path, workers: int, progress: bool | None) -> None:
    """``gtzan features build --view embeddings``: embed what is missing, write the stores."""
    from feature_store.embeddings import musicnn as mn

    emb = ws.view_store("embeddings")
    model = ws.settings.embedding_model
    mn.weights_folder(model)  # the install command, before anything is decoded
    quiet_tensorflow(ws.settings.debug)
    report = emb.build(audio_root=root, clip_seconds=list(ws.settings.clip_seconds), workers=workers or None,
                       progress=progress_enabled(progress), lock_timeout=ws.settings.lock_timeout)

    def detail(info: dict) -> str:
        ms = info.get("embed_ms_per_clip")
        return f", {patches(int(info['patches_per_clip']))} per clip" + (f", {ms:.0f} ms per clip" if ms is not None else "")

    _echo_build(
        f"embeddings {emb.store_dir} ({model}, weights {report.weights_sha256[:12]}, mode {emb.params.mode}): "
        f"{len(report.computed)} songs embedded, {report.cached} cached, {report.failed.height} failed "
        f"in {report.seconds:.1f} s",
        report,
        emb,
        detail,
    )


# ---------------------------------------------------------------------------------------
# describe
# ---------------------------------------------------------------------------------------
def _other_stores(root: Path) -> str:
    found = []
    for reg in sorted((root / "features").glob("mel-*/registry.json")):
        try:
            params = json.loads(reg.read_text())["params"]
        except (ValueError, KeyError, OSError):
            continue
        found.append(f"{reg.parent.name} (--mode {params.get('mode')} --dtype {params.get('dtype')})")
    return f"; stores under {root}: {', '.join(found)}" if found else ""


def _other_embedding_stores(root: Path) -> str:
    found = []
    for reg in sorted((root / "features").glob("emb-*/registry.json")):
        try:
            doc = json.loads(reg.read_text())
            model, mode, built = doc["model"], doc["params"].get("mode"), sorted(doc.get("clip_lengths", {}), key=int)
        except (ValueError, KeyError, OSError, AttributeError):
            continue
        found.append(f"{reg.parent.name} (--embedding-model {model} --mode {mode}; {', '.join(built)} s)")
    return f"; embedding stores under {root}: {', '.join(found)}" if found else ""


@features_group.command("describe")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
@view_options
@feature_options
@store_option
@pass_workspace
def describe_command(ws: Workspace, as_json: bool, view: str) -> None:
    """Show the store's parameters, counts and file paths.

    The index paths printed here are stable (they go through the `current`
    link), so DuckDB or polars can query them directly. With --view
    embeddings: the musicnn model, the sha256 of its weights, the layers and
    the embeddings.h5 files.

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
        if view == "embeddings":
            raise CLIError(f"{exc}; from the command line: {build_hint(ws, None)}"
                           f"{_other_embedding_stores(store.root)}") from exc
        raise CLIError(str(exc) + _other_stores(store.root)) from exc
    if as_json:
        click.echo(json.dumps(reg, indent=2, sort_keys=True))
    elif view == "embeddings":
        _echo_embeddings_registry(store, reg)
    else:
        _echo_mel_registry(store, reg)


def _echo_mel_registry(store: Any, reg: dict) -> None:
    p = reg["params"]
    cat = reg.get("catalog", {})
    click.echo(f"store      {store.store_dir}")
    click.echo(f"hash       {reg['params_hash']} (feature code v{reg.get('feature_code_version')}, "
               f"package {reg.get('package_version')})")
    click.echo("params     " + " ".join(f"{k}={v}" for k, v in p.items()))
    click.echo(f"catalog    {store.catalog_path}: {cat.get('files')} files, {cat.get('ok')} ok, "
               f"{cat.get('quarantined')} quarantined, {len(cat.get('feature_failures', []))} feature failures")
    click.echo(f"splits     {store.splits_path}")
    click.echo(f"updated    {reg.get('updated_at')}")
    for c in sorted(reg.get("clip_lengths", {}), key=int):
        info = reg["clip_lengths"][c]
        cur = store.clip_dir(int(c)) / "current"
        click.echo(f"{int(c):>2} s clips {info.get('clips')} clips of {info.get('songs')} songs, "
                   f"{info.get('frames')} frames, {info.get('bytes', 0) / 1e6:.1f} MB, built {info.get('created_at')}")
        click.echo(f"    index    {cur / 'index.parquet'}")
        click.echo(f"    mel      {cur / 'mel.h5'}")
        click.echo(f"    summary  {cur / 'summary.parquet'}")


def _echo_embeddings_registry(emb: Any, reg: dict) -> None:
    p, cat, inp = reg["params"], reg.get("catalog", {}), reg.get("input", {})
    click.echo(f"store       {emb.store_dir}")
    click.echo(f"model       {reg['model']}, weights sha256 {reg.get('weights_sha256')}")
    click.echo(f"weights     {reg.get('weights_package')} in {reg.get('weights_folder')}")
    click.echo(f"hash        {reg.get('embedding_hash')} (embedding code v{reg.get('embedding_code_version')}, "
               f"package {reg.get('package_version')})")
    click.echo(f"clips       mode={p.get('mode')}, as the mel store {reg.get('params_hash')} "
               f"(sr={p.get('sr')} hop_length={p.get('hop_length')})")
    click.echo(f"input       {inp.get('sr')} Hz, n_fft {inp.get('n_fft')}, hop {inp.get('hop_length')}, "
               f"{inp.get('n_mels')} mels, {inp.get('log')}; {inp.get('clip')}")
    click.echo("layers      " + ", ".join(f"{k} {v}" for k, v in reg.get("layers", {}).items()))
    click.echo(f"catalog     {emb._mel.catalog_path}: {cat.get('files')} files, {cat.get('ok')} ok, "
               f"{cat.get('quarantined')} quarantined, {len(cat.get('feature_failures', []))} failures")
    click.echo(f"updated     {reg.get('updated_at')}")
    for c in sorted(reg.get("clip_lengths", {}), key=int):
        info = reg["clip_lengths"][c]
        cur = emb.clip_dir(int(c)) / "current"
        ms = info.get("embed_ms_per_clip")
        click.echo(f"{int(c):>2} s clips  {info.get('clips')} clips of {info.get('songs')} songs, "
                   f"{patches(int(info.get('patches_per_clip', 0)))} per clip, {info.get('bytes', 0) / 1e6:.1f} MB"
                   + (f", {ms:.0f} ms per clip" if ms is not None else "") + f", built {info.get('created_at')}")
        click.echo(f"    index       {cur / 'index.parquet'}")
        click.echo(f"    embeddings  {cur / 'embeddings.h5'}")


# ---------------------------------------------------------------------------------------
# query
# ---------------------------------------------------------------------------------------
@features_group.command("query")
@click.option("--clip-seconds", "clip_seconds", required=True, help="Clip length: 1, 5, 15 or 30.")
@click.option("--genre", multiple=True, help="Keep these genres (repeat or separate with commas).")
@click.option("--split", multiple=True, help="Keep these parts of --scheme, e.g. train, test, valid, fold0.")
@click.option("--scheme", default="seed", show_default=True, help="Split scheme: seed | stratified | fault_filtered.")
@click.option("--song", "songs", multiple=True, help="Keep these song ids, e.g. jazz.00003.")
@click.option("--summary", "with_summary", is_flag=True, help="Add the per-band mean/std summary features (mel view).")
@click.option("--layers", default=None,
              help="With --view embeddings: add these layers' values as columns <layer>_NNN "
                   "(comma-separated: max_pool, mean_pool, penultimate, tags).")
@click.option("--columns", default=None, help="Comma-separated columns to output (default: all; a few for tables).")
@click.option("--limit", type=int, default=None, help=f"At most this many rows (table default {TABLE_ROWS}).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default=None,
              help="Output format (default: table on stdout, or from the --output suffix).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of stdout.")
@view_options
@feature_options
@store_option
@pass_workspace
def query_command(ws: Workspace, clip_seconds: str, genre: tuple[str, ...], split: tuple[str, ...], scheme: str,
                  songs: tuple[str, ...], with_summary: bool, layers: str | None, columns: str | None,
                  limit: int | None, fmt: str | None, output: Path | None, view: str) -> None:
    """Select clips from the Parquet index: a table, CSV, JSON or Parquet.

    With --view embeddings the index is the embeddings view's (the same clips,
    plus the number of 3 s musicnn patches averaged per clip), and --layers adds
    the embedding values.

    \b
    Examples:
      gtzan features query --clip-seconds 5 --genre jazz --split test
      gtzan features query --clip-seconds 30 --scheme fault_filtered --split test --format csv -o test.csv
      gtzan features query --clip-seconds 5 --summary --format parquet -o clips.parquet
      gtzan features query --view embeddings --clip-seconds 5 --layers tags --format parquet -o tags.parquet
    """
    from feature_store.params import validate_clip_seconds

    c = validate_clip_seconds(clip_seconds)
    if limit is not None and limit < 0:
        raise CLIError(f"--limit must be >= 0, got {limit}", EXIT_USAGE)
    fmt = fmt or _format_of(output)
    selection: dict[str, Any] = dict(
        clip_seconds=c,
        genre=split_values(genre) or None,
        split=split_values(split) or None,
        scheme=scheme,
        song_ids=split_values(songs) or None,
    )
    layer_names = split_values([layers]) if layers else []
    if view == "embeddings":
        if with_summary:
            raise CLIError("--summary adds the mel view's band statistics; with --view embeddings use --layers",
                           EXIT_USAGE)
        df = _query_embeddings(ws, selection, layer_names, limit)
    else:
        if layers:
            raise CLIError("--layers is for --view embeddings; the mel view has --summary", EXIT_USAGE)
        store = ws.view_store("mel")
        lf = store.summary(**selection) if with_summary else store.clips(**selection)
        df = (lf.limit(limit) if limit is not None else lf).collect()
    if columns:
        wanted = split_values([columns])
        unknown = [col for col in wanted if col not in df.columns]
        if unknown:
            raise CLIError(f"unknown column(s) {unknown}; columns are {df.columns}", EXIT_USAGE)
        df = df.select(wanted)
    if fmt == "table":
        extra = [col for col in ("mean_000", "mean_064", "std_000") if with_summary]
        if view == "embeddings":
            extra = ["patches"] + [col for name in layer_names for col in (f"{name}_000", f"{name}_001")]
        _write_table(df, None if columns else [*TABLE_COLUMNS, *extra], limit, output)
    else:
        _write_rows(df, fmt, output)


def _format_of(output: Path | None) -> str:
    """The output format that the file name ``output`` implies (a table on stdout)."""
    if output is None:
        return "table"
    fmt = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".txt": "table", ".md": "table"}.get(
        output.suffix.lower(), "")
    if not fmt:
        raise CLIError(f"cannot tell the format of {output.name}; add --format csv|json|parquet", EXIT_USAGE)
    return fmt


def _write_table(df: Any, cols: list[str] | None, limit: int | None, output: Path | None) -> None:
    """A Markdown table of the first rows of ``df`` (its ``cols`` that exist), with a count."""
    import polars as pl

    total = df.height
    shown = df.head(limit if limit is not None else TABLE_ROWS)
    if cols is not None:
        shown = shown.select([col for col in dict.fromkeys(cols) if col in shown.columns])
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                   tbl_formatting="ASCII_MARKDOWN", fmt_str_lengths=80, tbl_width_chars=400):
        text = str(shown) if shown.height else "(no clips match)"
    more = f" (showing {shown.height}; all of them: --format csv -o clips.csv)" if shown.height < total else ""
    text += f"\n{plural(total, 'clip')}{more}\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {plural(total, 'clip')} to {output}", err=True)


def _write_rows(df: Any, fmt: str, output: Path | None) -> None:
    """Every row of ``df`` as CSV, JSON or Parquet, to ``output`` or stdout."""
    if fmt == "parquet":
        if output is None:
            stream = sys.stdout.buffer
            if sys.stdout.isatty():
                raise CLIError("Parquet is binary: write it to a file with -o clips.parquet, or pipe it", EXIT_USAGE)
            df.write_parquet(stream)
            stream.flush()
        else:
            df.write_parquet(output)
    else:
        text = df.write_csv() if fmt == "csv" else df.write_json() + "\n"
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text)
    if output is not None:
        click.echo(f"wrote {plural(df.height, 'clip')} to {output}", err=True)


def _query_embeddings(ws: Workspace, selection: dict[str, Any], layer_names: list[str], limit: int | None) -> Any:
    """The embeddings view's clips of ``gtzan features query``, with the ``layer_names`` values as columns."""
    import polars as pl

    from feature_store.errors import StoreError

    emb = ws.view_store("embeddings")
    try:
        if not layer_names:
            lf = emb.clips(**selection)
            return (lf.limit(limit) if limit is not None else lf).collect()
        t = emb.tensors(layers=layer_names, **selection)
    except StoreError as exc:
        c = selection["clip_seconds"]
        if c in emb.available_clip_seconds():
            raise
        raise CLIError(f"{exc}; from the command line: {build_hint(ws, c)}{_other_embedding_stores(emb.root)}") \
            from exc
    from feature_store.embeddings.musicnn import LAYERS

    names = [f"{name}_{k:03d}" for name in t.layers for k in range(LAYERS[name])]
    values = pl.DataFrame(t.x, schema=names, orient="row")
    df = pl.concat([t.index, values], how="horizontal")
    return df.head(limit) if limit is not None else df
