"""Which clips a run trains, validates and tests on: the same rules for every model family.

* The held-out part (``test_part`` of ``scheme``, or every song of a ``test_store``) is never
  seen in training, validation or normalisation.
* A scheme with its own ``valid`` part (``fault_filtered``) keeps it for early stopping; a
  family without early stopping trains on it too (:attr:`Selection.fit_parts`).
* Otherwise validation songs are whole songs drawn from the training part
  (:func:`split_validation`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np
import polars as pl

from feature_store.errors import ParameterError, StoreError
from feature_store.splits import EXCLUDED


@dataclasses.dataclass
class Selection:
    """The parts of one run, and the index rows of its training and held-out clips.

    Attributes
    ----------
    view : training.views.View
        The family's view; :meth:`tensors` reads its arrays.
    train_store, test_store
        Stores of the family's view (the same one unless a test store was given).
    clip_seconds : int
    scheme : str
    train_parts, valid_parts, test_parts : list of str
        Parts of ``scheme``; ``test_parts`` are parts of ``test_store``.
    train_index, test_index : pl.DataFrame
        Index rows of ``train_parts`` and ``test_parts``, in ``hdf5_row`` order.
    held_out : str
        What was held out, for the record (``seed:test``, ``every song of <root>``).
    labels : list of str
        The run's classes: the sorted distinct labels (``genre`` column) of its training and
        held-out clips. Class ``i`` of every array :meth:`index` and :meth:`tensors` give is
        ``labels[i]``, whatever codes the store's own ``label`` column holds.
    """

    view: Any
    train_store: Any
    test_store: Any
    clip_seconds: int
    scheme: str
    train_parts: list[str]
    valid_parts: list[str]
    test_parts: list[str]
    train_index: pl.DataFrame
    test_index: pl.DataFrame
    held_out: str
    labels: list[str] = dataclasses.field(default_factory=list)

    @property
    def fit_parts(self) -> list[str]:
        """Every training part, ``valid`` included: the data of a family without early stopping."""
        return self.train_parts + self.valid_parts

    def index(self, *, parts: list[str], test: bool = False) -> pl.DataFrame:
        """Index rows of ``parts`` of the training (or held-out) store, in ``hdf5_row`` order."""
        store = self.test_store if test else self.train_store
        index = store.clips(clip_seconds=self.clip_seconds, split=parts, scheme=self.scheme).sort("hdf5_row").collect()
        return index.with_columns(label=pl.Series(self.codes(index), dtype=pl.Int64)) if self.labels else index

    def codes(self, index: pl.DataFrame) -> np.ndarray:
        """The class of every row of ``index``: the position of its ``genre`` in :attr:`labels`."""
        pos = {g: i for i, g in enumerate(self.labels)}
        return np.array([pos[g] for g in index["genre"].to_list()], dtype=np.int64)

    def tensors(self, *, parts: list[str], test: bool = False, arrays: Any = None) -> Any:
        """The view's arrays of ``parts`` (the store's ``Tensors``; ``y``: the classes of :attr:`labels`)."""
        store = self.test_store if test else self.train_store
        t = self.view.tensors(store, clip_seconds=self.clip_seconds, split=parts, scheme=self.scheme, arrays=arrays)
        return t._replace(y=self.codes(t.index))


def parts_of(store: Any, clip_seconds: int, scheme: str) -> list[str]:
    """The parts of ``scheme`` that hold clips of ``clip_seconds`` in ``store``, ``excluded`` left out."""
    col = store.clips(clip_seconds=clip_seconds).select(pl.col(scheme).unique()).collect()[scheme]
    return sorted(p for p in col.to_list() if p != EXCLUDED)


def select(view: Any, store: Any, test_store: Any | None, *, clip_seconds: int, scheme: str,
           test_part: str) -> Selection:
    """The :class:`Selection` of a run on ``view``'s ``store`` (and ``test_store``, if given).

    Raises
    ------
    ParameterError
        ``test_part`` is not a part of ``scheme`` in ``store``.
    StoreError
        The store is not built for ``clip_seconds``, or the split leaves no training or
        held-out clips.
    """
    parts = parts_of(store, clip_seconds, scheme)
    if test_store is not None:
        train_parts, valid_parts = parts, []
        test_parts = parts_of(test_store, clip_seconds, scheme)
        held_out = f"every song of {test_store.root}"
    else:
        if test_part not in parts:
            raise ParameterError(
                f"test_part {test_part!r} is not a part of scheme {scheme!r} here; valid parts are {parts}"
            )
        rest = [p for p in parts if p != test_part]
        valid_parts = ["valid"] if ("valid" in rest and test_part == "test") else []
        train_parts = [p for p in rest if p not in valid_parts]
        test_parts = [test_part]
        held_out = f"{scheme}:{test_part}"
    sel = Selection(view, store, test_store or store, clip_seconds, scheme, train_parts, valid_parts, test_parts,
                    pl.DataFrame(), pl.DataFrame(), held_out)
    sel.train_index = sel.index(parts=train_parts) if train_parts else pl.DataFrame()
    sel.test_index = sel.index(parts=test_parts, test=True) if test_parts else pl.DataFrame()
    if sel.train_index.height == 0 or sel.test_index.height == 0:
        raise StoreError(
            f"the {scheme!r} split leaves {sel.train_index.height} training and {sel.test_index.height} held-out "
            f"clips at {clip_seconds} s (held out: {held_out}); need at least one of each"
        )
    check_labels(sel.train_index, store)
    check_labels(sel.test_index, sel.test_store)
    genres = sorted(set(sel.train_index["genre"].to_list()))
    if len(genres) < 2:
        raise StoreError(f"the training clips at {clip_seconds} s are all of one label ({genres[0]}): a classifier "
                         f"needs at least two; ingest and build a store of more labels")
    sel.labels = sorted(set(genres) | set(sel.test_index["genre"].to_list()))
    sel.train_index, sel.test_index = (i.with_columns(label=pl.Series(sel.codes(i), dtype=pl.Int64))
                                       for i in (sel.train_index, sel.test_index))
    return sel


def check_labels(index: pl.DataFrame, store: Any) -> None:
    """Refuse an index whose ``label`` codes and ``genre`` names disagree: one code per name.

    Every row of one label name must carry the code most of that name's rows carry, and two
    names never share a code; which codes the store uses is its own affair (training counts classes
    by name, :attr:`Selection.labels`).

    Raises
    ------
    IntegrityError
        Naming the store and the first clip whose label disagrees.
    """
    from feature_store.integrity import REPAIR_FEATURES, IntegrityError

    names, codes = index["genre"].to_list(), index["label"].cast(pl.Int64).to_list()
    counts: dict[str, Counter[int]] = {}
    for g, c in zip(names, codes, strict=True):
        counts.setdefault(g, Counter())[c] += 1
    usual = {g: cnt.most_common(1)[0][0] for g, cnt in counts.items()}  # a damaged row is the odd one out
    owner: dict[int, str] = {}
    for g in sorted(usual):  # two names on one code: the rows of the later name are refused
        owner.setdefault(usual[g], g)
    want = pl.Series([usual[g] if owner[usual[g]] == g else -1 for g in names], dtype=pl.Int64)
    bad = index.filter(index["label"].cast(pl.Int64) != want)
    if bad.height:
        raise IntegrityError(f"the index of {getattr(store, 'root', store)} labels clip {bad['clip_id'][0]} "
                             f"({bad['genre'][0]}) as {bad['label'][0]}: the store is damaged; {REPAIR_FEATURES}")


def split_validation(index: Any, *, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, valid) over ``index`` rows: whole songs per genre go to valid."""
    rng = np.random.default_rng(seed)
    valid_songs: set[str] = set()
    if share > 0:
        for genre in sorted(set(index["genre"].to_list())):
            songs = sorted(set(index.filter(index["genre"] == genre)["song_id"].to_list()))
            n = int(round(len(songs) * share))
            if len(songs) >= 3 and n == 0:
                n = 1
            if n and n < len(songs):
                valid_songs.update(rng.choice(songs, size=n, replace=False).tolist())
    v = np.array([s in valid_songs for s in index["song_id"].to_list()], dtype=bool)
    return ~v, v


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float] | None:
    """Balanced class weights, or None when the present classes are balanced."""
    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    if present.size == 0 or present.min() == present.max():
        return None
    total = counts.sum()
    return {i: float(total / (present.size * c)) for i, c in enumerate(counts) if c > 0}


def songs_of(index: pl.DataFrame | None) -> list[str]:
    """Sorted distinct song ids of an index (none for None)."""
    return [] if index is None else sorted(set(index["song_id"].to_list()))
