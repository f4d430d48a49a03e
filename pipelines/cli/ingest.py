"""``gtzan ingest``: catalog a dataset's audio folder, write the catalog and split tables."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.console import tqdm_callback
from pipelines.cli.options import SettingOption, pass_workspace, progress_enabled, progress_option, store_option
from pipelines.cli.workspace import Workspace


def _layout(value: str) -> str:
    from feature_store.errors import ParameterError
    from pipelines.settings import layouts

    if value not in layouts():
        raise ParameterError(f"--layout must be one of {list(layouts())}, got {value!r}")
    return value


class _DatasetCommand(click.Command):
    """Lists the registered datasets in its help, read from the registry when help is shown."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        with formatter.section("Datasets"):
            from feature_store.datasets import datasets

            formatter.write_dl([(name, ds.summary) for name, ds in datasets().items()])


@click.command("ingest", cls=_DatasetCommand)
@click.argument("audio_dir", required=False, type=click.Path(path_type=Path))
@click.option("--dataset", cls=SettingOption, setting="dataset", metavar="NAME",
              help="How AUDIO_DIR is read: one of the datasets listed below ($GTZAN_DATASET).")
@click.option("--labels", cls=SettingOption, setting="labels_file", type=click.Path(path_type=Path),
              help="The csv dataset's labels file: columns path, label and an optional split ($GTZAN_LABELS).")
@click.option("--layout", cls=SettingOption, setting="layout", convert=_layout,
              help="Expected layout: auto | kaggle | original ($GTZAN_LAYOUT).")
@store_option
@progress_option
@pass_workspace
def ingest_command(ws: Workspace, audio_dir: Path | None, progress: bool | None) -> None:
    """Catalog a dataset's audio folder and write the catalog and split tables.

    With the default dataset, gtzan, AUDIO_DIR is a GTZAN copy in the Kaggle layout
    (genres_original/<genre>/<genre>.000NN.wav) or the original one
    (genres/<genre>/<genre>.000NN.au), or its genres folder; default $GTZAN_DIR,
    else the demo corpus. Every file is hashed and decoded; unreadable files are
    quarantined with a reason.

    \b
    Examples:
      gtzan ingest
      gtzan ingest ~/datasets/gtzan
      gtzan ingest ~/corpus --dataset folders
      gtzan ingest ~/corpus --dataset csv --labels ~/corpus/labels.csv
    """
    from feature_store.datasets import get_dataset
    from feature_store.errors import ParameterError
    from feature_store.ingestion import ingest as do_ingest

    ds, labels_file = get_dataset(ws.settings.dataset), ws.settings.labels_file
    wanted = ws.settings.layout
    root = ws.audio_root(audio_dir, write_demo=True)
    found = ds.find_root(root.path)[1]
    if ds.name == "gtzan" and wanted != "auto" and found != wanted:
        raise ParameterError(f"audio folder {str(root.path)!r} has the {found!r} layout, but {wanted!r} was asked")
    cb, close = tqdm_callback(progress_enabled(progress), "decode", "file")
    try:
        result = do_ingest(root.path, ws.store_root, progress=cb, dataset=ds.name, labels_file=labels_file)
    finally:
        close()
    _echo_ingest(result, root.is_demo)
    click.echo("next: gtzan features build" + ("" if audio_dir is None else f" {audio_dir}"))


def _echo_ingest(result, is_demo: bool) -> None:
    """The catalog's counts, its quarantined files, the tables' paths and the split sizes."""
    from feature_store.splits import summary

    cat = result.catalog
    n_ok = int((cat["status"] == "ok").sum())
    n_dup = int(cat["duplicate_of"].is_not_null().sum())
    q = result.quarantined
    click.echo(
        f"cataloged {cat.height} files from {result.genre_root} ({result.layout} layout"
        f"{', synthetic demo' if is_demo else ''}): {n_ok} ok, {q.height} quarantined, {n_dup} duplicates"
    )
    for _sid, path, reason in q.select("song_id", "path", "reason").iter_rows():
        click.echo(f"  quarantined {path}: {reason}")
    click.echo(f"catalog  {result.catalog_path}")
    click.echo(f"splits   {result.splits_path}")
    s = summary(result.splits)
    for scheme in s["scheme"].unique(maintain_order=True).to_list():
        parts = s.filter(s["scheme"] == scheme)
        text = ", ".join(f"{p} {n}" for p, n in parts.select("part", "songs").iter_rows())
        click.echo(f"  {scheme:<15} {text}")
