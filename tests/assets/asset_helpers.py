"""Helpers shared by the asset tests (a module with a unique name: conftest modules are not importable)."""

from pathlib import Path

import dagster as dg

from assets import AudioSource, FeatureStoreResource, ModelStoreResource

SONGS_PER_GENRE = 3
SECONDS = 6.0


def make_resources(corpus: Path, data: Path, **features_kw) -> dict:
    return {
        "audio": AudioSource(path=str(corpus)),
        "features": FeatureStoreResource(root=str(data / "store"), workers=1, **features_kw),
        "models": ModelStoreResource(root=str(data / "models"), report_dir=str(data / "reports")),
    }


def materialize_ingest(resources: dict, *, checks: bool = True, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    from assets import ALL_CHECKS, audio_catalog, song_splits

    selection = [audio_catalog, song_splits] + (list(ALL_CHECKS) if checks else [])
    return dg.materialize(
        selection,
        resources=resources,
        selection=dg.AssetSelection.assets(audio_catalog, song_splits),
        raise_on_error=raise_on_error,
    )
