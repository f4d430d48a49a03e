"""Resource instances of the code location, configured from environment variables.

The variables and their defaults are documented in :mod:`pipelines.settings` (which does not
import Dagster, so the ``gtzan`` command line reads the same locations cheaply). Paths are
made absolute here, so that every process of a run (webserver, code server, run worker,
step subprocesses) agrees on them even if its working directory differs.
"""

from __future__ import annotations

from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource
from pipelines import settings
from pipelines.settings import data_dir  # noqa: F401  (kept for callers of the old location)


def _abs(path) -> str:
    return str(path.expanduser().resolve())


def make_resources() -> dict[str, object]:
    """The resources of the code location, read from the environment now.

    Returns
    -------
    dict
        ``audio`` (:class:`AudioSource`), ``features`` (:class:`FeatureStoreResource`) and
        ``models`` (:class:`ModelStoreResource`).
    """
    audio = settings.audio_dir()
    return {
        "audio": AudioSource(
            path=_abs(audio) if audio else "",
            layout=settings.layout(),
            demo_dir=_abs(settings.demo_dir()),
        ),
        "features": FeatureStoreResource(
            root=_abs(settings.store_dir()),
            mode=settings.mode(),
            workers=settings.workers(),
        ),
        "models": ModelStoreResource(
            root=_abs(settings.model_dir()),
            report_dir=_abs(settings.report_dir()),
        ),
    }
