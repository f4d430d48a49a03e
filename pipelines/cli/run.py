"""``gtzan run``: the whole asset graph as Dagster runs (what ``make run`` does)."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from pipelines.cli.console import quiet_tensorflow
from pipelines.cli.group import EXIT_USAGE, CLIError
from pipelines.cli.options import SettingOption, clip_list, int_list, name_list, pass_workspace
from pipelines.cli.workspace import Workspace, dagster_home, project_root
from pipelines.settings import MAX_EPOCHS

#: Options that take several values after one flag (``--seeds 0 1 2``), as well as commas.
LIST_OPTIONS = ("--seeds", "--models", "--clip-seconds")


class ListOptionsCommand(click.Command):
    """A command whose :data:`LIST_OPTIONS` take every value up to the next option:
    ``--seeds 0 1 2`` reads as ``--seeds 0 --seeds 1 --seeds 2``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        current = None
        for arg in args:
            if arg.startswith("-"):
                current = arg if arg in LIST_OPTIONS else None
            elif current is not None and out[-1] != current:
                out.append(current)
            out.append(arg)
        return super().parse_args(ctx, out)


def _models(values: Any) -> tuple[str, ...]:
    """Model partitions to train: names, or ``all`` (every model of the pipeline's views)."""
    from assets.partitions import PIPELINE_MODELS

    names = name_list(values)
    if names == ("all",):
        return PIPELINE_MODELS
    unknown = [m for m in names if m not in PIPELINE_MODELS]
    if unknown:
        raise CLIError(f"unknown models {unknown}; valid models are {list(PIPELINE_MODELS)} or 'all'", EXIT_USAGE)
    return names


@click.command("run", cls=ListOptionsCommand)
@click.option("--epochs", cls=SettingOption, setting="epochs", type=click.IntRange(1, MAX_EPOCHS),
              help="Epoch cap per model (TrainConfig's).")
@click.option("--seeds", cls=SettingOption, setting="seeds", convert=int_list("--seeds"), multiple=True,
              help="Seeds per model and probe, e.g. --seeds 0 1 2.")
@click.option("--scheme", cls=SettingOption, setting="scheme", help="Split scheme to hold out.")
@click.option("--clip-seconds", cls=SettingOption, setting="clip_seconds", convert=clip_list, multiple=True,
              help="Clip lengths (feature partitions) to build and train on, e.g. --clip-seconds 1 5.")
@click.option("--models", cls=SettingOption, setting="models", convert=_models, multiple=True, expose_value=True,
              help="Models to train, or 'all' (every family, and the embeddings and probes of --with-embeddings).")
@click.option("--run-launcher", is_flag=True,
              help="Hand each run to the instance's run launcher (a run worker process per run, or wherever the "
                   "deployment's launcher runs it) instead of executing it in this process; slower on a small "
                   "machine.")
@click.option("--with-embeddings", is_flag=True,
              help="Also build the musicnn embeddings of each clip length and train the logistic-regression probe "
                   "(probe_logreg_msd) on them; needs `pip install --no-deps musicnn==0.1.0` (make install runs it).")
@pass_workspace
def run_command(ws: Workspace, models: tuple[str, ...], run_launcher: bool, with_embeddings: bool) -> None:
    """Materialize the whole asset graph through Dagster, one run per partition.

    In dependency order: ingest, the features of each clip length, each
    (model, clip length), with --with-embeddings the musicnn embeddings and
    probes of each clip length, then the report. Each run is created in the
    instance of $DAGSTER_HOME from the code location of workspace.yaml and
    executed, one after another, so `make dev` lists it under its job and
    can re-execute it. A failed run, or a failed blocking check, stops the
    sequence.

    \b
    Examples:
      gtzan run
      gtzan run --epochs 30 --seeds 0 1 2 --models all
      gtzan run --clip-seconds 5 --models cnn --with-embeddings
      gtzan run --run-launcher
    """
    from pipelines.sequence import run_all

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not run_launcher:  # the runs execute here: load TensorFlow now, without its start-up lines
        quiet_tensorflow(ws.settings.debug)
    root = project_root()
    home = dagster_home(root)  # as `make run` and `gtzan ui` place it
    everything = name_list(models) == ("all",)
    t0 = time.perf_counter()
    out = run_all(settings=ws.settings, workspace_file=root / "workspace.yaml", dagster_home=home,
                  run_launcher=run_launcher, with_embeddings=with_embeddings or everything, log=click.echo)
    click.echo(f"\ndone in {time.perf_counter() - t0:.0f} s, {len(out['runs'])} runs recorded in {home}")
    click.echo(f"evaluation report: {out['report']}")
