"""``gtzan run`` (``make run``): materialize the whole asset graph through Dagster, partition by partition.

The runs are recorded in ``$DAGSTER_HOME`` (the Makefile sets a repo-local one), so they show
up afterwards in ``make dev``. A run carries at most one partition key, so this launches, in
dependency order: the ingest run, one run per clip length of features, one run per
(model, clip length), with ``with_embeddings`` one run per clip length of musicnn
embeddings and the probes on them, and the report run. Each run also executes its assets'
checks; a failed blocking check (leaking split, torn features or embeddings) stops the whole
sequence.

The embeddings and probes are opt-in (``--with-embeddings``, or ``--models all``): on the
demo corpus on 2 cores their four runs took 98 s (110 CPU-seconds, mostly musicnn at 15 and
30 s) on top of the default run.

Runs execute in this process, one after another (no step subprocesses, TensorFlow imported
once), which is the fastest way through the graph on a small machine; the UI's runs use the
multiprocess executor instead.

``python -m pipelines.run [options]`` is the same as ``gtzan run [options]``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from feature_store.errors import GTZANError
from pipelines.settings import Settings

# Keep this module's top level light: feature-build worker processes are spawned and
# re-import the main module.


class RunFailedError(GTZANError):
    """A run of the sequence failed, or could not start; the message says which and why."""


def run_all(
    *,
    settings: Settings,
    instance: Any = None,
    defs: Any = None,
    with_embeddings: bool = False,
    log=print,
    log_level: str = "WARNING",
) -> dict:
    """Launch every run of the graph in dependency order; stop at the first failure.

    Parameters
    ----------
    settings : Settings
        What to run: ``clip_seconds`` (feature partitions), ``models`` (model partitions),
        and the run config of the training asset (``epochs``, ``seeds``, ``scheme``,
        ``batch_size``) and of the probes (``probe_classifiers``, ``seeds``, ``scheme``).
    instance : dagster.DagsterInstance, optional
        Where the runs are recorded (default: ``$DAGSTER_HOME``'s).
    defs : dagster.Definitions, optional
        The code location to run (default: built from ``settings``).
    with_embeddings : bool
        Also build the musicnn embeddings of every clip length and train the probes on them
        (``embeddings_job``), before the report.
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
    RunFailedError
        When a run fails (with its run id, to look it up in ``make dev``), or, before any
        run, when ``with_embeddings`` is set and the musicnn weights are not installed (with
        the command that installs them).
    """
    import dagster as dg

    from assets.partitions import model_key

    if defs is None:
        from pipelines.definitions import build_defs

        defs = build_defs(settings=settings)
    if with_embeddings:
        _check_weights(defs.resources["features"].embedding_model)
    if instance is None:
        with dg.DagsterInstance.get() as instance:
            return run_all(settings=settings, instance=instance, defs=defs, with_embeddings=with_embeddings, log=log,
                           log_level=log_level)
    s = settings
    train_config = {"ops": {"genre_models": {"config": {"epochs": s.epochs, "seeds": list(s.seeds),
                                                         "scheme": s.scheme, "batch_size": s.batch_size}}}}
    probe_config = {"ops": {"probe_models": {"config": {"classifiers": list(s.probe_classifiers),
                                                         "seeds": list(s.seeds), "scheme": s.scheme}}}}
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
            raise RunFailedError(f"run {result.run_id} ({label}) failed; open `make dev` (Runs) to see why")
        failed_checks = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
        run_ids.append(result.run_id)
        note = f"  warns: {', '.join(failed_checks)}" if failed_checks else ""
        log(f"  ok  {label:<34} {time.perf_counter() - t0:6.1f} s  run {result.run_id[:8]}{note}")
        return result

    log("ingest")
    launch("ingest_job")
    log("features")
    for c in s.clip_seconds:
        launch("features_job", str(c))
    log("training")
    for c in s.clip_seconds:
        for m in s.models:
            launch("training_job", model_key(model=m, clip_seconds=c), train_config)
    if with_embeddings:
        log("embeddings and probes")
        for c in s.clip_seconds:
            launch("embeddings_job", str(c), probe_config)
    log("report")
    result = launch("report_job")
    mat = result.asset_materializations_for_node("evaluation_report")[0]
    return {"runs": run_ids, "report": mat.metadata["path"].value}


def _check_weights(embedding_model: str) -> None:
    """Fail before the first run, not after the models have trained, without the musicnn weights."""
    from feature_store.embeddings.musicnn import MusicnnWeightsError, weights_folder

    try:
        weights_folder(embedding_model)
    except MusicnnWeightsError as exc:
        raise RunFailedError(f"--with-embeddings: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.run ARGS``: the same as ``gtzan run ARGS``."""
    from pipelines.cli import main as gtzan

    return gtzan.main(["run", *(sys.argv[1:] if argv is None else argv)], prog_name="gtzan")


if __name__ == "__main__":
    sys.exit(main())
