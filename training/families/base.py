"""The model-family interface: what every family implements, and what a fit hands back.

A *family* is a way of fitting, storing and scoring models on one feature view (a Keras
network on mel windows, a classifier on vectors...). A *declaration* is one model of a family:
an instance of its :class:`ModelFamily` subclass, with its name, view and settings. The
training runner (:mod:`training.runner`), the model store and prediction
(:mod:`training.predict`) only ever talk to this interface.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import polars as pl

from feature_store.errors import StoreError


class FittedModel(Protocol):
    """A fitted model of any family.

    Attributes
    ----------
    arrays : tuple of str or None
        The view's arrays it reads, side by side (None: the view's own input, e.g. mel windows).
    n_parameters : int
    """

    arrays: tuple[str, ...] | None

    @property
    def n_parameters(self) -> int: ...

    def save(self, folder: Path) -> Path:
        """Write the model's files into ``folder``; return the main one (its size is the model's)."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities [shape=(n, labels)] of ``n`` windows of the view's features, one column per
        label of the run (:attr:`training.record.RunRecord.labels`, in that order)."""


@dataclasses.dataclass
class Fit:
    """What :meth:`ModelFamily.fit` hands back: the fitted model and the facts of the fit.

    Attributes
    ----------
    model : FittedModel
    train_index, valid_index : pl.DataFrame
        Index rows of the clips it was fitted on and validated on (None: no validation).
    history : dict
        Curves of the fit (loss per epoch, solver iterations...).
    train_seconds : float
        Wall seconds of the fit alone.
    epochs_run, best_epoch : int
        Epochs (solver iterations for scikit-learn), and the one whose weights were kept.
    streamed : bool
        Whether the clips were streamed from HDF5 rather than held in memory.
    """

    model: FittedModel
    train_index: pl.DataFrame
    valid_index: pl.DataFrame | None
    history: dict[str, Any]
    train_seconds: float
    epochs_run: int
    best_epoch: int
    streamed: bool = False


@dataclasses.dataclass
class Scores:
    """Held-out probabilities [shape=(clips, labels)], class codes, song ids and steady ms per clip."""

    probs: np.ndarray
    y: np.ndarray
    song_ids: list[str]
    ms_per_clip: float


class ModelFamily(abc.ABC):
    """One model of a family: a declaration the training runner and prediction can use.

    Class attributes (the family's)
    -------------------------------
    family : str
        Recorded as ``family`` in ``metrics.json`` (how its runs are stored and scored).
    trainer : str
        Recorded as ``trainer`` (how it is fitted).
    files : tuple of str
        The files its run folders hold beside ``metrics.json``.
    config_type : type
        The frozen dataclass of its hyper-parameters (``seed``, ``scheme``, ``test_part`` and
        ``class_weighting`` among them).

    Attributes (the declaration's)
    ------------------------------
    name : str
        The model name: its run folders and ``--model`` value.
    view : str
        The feature view it trains from (``mel``, ``embeddings``, ``timbre``).
    layout : str
        Its input layout, recorded in ``metrics.json``.
    options : dict
        The view's options (``embedding_model``).
    """

    family: ClassVar[str]
    trainer: ClassVar[str]
    files: ClassVar[tuple[str, ...]]
    config_type: ClassVar[type]

    name: str
    view: str
    layout: str
    options: Mapping[str, Any]

    def check(self, config: Any, clip_seconds: int) -> None:
        """Refuse a config this model cannot train with, before any data is read (ParameterError)."""

    @abc.abstractmethod
    def fit(self, data: Any, config: Any, *, progress: bool = False) -> Fit:
        """Fit on the training clips of ``data`` (a :class:`training.selection.Selection`)."""

    @abc.abstractmethod
    def score(self, fit: Fit, data: Any) -> Scores:
        """Probabilities of the held-out clips of ``data``, timed in steady state."""

    @abc.abstractmethod
    def load(self, folder: Path, record: Any) -> FittedModel:
        """The model a run folder holds (``record``: its :class:`training.record.RunRecord`).

        Raises
        ------
        StoreError
            Files missing or unreadable, or not what the record says.
        """

    def require_files(self, folder: Path) -> None:
        """:class:`StoreError` naming the files of :attr:`files` that ``folder`` lacks."""
        missing = [n for n in self.files if not (folder / n).is_file()]
        if missing:
            raise StoreError(f"{folder} is not a complete trained run: missing {', '.join(missing)}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (loaders raise long multi-line ones)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]
