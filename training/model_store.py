"""The model store: one folder per run, for every model family, confined to its root.

::

    <models root>/<view>-<params hash>/<model>/clip-05s/seed-0[--<variant>]/
        current -> gen-<id>/          published atomically (feature_store.atomic.new_generation)
            metrics.json              the run record (training.record.RunRecord)
            ...                       the family's own files (model.keras + normalizer.json,
                                      probe.npz + probe.json, ...)

``<view>`` is the feature view the model reads (``mel``, ``timbre``, ``embeddings``...) and
``<params hash>`` the hash of the :class:`~feature_store.params.FeatureParams` that define the
clips. :meth:`ModelStore.runs` reads the runs of every folder of this shape.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from feature_store import atomic
from feature_store.errors import ParameterError, StoreError
from feature_store.params import FeatureParams, validate_clip_seconds
from training.record import RECORD_FILE, RETRAIN, RunRecord

_VARIANT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_METRICS_GLOB = f"*-*/*/clip-*s/seed-*/current/{RECORD_FILE}"


def validate_variant(variant: str) -> str:
    """Return ``variant`` if it is a safe folder suffix, else raise :class:`ParameterError`."""
    if not isinstance(variant, str) or len(variant) > 64 or not set(variant) <= _VARIANT_CHARS \
            or variant.startswith("."):
        raise ParameterError(
            f"variant must be up to 64 letters, digits, '-', '_' or '.' (not leading), got {variant!r}"
        )
    return variant


class ModelStore:
    """Where trained runs live; every path is confined to ``root``.

    Parameters
    ----------
    root : path
        Model store root (made absolute and resolved).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def run_dir(
        self, *, params: FeatureParams, model: str, clip_seconds: int, seed: int, variant: str = ""
    ) -> Path:
        """Folder of one run: ``<view>-<hash>/<model>/clip-NNs/seed-<seed>[--<variant>]``.

        ``model`` is any model of :func:`training.families.model_names`. ``variant`` names a
        training set-up other than the default (letters, digits, ``-``, ``_`` and ``.`` only),
        so that it does not overwrite the default run.
        """
        from training.families import get_family

        view = get_family(model).view
        c = validate_clip_seconds(clip_seconds)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
        validate_variant(variant)
        leaf = f"seed-{seed}" + (f"--{variant}" if variant else "")
        p = (self.root / f"{view}-{params.hash()}" / model / f"clip-{c:02d}s" / leaf).resolve()
        if self.root not in p.parents:
            raise ParameterError(f"run folder {p} escapes the model store {self.root}")
        return p

    def current(self, **kwargs: Any) -> Path:
        """The published run folder of :meth:`run_dir`'s arguments; :class:`StoreError` if never trained."""
        run = self.run_dir(**kwargs)
        cur = atomic.resolve_current(run)
        if cur is None:
            raise StoreError(
                f"model {kwargs.get('model')!r} at {kwargs.get('clip_seconds')} s (seed {kwargs.get('seed')}) "
                "has not been trained yet; train it first (`gtzan train`)"
            )
        return cur

    def runs(self) -> list[RunRecord]:
        """Every published run under the root as a :class:`RunRecord`, with its ``run_dir`` set.

        ``run_dir`` is where the store found the record, never a path the file holds; records
        written by older versions load with the values those runs had.
        """
        return [RunRecord.load(self.confined(m.parent) / RECORD_FILE) for m in sorted(self.root.glob(_METRICS_GLOB))]

    def confined(self, folder: Path) -> Path:
        """``folder`` resolved (its ``current`` link followed), refused if it leaves the root.

        Raises
        ------
        StoreError
            If the resolved folder is outside the model store.
        """
        resolved = folder.resolve()
        if self.root not in resolved.parents:
            raise StoreError(f"{folder} leads to {resolved}, outside the model store {self.root}; remove it, or "
                             f"{RETRAIN}")
        return resolved

    def find(
        self,
        *,
        model: str | None = None,
        clip_seconds: int | None = None,
        seed: int | None = None,
        variant: str | None = None,
        params_hash: str | None = None,
    ) -> list[RunRecord]:
        """The runs of :meth:`runs` that match every filter given (None: any)."""
        want = {"model": model, "clip_seconds": clip_seconds, "seed": seed, "variant": variant,
                "params_hash": params_hash}
        return [r for r in self.runs() if all(v is None or getattr(r, k) == v for k, v in want.items())]
