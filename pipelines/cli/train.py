"""``gtzan train``: train models of any family, publish them in the model store."""

from __future__ import annotations

from typing import Any

import click

from pipelines.cli.console import pct, quiet_tensorflow, tf_log_level
from pipelines.cli.group import EXIT_USAGE, CLIError
from pipelines.cli.options import (
    SettingOption,
    clip_list,
    flag_given,
    feature_options,
    int_list,
    models_dir_option,
    name_list,
    pass_workspace,
    progress_enabled,
    progress_option,
    store_option,
)
from pipelines.cli.workspace import Workspace
from pipelines.cli.features_lake import MAX_TABLE_VERSION
from pipelines.settings import MAX_BATCH_SIZE, MAX_EPOCHS


def check_model_name(name: str) -> None:
    """Raise a usage error naming every valid model, of every family."""
    from feature_store.errors import ParameterError
    from training.families import model_names

    if name not in model_names():
        raise ParameterError(f"unknown model {name!r}; valid models are {model_names()}")


def _model_names(values: Any) -> tuple[str, ...]:
    names = name_list(values)
    for name in names:
        check_model_name(name)
    return names


def _config(ws: Workspace, name: str, seed: int) -> Any:
    """The family's config of one run: the seed and scheme, and epochs and batch size where it has them."""
    import dataclasses

    from training.families import get_family

    s = ws.settings
    fields = {f.name for f in dataclasses.fields(get_family(name).config_type)}
    wanted = {"seed": seed, "scheme": s.scheme, "epochs": s.epochs, "batch_size": s.batch_size}
    return get_family(name).config_type(**{k: v for k, v in wanted.items() if k in fields})


def _view_workspace(ws: Workspace, name: str) -> tuple[Workspace, str]:
    """The workspace whose options give the store ``name`` trains on, and that view's name."""
    from training.families import get_family

    import dataclasses

    from feature_store.views import declared_options

    family = get_family(name)
    options = {k: v for k, v in family.options.items() if k in declared_options()}  # the view's own options
    held = {f.name for f in dataclasses.fields(ws.settings)}
    settings = {k: v for k, v in options.items() if k in held}
    ws = ws.with_settings(**settings) if settings else ws
    return ws.with_view_values({k: v for k, v in options.items() if k not in held}), family.view


def models_by_view() -> str:
    """The registry's models by the view they train on, for help texts: ``mel: baseline, cnn...; timbre: ...``."""
    from training.families import model_names, registry

    by: dict[str, list[str]] = {}
    for name in model_names():
        by.setdefault(registry()[name].view, []).append(name)
    return "; ".join(f"{view}: {', '.join(names)}" for view, names in by.items())


@click.command("train")
@click.option("--model", "models", cls=SettingOption, setting="models", convert=_model_names, multiple=True,
              help=f"Model(s) to train, of any family, by the view they train on: {models_by_view()}.")
@click.option("--clip-seconds", cls=SettingOption, setting="train_clip_seconds", convert=clip_list, multiple=True,
              help="Clip length(s): 1, 5, 15, 30.")
@click.option("--epochs", cls=SettingOption, setting="epochs", type=click.IntRange(1, MAX_EPOCHS),
              help="Epoch cap (TrainConfig's); early stopping may end sooner. Not used by probes.")
@click.option("--seed", "seeds", cls=SettingOption, setting="seeds", convert=int_list("--seed"), multiple=True,
              help="Seed(s); one run per seed.")
@click.option("--scheme", cls=SettingOption, setting="scheme",
              help="Split scheme whose test part is held out: seed | stratified | fault_filtered.")
@click.option("--batch-size", cls=SettingOption, setting="batch_size", type=click.IntRange(1, MAX_BATCH_SIZE),
              help="Batch size (TrainConfig's). Not used by probes.")
@click.option("--version", "table_version", type=click.IntRange(0, MAX_TABLE_VERSION), default=None,
              help="Train on this version of the view's published index table (`gtzan features publish`, "
                   "`gtzan features history`) instead of the store folder.")
@click.option("--as-of", "as_of", default=None,
              help="Train on the version of the published table that was newest at this time (ISO 8601; "
                   "no zone: UTC).")
