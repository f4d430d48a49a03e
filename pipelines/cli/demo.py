"""``gtzan demo``: write the synthetic demo corpus."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.options import SettingOption, pass_workspace, seed_type
from pipelines.settings import MAX_DEMO_SECONDS, MAX_DEMO_SONGS_PER_GENRE
from pipelines.cli.workspace import Workspace


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write into (default: $GTZAN_DATA_DIR/demo).")
@click.option("--songs-per-genre", cls=SettingOption, setting="demo_songs_per_genre",
              type=click.IntRange(1, MAX_DEMO_SONGS_PER_GENRE), help="Songs of each of the 10 genres.")
@click.option("--seconds", cls=SettingOption, setting="demo_seconds",
              type=click.FloatRange(0, MAX_DEMO_SECONDS, min_open=True), help="Length of each song.")
@click.option("--seed", cls=SettingOption, setting="demo_seed", type=seed_type(),
              help="Random seed (same seed, same bytes).")
@pass_workspace
def demo_command(ws: Workspace, out: Path | None) -> None:
    """Write the synthetic demo corpus (WAV files in the Kaggle GTZAN layout).

    Each genre has its own tempo, rhythm, timbre and harmony; key, tempo, mix
    and noise vary per song. Prints the genres folder, ready for `gtzan ingest`.

    \b
    Example:
      gtzan demo --out data/demo --songs-per-genre 10
    """
    from feature_store.demo import write_demo_corpus

    s = ws.settings
    path = write_demo_corpus(out or s.demo_root, songs_per_genre=s.demo_songs_per_genre, duration=s.demo_seconds,
                             seed=s.demo_seed)
    click.echo(str(path))
