"""Model assets: one trained model per (model, clip length), over one or more seeds."""

import dagster as dg

from assets.features import mel_features
from assets.partitions import model_partitions
from assets.resources import FeatureStoreResource, ModelStoreResource


class TrainingConfig(dg.Config):
    """Run config of training: epochs cap, seeds and the split scheme to hold out."""

    epochs: int = 2
    seeds: list[int] = [0]
    scheme: str = "seed"
    batch_size: int = 32


@dg.asset(
    group_name="training",
    kinds={"tensorflow", "keras"},
    partitions_def=model_partitions,
    deps=[
        dg.AssetDep(
            mel_features,
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="clip"),
        )
    ],
    description="A Keras model trained on one clip length; saved as .keras files in the model "
    "store (never pickled), one per seed, with held-out metrics and costs.",
)
def genre_models(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    features: FeatureStoreResource,
    models: ModelStoreResource,
) -> dg.MaterializeResult:
    from training.train import TrainConfig, train_model

    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    model, clip_seconds = keys["model"], int(keys["clip"])
    results = []
    for seed in config.seeds:
        cfg = TrainConfig(epochs=config.epochs, seed=seed, scheme=config.scheme, batch_size=config.batch_size)
        r = train_model(
            store_root=features.root,
            model_root=models.root,
            model=model,
            clip_seconds=clip_seconds,
            params=features.params(),
            config=cfg,
        )
        context.log.info(f"{model} {clip_seconds} s seed {seed}: song accuracy {r['metrics']['song_accuracy']:.2f}")
        results.append(r)
    mean = lambda k: sum(r["metrics"][k] for r in results) / len(results)  # noqa: E731
    return dg.MaterializeResult(
        metadata={
            "model": model,
            "clip_seconds": clip_seconds,
            "seeds": dg.MetadataValue.json(config.seeds),
            "song_accuracy": mean("song_accuracy"),
            "clip_accuracy": mean("clip_accuracy"),
            "study_metric_accuracy": mean("study_metric_accuracy"),
            "parameters": results[0]["costs"]["parameters"],
            "seconds_per_epoch": results[0]["costs"]["seconds_per_epoch"],
            "model_paths": dg.MetadataValue.json([r["model_path"] for r in results]),
        }
    )
