"""Names of a package imported on first use (PEP 562 module ``__getattr__``).

The packages ``feature_store``, ``feature_store.engine`` and ``feature_store.embeddings``
export names whose modules are costly to import (polars, h5py, TensorFlow). A worker process
that only needs one small module should not pay for the rest at start-up.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each of ``names`` (name -> the
    module defining it) when it is first used, and keeps it in the package's namespace.

    Examples
    --------
    >>> _LAZY = {"FeatureStore": "feature_store.store"}        # doctest: +SKIP
    >>> __getattr__ = lazy_getattr(__name__, _LAZY)            # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
