"""The datasets, found automatically (one module per dataset, in the spirit of mirdata).

Every module of this package (except those starting with ``_``) declares one
:class:`~feature_store.engine.plugins.Dataset` and registers it with the engine
(:func:`~feature_store.engine.plugins.register_dataset`); importing the package imports them
all. Adding a dataset is adding a module here. The engine never imports this package by name
in its code: it loads it on the first lookup of a dataset.
"""

from __future__ import annotations

import importlib
import pkgutil

from feature_store.engine.plugins import Dataset, datasets, get_dataset, register_dataset

__all__ = ["Dataset", "dataset_names", "datasets", "get_dataset", "register_dataset"]


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def dataset_names() -> list[str]:
    """The names of every declared dataset, the default (``gtzan``) first."""
    return list(datasets())


_discover()
