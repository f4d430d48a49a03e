"""The ``gtzan`` command line: a thin layer over ``feature_store`` and ``training``.

It writes to the same stores as the Dagster assets (see ``pipelines/resources.py`` for the
environment variables that place them).
"""

from __future__ import annotations

import sys

import click

from pipelines.resources import data_dir


@click.group()
def main() -> None:
    """GTZAN genre pipeline: build features, train and evaluate models."""


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder to write into.")
@click.option("--songs-per-genre", type=int, default=10, show_default=True)
def demo(out: str | None, songs_per_genre: int) -> None:
    """Write the synthetic demo corpus.

    Example: gtzan demo --out data/demo --songs-per-genre 10
    """
    from feature_store.demo import write_demo_corpus

    path = write_demo_corpus(out or data_dir() / "demo", songs_per_genre=songs_per_genre)
    click.echo(str(path))


if __name__ == "__main__":
    sys.exit(main())
