"""The code location: ``dagster dev -w workspace.yaml`` loads :data:`defs`."""

from __future__ import annotations

import dagster as dg

from assets import ALL_ASSETS, ALL_CHECKS
from assets.features import mel_features
from assets.ingest import audio_catalog, song_splits
from assets.models import genre_models
from assets.reports import evaluation_report
from pipelines.resources import make_resources

ingest_job = dg.define_asset_job(
    "ingest_job", selection=dg.AssetSelection.assets(audio_catalog, song_splits), description="Catalog and split."
)
features_job = dg.define_asset_job(
    "features_job", selection=dg.AssetSelection.assets(mel_features), description="One clip length of mel features."
)
training_job = dg.define_asset_job(
    "training_job", selection=dg.AssetSelection.assets(genre_models), description="One model x clip length."
)
report_job = dg.define_asset_job(
    "report_job", selection=dg.AssetSelection.assets(evaluation_report), description="The evaluation report."
)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[ingest_job, features_job, training_job, report_job],
    resources=make_resources(),
)
