"""Model assets: one trained model per (model, clip length), over one or more seeds."""

import statistics

import dagster as dg
import polars as pl

from assets.metadata import size_bytes, spread, step_metadata, table
from assets.partitions import PIPELINE_VIEWS, model_partitions
from assets.policies import ON_WEEKLY_CRON, RETRY_POLICY, TRAINING_POOL, permanent
from assets.resources import FeatureStoreResource, ModelStoreResource
from assets.views import VIEW_ASSETS
from training.families import registry
from training.record import RunRecord
from training.train import TrainConfig

#: The library's training defaults, which are the run config's.
_TRAIN = TrainConfig()


class TrainingConfig(dg.Config):
    """Run config of training (set it in the launchpad, or ``--epochs/--seeds`` of ``make run``).

    The defaults are :class:`training.train.TrainConfig`'s, as for ``gtzan train`` and
    ``gtzan run``.

    Attributes
    ----------
    epochs : int
        Epoch cap per seed (early stopping may end sooner).
    seeds : list of int
        Every seed is trained and saved; metadata reports the mean and spread over seeds.
    scheme : str
        The split scheme whose ``test`` part is held out: ``seed``, ``stratified`` or
        ``fault_filtered``.
    batch_size : int
    """

    epochs: int = _TRAIN.epochs
    seeds: list[int] = [_TRAIN.seed]
    scheme: str = _TRAIN.scheme
    batch_size: int = _TRAIN.batch_size


def check_config(config: TrainingConfig) -> None:
    """Refuse empty seeds, and run config past :mod:`feature_store.bounds` (as the command line
    does), in one line."""
    from feature_store.bounds import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_SEED

    if not config.seeds:
        raise dg.Failure("run config `seeds` is empty; give at least one seed", allow_retries=False)

    checks = [("epochs", config.epochs, 1, MAX_EPOCHS), ("batch_size", config.batch_size, 1, MAX_BATCH_SIZE)]
    for name, value, least, most in checks + [("seeds", s, 0, MAX_SEED) for s in config.seeds]:
        if not least <= value <= most:
            raise dg.Failure(f"run config `{name}`: {value} is not in the range {least}..{most}", allow_retries=False)


@dg.asset(
    group_name="training",
    kinds={"tensorflow", "keras", "scikitlearn"},
    partitions_def=model_partitions,
    # The clip dimension of this asset is the partitioning of the views' assets, so Dagster
    # infers the mapping (model × clip) -> clip by itself.
    deps=[VIEW_ASSETS[view] for view in PIPELINE_VIEWS],
    pool=TRAINING_POOL,
    retry_policy=RETRY_POLICY,
    automation_condition=ON_WEEKLY_CRON,
    description="A model per (clip length, model) partition (keys `clip|model`, e.g. `5|cnn`), trained on "
    "the clips of that length of its family's view: the Keras models and `baseline` on the mel spectrograms, "
    "`timbre_logreg` on the timbral statistics; normalisation is fitted on training songs only. Each seed of "
    "the run config is saved in the model store (a `.keras` file loaded with safe_mode, or plain arrays; never "
    "pickled) with its `metrics.json`. Metadata: held-out song and clip accuracy (true argmax), the "
    "study's own metric, macro F1, and the costs (parameters, size, seconds per epoch, peak RSS, "
    "inference time). Training steps share one slot of the `training` pool.",
)
def genre_models(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    features: FeatureStoreResource,
    models: ModelStoreResource,
) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    model, clip_seconds = keys["model"], int(keys["clip"])
    check_config(config)
    results = _train_seeds(context, config, features, models, model=model, clip_seconds=clip_seconds)
    metadata = runs_metadata(results, config, model=model, clip_seconds=clip_seconds)
    return dg.MaterializeResult(metadata=step_metadata(metadata, features))


def _train_seeds(context: dg.AssetExecutionContext, config: TrainingConfig, features: FeatureStoreResource,
                 models: ModelStoreResource, *, model: str, clip_seconds: int) -> list[RunRecord]:
    """One run per seed of the run config, each logged."""
    results = []
    for seed in config.seeds:
        with permanent():
            r = models.train(
                features=features,
                model=model,
                clip_seconds=clip_seconds,
                epochs=config.epochs,
                seed=seed,
                scheme=config.scheme,
                batch_size=config.batch_size,
            )
        context.log.info(
            f"{model} {clip_seconds} s seed {seed}: song accuracy {r.metrics.song_accuracy:.2f}, "
            f"clip accuracy {r.metrics.clip_accuracy:.2f}, {r.costs.epochs_run} epochs"
        )
        results.append(r)
    return results


def runs_metadata(results: list[RunRecord], config: TrainingConfig, *, model: str, clip_seconds: int) -> dict:
    """The asset's metadata: means over seeds, per-seed table and costs."""

    def values(section: str, key: str) -> list[float]:
        return [float(getattr(getattr(r, section), key)) for r in results]

    # Keras models train in epochs under the run config's cap; the scikit-learn families count
    # solver iterations, which the cap does not bound: name each for what it is
    keras = getattr(getattr(registry()[model], "spec", None), "trainer", None) == "keras"
    steps = "epochs_run" if keras else "solver_iterations"

    per_seed = pl.DataFrame(
        {
            "seed": [r.seed for r in results],
            "song_accuracy": values("metrics", "song_accuracy"),
            "clip_accuracy": values("metrics", "clip_accuracy"),
            "study_metric_accuracy": values("metrics", "study_metric_accuracy"),
            "song_macro_f1": values("metrics", "song_macro_f1"),
            steps: [int(r.costs.epochs_run) for r in results],
            "train_seconds": values("costs", "train_seconds"),
            "model_path": [str(r.model_path) for r in results],
        }
    )
    song = values("metrics", "song_accuracy")
    first = results[0]
    return {
        "model": model,
        "clip_seconds": clip_seconds,
        "scheme": config.scheme,
        "seeds": dg.MetadataValue.json(list(config.seeds)),
        "epoch_cap": config.epochs if keras else "none (solver iterations, not epochs)",
        "song_accuracy": statistics.fmean(song),
        "song_accuracy_std": spread(song),
        "clip_accuracy": statistics.fmean(values("metrics", "clip_accuracy")),
        "study_metric_accuracy": statistics.fmean(values("metrics", "study_metric_accuracy")),
        "song_macro_f1": statistics.fmean(values("metrics", "song_macro_f1")),
        "chance_accuracy": 1.0 / len(first.labels),
        "train_clips": first.train_clips,
        "test_clips": first.test_clips,
        "parameters": first.costs.parameters,
        "model_mb": statistics.fmean(values("costs", "model_mb")),
        "seconds_per_epoch": statistics.fmean(values("costs", "seconds_per_epoch")),
        "train_seconds": sum(values("costs", "train_seconds")),
        "peak_rss_mb": max(values("costs", "peak_rss_mb")),
        "inference_ms_per_clip": statistics.fmean(values("costs", "inference_ms_per_clip")),
        "per_seed": table(per_seed),
        "params_hash": first.params_hash,
        "model_path": dg.MetadataValue.path(str(first.model_path)),
        "model_bytes": sum(size_bytes(r.model_path) for r in results),
        "run_dir": dg.MetadataValue.path(str(first.run_dir)),
    }

