"""The settings object: every ``GTZAN_*`` variable, read once, and every default of the project.

:class:`Settings` is a frozen dataclass. :meth:`Settings.from_env` reads the environment once
and checks each variable, with a one-line :class:`ParameterError` naming the variable. The
``gtzan`` command line overrides fields with its flags (``dataclasses.replace``), and the
Dagster resources of the code location are built from it (:mod:`pipelines.resources`).

=====================  ===============================  ==================================
variable               default                          meaning
=====================  ===============================  ==================================
``GTZAN_DIR``          (unset: the synthetic demo)      GTZAN copy (or another dataset's folder) to ingest
``GTZAN_DATASET``      ``gtzan``                        dataset that reads it: gtzan | folders | csv
``GTZAN_LABELS``       unset                            the csv dataset's labels file
``GTZAN_DATA_DIR``     ``data``                         parent of the folders below
``GTZAN_STORE_DIR``    ``$GTZAN_DATA_DIR/store``        feature store root
``GTZAN_STORE_URL``    (unset: the local store root)    ``s3://bucket/prefix``: object storage
``GTZAN_MODEL_DIR``    ``$GTZAN_DATA_DIR/models``       model store root
``GTZAN_REPORT_DIR``   ``$GTZAN_DATA_DIR/reports``      evaluation reports
``GTZAN_MODE``         ``first``                        sampling mode: first | segments
``GTZAN_LAYOUT``       ``auto``                         auto | kaggle | original
``GTZAN_WORKERS``      ``0`` (the CPU count)            feature worker processes
``GTZAN_SHARDS``       ``16``                           shards a view's songs are spread over
``GTZAN_EXECUTOR``     ``multiprocess``                 Dagster executor: multiprocess | in_process | celery | k8s
``GTZAN_PREDICT_...``  ``7200``                         ``GTZAN_PREDICT_MAX_SECONDS``: longest file to predict
``GTZAN_AUTOMATE...``  unset                            ``GTZAN_AUTOMATE_OPT_IN``: 1 lets automation build opt-in assets
=====================  ===============================  ==================================

Where a default is a parameter of the library (the epoch cap, batch size, seed and split scheme
of :class:`training.train.TrainConfig`; the sampling mode and dtype of
:class:`feature_store.params.FeatureParams`; the probe classifier and musicnn weights of
:class:`training.families.vector.ProbeConfig`; the store's lock timeout), the field takes it from there,
so that it is written once. Those are looked up when a :class:`Settings` is made, not when this
module is imported, so that ``gtzan --help`` stays fast: this module imports neither Dagster
nor NumPy. Relative paths are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from feature_store.bounds import MAX_BATCH_SIZE as MAX_BATCH_SIZE
from feature_store.bounds import MAX_DEMO_SECONDS as MAX_DEMO_SECONDS
from feature_store.bounds import MAX_DEMO_SONGS_PER_GENRE as MAX_DEMO_SONGS_PER_GENRE
from feature_store.bounds import MAX_EPOCHS as MAX_EPOCHS
from feature_store.bounds import MAX_QUERY_LIMIT as MAX_QUERY_LIMIT
from feature_store.bounds import MAX_SEED as MAX_SEED
from feature_store.bounds import MAX_SHARDS as MAX_SHARDS
from feature_store.bounds import MAX_WORKERS_PER_CPU as MAX_WORKERS_PER_CPU
from feature_store.bounds import max_workers
from feature_store.engine.plugins import DEFAULT_DATASET
from feature_store.errors import ParameterError
from feature_store.params import CLIP_SECONDS, MODES, FeatureParams
from pipelines import deployment as _deployment
from pipelines.deployment import Deployment

#: Every environment variable the project reads, with its meaning.
ENV_VARS: dict[str, str] = {
    "GTZAN_DIR": "GTZAN copy to ingest (unset: the synthetic demo corpus under $GTZAN_DATA_DIR/demo)",
    "GTZAN_DATASET": "dataset that reads $GTZAN_DIR: gtzan | folders | csv (default: gtzan)",
    "GTZAN_LABELS": "labels file of the csv dataset (columns path, label, optional split)",
    "GTZAN_DATA_DIR": "parent of the demo, store, models and reports folders (default: data)",
    "GTZAN_STORE_DIR": "feature store root (default: $GTZAN_DATA_DIR/store)",
    "GTZAN_STORE_URL": "object storage of the store, s3://bucket/prefix, with the standard AWS variables "
    "(default: unset, the local folder $GTZAN_STORE_DIR)",
    "GTZAN_MODEL_DIR": "model store root (default: $GTZAN_DATA_DIR/models)",
    "GTZAN_REPORT_DIR": "evaluation reports (default: $GTZAN_DATA_DIR/reports)",
    "GTZAN_MODE": "sampling mode of the features: first | segments (default: first)",
    "GTZAN_LAYOUT": "layout of $GTZAN_DIR: auto | kaggle | original (default: auto, detected)",
    "GTZAN_WORKERS": "worker processes of the feature build (default: 0, the CPU count)",
    "GTZAN_SHARDS": "shards a view's songs are spread over by content hash, one build task each "
    "(default: 16, at most MAX_SHARDS)",
    "GTZAN_EXECUTOR": "Dagster executor of the code location: multiprocess | in_process | celery | k8s "
    "(default: multiprocess)",
    "GTZAN_DEBUG": "set to 1: tracebacks instead of one-line errors, and TensorFlow's own logs",
    "GTZAN_PREDICT_MAX_SECONDS": "gtzan predict refuses longer files (default: 7200, two hours)",
    "GTZAN_AUTOMATE_OPT_IN": "set to 1: automation also builds the opt-in assets (musicnn embeddings, probes); "
    "default: they stay empty until asked for",
    **_deployment.ENV_VARS,
}

#: The upper bounds of the numeric options (flags, ``GTZAN_*`` variables, Dagster config) are
#: declared once in :mod:`feature_store.bounds`, where the library and the Dagster assets read
#: them too, and re-exported here: ``MAX_SEED``, ``MAX_WORKERS_PER_CPU`` (times the CPU count:
#: ``max_workers()``), ``MAX_EPOCHS``, ``MAX_BATCH_SIZE``, ``MAX_QUERY_LIMIT``,
#: ``MAX_DEMO_SONGS_PER_GENRE``, ``MAX_DEMO_SECONDS``, ``MAX_SHARDS``. Each is refused in one line before any work.

#: Values that ``GTZAN_EXECUTOR`` accepts (``celery`` needs dagster-celery, ``k8s`` dagster-k8s).
EXECUTORS: tuple[str, ...] = ("multiprocess", "in_process", "celery", "k8s")
#: The models a pipeline run (``gtzan run``, ``make run``) and ``gtzan train`` train by
#: default: the compact families and the two baselines, which together finish the demo corpus
#: within a few minutes on 2 cores (see BENCHMARKS.md). The study's ``seed_cnn`` alone takes
#: about 6 minutes there, so it, ``seed_rnn`` and ``crnn`` are opt-in (``--models all``).
DEFAULT_MODELS: tuple[str, ...] = ("baseline", "cnn", "rnn", "crnn_small", "timbre_logreg")


def layouts() -> tuple[str, ...]:
    """Values that ``GTZAN_LAYOUT`` accepts: ``auto`` (detect) and the library's layouts."""
    from feature_store.datasets.gtzan import LAYOUT_FOLDERS

    return ("auto", *LAYOUT_FOLDERS)


