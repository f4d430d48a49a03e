"""``gtzan predict``: the genre of any audio file, from a trained run."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from feature_store.params import MIN_HOP_SECONDS
from pipelines.cli.console import pct, tf_log_level
from pipelines.cli.group import EXIT_USAGE, CLIError, one_line
from pipelines.cli.options import (
    SettingOption,
    feature_options,
    models_dir_option,
    pass_workspace,
    progress_enabled,
    progress_option,
    seed_type,
)
from pipelines.cli.train import check_model_name
from pipelines.cli.workspace import Workspace


@click.command("predict")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", default=None,
              help="Model name, a Keras family or a probe such as probe_logreg_msd (default: the best model of "
                   "the report).")
@click.option("--clip-seconds", "clip_seconds", default=None, help="Clip length of the model: 1, 5, 15 or 30.")
@click.option("--seed", type=seed_type(), default=None, help="Seed of the run (default: its best seed).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A run folder (holding model.keras) instead of choosing from the model store.")
@click.option("--hop", "hop_seconds", type=float, default=None,
              help=f"Seconds between window starts, at least {MIN_HOP_SECONDS} (default: the clip length, "
                   "no overlap).")
@click.option("--max-seconds", cls=SettingOption, setting="predict_max_seconds", type=float,
              help="Refuse files longer than this many seconds ($GTZAN_PREDICT_MAX_SECONDS).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with per-window probabilities.")
@click.option("--strict", is_flag=True, help="Exit 1 if any file fails (default: only if every file fails).")
@feature_options
@models_dir_option
@progress_option
@pass_workspace
def predict_command(ws: Workspace, files: tuple[Path, ...], model: str | None, clip_seconds: str | None,
                    seed: int | None, run_dir: Path | None, hop_seconds: float | None, as_json: bool, strict: bool,
                    progress: bool | None) -> None:
    """Predict the genre of audio files: the top 3 genres of each.

    FILES may be any format libsndfile reads (wav, au, flac, ogg, mp3...), mono
    or stereo, any sample rate and any length. Windows of the model's clip length
    slide over the whole file; the file's probabilities are their mean. A file
    shorter than one window is padded with silence, and the output says so. An
    unreadable file is reported and skipped; the exit code is 1 only when no file
    could be predicted (or any, with --strict).

    \b
    Examples:
      gtzan predict song.mp3
      gtzan predict a.wav b.flac --model seed_rnn --clip-seconds 30
      gtzan predict song.ogg --json > song.json
    """
    tf_log_level(ws.settings.debug)
    from training.predict import FileFailure, Predictor, choose_run

    if hop_seconds is not None and not (math.isfinite(hop_seconds) and hop_seconds >= MIN_HOP_SECONDS):
        raise CLIError(f"--hop must be a number of seconds >= {MIN_HOP_SECONDS}, got {hop_seconds}", EXIT_USAGE)
    if model is not None:
        check_model_name(model)
    if run_dir is not None:
        if model or clip_seconds or seed is not None:
            raise CLIError("--run names one run; leave out --model, --clip-seconds and --seed", EXIT_USAGE)
        reason = "the run you named"
    else:
        choice = choose_run(model_root=ws.model_root, model=model, clip_seconds=clip_seconds, seed=seed,
                            params=ws.params)
        run_dir, reason = choice.run_dir, choice.reason
    # no import of TensorFlow here: a run that needs it imports it quietly when it loads
    # (feature_store.quiet_tf), and one that does not (timbre_logreg) never pays for it
    predictor = Predictor(run_dir, max_seconds=ws.settings.predict_max_seconds)
    info = predictor.describe()
    if not as_json:
        click.echo(f"model: {info['model']} on {info['clip_seconds']} s clips, seed {info['seed']} ({reason}; "
                   f"held-out song accuracy {pct(info['song_accuracy'])})")
        click.echo(f"labels: {', '.join(info['labels'])}")
        if "table" in info:  # a run trained on a version of an index table names it
            click.echo(f"features: {info['table']}")
    bar = None
    if progress_enabled(progress) and len(files) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), desc="predict", unit="file", leave=False, file=sys.stderr)

    def show(res: Any) -> None:
        if bar is not None:
            bar.update()
        if isinstance(res, FileFailure):
            click.echo(f"gtzan: error: {one_line(res.error)} (skipped)", err=True)
        elif not as_json:
            _echo_result(res)

    results = predictor.predict_files(files, hop_seconds=hop_seconds, on_result=show)
    if bar is not None:
        bar.close()
    failed = [r for r in results if isinstance(r, FileFailure)]
    if as_json:
        click.echo(json.dumps({"model": info, "files": [r.to_dict() for r in results]}, indent=2))
    if failed and (strict or len(failed) == len(results)):
        what = "every file failed" if len(failed) == len(results) else f"{len(failed)} of {len(results)} files failed"
        raise CLIError(what)


def _echo_result(res: Any) -> None:
    """A file's line (duration, rate, channels, windows) and its top three genres."""
    chans = {1: "mono", 2: "stereo"}.get(res.source_channels, f"{res.source_channels} channels")
    n = res.window_starts.size
    note = (f"; shorter than one {res.window_seconds} s window: padded with {res.padded_seconds:.1f} s of silence"
            if res.padded else "")
    click.echo(f"{res.path}  ({res.duration:.1f} s, {res.source_sr} Hz, {chans}; "
               f"{n} window{'s' if n != 1 else ''} of {res.window_seconds} s{note})")
    for g, pr in res.top(3):
        click.echo(f"  {g:<10} {100 * pr:5.1f} %")
