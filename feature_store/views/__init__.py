"""The feature views, found automatically.

Every module of this package (except those starting with ``_``) declares one or more
:class:`~feature_store.engine.view.FeatureView` subclasses; importing the package registers
them by their ``name``. Adding a view is adding a module here (see ``_template.py``).
View modules import only NumPy and the engine at the top, so discovery is cheap; the heavy
libraries (librosa, TensorFlow) are imported where the features are computed.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import TYPE_CHECKING

from feature_store.engine.plugins import view_from_spec
from feature_store.engine.view import FeatureView, Option, ViewOptions
from feature_store.errors import ParameterError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping

__all__ = ["FeatureView", "ViewOptions", "VIEWS", "declared_options", "get_view", "view_class", "view_from_spec"]


@functools.lru_cache(maxsize=1)
def _discover() -> dict[str, type[FeatureView]]:
    found: dict[str, type[FeatureView]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, FeatureView) and obj.__module__ == module.__name__ \
                    and "name" in vars(obj):
                if obj.name in found:
                    raise RuntimeError(f"two feature views are named {obj.name!r}")
                found[obj.name] = obj
    return dict(sorted(found.items(), key=lambda kv: _ORDER.get(kv[0], 99)))


#: Listing order of the built-in views (others follow alphabetically).
_ORDER = {"mel": 0, "embeddings": 1, "timbre": 2}


class _Views:
    """A read-only mapping of view name to view class, filled on first use."""

    def __getitem__(self, name: str) -> type[FeatureView]:
        return view_class(name)

    def __iter__(self):  # noqa: ANN204
        return iter(_discover())

    def __len__(self) -> int:
        return len(_discover())

    def __contains__(self, name: object) -> bool:
        return name in _discover()

    def keys(self):  # noqa: ANN201
        return _discover().keys()

    def items(self):  # noqa: ANN201
        return _discover().items()

    def values(self):  # noqa: ANN201
        return _discover().values()

    def __repr__(self) -> str:
        return f"VIEWS({list(_discover())})"


#: Every declared view: ``VIEWS["mel"]`` is its class.
VIEWS: Mapping[str, type[FeatureView]] = _Views()  # type: ignore[assignment]


def view_class(name: str) -> type[FeatureView]:
    """The class of the view called ``name``; :class:`ParameterError` names the valid views."""
    views = _discover()
    if name not in views:
        raise ParameterError(f"unknown feature view {name!r}; valid views are {list(views)}")
    return views[name]


def get_view(name: str, options: ViewOptions | None = None) -> FeatureView:
    """The view ``name`` configured from ``options`` (default :class:`ViewOptions`)."""
    return view_class(name).from_options(options or ViewOptions())


def declared_options() -> dict[str, Option]:
    """Every user option a view declares beyond ``mode``, by name, in the views' order.

    These are the ``gtzan features`` flags and the Dagster feature resource's config fields.

    Raises
    ------
    RuntimeError
        Two views declare an option of the same name with other defaults or choices.
    """
    out: dict[str, Option] = {}
    for cls in _discover().values():
        for o in cls.declared_options():
            seen = out.setdefault(o.name, o)
            if (seen.default, seen.choices) != (o.default, o.choices):
                raise RuntimeError(f"two feature views declare the option {o.name!r} differently")
    return out