@feature_options
@store_option
@models_dir_option
@progress_option
@pass_workspace
def train_command(ws: Workspace, progress: bool | None, table_version: int | None, as_of: str | None) -> None:
    """Train models on the feature store and publish them in the model store.

    Each (model, clip length, seed) is one run with its model files and
    held-out metrics, exactly as the pipeline's assets make it. Without
    --model, the models of `make run`. A model trains on its family's view
    (see --model; build the view first: `gtzan features build --view ...`).
    Run `gtzan report` afterwards to update the report.

    \b
    Examples:
      gtzan train --model seed_cnn --clip-seconds 5 --epochs 5
      gtzan train --model seed_cnn,seed_rnn --clip-seconds 1,5,15,30 --seed 0,1,2
      gtzan train --model probe_logreg_msd --clip-seconds 5
      gtzan train --model timbre_logreg --clip-seconds 5
      gtzan train --model timbre_logreg --clip-seconds 5 --version 3
    """
    from training.families import get_family

    tf_log_level(ws.settings.debug)
    s = ws.settings
    for name in s.models:  # every parameter checked before any work
        for seed in s.seeds:
            _config(ws, name, seed)
    if table_version is not None and as_of is not None:
        raise CLIError("give --version or --as-of, not both", EXIT_USAGE)
    pin = {"version": table_version, "as_of": as_of} if (table_version, as_of) != (None, None) else None
    # a published table is checked by the run itself (one line when it or the version is missing)
    models = list(s.models) if pin else _check_inputs(ws, s.models, explicit=flag_given("models"))
    if any(get_family(n).trainer == "keras" or get_family(n).view == "embeddings" for n in models):
        quiet_tensorflow(s.debug)
    show = progress_enabled(progress)
    for c in s.train_clip_seconds:
        for name in models:
            for seed in s.seeds:
                _train(ws, name, c, seed, show, pin=pin)
    click.echo("next: gtzan report")


def _check_inputs(ws: Workspace, models: tuple[str, ...], *, explicit: bool) -> list[str]:
    """The models to train: a model whose view is not built is a clear error before TensorFlow
    loads, or, among the default models (no --model), skipped with a note."""
    from feature_store.errors import StoreError

    from pipelines.cli.features import build_hint

    out, missing = [], []
    for name in models:
        view_ws, view = _view_workspace(ws, name)
        store = view_ws.view_store(view)
        try:
            for c in ws.settings.train_clip_seconds:
                store.generation(c)
        except StoreError as exc:
            missing.append(CLIError(f"{exc}; from the command line: {build_hint(view_ws, view, c)}"))
            if explicit:
                raise missing[-1] from exc
            click.echo(f"gtzan: skipping {name}: its {view} view is not built at {c} s "
                       f"({build_hint(view_ws, view, c)} builds it)", err=True)
            continue
        out.append(name)
    if not out:
        raise missing[0]  # nothing left to train
    return out


def _train(ws: Workspace, name: str, c: int, seed: int, show: bool, *, pin: dict[str, Any] | None = None) -> None:
    """Train one run of any family and print its line; ``pin``: on a version of the view's
    published index table (``version`` or ``as_of``) instead of the store folder."""
    from training.families import get_family
    from training.runner import train_model

    family, cfg = get_family(name), _config(ws, name, seed)
    epochs = f", up to {cfg.epochs} epochs" if hasattr(cfg, "epochs") else ""
    click.echo(f"training {name} on {c} s clips of the {family.view} view, seed {seed}{epochs}", err=True)
    if pin is not None:
        from pipelines.cli.features_lake import store_storage
        from training.table_train import train_from_table

        r = train_from_table(storage=store_storage(ws.settings), model_root=ws.model_root, model=name,
                             clip_seconds=c, params=ws.params, config=cfg, progress=show, **pin)
    else:
        r = train_model(store_root=ws.store_root, model_root=ws.model_root, model=name, clip_seconds=c,
                        params=ws.params, config=cfg, progress=show)
    m, costs = r.metrics, r.costs
    if family.trainer == "keras":
        detail = f"{costs.epochs_run} epochs, {costs.seconds_per_epoch:.1f} s/epoch"
    else:
        extractor = " with musicnn" if family.view == "embeddings" else ""
        detail = f"{r.train_clips} training clips, {costs.inference_ms_per_clip:.0f} ms per clip{extractor}"
    click.echo(f"{name} {c} s seed {seed}: song accuracy {pct(m.song_accuracy)}, clip accuracy "
               f"{pct(m.clip_accuracy)} on {m.songs} held-out songs ({detail})  {r.run_dir}")
    click.echo(f"  labels: {', '.join(r.labels)}")
    if r.table_version is not None:
        click.echo(f"  features: {r.table_line()}")
