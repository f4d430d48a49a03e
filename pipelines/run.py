"""``make run``: materialize the whole asset graph through Dagster, partition by partition.

The runs are recorded in ``$DAGSTER_HOME`` (the Makefile sets a repo-local one), so they show
up afterwards in ``make dev``. A run carries at most one partition key, so this launches, in
dependency order: the ingest run, one run per clip length of features, one run per
(model, clip length), with ``--with-embeddings`` one run per clip length of musicnn
embeddings and the logistic-regression probe on them, and the report run. Each run also
executes its assets' checks; a failed blocking check (leaking split, torn features or
embeddings) stops the whole sequence.

The embeddings and probes are opt-in (``--with-embeddings``, or ``--models all``): on the
demo corpus on 2 cores their four runs took 98 s (110 CPU-seconds, mostly musicnn at 15 and
30 s) on top of a default run that already takes most of its 5-minute budget.

Runs execute in this process, one after another (no step subprocesses, TensorFlow imported
once), which is the fastest way through the graph on a small machine; the UI's runs use the
multiprocess executor instead.

Usage::

    python -m pipelines.run [--epochs N] [--seeds 0 1 2] [--clip-seconds 1 5 15 30]
                            [--models seed_cnn seed_rnn | --models all] [--scheme seed]
                            [--with-embeddings]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

# Keep this module's top level light: feature-build worker processes are spawned and
# re-import the main module.


def run_all(
    *,
    instance: Any,
    defs: Any = None,
    clip_seconds: list[int] | None = None,
    models: list[str] | None = None,
    epochs: int = 2,
    seeds: list[int] | None = None,
    scheme: str = "seed",
    with_embeddings: bool = False,
    log=print,
    log_level: str = "WARNING",
) -> dict:
    """Launch every run of the graph in dependency order; stop at the first failure.

    Parameters
    ----------
    instance : dagster.DagsterInstance
        Where the runs are recorded.
    defs : dagster.Definitions, optional
        The code location to run (default :data:`pipelines.definitions.defs`, whose resources
        come from the environment).
    clip_seconds : list of int, optional
        Clip lengths (feature partitions) to build and train on; default all.
    models : list of str, optional
        Model partitions to train; default :data:`assets.partitions.DEFAULT_RUN_MODELS`.
    epochs, seeds, scheme
        Run config of the training asset (:class:`assets.models.TrainingConfig`); seeds and
        scheme are also the probes' (:class:`assets.embeddings.ProbeTrainingConfig`).
    with_embeddings : bool
        Also build the musicnn embeddings of every clip length and train the
        logistic-regression probe on them (``embeddings_job``), before the report.
    log : callable(str)
        Where progress lines go.
    log_level : str
        Level of Dagster's console logger during the runs.

    Returns
    -------
    dict
        ``runs`` (run ids, in launch order) and ``report`` (the report's path).

    Raises
    ------
    SystemExit
        When a run fails (with its run id, to look it up in ``make dev``), or, before any
        run, when ``with_embeddings`` is set and the musicnn weights are not installed (with
        the command that installs them).
    """
    from assets.partitions import DEFAULT_RUN_MODELS, model_key
    from feature_store.params import CLIP_SECONDS
    if defs is None:
        from pipelines.definitions import defs

    clips = [str(c) for c in (clip_seconds or CLIP_SECONDS)]
    names = list(models or DEFAULT_RUN_MODELS)
    train_config = {"ops": {"genre_models": {"config": {"epochs": epochs, "seeds": seeds or [0], "scheme": scheme}}}}
    probe_config = {"ops": {"probe_models": {"config": {"seeds": seeds or [0], "scheme": scheme}}}}
    if with_embeddings:
        from feature_store.embeddings.musicnn import MusicnnWeightsError, weights_folder

        try:  # fail before the first run, not after the models have trained
            weights_folder(defs.resources["features"].embedding_model)
        except MusicnnWeightsError as exc:
            raise SystemExit(f"--with-embeddings: {exc}") from exc
    quiet = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    run_ids: list[str] = []

    def launch(job_name: str, partition_key: Any = None, config: dict | None = None) -> Any:
        t0 = time.perf_counter()
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(
            instance=instance, partition_key=partition_key, run_config={**quiet, **(config or {})}, raise_on_error=False
        )
        label = job_name + (f" [{partition_key}]" if partition_key else "")
        if not result.success:
            raise SystemExit(f"run {result.run_id} ({label}) failed; open `make dev` (Runs) to see why")
        failed_checks = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
        run_ids.append(result.run_id)
        note = f"  warns: {', '.join(failed_checks)}" if failed_checks else ""
        log(f"  ok  {label:<34} {time.perf_counter() - t0:6.1f} s  run {result.run_id[:8]}{note}")
        return result

    log("ingest")
    launch("ingest_job")
    log("features")
    for c in clips:
        launch("features_job", c)
    log("training")
    for c in clips:
        for m in names:
            launch("training_job", model_key(model=m, clip_seconds=c), train_config)
    if with_embeddings:
        log("embeddings and probes")
        for c in clips:
            launch("embeddings_job", c, probe_config)
    log("report")
    result = launch("report_job")
    mat = result.asset_materializations_for_node("evaluation_report")[0]
    return {"runs": run_ids, "report": mat.metadata["path"].value}


def main(argv: list[str] | None = None) -> int:
    from assets.partitions import DEFAULT_RUN_MODELS, PIPELINE_MODELS
    from feature_store.params import CLIP_SECONDS

    parser = argparse.ArgumentParser(prog="python -m pipelines.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="epoch cap per model (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per model (default: 0)")
    parser.add_argument("--scheme", default="seed", help="split scheme to hold out (default: %(default)s)")
    parser.add_argument("--clip-seconds", type=int, nargs="+", default=list(CLIP_SECONDS), choices=list(CLIP_SECONDS))
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_RUN_MODELS),
        help=f"models to train, or 'all' (default: {' '.join(DEFAULT_RUN_MODELS)}; all: {' '.join(PIPELINE_MODELS)}, "
        "and the embeddings and probes of --with-embeddings)",
    )
    parser.add_argument(
        "--with-embeddings",
        action="store_true",
        help="also build the musicnn embeddings of each clip length and train the logistic-regression probe "
        "(probe_logreg_msd) on them; needs `pip install --no-deps musicnn==0.1.0` (make install runs it)",
    )
    args = parser.parse_args(argv)
    models = list(PIPELINE_MODELS) if args.models == ["all"] else args.models
    unknown = [m for m in models if m not in PIPELINE_MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; valid models are {list(PIPELINE_MODELS)} or 'all'")
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import dagster as dg

    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        out = run_all(
            instance=instance,
            clip_seconds=args.clip_seconds,
            models=models,
            epochs=args.epochs,
            seeds=args.seeds,
            scheme=args.scheme,
            with_embeddings=args.with_embeddings or args.models == ["all"],
        )
    print(f"\ndone in {time.perf_counter() - t0:.0f} s, {len(out['runs'])} runs recorded in $DAGSTER_HOME")
    print(f"evaluation report: {out['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
