"""What the engine knows of views and datasets: registries they fill, looked up by name.

The engine imports no view and no dataset. A dataset module registers a :class:`Dataset`
(:func:`register_dataset`) when :mod:`feature_store.datasets` is imported; a view is rebuilt in
a worker from its spec (:func:`view_from_spec`), which names the module that declares it. The
engine loads the two packages by name, on first lookup, so that the registries are full
whichever module a process imported first.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feature_store.errors import ParameterError

#: The packages whose import fills the registries.
VIEWS_PACKAGE = "feature_store.views"
DATASETS_PACKAGE = "feature_store.datasets"
#: The module whose import registers the ingest a repair calls (:func:`register_ingest`).
INGEST_MODULE = "feature_store.ingestion"
#: The dataset of a store that records none (ingested before datasets were declared).
DEFAULT_DATASET = "gtzan"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dataset:
    """A dataset's declaration: how its audio is found, cataloged, split and labelled.

    Attributes
    ----------
    name : str
        Its name (``gtzan ingest --dataset NAME``).
    summary : str
        One line for the CLI help.
    find_root : callable(path) -> (Path, str)
        The folder the catalog's paths are relative to, and the layout found there.
    catalog : callable(root, *, progress, labels_file) -> pl.DataFrame
        The catalog rows (:data:`feature_store.tables.CATALOG_SCHEMA`) of the audio under ``root``.
    splits : callable(catalog, *, k, seed, labels_file, root) -> pl.DataFrame
        The split table (:data:`feature_store.tables.SPLITS_SCHEMA`).
    labels : tuple of str, optional
        The label set, in label order, when the dataset fixes one; otherwise the labels of the
        data, sorted.
    needs_labels_file : bool
        Whether ingest needs ``--labels FILE``.
    """

    name: str
    summary: str
    find_root: Callable[[str | os.PathLike[str]], tuple[Path, str]]
    catalog: Callable[..., Any]
    splits: Callable[..., Any]
    labels: tuple[str, ...] | None = None
    needs_labels_file: bool = False


_DATASETS: dict[str, Dataset] = {}
_INGEST: list[Callable[..., Any]] = []


def register_dataset(dataset: Dataset) -> Dataset:
    """Add ``dataset`` to the registry (a module of :mod:`feature_store.datasets` calls this)."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"a dataset must be a Dataset, got {type(dataset).__name__}")
    known = _DATASETS.get(dataset.name)
    if known is not None and known is not dataset:
        raise RuntimeError(f"two datasets are named {dataset.name!r}")
    _DATASETS[dataset.name] = dataset
    return dataset


def register_ingest(ingest: Callable[..., Any]) -> Callable[..., Any]:
    """Record the ingest function a repair calls (:mod:`feature_store.ingestion` registers it)."""
    _INGEST[:] = [ingest]
    return ingest


def _load(package: str) -> None:
    importlib.import_module(package)


def datasets() -> dict[str, Dataset]:
    """Every declared dataset, by name (the default first)."""
    _load(DATASETS_PACKAGE)
    return dict(sorted(_DATASETS.items(), key=lambda kv: (kv[0] != DEFAULT_DATASET, kv[0])))


def get_dataset(name: str) -> Dataset:
    """The dataset called ``name``; :class:`ParameterError` names the valid ones."""
    found = datasets()
    if name not in found:
        raise ParameterError(f"unknown dataset {name!r}; valid datasets are {list(found)}")
    return found[name]


def ingest_again(audio_root: str | os.PathLike[str], store_root: str | os.PathLike[str]) -> Any:
    """Ingest ``audio_root`` into ``store_root`` again, with the dataset (and labels file) the
    store recorded at its last ingest."""
    from feature_store.tables import read_audio_source

    _load(DATASETS_PACKAGE)
    _load(INGEST_MODULE)
    doc = read_audio_source(store_root) or {}
    return _INGEST[0](audio_root, store_root, dataset=doc.get("dataset", DEFAULT_DATASET),
                      labels_file=doc.get("labels_file"))


def store_labels(store_root: str | os.PathLike[str], catalog: Any) -> tuple[str, ...]:
    """The label order of a store: what its ingest recorded, else its dataset's fixed label set,
    else the sorted labels of its catalog."""
    from feature_store.tables import label_order, read_audio_source

    doc = read_audio_source(store_root) or {}
    if "labels" in doc:
        return tuple(doc["labels"])
    fixed = get_dataset(doc.get("dataset", DEFAULT_DATASET)).labels
    return fixed if fixed is not None else label_order(catalog["genre"])


def find_audio_root(store_root: str | os.PathLike[str], audio_root: str | os.PathLike[str]) -> Path:
    """The folder of ``audio_root`` that the store's catalog paths are relative to, found the
    way the store's dataset finds it."""
    from feature_store.tables import read_audio_source

    doc = read_audio_source(store_root) or {}
    return get_dataset(doc.get("dataset", DEFAULT_DATASET)).find_root(audio_root)[0]


def view_from_spec(spec: tuple[str, dict]) -> Any:
    """Rebuild a view from ``FeatureView.to_spec()`` (in a worker process): the spec names the
    module that declares the view's class (``module:qualname``) and its parameters."""
    _load(VIEWS_PACKAGE)
    where, params = spec
    module, _, qualname = where.partition(":")
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return cls(cls.params_type(**params))