def debug(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``GTZAN_DEBUG`` is set (to anything but an empty string)."""
    return bool(environ.get("GTZAN_DEBUG", "").strip())


def _field_default(cls: type, name: str) -> Any:
    """The default of the field ``name`` of the dataclass ``cls``."""
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


# The library's own defaults that need NumPy and polars: looked up when a Settings is made.
def _train_default(name: str) -> Callable[[], Any]:
    def default() -> Any:
        from training.train import TrainConfig

        return getattr(TrainConfig(), name)

    return default


def default_epochs() -> int:
    """The epoch cap of every training entry point (``gtzan train``, ``gtzan run``, the Dagster run
    config, ``deploy/graph.py`` and ``deploy/cluster.py``): :class:`~training.config.TrainConfig`'s."""
    return int(_train_default("epochs")())


def _probe_default(name: str) -> Callable[[], Any]:
    def default() -> Any:
        from training.families.vector import ProbeConfig

        return getattr(ProbeConfig(), name)

    return default


def _demo_default(name: str) -> Callable[[], Any]:
    def default() -> Any:
        import inspect

        from feature_store.demo import write_demo_corpus

        return inspect.signature(write_demo_corpus).parameters[name].default

    return default


def _lock_timeout_default() -> float:
    from feature_store.store import DEFAULT_LOCK_TIMEOUT

    return DEFAULT_LOCK_TIMEOUT


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Where the data lives and the defaults of every command and run.

    Attributes
    ----------
    audio_dir : Path or None
        ``$GTZAN_DIR``: the GTZAN copy to ingest; None: the demo corpus (:attr:`demo_root`).
    dataset : str
        ``$GTZAN_DATASET``: the registered dataset that reads ``audio_dir``
        (:data:`feature_store.engine.plugins.DEFAULT_DATASET`: ``gtzan``).
    labels_file : Path or None
        ``$GTZAN_LABELS``: the labels file of a dataset that needs one (``csv``).
    data_dir : Path
        ``$GTZAN_DATA_DIR``: parent of the demo corpus and of the stores left unset below.
    store_dir, model_dir, report_dir : Path or None
        ``$GTZAN_STORE_DIR``, ``$GTZAN_MODEL_DIR``, ``$GTZAN_REPORT_DIR``; None: a folder of
        ``data_dir``. Read the resolved folders from :attr:`store_root`, :attr:`model_root`
        and :attr:`report_root`.
    store_url : str or None
        ``$GTZAN_STORE_URL``: ``s3://bucket/prefix``, the object storage of the store
        (:func:`feature_store.engine.storage.open_storage`); None: the local :attr:`store_root`.
        Read it from :attr:`store_location`.
    mode, dtype : str
        Sampling mode (``$GTZAN_MODE``) and storage dtype of the features; defaults:
        :class:`~feature_store.params.FeatureParams`'.
    layout : str
        ``$GTZAN_LAYOUT``: ``auto`` or one of the library's layouts (:func:`layouts`).
    workers : int
        ``$GTZAN_WORKERS``: worker processes of the feature build (0: the CPU count).
    shards : int
        ``$GTZAN_SHARDS``: shards a view's songs are spread over by content hash
        (:func:`feature_store.engine.shards.shard_of`), 1 to ``MAX_SHARDS``.
    executor : str
        ``$GTZAN_EXECUTOR``: the Dagster executor of the code location (:data:`EXECUTORS`).
    debug : bool
        ``$GTZAN_DEBUG``: tracebacks and TensorFlow's logs.
    models : tuple of str
        Models that ``gtzan run`` (``make run``) and ``gtzan train`` train (:data:`DEFAULT_MODELS`).
    clip_seconds : tuple of int
        Clip lengths of ``gtzan run`` and ``gtzan features build``: all four.
    train_clip_seconds : tuple of int
        Clip lengths of ``gtzan train``: 5 s, quick to try one model on.
    epochs, batch_size, scheme : int, int, str
        Epoch cap, batch size and held-out split scheme: :class:`~training.train.TrainConfig`'s.
        The same epoch cap holds for ``gtzan train``, ``gtzan run`` and the Dagster run config.
    seeds : tuple of int
        One run per seed: TrainConfig's one seed.
    probe_classifiers : tuple of str
        Probe classifiers of a pipeline run: :class:`~training.families.vector.ProbeConfig`'s.
    embedding_model : str
        musicnn weights of the embeddings view and the probes: ProbeConfig's.
    embedding_workers : int
        Decode processes of the embedding build (0: a quarter of the CPU cores).
    lock_timeout : float
        Seconds a build waits for another build of the same store: the store's own default.
    demo_songs_per_genre, demo_seconds, demo_seed : int, float, int
        The demo corpus written when ``audio_dir`` is None: those of
        :func:`feature_store.demo.write_demo_corpus`.
    ui_host, ui_port : str, int
        Where ``gtzan ui`` serves the Dagster UI (this machine only, by default).
    predict_max_seconds : float
        ``$GTZAN_PREDICT_MAX_SECONDS``: ``gtzan predict`` refuses longer files (2 hours). Its
        memory does not depend on it (files are streamed in windows); its time does.
    automate_opt_in : bool
        ``$GTZAN_AUTOMATE_OPT_IN``: give the opt-in assets (the musicnn embeddings and the probes
        on them) the automation conditions of the others. Off by default: automation then builds
        what ``make run`` builds, and the opt-in assets stay empty until asked for (they need the
        musicnn weights and cost minutes per clip length on 2 cores).
    deployment : pipelines.deployment.Deployment
        Where a scaled-out deployment's services are (Celery broker and backend, PostgreSQL)
        and this host's name: the variables of :data:`pipelines.deployment.ENV_VARS`.
    allowed_roots : tuple of Path
        ``$GTZAN_ALLOWED_ROOTS``: the folders a run's config may point the audio, store, model
        and report resources into; empty: ``data_dir`` alone. The folders set above are
        allowed too; :attr:`roots` has them all.
    """

    audio_dir: Path | None = None
    dataset: str = DEFAULT_DATASET
    labels_file: Path | None = None
    data_dir: Path = Path("data")
    store_dir: Path | None = None
    model_dir: Path | None = None
    report_dir: Path | None = None
    store_url: str | None = None
    mode: str = _field_default(FeatureParams, "mode")
    dtype: str = _field_default(FeatureParams, "dtype")
    layout: str = "auto"
    workers: int = 0
    shards: int = 16
    executor: str = "multiprocess"
    debug: bool = False
    models: tuple[str, ...] = DEFAULT_MODELS
    clip_seconds: tuple[int, ...] = CLIP_SECONDS
    train_clip_seconds: tuple[int, ...] = (5,)
    epochs: int = dataclasses.field(default_factory=default_epochs)
    batch_size: int = dataclasses.field(default_factory=_train_default("batch_size"))
    seeds: tuple[int, ...] = dataclasses.field(default_factory=lambda: (_train_default("seed")(),))
    scheme: str = dataclasses.field(default_factory=_train_default("scheme"))
    probe_classifiers: tuple[str, ...] = dataclasses.field(default_factory=lambda: (_probe_default("classifier")(),))
    embedding_model: str = dataclasses.field(default_factory=_probe_default("embedding_model"))
    embedding_workers: int = 0
    lock_timeout: float = dataclasses.field(default_factory=_lock_timeout_default)
    demo_songs_per_genre: int = dataclasses.field(default_factory=_demo_default("songs_per_genre"))
    demo_seconds: float = dataclasses.field(default_factory=_demo_default("duration"))
    demo_seed: int = dataclasses.field(default_factory=_demo_default("seed"))
    ui_host: str = "127.0.0.1"
    ui_port: int = 3000
    predict_max_seconds: float = 7200.0
    automate_opt_in: bool = False
    deployment: Deployment = dataclasses.field(default_factory=Deployment)
    allowed_roots: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        """Every number checked once, so that a bad flag or variable fails before any work."""
        import math

        most = max_workers()
        whole = {"workers": (0, most), "embedding_workers": (0, most), "epochs": (1, MAX_EPOCHS),
                 "batch_size": (1, MAX_BATCH_SIZE), "demo_songs_per_genre": (1, MAX_DEMO_SONGS_PER_GENRE),
                 "demo_seed": (0, MAX_SEED), "shards": (1, MAX_SHARDS)}
        for name, (least, bound) in whole.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= bound:
                raise ParameterError(f"{name} must be an integer in {least}..{bound}, got {value!r}")
        for name in ("lock_timeout", "demo_seconds", "predict_max_seconds"):
            value = getattr(self, name)
            least_ok = value >= 0 if name == "lock_timeout" else value > 0
            if not (isinstance(value, int | float) and math.isfinite(value) and least_ok):
                raise ParameterError(f"{name} must be a finite number "
                                     f"{'>= 0' if name == 'lock_timeout' else '> 0'}, got {value!r}")
        if self.demo_seconds > MAX_DEMO_SECONDS:
            raise ParameterError(f"demo_seconds must be at most {MAX_DEMO_SECONDS:g}, got {self.demo_seconds!r}")
        if any(not isinstance(v, int) or not 0 <= v <= MAX_SEED for v in self.seeds) or not self.seeds:
            raise ParameterError(f"seeds must be integers in 0..{MAX_SEED}, got {list(self.seeds)}")
        if not 0 < self.ui_port < 65536:
            raise ParameterError(f"ui_port must be in 1..65535, got {self.ui_port}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The settings of the ``GTZAN_*`` variables of ``environ``, the defaults for the rest.

        Raises
        ------
        ParameterError
            A variable holds a value that is not allowed; the message names the variable.
        """

        def get(name: str) -> str | None:
            return environ.get(name, "").strip() or None

        def path(name: str) -> Path | None:
            value = get(name)
            return Path(value).expanduser() if value else None

        layout = get("GTZAN_LAYOUT")
        found: dict[str, Any] = {
            "audio_dir": path("GTZAN_DIR"),
            "dataset": _dataset(get("GTZAN_DATASET")),
            "labels_file": path("GTZAN_LABELS"),
            "data_dir": path("GTZAN_DATA_DIR"),
            "store_dir": path("GTZAN_STORE_DIR"),
            "model_dir": path("GTZAN_MODEL_DIR"),
            "report_dir": path("GTZAN_REPORT_DIR"),
            "store_url": _store_url(get("GTZAN_STORE_URL")),
            "mode": _choice("GTZAN_MODE", get("GTZAN_MODE"), MODES),
            "layout": _choice("GTZAN_LAYOUT", layout, layouts()) if layout else None,
            "workers": _count("GTZAN_WORKERS", get("GTZAN_WORKERS")),
            "shards": _shards(get("GTZAN_SHARDS")),
            "executor": _choice("GTZAN_EXECUTOR", get("GTZAN_EXECUTOR"), EXECUTORS),
            "debug": debug(environ),
            "predict_max_seconds": _seconds("GTZAN_PREDICT_MAX_SECONDS", get("GTZAN_PREDICT_MAX_SECONDS")),
            "automate_opt_in": _flag("GTZAN_AUTOMATE_OPT_IN", get("GTZAN_AUTOMATE_OPT_IN")),
            "deployment": Deployment.from_env(dict(environ)),
            "allowed_roots": tuple(Path(p).expanduser() for p in (get("GTZAN_ALLOWED_ROOTS") or "").split(os.pathsep)
                                   if p.strip()) or None,
        }
        return cls(**{k: v for k, v in found.items() if v is not None})

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``; a change to None keeps the current value (an unset CLI flag)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def demo_root(self) -> Path:
        """Where the synthetic demo corpus is written: ``data_dir/demo``."""
        return self.data_dir / "demo"

    @property
    def store_root(self) -> Path:
        """The feature store root: ``store_dir``, else ``data_dir/store``."""
        return self.store_dir or self.data_dir / "store"

    @property
    def store_location(self) -> str:
        """Where the store's objects are: :attr:`store_url`, else the folder :attr:`store_root`."""
        return self.store_url or str(self.store_root)

    @property
    def objects_location(self) -> str:
        """Where the sharded store's objects and index tables are: :attr:`store_url`, else the
        folder ``<store_root>/objects`` (opened by ``pipelines.cli.features_lake.store_storage``)."""
        return self.store_url or str(self.store_root / "objects")

    @property
    def model_root(self) -> Path:
        """The model store root: ``model_dir``, else ``data_dir/models``."""
        return self.model_dir or self.data_dir / "models"

    @property
    def report_root(self) -> Path:
        """The report folder: ``report_dir``, else ``data_dir/reports``."""
        return self.report_dir or self.data_dir / "reports"

    @property
    def roots(self) -> tuple[Path, ...]:
        """The folders a run's resources may use, symlinks resolved: :attr:`allowed_roots` (by
        default :attr:`data_dir`) and every folder these settings name."""
        chosen = self.allowed_roots or (self.data_dir,)
        named = [p for p in (self.audio_dir, self.labels_file, self.store_dir, self.model_dir, self.report_dir)
                 if p is not None]
        return tuple(dict.fromkeys(Path(os.path.realpath(p.expanduser())) for p in (*chosen, *named)))

    def absolute(self) -> Settings:
        """The same settings with every folder absolute, so that processes in other working
        directories (webserver, code server, run workers) agree on them."""

        def resolve(p: Path | None) -> Path | None:
            return None if p is None else p.expanduser().resolve()

        return dataclasses.replace(
            self,
            audio_dir=resolve(self.audio_dir),
            labels_file=resolve(self.labels_file),
            data_dir=resolve(self.data_dir),
            store_dir=resolve(self.store_root),
            model_dir=resolve(self.model_root),
            report_dir=resolve(self.report_root),
            allowed_roots=tuple(p.expanduser().resolve() for p in self.allowed_roots),
        )

    def env(self) -> dict[str, str]:
        """The ``GTZAN_*`` variables that give these settings, folders absolute: what a child
        process (a code server, the Dagster UI) needs to read the same settings."""
        s = self.absolute()
        env = {"GTZAN_DATA_DIR": str(s.data_dir), "GTZAN_STORE_DIR": str(s.store_dir),
               "GTZAN_MODEL_DIR": str(s.model_dir), "GTZAN_REPORT_DIR": str(s.report_dir),
               "GTZAN_MODE": s.mode, "GTZAN_LAYOUT": s.layout, "GTZAN_WORKERS": str(s.workers),
               "GTZAN_SHARDS": str(s.shards),
               "GTZAN_EXECUTOR": s.executor, "GTZAN_PREDICT_MAX_SECONDS": repr(s.predict_max_seconds),
               **s.deployment.env()}
        if s.audio_dir is not None:
            env["GTZAN_DIR"] = str(s.audio_dir)
        if s.dataset != DEFAULT_DATASET:
            env["GTZAN_DATASET"] = s.dataset
        if s.labels_file is not None:
            env["GTZAN_LABELS"] = str(s.labels_file)
        if s.store_url is not None:
            env["GTZAN_STORE_URL"] = s.store_url
        if s.allowed_roots:
            env["GTZAN_ALLOWED_ROOTS"] = os.pathsep.join(str(p) for p in s.allowed_roots)
        if s.debug:
            env["GTZAN_DEBUG"] = "1"
        if s.automate_opt_in:
            env["GTZAN_AUTOMATE_OPT_IN"] = "1"
        return env


def _dataset(value: str | None) -> str | None:
    """``$GTZAN_DATASET`` if it names a registered dataset (None when unset)."""
    if value is None:
        return None
    from feature_store.datasets import dataset_names

    return _choice("GTZAN_DATASET", value, tuple(dataset_names()))


def _choice(name: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    """``value`` if it is one of ``choices`` (None when unset), else a ParameterError naming ``name``."""
    if value is not None and value not in choices:
        raise ParameterError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _store_url(value: str | None) -> str | None:
    """``value`` if it is an ``s3://bucket[/prefix]`` URL (None when unset), else a ParameterError."""
    if value is None:
        return None
    from feature_store.engine.storage.s3 import parse_s3_url

    try:
        parse_s3_url(value)
    except ParameterError as exc:
        raise ParameterError(f"GTZAN_STORE_URL: {exc}") from None
    return value.rstrip("/")


def _flag(name: str, value: str | None) -> bool | None:
    """``value`` as a switch: ``1``/``true``/``yes`` on, ``0``/``false``/``no`` off (None when unset)."""
    if value is None:
        return None
    if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise ParameterError(f"{name} must be 1 or 0, got {value!r}")
    return value.lower() in ("1", "true", "yes")


def _count(name: str, value: str | None) -> int | None:
    """``value`` as a non-negative integer (None when unset), else a ParameterError naming ``name``."""
    if value is None:
        return None
    if not value.isdigit():
        raise ParameterError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _shards(value: str | None) -> int | None:
    """``$GTZAN_SHARDS`` as an integer in ``1..MAX_SHARDS`` (None when unset), else a ParameterError."""
    n = _count("GTZAN_SHARDS", value)
    if n is not None and not 1 <= n <= MAX_SHARDS:
        raise ParameterError(f"GTZAN_SHARDS must be an integer in 1..{MAX_SHARDS}, got {value!r}")
    return n


def _seconds(name: str, value: str | None) -> float | None:
    """``value`` as a positive, finite number of seconds (None when unset), else a ParameterError."""
    import math

    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ParameterError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds
