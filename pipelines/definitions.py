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
from feature_store.errors import ParameterError
from pipelines.jobs import ALL_JOBS
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


def build_defs(resources: dict[str, object] | None = None, settings: Settings | None = None) -> dg.Definitions:
    """The Definitions of the code location.

    Parameters
    ----------
    resources : dict, optional
        Default: built from ``settings`` (:func:`pipelines.resources.make_resources`). Tests
        pass resources on temporary folders.
    settings : Settings, optional
        Where the resources and the executor come from; default: the environment's, read now.
    """
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=ALL_JOBS,
        schedules=ALL_SCHEDULES,
        sensors=ALL_SENSORS,
        resources=make_resources(settings) if resources is None else resources,
        executor=executor_def(settings.executor),
    )


#: The code location that ``workspace.yaml`` names.
defs = build_defs()
