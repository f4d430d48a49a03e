"""The code location: ``dagster dev -w workspace.yaml`` loads :data:`defs`.

Loading it imports Dagster, polars and the feature store, not TensorFlow (imported inside the
training and report asset bodies), so the UI starts in seconds.

The default executor is multiprocess: each step runs in its own process (Dagster's
``multi_or_in_process_executor``, so that a run may ask to run its steps in one process, as
those of ``gtzan run`` do). Nothing here names
a run launcher or a storage: those belong to the instance (``dagster.yaml``). The executor is
picked by ``GTZAN_EXECUTOR`` (see :func:`executor_def`), so the same code location runs on
dagster-k8s (``K8sRunLauncher`` in ``dagster.yaml``, optionally ``GTZAN_EXECUTOR=k8s`` for a pod
per step) or dagster-celery (``GTZAN_EXECUTOR=celery``, its broker and backend from
:class:`pipelines.deployment.Deployment`) by changing the deployment, not the code.
"""

import importlib

import dagster as dg

from assets import ALL_ASSETS, ALL_CHECKS
from assets.partitions import PIPELINE_MODELS, model_partitions
from feature_store.errors import ParameterError
from pipelines.jobs import ALL_JOBS, training_job
from pipelines.resources import make_resources
from pipelines.schedules import ALL_SCHEDULES
from pipelines.sensors import ALL_SENSORS
from pipelines.settings import EXECUTORS, Settings


