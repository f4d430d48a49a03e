"""``make run``: materialize the whole asset graph through Dagster, partition by partition.

The runs are recorded in ``$DAGSTER_HOME`` (the Makefile sets a repo-local one), so they show
up afterwards in ``make dev``. Partitioned assets with different partitionings cannot share
one run, so this launches, in order: the ingest run, one run per clip length of features,
one run per (clip length, model), and the report run.

Usage::

    python -m pipelines.run [--epochs N] [--seeds 0 1 2] [--clip-seconds 1 5 15 30] [--models ...]
"""

from __future__ import annotations

import argparse
import sys
import time

import dagster as dg

from assets.partitions import PIPELINE_MODELS
from feature_store.params import CLIP_SECONDS


def run_all(
    *,
    instance: dg.DagsterInstance,
    clip_seconds: list[int] | None = None,
    models: list[str] | None = None,
    epochs: int = 2,
    seeds: list[int] | None = None,
    log=print,
    log_level: str = "WARNING",
) -> dict:
    """Launch every run of the graph in dependency order; stop at the first failure.

    Returns
    -------
    dict
        ``runs`` (run ids) and ``report`` (the report's path).
    """
    from pipelines.definitions import defs

    clips = [str(c) for c in (clip_seconds or CLIP_SECONDS)]
    names = models or list(PIPELINE_MODELS)
    run_config = {"ops": {"genre_models": {"config": {"epochs": epochs, "seeds": seeds or [0]}}}}
    run_ids: list[str] = []

    def launch(job_name: str, partition_key: str | dg.MultiPartitionKey | None = None, config: dict | None = None):
        t0 = time.perf_counter()
        job = defs.resolve_job_def(job_name)
        quiet = {"loggers": {"console": {"config": {"log_level": log_level}}}}
        result = job.execute_in_process(
            instance=instance, partition_key=partition_key, run_config={**quiet, **(config or {})}, raise_on_error=False
        )
        label = f"{job_name}" + (f" [{partition_key}]" if partition_key else "")
        if not result.success:
            raise SystemExit(f"run {result.run_id} ({label}) failed; open `make dev` to see why")
        run_ids.append(result.run_id)
        log(f"  ok  {label:<34} {time.perf_counter() - t0:6.1f} s  run {result.run_id[:8]}")
        return result

    log("ingest")
    launch("ingest_job")
    log("features")
    for c in clips:
        launch("features_job", c)
    log("training")
    for c in clips:
        for m in names:
            launch("training_job", dg.MultiPartitionKey({"clip": c, "model": m}), run_config)
    log("report")
    result = launch("report_job")
    mat = result.asset_materializations_for_node("evaluation_report")[0]
    return {"runs": run_ids, "report": mat.metadata["path"].value}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--clip-seconds", type=int, nargs="+", default=list(CLIP_SECONDS))
    parser.add_argument("--models", nargs="+", default=list(PIPELINE_MODELS))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        out = run_all(
            instance=instance, clip_seconds=args.clip_seconds, models=args.models, epochs=args.epochs, seeds=args.seeds
        )
    print(f"\ndone in {time.perf_counter() - t0:.0f} s, {len(out['runs'])} runs recorded in $DAGSTER_HOME")
    print(f"evaluation report: {out['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
