"""The store engine: one generic store that builds and queries every feature view.

Modules:

* :mod:`~feature_store.engine.view`: what a view declares (:class:`FeatureView`,
  :class:`ArraySpec`, :class:`ViewOptions`);
* :mod:`~feature_store.engine.store`: :class:`ViewStore`, paths, locks and queries;
* :mod:`~feature_store.engine.build`: the build (plan, workers, streaming writers, publish);
* :mod:`~feature_store.engine.cache`, :mod:`~feature_store.engine.worker`,
  :mod:`~feature_store.engine.codec`, :mod:`~feature_store.engine.writer`,
  :mod:`~feature_store.engine.read`, :mod:`~feature_store.engine.index`,
  :mod:`~feature_store.engine.locks`, :mod:`~feature_store.engine.registry`: its parts;
* :mod:`~feature_store.engine.windows`: a view's features of windows of any audio file;
* :mod:`~feature_store.engine.plugins`: what the engine knows of views and datasets, the
  registries they fill (:class:`Dataset`, :func:`register_dataset`), looked up by name.

The engine imports no view, no dataset and nothing of Dagster (``.importlinter``); it reads
the catalog and split tables through :mod:`feature_store.tables`.

The names below are imported on first use, so that a worker process importing
:mod:`feature_store.engine.worker` does not pay for polars and h5py.
"""

from __future__ import annotations

from feature_store.lazy import lazy_getattr

_LAZY = {
    "ArraySpec": "feature_store.engine.view",
    "FeatureView": "feature_store.engine.view",
    "ViewOptions": "feature_store.engine.view",
    "ViewStore": "feature_store.engine.store",
    "Tensors": "feature_store.engine.store",
    "DEFAULT_LOCK_TIMEOUT": "feature_store.engine.store",
    "BuildReport": "feature_store.engine.build",
    "RowReader": "feature_store.engine.read",
    "FileWindows": "feature_store.engine.windows",
    "file_windows": "feature_store.engine.windows",
    "window_starts": "feature_store.engine.windows",
    "Dataset": "feature_store.engine.plugins",
    "register_dataset": "feature_store.engine.plugins",
    "get_dataset": "feature_store.engine.plugins",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
