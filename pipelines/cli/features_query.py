"""``gtzan features query``: select clips of any view, as a table, CSV, JSON or Parquet.

The output is the view's Parquet index, filtered; ``--table`` joins one of the view's Parquet
tables (mel: ``summary``; timbre: ``timbre``) and ``--arrays`` adds the values of the view's
vector arrays as columns ``<array>_NNN`` (embeddings: its layers).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pipelines.cli.console import plural
from pipelines.cli.group import EXIT_USAGE, CLIError
from pipelines.cli.options import (
    feature_options,
    output_options,
    pass_workspace,
    split_values,
    store_option,
    view_options,
)
from pipelines.cli.workspace import Workspace
from pipelines.settings import MAX_QUERY_LIMIT

#: Columns of ``gtzan features query`` shown as a table unless ``--columns`` says otherwise.
TABLE_COLUMNS = ("clip_id", "genre", "segment", "start_seconds", "seed", "fault_filtered", "stratified", "hdf5_row")
#: Rows shown by the table format unless ``--limit`` says otherwise.
TABLE_ROWS = 20


def arrays_by_view(*, tables: bool) -> str:
    """Per view of the registry, its Parquet tables (``tables``) or its vector arrays, for help
    texts: ``mel: summary; timbre: timbre``."""
    from feature_store.views import VIEWS

    parts = []
    for name, cls in VIEWS.items():
        specs = cls().array_specs(5)
        names = [s.name for s in specs if (s.columns is not None if tables else s.hdf5 and len(s.shape) == 1)]
        if names:
            parts.append(f"{name}: {', '.join(names)}")
    return "; ".join(parts)


@click.command("query")
@click.option("--clip-seconds", "clip_seconds", required=True, help="Clip length: 1, 5, 15 or 30.")
@click.option("--genre", multiple=True, help="Keep these genres (repeat or separate with commas).")
@click.option("--split", multiple=True, help="Keep these parts of --scheme, e.g. train, test, valid, fold0.")
@click.option("--scheme", default="seed", show_default=True, help="Split scheme: seed | stratified | fault_filtered.")
@click.option("--song", "songs", multiple=True, help="Keep these song ids, e.g. jazz.00003.")
@click.option("--table", "table_name", default=None,
              help=f"Join one of the view's Parquet tables ({arrays_by_view(tables=True)}).")
@click.option("--summary", "with_summary", is_flag=True, help="The mel view's per-band statistics: --table summary.")
@click.option("--arrays", "--layers", "arrays", default=None,
              help="Add these vector arrays' values as columns <array>_NNN (comma-separated; "
                   f"{arrays_by_view(tables=False)}).")
@click.option("--columns", default=None, help="Comma-separated columns to output (default: all; a few for tables).")
@click.option("--limit", type=click.IntRange(0, MAX_QUERY_LIMIT), default=None,
              help=f"At most this many rows (table default {TABLE_ROWS}).")
@output_options
@view_options
@feature_options
@store_option
@pass_workspace
def query_command(ws: Workspace, clip_seconds: str, genre: tuple[str, ...], split: tuple[str, ...], scheme: str,
                  songs: tuple[str, ...], table_name: str | None, with_summary: bool, arrays: str | None,
                  columns: str | None, limit: int | None, fmt: str | None, output: Path | None, view: str) -> None:
    """Select clips from a view's Parquet index: a table, CSV, JSON or Parquet.

    \b
    Examples:
      gtzan features query --clip-seconds 5 --genre jazz --split test
      gtzan features query --clip-seconds 30 --scheme fault_filtered --split test --format csv -o test.csv
      gtzan features query --clip-seconds 5 --summary --format parquet -o clips.parquet
      gtzan features query --view timbre --clip-seconds 5 --table timbre -o timbre.parquet
      gtzan features query --view embeddings --clip-seconds 5 --layers tags --format parquet -o tags.parquet
    """
    from feature_store.errors import StoreError
    from feature_store.params import validate_clip_seconds

    from pipelines.cli.features import build_hint, other_stores

    c = validate_clip_seconds(clip_seconds)
    fmt = fmt or format_of(output)
    if with_summary:
        if table_name not in (None, "summary"):
            raise CLIError("--summary is --table summary; give one of them", EXIT_USAGE)
        table_name = "summary"
    selection: dict[str, Any] = dict(clip_seconds=c, genre=split_values(genre) or None,
                                     split=split_values(split) or None, scheme=scheme,
                                     song_ids=split_values(songs) or None)
    store = ws.view_store(view)
    try:
        df, index_cols = _select(store, selection, table_name, split_values([arrays]) if arrays else [], limit)
    except StoreError as exc:
        if c in store.available_clip_seconds():
            raise
        raise CLIError(f"{exc}; from the command line: {build_hint(ws, view, c)}{other_stores(ws, view)}") from exc
    df = select_columns(df, columns)
    if fmt == "table":
        extra = [col for col in df.columns if col not in index_cols][:4]  # a glimpse of the values
        write_table(df, None if columns else [*TABLE_COLUMNS, *store.view.index_columns(c), *extra], limit, output)
    else:
        write_rows(df, fmt, output)


def _select(store: Any, selection: dict[str, Any], table_name: str | None, arrays: list[str],
            limit: int | None) -> tuple[Any, list[str]]:
    """The selected clips (the index, a table's columns, arrays' values), and the index's columns."""
    import numpy as np
    import polars as pl

    if arrays:
        store.check_arrays(arrays, selection["clip_seconds"])  # the names first: a clear error before any read
    index_cols = store.clips(**selection).collect_schema().names()
    df = (store.table(table_name, **selection) if table_name else store.clips(**selection)).collect()
    if arrays:
        specs = {s.name: s for s in store.view.array_specs(selection["clip_seconds"]) if s.hdf5}
        wide = [n for n in arrays if n in specs and len(specs[n].shape) > 1]
        if wide:
            raise CLIError(f"{wide} hold {specs[wide[0]].shape} per clip: read them from Python "
                           "(ViewStore.tensors), not as columns", EXIT_USAGE)
        t = store.tensors(arrays=arrays, **selection)
        names = [f"{n}_{k:03d}" for n in t.arrays for k in range(int(np.prod(specs[n].shape)))]
        values = pl.DataFrame(t.x, schema=names, orient="row")
        df = pl.concat([t.index, values], how="horizontal").join(
            df.select("clip_id", *[col for col in df.columns if col not in t.index.columns]), on="clip_id",
            how="left", maintain_order="left")
    return (df.head(limit) if limit is not None else df), index_cols


def format_of(output: Path | None) -> str:
    """The output format that the file name ``output`` implies (a table on stdout)."""
    if output is None:
        return "table"
    fmt = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".txt": "table", ".md": "table"}.get(
        output.suffix.lower(), "")
    if not fmt:
        raise CLIError(f"cannot tell the format of {output.name}; add --format csv|json|parquet", EXIT_USAGE)
    return fmt


def select_columns(df: Any, columns: str | None) -> Any:
    """The comma-separated ``--columns`` of ``df`` (all without it); an unknown one is a usage error."""
    if not columns:
        return df
    wanted = split_values([columns])
    unknown = [col for col in wanted if col not in df.columns]
    if unknown:
        raise CLIError(f"unknown column(s) {unknown}; columns are {df.columns}", EXIT_USAGE)
    return df.select(wanted)


def write_table(df: Any, cols: list[str] | None, limit: int | None, output: Path | None) -> None:
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


def write_rows(df: Any, fmt: str, output: Path | None) -> None:
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
