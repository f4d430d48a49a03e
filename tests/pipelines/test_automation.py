"""Automation conditions: features follow ingest eagerly, training follows the weekly tick,
the report follows the models. Evaluated tick by tick against an ephemeral instance."""

import datetime as dt

import dagster as dg

from assets.partitions import PIPELINE_MODELS
from pipelines.definitions import build_defs

CATALOG, SPLITS, FEATURES, TIMBRE, MODELS, REPORT = (
    dg.AssetKey(k) for k in ("audio_catalog", "song_splits", "mel_features", "timbre_features", "genre_models",
                             "evaluation_report")
)


def _last_monday_0250(now: dt.datetime) -> dt.datetime:
    monday = (now - dt.timedelta(days=now.weekday())).replace(hour=2, minute=50, second=0, microsecond=0)
    return monday if monday + dt.timedelta(minutes=10) < now else monday - dt.timedelta(days=7)


def test_graph_follows_ingest(tiny_resources):
    defs = build_defs(tiny_resources)
    now = dt.datetime.now(dt.UTC)
    with dg.DagsterInstance.ephemeral() as instance:

        def tick(cursor, at=None):
            return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, evaluation_time=at)

        def materialize(key, partition=None):
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))

        # before the last weekly cron tick, nothing has been built: nothing is requested
        r = tick(None, _last_monday_0250(now))
        assert r.total_requested == 0

        materialize(CATALOG)  # what the schedule or the sensor does
        r = tick(r.cursor)
        assert r.get_num_requested(SPLITS) == 1 and r.get_num_requested(FEATURES) == 0

        materialize(SPLITS)
        r = tick(r.cursor)
        assert r.get_requested_partitions(FEATURES) == r.get_requested_partitions(TIMBRE) == {"1", "5", "15", "30"}
        assert r.get_num_requested(MODELS) == 0

        for key in ("1", "5", "15", "30"):
            materialize(FEATURES, key)
        r = tick(r.cursor)
        assert r.get_num_requested(MODELS) == 0  # the timbre view is not refreshed yet: training waits
        for key in ("1", "5", "15", "30"):
            materialize(TIMBRE, key)
        r = tick(r.cursor)
        # the weekly tick has passed and all features were refreshed since: train every cell once
        assert r.get_num_requested(MODELS) == 4 * len(PIPELINE_MODELS)
        assert r.get_num_requested(FEATURES) == 0 and r.get_num_requested(REPORT) == 0

        materialize(MODELS, dg.MultiPartitionKey({"clip": "1", "model": PIPELINE_MODELS[0]}))
        r = tick(r.cursor)
        assert r.get_num_requested(REPORT) == 1
        assert r.get_num_requested(MODELS) == 0  # handled for this week

        materialize(FEATURES, "1")  # a refresh mid-week: training waits for the next weekly tick
        r = tick(r.cursor)
        assert r.get_num_requested(MODELS) == 0
