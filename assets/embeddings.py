"""Pretrained embeddings and the probes on them: musicnn clip embeddings per clip length.

``musicnn_embeddings`` is the embeddings view of the feature store
(:class:`feature_store.embeddings.EmbeddingStore`): for every clip of the mel store (same clip
lengths, mode and ``clip_id``), the mean over the 3 s musicnn patches inside the clip of four
layers. ``probe_models`` trains probes of the vector family (:mod:`training.families.vector`) on it and
publishes the runs in the model store beside the Keras models, so that the evaluation report
and ``gtzan predict`` see them.

TensorFlow is imported only inside the asset bodies (by the embedding build), never when
the code location loads. Without the ``musicnn`` weights package the embedding step fails at
once (no retry) with the command that installs it.
"""

import statistics

import dagster as dg
import polars as pl

from assets.metadata import size_bytes, spread, step_metadata, table
from assets.partitions import clip_partitions
from assets.policies import ON_WEEKLY_CRON, RETRY_POLICY, TRAINING_POOL, permanent
from assets.resources import FeatureStoreResource, ModelStoreResource
from assets.views import VIEW_ASSETS, VIEW_CHECKS
from training.families.vector import CLASSIFIERS, ProbeConfig
from training.record import RunRecord

#: The library's probe defaults, which are the run config's.
_PROBE = ProbeConfig()


#: The musicnn embeddings view (made by :mod:`assets.views`, like every view).
musicnn_embeddings = VIEW_ASSETS["embeddings"]
embeddings_sane = VIEW_CHECKS["embeddings"]


class ProbeTrainingConfig(dg.Config):
    """Run config of ``probe_models`` (the launchpad, or ``--seeds/--scheme`` of ``make run``).

    The defaults are :class:`training.families.vector.ProbeConfig`'s.

    Attributes
    ----------
    classifiers : list of str
        Probe classifiers to train: ``logreg`` (multinomial logistic regression) and/or
        ``mlp`` (one hidden layer of 256 ReLU units).
    seeds : list of int
        One run per classifier and seed (the logistic regression is deterministic: its
        seeds agree); metadata reports the mean and spread over seeds.
    scheme : str
        The split scheme whose ``test`` part is held out: ``seed``, ``stratified`` or
        ``fault_filtered``.
    """

    classifiers: list[str] = [_PROBE.classifier]
    seeds: list[int] = [_PROBE.seed]
    scheme: str = _PROBE.scheme


@dg.asset(
    group_name="training",
    kinds={"scikitlearn", "numpy"},
    partitions_def=clip_partitions,
    deps=[musicnn_embeddings],
    pool=TRAINING_POOL,
    retry_policy=RETRY_POLICY,
    automation_condition=ON_WEEKLY_CRON,
    description="Probe models per clip length: a logistic regression (`probe_logreg_msd`; optionally a "
    "one-hidden-layer MLP, `probe_mlp_msd`) on the musicnn embeddings of that clip length, standardised on "
    "training songs only. Each (classifier, seed) run is stored as plain arrays (`probe.npz` + `probe.json`, "
    "no pickle) with the same `metrics.json` as the Keras models, in the same model store, so the "
    "evaluation report and `gtzan predict` use them. The inference cost includes decoding, log-mel and "
    "musicnn. Metadata: held-out song and clip accuracy, macro F1 and costs, mean over seeds.",
)
def probe_models(
    context: dg.AssetExecutionContext,
    config: ProbeTrainingConfig,
    features: FeatureStoreResource,
    models: ModelStoreResource,
) -> dg.MaterializeResult:
    clip_seconds = int(context.partition_key)
    if not config.seeds:
        raise dg.Failure("run config `seeds` is empty; give at least one seed", allow_retries=False)
    unknown = [c for c in config.classifiers if c not in CLASSIFIERS]
    if unknown or not config.classifiers:
        raise dg.Failure(
            f"run config `classifiers` must name one or more of {list(CLASSIFIERS)}, got {list(config.classifiers)}",
            allow_retries=False,
        )
    results = _train_probes(context, config, features, models, clip_seconds=clip_seconds)
    metadata = _probe_metadata(results, config, features, clip_seconds=clip_seconds)
    return dg.MaterializeResult(metadata=step_metadata(metadata, features))


