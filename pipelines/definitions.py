"""The code location: ``dagster dev -w workspace.yaml`` loads :data:`defs`.

Loading it imports Dagster, polars and the feature store, not TensorFlow (imported inside the
training and report asset bodies), so the UI starts in seconds.

The default executor is multiprocess: each step runs in its own process. Nothing here names
a run launcher or a storage: those belong to the instance (``dagster.yaml``), so the same
code location runs on dagster-k8s (``K8sRunLauncher`` / ``k8s_job_executor``) or
dagster-celery (``celery_executor``) by changing the deployment, not this file.
"""

import dagster as dg

from assets import ALL_ASSETS, ALL_CHECKS
from pipelines.jobs import ALL_JOBS
from pipelines.resources import make_resources
from pipelines.schedules import ALL_SCHEDULES
from pipelines.sensors import ALL_SENSORS



def build_defs(resources: dict[str, object] | None = None) -> dg.Definitions:
    """The Definitions of the code location, with ``resources`` (default: from the environment).

    Tests pass resources on temporary folders; ``make dev`` and ``make run`` use :data:`defs`.
    """
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=ALL_JOBS,
        schedules=ALL_SCHEDULES,
        sensors=ALL_SENSORS,
        resources=make_resources() if resources is None else resources,
        executor=dg.multiprocess_executor,
    )


#: The code location that ``workspace.yaml`` names.
defs = build_defs()
