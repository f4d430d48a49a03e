"""Resource instances of the code location, built from the settings object.

:class:`pipelines.settings.Settings` reads the ``GTZAN_*`` variables (it does not import
Dagster, so the ``gtzan`` command line reads the same settings cheaply). Paths are made
absolute here, so that every process of a run (webserver, code server, run worker, step
subprocesses) agrees on them even if its working directory differs.
"""

from __future__ import annotations

from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource, ObjectStoreResource
from feature_store.views import declared_options
from pipelines.settings import Settings


def make_resources(settings: Settings | None = None) -> dict[str, object]:
    """The resources of the code location.

    Parameters
    ----------
    settings : Settings, optional
        Default: the environment's, read now (:meth:`Settings.from_env`).

    Returns
    -------
    dict
        ``audio`` (:class:`AudioSource`), ``features`` (:class:`FeatureStoreResource`) and
        ``models`` (:class:`ModelStoreResource`); with ``store_url`` set, ``objects``
        (:class:`ObjectStoreResource`), which the sharded assets publish to.
    """
    s = (settings or Settings.from_env()).absolute()
    objects = {} if s.store_url is None else {"objects": ObjectStoreResource(url=s.store_url)}
    return {
        "audio": AudioSource(
            path=str(s.audio_dir) if s.audio_dir else "",
            dataset=s.dataset,
            labels_file=str(s.labels_file) if s.labels_file else "",
            layout=s.layout,
            demo_dir=str(s.demo_root),
            demo_songs_per_genre=s.demo_songs_per_genre,
            demo_seconds=s.demo_seconds,
            demo_seed=s.demo_seed,
        ),
        "features": FeatureStoreResource(
            root=str(s.store_root),
            mode=s.mode,
            workers=s.workers,
            lock_timeout=s.lock_timeout,
            # the views' options that the settings hold ($GTZAN_DTYPE...); the others keep the view's default
            **{name: getattr(s, name) for name in declared_options() if hasattr(s, name)},
            embedding_workers=s.embedding_workers,
            host_name=s.deployment.host_name,
        ),
        "models": ModelStoreResource(root=str(s.model_root), report_dir=str(s.report_root)),
        **objects,
    }
