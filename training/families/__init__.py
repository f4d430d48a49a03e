"""Model families, found automatically: every module of this package that declares models.

Each module here (but ``base``) holds one family: a :class:`~training.families.base.ModelFamily`
subclass and ``DECLARATIONS``, a tuple of its models (instances of that class). This package
collects them on first use, so a new family is one new module and a new model of a family is
one new declaration; see the README, "Adding a model family".

* ``keras_mel``: family ``mel``, trainer ``keras``, view ``mel``: every Keras factory of
  :data:`training.models.MODELS`;
* ``mel_baseline``: family ``mel``, trainer ``summary_logreg``, view ``mel``: ``baseline``;
* ``vector``: family ``vector``, trainer ``sklearn``: ``probe_{logreg,mlp}_{msd,mtt}`` (view
  ``embeddings``) and ``timbre_logreg`` (view ``timbre``).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from feature_store.errors import ParameterError
from training.families.base import Fit, FittedModel, ModelFamily, Scores

__all__ = ["Fit", "FittedModel", "ModelFamily", "Scores", "family_for", "get_family", "model_names", "registry"]


@functools.cache
def registry() -> dict[str, ModelFamily]:
    """Every declared model by name, from the modules of this package, in module order."""
    out: dict[str, ModelFamily] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for decl in getattr(module, "DECLARATIONS", ()):
            if decl.name in out:
                raise RuntimeError(f"model {decl.name!r} is declared twice (again in {module.__name__})")
            out[decl.name] = decl
    return out


def model_names() -> list[str]:
    """Every declared model name, sorted."""
    return sorted(registry())


def get_family(name: str) -> ModelFamily:
    """The declaration of model ``name``; :class:`ParameterError` names the valid models."""
    decl = registry().get(name) if isinstance(name, str) else None
    if decl is None:
        raise ParameterError(f"unknown model {name!r}; valid models are {model_names()}")
    return decl


def family_for(record: Any) -> ModelFamily:
    """The declaration that loads the run of ``record`` (a :class:`training.record.RunRecord`).

    Raises
    ------
    StoreError
        The run's model is not declared (any more), or was written by another family.
    """
    from feature_store.errors import StoreError

    try:
        decl = get_family(record.model)
    except ParameterError as exc:
        raise StoreError(f"cannot load the run of {record.model!r}: {exc}") from exc
    if decl.family != record.family:
        raise StoreError(f"the run of {record.model!r} was written by the {record.family!r} family, "
                         f"not {decl.family!r}")
    return decl
