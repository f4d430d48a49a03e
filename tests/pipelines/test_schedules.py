"""The weekly schedule."""

import datetime as dt

import dagster as dg

from pipelines.definitions import defs
from pipelines.schedules import weekly_refresh


def test_weekly_schedule_requests_ingest():
    monday = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)
    ctx = dg.build_schedule_context(scheduled_execution_time=monday)
    data = weekly_refresh.evaluate_tick(ctx)
    [req] = data.run_requests
    assert req.tags["gtzan/trigger"] == "weekly_refresh"
    assert weekly_refresh.job_name == "ingest_job"
    job = defs.resolve_job_def("ingest_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"audio_catalog", "song_splits"}


def test_weekly_schedule_is_monday_0300_utc_and_starts_stopped():
    assert (weekly_refresh.cron_schedule, weekly_refresh.execution_timezone) == ("0 3 * * 1", "UTC")
    assert weekly_refresh.default_status == dg.DefaultScheduleStatus.STOPPED
