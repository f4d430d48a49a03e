"""The run record: what one training run was, what it scored and what it cost.

:class:`RunRecord` is written as ``metrics.json`` in every run folder, by :meth:`RunRecord.save`
only, and read back with :meth:`RunRecord.load`. Its JSON keys are those the report, the asset
checks, the Dagster metadata and prediction read; records written before ``family``, ``view``
``view_options`` and ``labels`` existed load with the values those runs had.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from feature_store import atomic, integrity
from feature_store.errors import StoreError

#: File name of the record in a run folder.
RECORD_FILE = "metrics.json"
#: What to do about a damaged run.
RETRAIN = "train it again (`gtzan train --model ... --clip-seconds ... --seed ...`)"


#: Keys written to ``metrics.json`` only when the run has them (older records lack them).
OPTIONAL_KEYS = ("embedding", "table_uri", "table_version", "table_digest")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _known(cls: type, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``d`` into the fields of dataclass ``cls`` and the rest."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}, {k: v for k, v in d.items() if k not in names}


@dataclasses.dataclass
class Costs:
    """What a run cost, measured the same way for every family.

    Attributes
    ----------
    parameters : int
    model_mb : float
        Size of the family's main model file.
    train_seconds : float
        Wall seconds of the fit alone.
    seconds_per_epoch, steady_seconds_per_epoch : float
        Per epoch (per solver iteration for scikit-learn fits); the steady figure is the median
        of the epochs after the first, which also builds the graph.
    epochs_run, best_epoch : int
    peak_rss_mb, rss_at_start_mb : float
        Resident memory of the process, sampled by :class:`training.memory.RssSampler` from
        the selection of the data to the scoring of the held-out clips.
    inference_ms_per_clip : float
        Steady-state scoring of one held-out clip, plus the view's own cost of extracting the
        clip's features where the view records one (musicnn embeddings).
    embedding_ms_per_clip, probe_ms_per_clip : float, optional
        That extraction cost and the classifier's part; only for views that record one.
    """

    parameters: int
    model_mb: float
    train_seconds: float
    seconds_per_epoch: float
    steady_seconds_per_epoch: float
    epochs_run: int
    best_epoch: int
    peak_rss_mb: float
    rss_at_start_mb: float | None
    inference_ms_per_clip: float
    embedding_ms_per_clip: float | None = None
    probe_ms_per_clip: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**{k: v for k, v in d.items() if v is not None}, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Costs:
        known, extra = _known(cls, d)
        known.setdefault("steady_seconds_per_epoch", known.get("seconds_per_epoch"))
        known.setdefault("rss_at_start_mb", None)  # probes before the sampler measured them
        return cls(**known, extra=extra)


@dataclasses.dataclass
class Metrics:
    """A run's held-out metrics (:func:`training.evaluate.evaluate`), written as ``metrics`` in ``metrics.json``.

    Attributes
    ----------
    clips, songs : int
        Held-out clips and songs scored.
    clip_accuracy, song_accuracy, study_metric_accuracy : float
        Argmax accuracy of clips and of songs (mean probability of their clips), and the
        study's ``indexOfMax`` metric on clips.
    clip_macro_f1, song_macro_f1 : float
    song_recall, clip_recall : list of float or None
        Per label of the run (:attr:`RunRecord.labels`), None for a label with no examples.
    clip_confusion, song_confusion : list of list of int
        [true, predicted] counts, in the order of the run's labels.
    extra : dict
        Keys of the file this class does not know, written back unchanged.
    """

    song_accuracy: float
    clip_accuracy: float | None = None
    clips: int = 0
    songs: int = 0
    study_metric_accuracy: float | None = None
    clip_macro_f1: float | None = None
    song_macro_f1: float | None = None
    song_recall: list[float | None] = dataclasses.field(default_factory=list)
    clip_recall: list[float | None] = dataclasses.field(default_factory=list)
    clip_confusion: list[list[int]] = dataclasses.field(default_factory=list)
    song_confusion: list[list[int]] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Metrics:
        known, extra = _known(cls, d)
        return cls(**known, extra=extra)

    def get(self, name: str) -> Any:
        """The metric ``name`` (a field, or a key of :attr:`extra`); None if the run lacks it."""
        if name != "extra" and name in {f.name for f in dataclasses.fields(self)}:
            return getattr(self, name)
        return self.extra.get(name)


@dataclasses.dataclass
class RunRecord:
    """One run's ``metrics.json``.

    Attributes
    ----------
    model, family, view, variant, trainer : str
        The model name; its family (``mel``: a Keras model on mel windows, ``vector``: a
        classifier on a vector view); the feature view it reads; the run's variant (``""``: the
        default set-up); how it was fitted (``keras``, ``summary_logreg``, ``sklearn``).
    clip_seconds, seed : int
    config : dict
        The family's config (``dataclasses.asdict``).
    feature_params, params_hash : dict, str
        The clips' :class:`~feature_store.params.FeatureParams` and their hash.
    layout : str
        The model's input layout (``mels_frames_1``, ``frames_mels``, ``embedding``...).
    frames : int
        Mel frames of one clip.
    labels : list of str
        The run's classes, in the order of its outputs: the sorted distinct labels of the data
        it was trained and tested on (records written before runs recorded them: GTZAN's genres).
    store_root, test_store_root, held_out : str
        Where the data came from and what was held out.
    train_clips, train_songs, valid_clips, valid_songs, test_clips, test_songs : int
    streamed : bool
        Whether batches were streamed from the store (its HDF5 file, or a table version's shard objects).
    songs : dict
        ``train``, ``valid`` and ``test`` song ids.
    metrics : Metrics
        :func:`training.evaluate.evaluate` on the held-out clips.
    history : dict
        The fit's curves (loss per epoch, solver iterations...).
    costs : Costs
    created_at : str
    view_options : dict
        Options of the view beyond the feature params (``embedding_model``).
    embedding : dict, optional
        For runs on musicnn embeddings: model, weights sha256, store hash, layers, features.
    table_uri, table_version, table_digest : str, int, str, optional
        For runs trained from a version of an index table (:mod:`training.table_train`): the
        table, the version pinned and its :meth:`IndexTable.version_digest`. Absent (None) for
        runs trained from a store folder, and left out of their ``metrics.json``.
    files : dict
        The run's other files (the family's model files), each with its ``bytes`` and
        ``sha256``, listed when it is published (:func:`check_files` checks them).
    extra : dict
        Keys of the file this class does not know, written back unchanged.
    run_dir : Path, optional
        The published folder it was read from (not written).
    """

    model: str
    family: str
    view: str
    variant: str
    trainer: str
    clip_seconds: int
    seed: int
    config: dict[str, Any]
    feature_params: dict[str, Any]
    params_hash: str
    layout: str
    frames: int
    labels: list[str]
    store_root: str
    test_store_root: str | None
    held_out: str
    train_clips: int
    train_songs: int
    valid_clips: int
    valid_songs: int
    test_clips: int
    test_songs: int
    streamed: bool
    songs: dict[str, list[str]]
    metrics: Metrics
    history: dict[str, Any]
    costs: Costs
    created_at: str = dataclasses.field(default_factory=_now)
    view_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    embedding: dict[str, Any] | None = None
    table_uri: str | None = None
    table_version: int | None = None
    table_digest: str | None = None
    files: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_dir: Path | None = None

    def __post_init__(self) -> None:
        if isinstance(self.metrics, dict):
            self.metrics = Metrics.from_dict(self.metrics)

    @property
    def model_path(self) -> Path | None:
        """The run's main model file (its family's first file), where the run was published or read."""
        from training.families import get_family

        return None if self.run_dir is None else self.run_dir / get_family(self.model).files[0]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``metrics.json``."""
        skip = {"costs", "metrics", "extra", "run_dir", *OPTIONAL_KEYS}
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        d["costs"] = self.costs.to_dict()
        d["metrics"] = self.metrics.to_dict()
        d.update({k: getattr(self, k) for k in OPTIONAL_KEYS if getattr(self, k) is not None})
        return {**d, **self.extra}

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``metrics.json`` into ``folder`` atomically: the one writer of run records."""
        return atomic.write_json_atomic(Path(folder) / RECORD_FILE, integrity.with_checksum(self.to_dict()))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        """Inverse of :meth:`to_dict`; fills ``family``, ``view`` and ``view_options`` of older records.

        Raises
        ------
        ValueError
            If a key without a default is missing.
        """
        d = dict(d)
        d.pop("run_dir", None)
        probe = d.get("trainer") == "probe" or str(d.get("model", "")).startswith("probe_")
        d.setdefault("family", "vector" if probe else "mel")
        if d["family"] == "probe":  # the vector family's runs were once recorded as "probe"
            d["family"] = "vector"
        d.setdefault("view", "embeddings" if probe else "mel")
        if "view_options" not in d and isinstance(d.get("embedding"), dict):
            d["view_options"] = {"embedding_model": d["embedding"]["model"]}
        if "labels" not in d:  # records written before runs recorded their labels: GTZAN's ten genres
            from feature_store.datasets.gtzan import GENRES

            d["labels"] = list(d.pop("genres", None) or GENRES)
        known, extra = _known(cls, d)
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(known))
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        known["costs"] = Costs.from_dict(known["costs"])
        known["metrics"] = Metrics.from_dict(known["metrics"])
        return cls(**known, extra=extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunRecord:
        """Read ``path`` (a ``metrics.json``, or the run folder holding it or its ``current`` link).

        Raises
        ------
        StoreError
            If there is no record, or it cannot be read.
        """
        path = Path(path)
        if path.is_dir():
            path = (atomic.resolve_current(path) or path) / RECORD_FILE
        try:
            doc = integrity.read_json(path, remedy=RETRAIN)  # IntegrityError: damaged
            doc.pop(integrity.JSON_CHECKSUM_KEY, None)
            rec = cls.from_dict(doc)
        except FileNotFoundError as exc:
            raise StoreError(f"no run record at {path}") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"cannot read the run record {path}: {exc}; {RETRAIN}") from exc
        rec.run_dir = path.parent.resolve()  # where it was found, never a path the file holds
        return rec

    def table_line(self) -> str | None:
        """The table version the run trained on, in one line; None for a run from a store folder."""
        if self.table_version is None:
            return None
        return f"table {self.table_uri} version {self.table_version} ({self.table_digest})"

    def list_files(self, folder: Path) -> None:
        """Record the size and sha256 of every file of ``folder`` but the record itself."""
        from feature_store.manifest import list_files

        self.files = list_files(folder, skip=[RECORD_FILE])

    def check_files(self, folder: Path) -> None:
        """Check the run's files against :attr:`files` (size and sha256), before any is loaded.

        Raises
        ------
        IntegrityError
            A record without the list (an older run), or a file that does not match it.
        StoreError
            A listed file is missing.
        """
        from feature_store.manifest import mismatch, valid_listing

        if not self.files or not valid_listing(self.files):
            raise integrity.IntegrityError(f"{folder / RECORD_FILE} does not list the run's files (written by an "
                                           f"older version): they cannot be checked; {RETRAIN}")
        missing = [n for n in self.files if not (folder / n).is_file()]
        if missing:
            raise StoreError(f"{folder} is not a complete trained run: missing {', '.join(missing)}")
        for name, entry in self.files.items():
            if (folder / name).stat().st_size == 0:
                raise integrity.IntegrityError(f"{folder / name} is empty (0 bytes): the file is damaged; {RETRAIN}")
            why = mismatch(folder / name, entry, listing=RECORD_FILE)
            if why:
                raise integrity.IntegrityError(f"{why}; {RETRAIN}")
