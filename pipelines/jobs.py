"""Asset jobs: one per partitioning of the graph (a run has at most one partition key).

Each job also runs the checks of its assets, so blocking checks gate what follows.
"""

import dagster as dg

from assets.embeddings import musicnn_embeddings, probe_models
from assets.ingest import audio_catalog, song_splits
from assets.models import genre_models
from assets.reports import evaluation_report
from assets.views import VIEW_ASSETS
from feature_store.views import VIEWS

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(audio_catalog, song_splits),
    description="Catalog the audio folder and make the split table (with their checks). Started by the "
    "weekly schedule and the audio-folder sensor; features and the rest follow by automation.",
)
features_job = dg.define_asset_job(
    "features_job",
    selection=dg.AssetSelection.assets(*(a for name, a in VIEW_ASSETS.items() if not VIEWS[name].opt_in)),
    description="Every feature view of one clip length (one partition per run) but the opt-in ones "
    "(musicnn embeddings: embeddings_job).",
)
training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets(genre_models),
    description="Train one (model, clip length) cell; epochs, seeds and split scheme are run config.",
)
embeddings_job = dg.define_asset_job(
    "embeddings_job",
    selection=dg.AssetSelection.assets(musicnn_embeddings, probe_models),
    description="musicnn embeddings of one clip length (one partition per run) and the probes trained on "
    "them; the blocking embeddings_sane check gates the probes. Needs the musicnn weights package.",
)
report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets(evaluation_report),
    description="Write the evaluation report over every trained model.",
)

ALL_JOBS = [ingest_job, features_job, training_job, embeddings_job, report_job]