def _train_probes(context: dg.AssetExecutionContext, config: ProbeTrainingConfig, features: FeatureStoreResource,
                  models: ModelStoreResource, *, clip_seconds: int) -> list[RunRecord]:
    """Every classifier of the run config, one run per seed each, logged."""
    results = []
    for classifier in config.classifiers:
        with permanent():
            runs = models.train_probes(
                features=features, classifier=classifier, clip_seconds=clip_seconds, seeds=list(config.seeds),
                scheme=config.scheme,
            )
        for r in runs:
            context.log.info(
                f"{r.model} {clip_seconds} s seed {r.seed}: song accuracy {r.metrics.song_accuracy:.2f}, "
                f"clip accuracy {r.metrics.clip_accuracy:.2f} ({r.train_clips} training clips)"
            )
        results.extend(runs)
    return results


def _probe_metadata(results: list[RunRecord], config: ProbeTrainingConfig, features: FeatureStoreResource, *,
                    clip_seconds: int) -> dict:
    """The asset's metadata: the first classifier's means, every model's summary, the runs' table."""
    per_run = pl.DataFrame(
        {
            "model": [r.model for r in results],
            "seed": [r.seed for r in results],
            "song_accuracy": [float(r.metrics.song_accuracy) for r in results],
            "clip_accuracy": [float(r.metrics.clip_accuracy) for r in results],
            "song_macro_f1": [float(r.metrics.song_macro_f1) for r in results],
            "inference_ms_per_clip": [float(r.costs.inference_ms_per_clip) for r in results],
            "train_seconds": [float(r.costs.train_seconds) for r in results],
            "model_path": [str(r.model_path) for r in results],
        }
    )
    names = list(dict.fromkeys(r.model for r in results))
    summary = {}
    for name in names:
        rs = [r for r in results if r.model == name]
        song = [float(r.metrics.song_accuracy) for r in rs]
        summary[name] = {
            "song_accuracy": statistics.fmean(song),
            "song_accuracy_std": spread(song),
            "clip_accuracy": statistics.fmean(float(r.metrics.clip_accuracy) for r in rs),
            "song_macro_f1": statistics.fmean(float(r.metrics.song_macro_f1) for r in rs),
            "seeds": len(rs),
        }
    first = results[0]
    main = summary[first.model]
    return {
        "models": dg.MetadataValue.json(names),
        "clip_seconds": clip_seconds,
        "scheme": config.scheme,
        "seeds": dg.MetadataValue.json(list(config.seeds)),
        "embedding_model": features.embedding_model,
        "weights_sha256": first.embedding["weights_sha256"],
        "features": first.embedding["features"],
        # the first classifier of the run config (logreg by default); every model: per_model
        "song_accuracy": main["song_accuracy"],
        "song_accuracy_std": main["song_accuracy_std"],
        "clip_accuracy": main["clip_accuracy"],
        "song_macro_f1": main["song_macro_f1"],
        "chance_accuracy": 1.0 / len(first.labels),
        "per_model": dg.MetadataValue.json(summary),
        "per_run": table(per_run),
        "train_clips": first.train_clips,
        "test_clips": first.test_clips,
        "parameters": first.costs.parameters,
        "train_seconds": float(per_run["train_seconds"].sum()),
        "embedding_ms_per_clip": float(first.costs.embedding_ms_per_clip),
        "inference_ms_per_clip": float(per_run["inference_ms_per_clip"].mean()),
        "params_hash": first.params_hash,
        "model_path": dg.MetadataValue.path(str(first.model_path)),
        "model_bytes": sum(size_bytes(r.model_path) for r in results),
        "run_dir": dg.MetadataValue.path(str(first.run_dir)),
    }