def executor_def(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor called ``name`` (default ``$GTZAN_EXECUTOR``, else ``multiprocess``).

    ``celery`` and ``k8s`` import dagster-celery and dagster-k8s, which the deployment installs;
    a missing package is a :class:`ParameterError` that says which one to install. ``celery`` is
    configured from the settings' deployment (:meth:`pipelines.deployment.Deployment.celery_config`):
    broker, result backend, the modules its workers import and when they acknowledge a step.
    """
    name = name or Settings.from_env().executor
    if name == "multiprocess":
        # Dagster's default executor: a subprocess per step, unless a run's config asks for
        # `execution: {config: {in_process: {}}}`, as the runs of `gtzan run` do
        return dg.multi_or_in_process_executor
    if name == "in_process":
        return dg.in_process_executor
    package, attr = {"celery": ("dagster_celery", "celery_executor"), "k8s": ("dagster_k8s", "k8s_job_executor")}.get(
        name, (None, None)
    )
    if package is None:
        raise ParameterError(f"unknown executor {name!r}; valid executors are {list(EXECUTORS)}")
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ParameterError(
            f"executor {name!r} needs the {package.replace('_', '-')} package; install it in the deployment's image"
        ) from exc
    if name == "celery":
        from pipelines.deployment import Deployment

        # only the deployment's part of the settings: what the executor needs
        return module.celery_executor.configured(Deployment.from_env().celery_config(), name="celery")
    return getattr(module, attr)


#: The ``gtzan run`` (``make run``) flag that adds each job it does not run by default.
OPT_IN_FLAGS: dict[str, str] = {"embeddings_job": "--with-embeddings"}


def opt_in_notes() -> dict[dg.AssetKey, str]:
    """A note for each asset that ``make run`` leaves empty, or partly empty, by asset key.

    Derived from the runs that ``make run`` plans without options (:func:`pipelines.run.plan_runs`
    of the default settings), so that it cannot drift from them: an asset that none of the
    planned jobs selects is opt-in (the musicnn embeddings and the probes on them), and the
    model partitions it does not train are opt-in partitions of ``genre_models``. The UI shows
    the note at the head of the asset's description, which says why it is empty. The note is
    plain text: the asset list shows the description's first words as they are written.
    """
    from pipelines.run import plan_runs

    plan = plan_runs(Settings())
    planned_jobs = {p.job for p in plan}
    notes: dict[dg.AssetKey, str] = {}
    for job in ALL_JOBS:
        if job.name in planned_jobs:
            continue
        flag = OPT_IN_FLAGS.get(job.name)
        how = (f'make run RUN_ARGS="{flag}" (gtzan run {flag}) materializes it' if flag
               else "gtzan run --help says which option materializes it")
        for key in job.selection.resolve(ALL_ASSETS):
            notes[key] = (f"Opt-in: not materialized by make run, nor by automation unless GTZAN_AUTOMATE_OPT_IN=1; "
                          f"{how}, as does Materialize here ({job.name}).")
    trained = {model_partitions.get_partition_key_from_str(p.partition).keys_by_dimension["model"]
               for p in plan if p.job == training_job.name and p.partition}
    left = [m for m in PIPELINE_MODELS if m not in trained]
    if left:
        key = training_job.selection.resolve(ALL_ASSETS)
        notes.update(dict.fromkeys(key, (
            f"Opt-in partitions: make run trains {', '.join(m for m in PIPELINE_MODELS if m in trained)}; "
            f"the partitions of {', '.join(left)} (slower to train) stay empty until "
            f'make run RUN_ARGS="--models all" (or --models {left[0]}), until you materialize them here '
            f"(e.g. 30|{left[0]}), or until the weekly automation tick, which trains every partition.")))
    return notes


def with_opt_in_notes(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """``assets`` with :func:`opt_in_notes` at the head of their descriptions."""
    notes = opt_in_notes()

    def note(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in notes:
            return spec
        return spec.replace_attributes(description=f"{notes[spec.key]}\n\n{spec.description or ''}".strip())

    return list(dg.map_asset_specs(note, assets))


def opt_in_assets() -> set[dg.AssetKey]:
    """The assets that ``make run`` leaves empty: those of the jobs it does not plan (see
    :func:`opt_in_notes`), e.g. the musicnn embeddings and the probes on them."""
    from pipelines.run import plan_runs

    planned_jobs = {p.job for p in plan_runs(Settings())}
    return {key for job in ALL_JOBS if job.name not in planned_jobs for key in job.selection.resolve(ALL_ASSETS)}


def without_opt_in_automation(assets: list[dg.AssetsDefinition], settings: Settings) -> list[dg.AssetsDefinition]:
    """``assets`` with no automation condition on the opt-in ones, unless ``settings.automate_opt_in``.

    So that automation builds what ``make run`` builds: an opt-in asset (musicnn weights, minutes
    per clip length) is built only when asked for, or by automation once ``GTZAN_AUTOMATE_OPT_IN=1``.
    """
    if settings.automate_opt_in:
        return assets
    opt_in = opt_in_assets()

    def strip(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in opt_in or spec.automation_condition is None:
            return spec
        return spec.replace_attributes(automation_condition=None)

    return list(dg.map_asset_specs(strip, assets))


def build_defs(resources: dict[str, object] | None = None, settings: Settings | None = None) -> dg.Definitions:
    """The Definitions of the code location.

    Parameters
    ----------
    resources : dict, optional
        Default: built from ``settings`` (:func:`pipelines.resources.make_resources`). Tests
        pass resources on temporary folders.
    settings : Settings, optional
        Where the resources and the executor come from; default: the environment's, read now.
        With ``store_url`` (``GTZAN_STORE_URL``) set, the sharded assets of
        :mod:`assets.sharded` are added (``settings.shards`` shards each), with the table
        versions that they publish (:mod:`assets.index_tables`) and the models trained on
        those (:mod:`assets.table_models`).
    """
    settings = settings or Settings.from_env()
    if settings.debug:  # every process that loads the code location (run workers, steps) keeps TensorFlow's logs
        from feature_store.quiet_tf import keep_tensorflow_logs

        keep_tensorflow_logs()
    assets = with_opt_in_notes(without_opt_in_automation(ALL_ASSETS, settings))
    if settings.store_url is not None:  # opt-in: the shard tasks publish to object storage
        from assets.index_tables import table_assets
        from assets.sharded import sharded_assets
        from assets.table_models import table_models_assets

        shards = sharded_assets(shards=settings.shards)
        tables = table_assets(shards=shards)
        assets = [*assets, *shards, *tables, *table_models_assets(tables=tables)]
    return dg.Definitions(
        assets=assets,
        asset_checks=ALL_CHECKS,
        jobs=ALL_JOBS,
        schedules=ALL_SCHEDULES,
        sensors=ALL_SENSORS,
        resources=make_resources(settings) if resources is None else resources,
        executor=executor_def(settings.executor),
    )


#: The code location that ``workspace.yaml`` names.
defs = build_defs()
