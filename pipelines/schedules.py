"""The weekly schedule.

Every Monday at 03:00 (UTC) it re-runs ingest (catalog and splits). The rest of the graph
follows through the assets' automation conditions (see :mod:`assets.policies`): the
features refresh eagerly, training runs once per weekly tick after its features were
refreshed, and the report follows the models. So one schedule re-materializes the whole
graph, in dependency order, with one run per partition. It starts stopped; turn it on in
the UI (Automation) or with ``dagster schedule start weekly_refresh``.
"""

import dagster as dg

from assets.policies import WEEKLY_CRON
from pipelines.jobs import ingest_job

weekly_refresh = dg.ScheduleDefinition(
    name="weekly_refresh",
    job=ingest_job,
    cron_schedule=WEEKLY_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    tags={"gtzan/trigger": "weekly_refresh"},
    description="Monday 03:00 UTC: re-ingest; features, models and the report follow by automation.",
)

ALL_SCHEDULES = [weekly_refresh]
