"""``gtzan train``: train Keras models or probes, publish them in the model store."""

from __future__ import annotations

import functools
from typing import Any

import click

from pipelines.cli.console import pct, quiet_tensorflow, tf_log_level
from pipelines.cli.group import CLIError
from pipelines.cli.options import (
    SettingOption,
    clip_list,
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


@functools.cache
def probe_models() -> dict[str, tuple[str, str]]:
    """``{probe name: (classifier, musicnn weights)}``: every name ``--model`` takes for a probe,
    such as ``probe_logreg_msd``."""
    from feature_store.embeddings.musicnn import MUSICNN_MODELS
    from training.probe import CLASSIFIERS, ProbeConfig

    return {ProbeConfig(classifier=c, embedding_model=m).name: (c, m) for c in CLASSIFIERS for m in MUSICNN_MODELS}


def check_model_name(name: str) -> None:
    """Raise a usage error naming every valid model, Keras families and probes alike."""
    from feature_store.errors import ParameterError
    from training.models import MODELS

    if name not in MODELS and name not in probe_models():
        raise ParameterError(f"unknown model {name!r}; valid models are {sorted(MODELS)} and the probes on musicnn "
                             f"embeddings {list(probe_models())}")


def _model_names(values: Any) -> tuple[str, ...]:
    names = name_list(values)
    for name in names:
        check_model_name(name)
    return names


def _probe_config(ws: Workspace, name: str, seed: int) -> Any:
    """The :class:`training.probe.ProbeConfig` that a probe name such as ``probe_logreg_msd`` means."""
    from training.probe import ProbeConfig

    classifier, weights = probe_models()[name]
    return ProbeConfig(classifier=classifier, embedding_model=weights, seed=seed, scheme=ws.settings.scheme)


@click.command("train")
@click.option("--model", "models", cls=SettingOption, setting="models", convert=_model_names, multiple=True,
              help="Model(s) to train: Keras families, or probes on musicnn embeddings "
                   "(probe_<logreg|mlp>_<msd|mtt>).")
@click.option("--clip-seconds", cls=SettingOption, setting="train_clip_seconds", convert=clip_list, multiple=True,
              help="Clip length(s): 1, 5, 15, 30.")
@click.option("--epochs", cls=SettingOption, setting="epochs", type=int,
              help="Epoch cap (TrainConfig's); early stopping may end sooner. Not used by probes.")
@click.option("--seed", "seeds", cls=SettingOption, setting="seeds", convert=int_list("--seed"), multiple=True,
              help="Seed(s); one run per seed.")
@click.option("--scheme", cls=SettingOption, setting="scheme",
              help="Split scheme whose test part is held out: seed | stratified | fault_filtered.")
@click.option("--batch-size", cls=SettingOption, setting="batch_size", type=int,
              help="Batch size (TrainConfig's). Not used by probes.")
@feature_options
@store_option
@models_dir_option
@progress_option
@pass_workspace
def train_command(ws: Workspace, progress: bool | None) -> None:
    """Train models on the feature store and publish them in the model store.

    Each (model, clip length, seed) is one run with its .keras file, normaliser
    and held-out metrics, exactly as the pipeline's genre_models asset makes.
    Without --model, the models of `make run`. A probe (probe_logreg_msd:
    logistic regression; probe_mlp_msd: one hidden layer; _mtt: on MTT_musicnn
    embeddings) trains on the embeddings view (`gtzan features build --view
    embeddings` first) and is published beside the Keras models as plain
    arrays, as the pipeline's probe_models asset does. Run `gtzan report`
    afterwards to update the report.

    \b
    Examples:
      gtzan train --model seed_cnn --clip-seconds 5 --epochs 5
      gtzan train --model seed_cnn,seed_rnn --clip-seconds 1,5,15,30 --seed 0,1,2
      gtzan train --model probe_logreg_msd --clip-seconds 5
    """
    tf_log_level(ws.settings.debug)
    s = ws.settings
    keras_models = [n for n in s.models if n not in probe_models()]
    _check_inputs(ws, keras_models, [n for n in s.models if n in probe_models()])
    if keras_models:
        quiet_tensorflow(s.debug)
    show = progress_enabled(progress)
    for c in s.train_clip_seconds:
        for name in s.models:
            for seed in s.seeds:
                if name in probe_models():
                    _train_probe(ws, name, c, seed)
                else:
                    _train_keras(ws, name, c, seed, show)
    click.echo("next: gtzan report")


def _check_inputs(ws: Workspace, keras_models: list[str], probes: list[str]) -> None:
    """Clear errors before TensorFlow loads: features or embeddings that are missing."""
    from feature_store.errors import StoreError

    lengths = ws.settings.train_clip_seconds
    if keras_models:
        store = ws.view_store("mel")
        for c in lengths:
            store.generation(c)
    for name in probes:
        probe_ws = ws.with_settings(embedding_model=probe_models()[name][1])
        emb = probe_ws.view_store("embeddings")
        for c in lengths:
            try:
                emb.generation(c)
            except StoreError as exc:
                from pipelines.cli.features import build_hint

                raise CLIError(f"{exc}; from the command line: {build_hint(probe_ws, c)}") from exc


def _train_keras(ws: Workspace, name: str, c: int, seed: int, show: bool) -> None:
    from training.train import TrainConfig, train_model

    s = ws.settings
    cfg = TrainConfig(seed=seed, scheme=s.scheme, epochs=s.epochs, batch_size=s.batch_size)
    click.echo(f"training {name} on {c} s clips, seed {seed}, up to {cfg.epochs} epochs", err=True)
    r = train_model(store_root=ws.store_root, model_root=ws.model_root, model=name, clip_seconds=c,
                    params=ws.params, config=cfg, progress=show)
    m, costs = r["metrics"], r["costs"]
    click.echo(
        f"{name} {c} s seed {seed}: song accuracy {pct(m['song_accuracy'])}, clip accuracy "
        f"{pct(m['clip_accuracy'])} on {m['songs']} held-out songs "
        f"({costs['epochs_run']} epochs, {costs['seconds_per_epoch']:.1f} s/epoch)  {r['run_dir']}"
    )


def _train_probe(ws: Workspace, name: str, c: int, seed: int) -> None:
    from training.probe import train_probe

    cfg = _probe_config(ws, name, seed)
    click.echo(f"training {name} on {c} s {cfg.embedding_model} embeddings, seed {seed}", err=True)
    r = train_probe(store_root=ws.store_root, model_root=ws.model_root, clip_seconds=c, params=ws.params, config=cfg)
    m, costs = r["metrics"], r["costs"]
    click.echo(
        f"{name} {c} s seed {seed}: song accuracy {pct(m['song_accuracy'])}, clip accuracy "
        f"{pct(m['clip_accuracy'])} on {m['songs']} held-out songs "
        f"({r['train_clips']} training clips, {costs['inference_ms_per_clip']:.0f} ms per clip with musicnn)  "
        f"{r['run_dir']}"
    )
