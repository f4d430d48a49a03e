"""``gtzan run`` (``make run``): materialize the whole asset graph through Dagster, partition by partition.

The runs go through the instance and the code location, as the UI's do: the code location
of ``workspace.yaml`` is loaded in a code server, each run is created from its job there
(with its remote origin and partition tags) and executed, and the next starts when it has
finished. They are recorded in ``$DAGSTER_HOME`` (the Makefile sets a repo-local one),
listed under their job in ``make dev``, and can be re-executed from there.

By default each run executes in this process, as a run worker would: TensorFlow is imported
once, not once per run, and ``make run`` takes as long as when its runs had no origin
(BENCHMARKS.md).
``run_launcher=True`` (``gtzan run --run-launcher``) hands each run to the instance's run
launcher instead: a run worker process per run with the default launcher, or wherever the
deployment's launcher puts it (a pod with ``K8sRunLauncher``).

A run carries at most one partition key, so the sequence is, in dependency order: the ingest
run, one run per clip length of features, one run per (model, clip length), with
``with_embeddings`` one run per clip length of musicnn embeddings and the probes on them,
and the report run. Each run also executes its assets' checks; a failed run, or a failed
blocking check (leaking split, torn features or embeddings), stops the sequence.

Either way a run executes its steps in one process (run config ``execution: in_process``),
not a subprocess per step; the UI's own runs keep the multiprocess default. The embeddings
and probes are opt-in (``--with-embeddings``, or ``--models all``): on the demo corpus on 2
cores their four runs took 98 s (110 CPU-seconds, mostly musicnn at 15 and 30 s) on top of
the default run.

``gtzan run`` (:mod:`pipelines.cli.run`) calls :func:`run_all`; ``python -m pipelines.run`` is
its other entry point (:mod:`pipelines.run`). This module imports neither.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from feature_store.errors import GTZANError
from pipelines.settings import Settings

# Keep this module's top level light: feature-build worker processes are spawned and
# re-import the main module.


class RunFailedError(GTZANError):
    """A run of the sequence failed, or could not start; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of the sequence.

    Attributes
    ----------
    stage : str
        The part of the graph it belongs to (``ingest``, ``features``, ``training``...).
    job : str
        The job it runs.
    partition : str or None
        Its partition key, e.g. ``5`` or ``5|cnn``.
    tags : dict
        The partition's run tags (``dagster/partition`` and, for the model grid, one per
        dimension).
    config : dict
        Run config of its assets (epochs, seeds, scheme...).
    """

    stage: str
    job: str
    partition: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.job + (f" [{self.partition}]" if self.partition else "")


def plan_runs(settings: Settings, *, with_embeddings: bool = False) -> list[PlannedRun]:
    """The runs of the whole graph for ``settings``, in dependency order.

    ``settings.clip_seconds`` are the feature partitions, ``settings.models`` the model
    partitions; ``epochs``, ``seeds``, ``scheme`` and ``batch_size`` are the training run
    config, ``probe_classifiers``, ``seeds`` and ``scheme`` the probes'.
    """
    from assets.partitions import clip_partitions, model_key, model_partitions

    s = settings
    train = {"ops": {"genre_models": {"config": {"epochs": s.epochs, "seeds": list(s.seeds), "scheme": s.scheme,
                                                  "batch_size": s.batch_size}}}}
    probes = {"ops": {"probe_models": {"config": {"classifiers": list(s.probe_classifiers), "seeds": list(s.seeds),
                                                   "scheme": s.scheme}}}}

    def clip_run(stage: str, job: str, c: int, config: Mapping[str, Any] | None = None) -> PlannedRun:
        return PlannedRun(stage, job, str(c), clip_partitions.get_tags_for_partition_key(str(c)), config or {})

    runs = [PlannedRun("ingest", "ingest_job")]
    runs += [clip_run("features", "features_job", c) for c in s.clip_seconds]
    for c in s.clip_seconds:
        for m in s.models:
            key = str(model_key(model=m, clip_seconds=c))
            runs.append(PlannedRun("training", "training_job", key, model_partitions.get_tags_for_partition_key(key),
                                   train))
    if with_embeddings:
        runs += [clip_run("embeddings and probes", "embeddings_job", c, probes) for c in s.clip_seconds]
    runs.append(PlannedRun("report", "report_job"))
    return runs


def run_all(
    *,
    settings: Settings,
    workspace_file: Path,
    dagster_home: Path | None = None,
    run_launcher: bool = False,
    with_embeddings: bool = False,
    log=print,
    log_level: str = "WARNING",
) -> dict:
    """Launch every run of the graph in dependency order, each after the last; stop at the first failure.

    Parameters
    ----------
    settings : Settings
        What to run (see :func:`plan_runs`). The code location reads its own settings from
        the ``GTZAN_*`` variables, which this sets from ``settings.env()``.
    workspace_file : Path
        The ``workspace.yaml`` naming the code location.
    dagster_home : Path, optional
        The instance that records the runs (default: ``$DAGSTER_HOME``).
    run_launcher : bool
        Launch each run with the instance's run launcher and wait for it, instead of
        executing it in this process.
    with_embeddings : bool
        Also build the musicnn embeddings of every clip length and train the probes on them
        (``embeddings_job``), before the report.
    log : callable(str)
        Where progress lines go.
    log_level : str
        Level of Dagster's console logger in the runs.

    Returns
    -------
    dict
        ``runs`` (run ids, in launch order) and ``report`` (the report's path).

    Raises
    ------
    RunFailedError
        When a run fails (with its run id, to look it up in ``make dev``, and the error of
        its failed steps), or, before any run, when ``with_embeddings`` is set and the
        musicnn weights are not installed (with the command that installs them), or when
        runs would execute here on a code location imported earlier with other settings.
    """
    import dagster as dg

    from pipelines.launch import code_location_launcher

    if with_embeddings:
        _check_weights(settings.embedding_model)
    if not run_launcher:
        _check_loaded_definitions(settings)
    planned = plan_runs(settings, with_embeddings=with_embeddings)
    base = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if settings.executor == "multiprocess":
        base["execution"] = {"config": {"in_process": {}}}
    run_ids: list[str] = []
    env = settings.env() | ({"DAGSTER_HOME": str(dagster_home)} if dagster_home else {})
    with contextlib.ExitStack() as stack:
        stack.enter_context(_environ(env))
        instance = stack.enter_context(dg.DagsterInstance.get())
        output = None if settings.debug else Path(instance.root_directory) / "logs" / "gtzan-run.log"
        launcher = stack.enter_context(code_location_launcher(instance, workspace_file, output))
        log(f"{'code server and run worker' if run_launcher else 'code server'} output: {output or 'here'}")
        stage = None
        for p in planned:
            if p.stage != stage:
                log(stage := p.stage)
            run_ids.append(_run_one(launcher, p, {**base, **p.config}, run_launcher=run_launcher, log=log))
            if p.stage == "ingest":
                refuse_leaking_splits(settings)
        report = instance.get_latest_materialization_event(dg.AssetKey("evaluation_report"))
    return {"runs": run_ids, "report": report.asset_materialization.metadata["path"].value}


def refuse_leaking_splits(settings: Settings) -> None:
    """Stop the sequence after ingest when the split table leaks, with the check of the
    blocking ``split_leakage`` asset check (:func:`feature_store.splits.require_no_leakage`).

    Raises
    ------
    RunFailedError
        One line naming the first leaking song or file.
    """
    from feature_store.errors import StoreError
    from feature_store.splits import require_no_leakage
    from feature_store.store import FeatureStore

    store = FeatureStore(settings.store_root)
    if not store.splits_path.exists():  # the runs wrote it on another host: its blocking check ran there
        return
    try:
        require_no_leakage(store.splits(), where=str(store.splits_path))
    except StoreError as exc:
        raise RunFailedError(str(exc)) from exc


def _run_one(launcher: Any, p: PlannedRun, run_config: Mapping[str, Any], *, run_launcher: bool, log) -> str:
    """Create the run ``p`` from the code location, execute it here or launch it, wait; its id.

    Raises
    ------
    RunFailedError
        The run did not succeed; the message has its id and the errors of its failed steps.
    """
    import dagster as dg

    t0 = time.perf_counter()
    run = launcher.create_run(p.job, run_config=run_config, tags=p.tags)
    done = launcher.launch_and_wait(run) if run_launcher else launcher.execute_here(run)
    if done.status != dg.DagsterRunStatus.SUCCESS:
        raise RunFailedError(f"run {run.run_id} ({p.label}) {done.status.value.lower()}"
                             f"{_failures(launcher.instance, run.run_id)}; open `make dev` (Runs) to see why")
    warns = _failed_checks(launcher.instance, run.run_id)
    note = f"  warns: {', '.join(warns)}" if warns else ""
    log(f"  ok  {p.label:<34} {time.perf_counter() - t0:6.1f} s  run {run.run_id[:8]}{note}")
    return run.run_id


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` set (for the instance and the code server), restored afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _failed_checks(instance: Any, run_id: str) -> list[str]:
    """Names of the asset checks of a run that did not pass (the warnings; blocking ones fail the run)."""
    import dagster as dg

    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return [e.check_name for e in evaluations if not e.passed]


def _failures(instance: Any, run_id: str) -> str:
    """``: <step>: <error>`` for each failed step of a run (its first line), or nothing."""
    import dagster as dg

    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    lines = []
    for r in records:
        event = r.event_log_entry.dagster_event
        error = event.event_specific_data.error
        message = (error.message if error else "").strip().splitlines()
        lines.append(f"{event.step_key}: {message[0] if message else 'failed'}")
    return f": {'; '.join(lines)}" if lines else ""


def _check_loaded_definitions(settings: Settings) -> None:
    """Runs executed here use ``pipelines.definitions`` as this process first imported it:
    refuse, rather than write elsewhere, if that was with other settings than the run's."""
    module = sys.modules.get("pipelines.definitions")
    if module is None:
        return
    from pipelines.resources import make_resources

    if dict(module.defs.resources) != make_resources(Settings.from_env(settings.env())):
        raise RunFailedError("this process imported pipelines.definitions with other GTZAN_* settings than the "
                             "runs'; run gtzan run in a new process, or with --run-launcher")


def _check_weights(embedding_model: str) -> None:
    """Fail before the first run, not after the models have trained, without the musicnn weights."""
    from feature_store.embeddings.musicnn import MusicnnWeightsError, weights_folder

    try:
        weights_folder(embedding_model)
    except MusicnnWeightsError as exc:
        raise RunFailedError(f"--with-embeddings: {exc}") from exc
