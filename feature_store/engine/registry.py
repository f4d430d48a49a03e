"""``registry.json`` of a view's store: what was built, with which parameters, and when.

It records the view, its parameters and hash, the clip geometry, what computed the numbers
(provenance), the audio policy, the package version, catalog counts and, per clip length,
the build's facts (counts, paths, the generation, when it was created). It is written
atomically under the registry lock after each build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from feature_store import atomic, integrity
from feature_store import h5 as h5lib
from feature_store.audio import AUDIO_POLICY
from feature_store.integrity import IntegrityError

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.engine.store import ViewStore

REGISTRY_FILE = "registry.json"


def now() -> str:
    """The time now, UTC, to the second, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def package_version() -> str:
    """This project's installed version, or ``unknown``."""
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        return version("gtzan-pipeline")
    return "unknown"


def read(path: Path) -> dict[str, Any] | None:
    """The registry at ``path`` (its checksum verified), or None when there is none.

    Raises
    ------
    IntegrityError
        If the file is damaged (a build writes it anew).
    """
    if not path.exists():
        return None
    return integrity.read_json(path)


def stored_provenance(h5_path: Path, like: Mapping[str, Any]) -> dict[str, Any] | None:
    """The provenance facts (the keys of ``like``) recorded in an HDF5 file, None if unreadable."""
    try:
        with h5lib.h5py().File(h5_path, "r") as h5:
            return {k: _plain(h5.attrs.get(k)) for k in like}
    except (OSError, KeyError, RuntimeError, ValueError):  # a damaged file: not what was asked
        return None


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def update(store: ViewStore, report: dict[int, dict[str, Any]], *, catalog: pl.DataFrame, failed: pl.DataFrame,
           provenance: Mapping[str, Any], lock_timeout: float) -> None:
    """Record a build in the store's registry, under the registry lock, atomically.

    Fields of the view's :meth:`~feature_store.engine.view.FeatureView.registry_fields` are
    written when the registry is created, those of ``build_fields`` on every build; the
    catalog counts and per-clip-length entries are refreshed, and a clip length left
    ``unchanged`` keeps its creation time.
    """
    view = store.view
    path = store.registry_path
    with store.registry_lock(lock_timeout):
        try:
            previous = read(path)
        except IntegrityError:
            previous = None  # damaged: written anew from this build
        reg = previous or {
            "view": view.name,
            "view_hash": view.hash(),
            "view_params": dataclasses.asdict(view.params),
            "params": view.clip_params.to_dict(),
            "params_hash": view.clip_params.hash(),
            "options": {k: getattr(view.options(), k) for k in view.reads},
            **view.registry_fields(),
            "created_at": now(),
            "clip_lengths": {},
        }
        reg.update(view.build_fields(provenance))
        reg["hdf5_compression"] = h5lib.COMPRESSION_NAME
        reg["audio_policy"] = AUDIO_POLICY
        reg["package_version"] = package_version()
        reg["updated_at"] = now()
        reg["catalog"] = {
            "files": catalog.height,
            "ok": int((catalog["status"] == "ok").sum()),
            "quarantined": int((catalog["status"] == "quarantined").sum()),
            "feature_failures": failed.to_dicts(),
        }
        for c, info in report.items():
            entry = {k: v for k, v in info.items() if k != "status"}
            prev = reg["clip_lengths"].get(str(c), {})
            unchanged = info["status"] == "unchanged" and prev
            entry["created_at"] = prev.get("created_at", now()) if unchanged else now()
            reg["clip_lengths"][str(c)] = entry
        atomic.write_json_atomic(path, integrity.with_checksum(reg))
