"""``gtzan report``: the evaluation report of every trained run."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.console import pct, plural
from pipelines.cli.group import CLIError
from pipelines.cli.options import SettingOption, feature_options, models_dir_option, pass_workspace
from pipelines.cli.workspace import Workspace


@click.command("report")
@click.option("--out", cls=SettingOption, setting="report_dir", shown="report_root",
              type=click.Path(file_okay=False, path_type=Path),
              help="Report folder ($GTZAN_REPORT_DIR, else $GTZAN_DATA_DIR/reports).")
@feature_options
@models_dir_option
@pass_workspace
def report_command(ws: Workspace) -> None:
    """Write the evaluation report of every trained run.

    The tables are shaped like the study's (models x 1/5/15/30 s): song and clip
    accuracy with a true argmax, the study's own buggy metric, and costs. The
    best model of the report is what `gtzan predict` uses by default.

    \b
    Example:
      gtzan report
    """
    from training.report import best_run, write_report

    params = ws.params
    runs = ws.model_store().find(params_hash=params.hash())
    if not runs:
        raise CLIError(
            f"no trained model under {Path(ws.model_root).resolve()} for features {params.hash()} "
            f"(mode {params.mode}); train one first (`gtzan train`)"
        )
    path = write_report(runs, ws.report_root)
    best = best_run(runs)
    click.echo(f"report of {plural(len(runs), 'run')}: {path}")
    if Path(path).with_suffix(".html").exists():
        click.echo(f"as HTML: {Path(path).with_suffix('.html')}")
    if best:
        click.echo(f"best model: {best['model']} at {best['clip_seconds']} s "
                   f"(song accuracy {pct(best['song_accuracy'])})")
