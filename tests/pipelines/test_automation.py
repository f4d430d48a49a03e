"""Automation conditions: features follow ingest eagerly, training follows the weekly tick,
the report follows the models. Evaluated tick by tick against an ephemeral instance."""

import datetime as dt

import dagster as dg

from assets.partitions import PIPELINE_MODELS, PIPELINE_VIEWS
from assets.views import asset_name
from feature_store.views import VIEWS
from pipelines.definitions import build_defs

CATALOG, SPLITS, FEATURES, TIMBRE, MODELS, REPORT = (
    dg.AssetKey(k) for k in ("audio_catalog", "song_splits", "mel_features", "timbre_features", "genre_models",
                             "evaluation_report")
)
#: The views that genre_models trains on, besides mel (timbre, and any view a family adds).
OTHER_VIEWS = [dg.AssetKey(asset_name(v)) for v in PIPELINE_VIEWS if v != "mel"]
#: Every view that the default run and automation build (all but the opt-in ones).
DEFAULT_VIEWS = {dg.AssetKey(asset_name(v)) for v, cls in VIEWS.items() if not cls.opt_in}


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
        assert {FEATURES, TIMBRE} <= DEFAULT_VIEWS
        assert all(r.get_requested_partitions(k) == {"1", "5", "15", "30"} for k in DEFAULT_VIEWS)
        assert r.get_num_requested(MODELS) == 0

        for key in ("1", "5", "15", "30"):
            materialize(FEATURES, key)
        r = tick(r.cursor)
        assert TIMBRE in OTHER_VIEWS
        assert r.get_num_requested(MODELS) == 0  # the timbre view is not refreshed yet: training waits
        for view in OTHER_VIEWS:
            for key in ("1", "5", "15", "30"):
                materialize(view, key)
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


EMBEDDINGS, PROBES = dg.AssetKey("musicnn_embeddings"), dg.AssetKey("probe_models")


def _ingest_tick(defs, instance, cursor=None):
    """Run ingest (catalog and splits: the run that the audio sensor starts) and evaluate the conditions."""
    assert defs.resolve_job_def("ingest_job").execute_in_process(instance=instance).success
    return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)


def test_new_audio_file_requests_mel_and_timbre_never_the_opt_in_assets(tiny_resources, tiny_corpus):
    from pipelines.settings import Settings

    defs = build_defs(tiny_resources, Settings())
    assert defs.resolve_assets_def(EMBEDDINGS).automation_conditions_by_key.get(EMBEDDINGS) is None
    assert defs.resolve_assets_def(PROBES).automation_conditions_by_key.get(PROBES) is None
    with dg.DagsterInstance.ephemeral() as instance:
        r = _ingest_tick(defs, instance)
        for key in DEFAULT_VIEWS:  # the features of the first ingest were built
            for clip in ("1", "5", "15", "30"):
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=clip))
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_num_requested(FEATURES) == 0
        # a new audio file: the sensor's ingest run catalogs it and makes the splits again
        blues = tiny_corpus / "genres_original" / "blues"
        src = sorted(blues.iterdir())[0]
        (blues / f"blues.00099{src.suffix}").write_bytes(src.read_bytes()[:-2] + b"\x01\x00")
        r = _ingest_tick(defs, instance, r.cursor)
        requested = {k for k in (*DEFAULT_VIEWS, EMBEDDINGS, PROBES, MODELS, REPORT) if r.get_num_requested(k)}
        assert requested == DEFAULT_VIEWS
        assert r.get_requested_partitions(FEATURES) == {"1", "5", "15", "30"}
        assert r.get_num_requested(EMBEDDINGS) == r.get_num_requested(PROBES) == 0


def test_opting_in_gives_the_opt_in_assets_automation(tiny_resources):
    from pipelines.settings import Settings

    defs = build_defs(tiny_resources, Settings(automate_opt_in=True))
    assert defs.resolve_assets_def(EMBEDDINGS).automation_conditions_by_key.get(EMBEDDINGS) is not None
    with dg.DagsterInstance.ephemeral() as instance:
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        r = _ingest_tick(defs, instance, r.cursor)
        assert r.get_requested_partitions(EMBEDDINGS) == {"1", "5", "15", "30"}


def test_opt_in_setting_reads_the_environment():
    import pytest

    from feature_store.errors import ParameterError
    from pipelines.settings import Settings

    assert Settings.from_env({}).automate_opt_in is False
    assert Settings.from_env({"GTZAN_AUTOMATE_OPT_IN": "1"}).automate_opt_in is True
    assert Settings.from_env({"GTZAN_AUTOMATE_OPT_IN": "1"}).env()["GTZAN_AUTOMATE_OPT_IN"] == "1"
    with pytest.raises(ParameterError, match="GTZAN_AUTOMATE_OPT_IN"):
        Settings.from_env({"GTZAN_AUTOMATE_OPT_IN": "maybe"})


def test_models_trained_on_rebuilt_features_are_out_of_date_and_the_check_is_requested(tiny_resources):
    from assets.checks import out_of_date_cells

    defs = build_defs(tiny_resources)
    check = dg.AssetCheckKey(MODELS, "models_current")
    cnn, logreg = (dg.MultiPartitionKey({"clip": "1", "model": m}) for m in ("cnn", "timbre_logreg"))

    def features(key, version):
        tags = {"dagster/data_version": version}
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition="1", tags=tags))

    with dg.DagsterInstance.ephemeral() as instance:
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        features(FEATURES, "p:gen-1")
        features(TIMBRE, "t:gen-1")
        for cell in (cnn, logreg):
            instance.report_runless_asset_event(dg.AssetMaterialization(MODELS, partition=cell))
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert check in {res.key for res in r.results if res.true_subset.size}  # models changed
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)  # (the check ran)
        assert check not in {res.key for res in r.results if res.true_subset.size}
        assert not out_of_date_cells(instance)["out_of_date"].any()
        features(FEATURES, "p:gen-1")  # a rebuild that changed nothing keeps the data version
        assert not out_of_date_cells(instance)["out_of_date"].any()
        features(FEATURES, "p:gen-2")  # a new song: a new generation of the mel features
        cells = out_of_date_cells(instance)
        assert dict(zip(cells["model"], cells["out_of_date"], strict=True)) == {"cnn": True, "timbre_logreg": False}
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert check in {res.key for res in r.results if res.true_subset.size}  # features changed
