"""Typed Dagster resources: where audio comes from, and where the stores live.

They are thin: each hands back the ``feature_store`` or ``training`` object that does the
work. ``pipelines/resources.py`` builds them from the settings object
(``pipelines.settings.Settings``), which owns where the stores live: the folders are
required here. The other fields default to the library's own defaults (feature parameters,
lock timeout, musicnn weights, demo corpus), so that none is written twice. Models never
travel through an IO manager: the :class:`ModelStoreResource` trains, saves (``.keras``)
and loads them by path.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg

from feature_store.datasets.gtzan import LAYOUT_FOLDERS, find_genre_root
from feature_store.demo import write_demo_corpus
from feature_store.embeddings.store import EmbeddingStore
from feature_store.engine.plugins import DEFAULT_DATASET, get_dataset
from feature_store.engine.store import ViewStore
from feature_store.engine.view import FeatureView, ViewOptions
from feature_store.errors import ParameterError
from feature_store.params import FeatureParams
from feature_store.store import DEFAULT_LOCK_TIMEOUT, FeatureStore
from feature_store.views import declared_options, get_view
from training.families.vector import ProbeConfig
from training.train import ModelStore

#: Layouts :class:`AudioSource` accepts; ``auto`` detects the layout from the folder.
LAYOUTS: tuple[str, ...] = ("auto", *LAYOUT_FOLDERS)
_DEMO = inspect.signature(write_demo_corpus).parameters
_PARAMS = FeatureParams()
_PROBE = ProbeConfig()


def check_within_roots(path: str, *, what: str, roots: Iterable[Path]) -> Path:
    """``path`` with its symlinks and ``..`` resolved, if it lies inside one of ``roots``.

    Parameters
    ----------
    path : str
        A folder named by a resource's config (it need not exist yet).
    what : str
        The config field, for the message (``resources.audio.config.path``).
    roots : iterable of Path
        The allowed folders (:attr:`pipelines.settings.Settings.roots`); their symlinks are
        resolved too.

    Raises
    ------
    ParameterError
        One line naming the field, the folder and the allowed roots.
    """
    real = Path(os.path.realpath(os.path.expanduser(path)))
    allowed = [Path(os.path.realpath(r)) for r in roots]
    if any(real.is_relative_to(r) for r in allowed):
        return real
    raise ParameterError(f"{what} {path!r} (resolved: {str(real)!r}) is outside the allowed roots "
                         f"{[str(r) for r in allowed]}; GTZAN_ALLOWED_ROOTS sets them")


def _check_run_paths(context: dg.InitResourceContext, resource: str, fields: dict[str, str]) -> None:
    """Refuse a run whose config points ``resource``'s folders outside the deployment's roots.

    Runs of a persistent instance only: those the UI and its GraphQL API launch, with run
    config from whoever reaches them. The roots come from this process's environment (the
    deployment's ``GTZAN_*`` variables), never from the run's config. An in-process run of
    an ephemeral instance (``dg.materialize``) and a sensor tick use the folders they are
    given.
    """
    instance = context.instance
    if context.run is None or instance is None or instance.is_ephemeral:
        return
    from pipelines.settings import Settings

    roots = Settings.from_env().roots
    for name, value in fields.items():
        if value:
            check_within_roots(value, what=f"resources.{resource}.config.{name}", roots=roots)


class AudioSource(dg.ConfigurableResource):
    """The audio folder to ingest, and the dataset that reads it.

    Attributes
    ----------
    path : str
        For ``gtzan``: a GTZAN copy in the Kaggle (``genres_original/``) or original
        (``genres/``) layout, or its genres folder; for another dataset, its folder. Left
        empty (``gtzan`` only), the deterministic synthetic demo corpus is written under
        ``demo_dir`` (which must then be set) and used instead.
    dataset : str
        A registered dataset (:func:`feature_store.datasets.datasets`): ``gtzan``, ``folders``
        (``path/<label>/<audio files>``), ``csv``.
    labels_file : str
        The labels file of a dataset that needs one (``csv``); empty otherwise.
    layout : str
        ``gtzan`` only: ``auto`` (detect), ``kaggle`` or ``original``; a folder of another
        layout is refused.
    demo_dir, demo_songs_per_genre, demo_seconds, demo_seed
        Where and how the demo corpus is written when ``path`` is empty.
    """

    path: str = ""
    dataset: str = DEFAULT_DATASET
    labels_file: str = ""
    layout: str = LAYOUTS[0]
    demo_dir: str = ""
    demo_songs_per_genre: int = _DEMO["songs_per_genre"].default
    demo_seconds: float = _DEMO["duration"].default
    demo_seed: int = _DEMO["seed"].default

    @property
    def is_demo(self) -> bool:
        return not self.path

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse a run whose audio folder is outside the deployment's roots."""
        _check_run_paths(context, "audio", {"path": self.path, "demo_dir": self.demo_dir,
                                            "labels_file": self.labels_file})

    def _root(self) -> str:
        return self.demo_dir if self.is_demo else self.path

    def genre_root(self, *, write_demo: bool = True) -> Path:
        """The genres folder, writing the demo corpus first when no path is set.

        Parameters
        ----------
        write_demo : bool
            With no ``path``, write (or verify) the demo corpus before resolving it. The
            sensor passes False, so that a sensor tick never writes audio.

        Raises
        ------
        ParameterError
            Unknown ``layout``, a missing folder, or a folder of another layout.
        """
        if self.layout not in LAYOUTS:
            raise ParameterError(f"layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        if self.dataset != DEFAULT_DATASET:
            if self.is_demo:
                raise ParameterError(f"the {self.dataset} dataset needs a `path` (the demo corpus is GTZAN's)")
            return get_dataset(self.dataset).find_root(self.path)[0]
        if self.is_demo and not self.demo_dir:
            raise ParameterError("AudioSource needs a `path` to ingest, or a `demo_dir` to write the demo corpus to")
        if self.is_demo and write_demo:
            from feature_store.demo import write_demo_corpus

            write_demo_corpus(
                self.demo_dir,
                songs_per_genre=self.demo_songs_per_genre,
                duration=self.demo_seconds,
                seed=self.demo_seed,
            )
        root, found = find_genre_root(self._root())
        if self.layout != "auto" and found != self.layout:
            raise ParameterError(
                f"audio folder {self._root()!r} has the {found!r} layout, but layout={self.layout!r} was asked; "
                f"use one of {list(LAYOUTS)}"
            )
        return root

    def detected_layout(self) -> str:
        """The layout found in the folder (``kaggle`` or ``original`` for ``gtzan``)."""
        return get_dataset(self.dataset).find_root(self._root())[1]

    def labels_path(self) -> str | None:
        """``labels_file``, or None when empty."""
        return self.labels_file or None


class _FeatureStoreConfig(dg.ConfigurableResource):
    """The feature store root and the feature parameters (see ``FeatureParams``).

    Attributes
    ----------
    root : str
        Feature store root.
    mode : str
        Sampling mode, ``first`` (the study's first N seconds) or ``segments``.
    dtype, embedding_model, ... : str
        One config field per option that a view declares (:func:`feature_store.views.
        declared_options`; the mel view's storage dtype, the musicnn weights of the
        embeddings view and its probes), its default and description from the view.
    workers : int
        Worker processes of the feature build (0: the CPU count).
    lock_timeout : float
        Seconds a build waits for a concurrent build of the same store before it fails with
        ``StoreLockedError`` (a transient failure, which the assets' retry policy retries).
    embedding_workers : int
        Decode processes of the embedding build, beside the network that runs in the step's
        own process (0: a quarter of the CPU cores, the measured best on 2 cores).
    host_name : str
        The name of the host the code location runs on, recorded as each step's
        ``worker_host`` (empty: the machine's host name). Each host of a deployment loads the
        code location with its own.
    """

    root: str
    mode: str = _PARAMS.mode
    workers: int = 0
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    embedding_workers: int = 0
    host_name: str = ""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse a run whose store root is outside the deployment's roots."""
        _check_run_paths(context, "features", {"root": self.root})

    def params(self) -> FeatureParams:
        return FeatureParams(mode=self.mode, dtype=self.dtype)  # type: ignore[arg-type]

    def store(self) -> FeatureStore:
        return FeatureStore(self.root, params=self.params())

    def embedding_store(self) -> EmbeddingStore:
        """The embeddings view of the same root and clips (:class:`EmbeddingStore`; no TensorFlow)."""
        return EmbeddingStore(self.root, model=self.embedding_model, params=self.params())

    def view_options(self) -> ViewOptions:
        """The options the views read: ``mode`` and every declared option's config field."""
        return ViewOptions(mode=self.mode, **{name: getattr(self, name) for name in declared_options()
                                              if hasattr(self, name)})

    def view_store(self, name: str) -> ViewStore:
        """The store of the view called ``name`` on this root (ParameterError names the views)."""
        return ViewStore(self.root, get_view(name, self.view_options()))

    def workers_for(self, view: FeatureView) -> int | None:
        """Worker processes of a build of ``view`` (None: the view's default or the CPU count).

        A view that computes in the step's own process (musicnn) takes ``embedding_workers``
        decode processes beside it; the others take ``workers``.
        """
        return (self.embedding_workers if view.main_process else self.workers) or None


def with_view_options(base: type[dg.ConfigurableResource], name: str) -> type[dg.ConfigurableResource]:
    """``base`` with one config field per option the views declare (default and description
    from the view), so that a view's own option reaches the Dagster config with no edit here."""
    import pydantic

    fields = {o.name: o for o in declared_options().values() if o.name not in base.model_fields}
    namespace: dict[str, Any] = {
        "__module__": base.__module__, "__qualname__": name, "__doc__": base.__doc__,
        "__annotations__": {n: type(o.default) for n, o in fields.items()},
        **{n: pydantic.Field(default=o.default, description=o.help) for n, o in fields.items()},
    }
    return type(name, (base,), namespace)


#: The feature store resource: :class:`_FeatureStoreConfig` and the views' options.
FeatureStoreResource = with_view_options(_FeatureStoreConfig, "FeatureStoreResource")


class ObjectStoreResource(dg.ConfigurableResource):
    """Where the sharded assets (:mod:`assets.sharded`) publish shard objects and index tables.

    Attributes
    ----------
    url : str
        Empty: the local folder ``<feature store root>/objects``. Otherwise an
        ``s3://bucket[/prefix]`` URL (``GTZAN_STORE_URL``), its endpoint and credentials from
        the standard ``AWS_*`` variables of the process that runs the step, never from run config.
    """

    url: str = ""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse a malformed URL before any step runs, and, in a run of a persistent instance
        (run config from whoever reaches the UI), a URL outside the deployment's
        ``GTZAN_STORE_URL``: the step writes there with the deployment's credentials."""
        self.check_url()
        instance = context.instance
        if not self.url or context.run is None or instance is None or instance.is_ephemeral:
            return
        from pipelines.settings import Settings

        allowed = Settings.from_env().store_url
        if allowed is None or (self.url.rstrip("/") != allowed and not self.url.startswith(allowed + "/")):
            raise ParameterError(f"resources.objects.config.url {self.url!r} is outside the deployment's "
                                 f"GTZAN_STORE_URL ({allowed or 'unset'})")

    def check_url(self) -> None:
        """Raise ParameterError (one line) unless ``url`` is empty or an ``s3://bucket[/prefix]`` URL."""
        if not self.url:
            return
        from feature_store.engine.storage.s3 import parse_s3_url

        try:
            parse_s3_url(self.url)
        except ParameterError as exc:
            raise ParameterError(f"resources.objects.config.url: {exc}") from None

    def location(self, *, store_root: str | os.PathLike[str]) -> str:
        """``url``, or the folder ``objects`` under ``store_root`` when it is empty."""
        self.check_url()
        return self.url.rstrip("/") if self.url else str(Path(store_root) / "objects")

    def storage(self, *, store_root: str | os.PathLike[str]) -> Any:
        """The :class:`feature_store.engine.storage.Storage` at :meth:`location`."""
        from feature_store.engine.storage import open_storage

        return open_storage(self.location(store_root=store_root))


class ModelStoreResource(dg.ConfigurableResource):
    """Trains, saves and loads the ``.keras`` models; writes the reports.

    Attributes
    ----------
    root : str
        Model store root (``<root>/<view>-<params hash>/<model>/clip-NNs/seed-S/current/``).
    report_dir : str
        Where the evaluation report (Markdown, and the figures the report writes) goes.
    """

    root: str
    report_dir: str

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse a run whose model root or report folder is outside the deployment's roots."""
        _check_run_paths(context, "models", {"root": self.root, "report_dir": self.report_dir})

    def store(self) -> ModelStore:
        return ModelStore(self.root)

    def train(
        self,
        *,
        features: FeatureStoreResource,
        model: str,
        clip_seconds: int,
        epochs: int,
        seed: int,
        scheme: str,
        batch_size: int,
    ) -> Any:
        """Train one model of any family on one clip length and publish the run in the store.

        The family's config takes the seed and scheme, and the epochs and batch size where it
        has them. Returns the run's :class:`training.record.RunRecord` (see
        :func:`training.runner.train_model`). May import TensorFlow: call it only in asset bodies.
        """
        import dataclasses

        from training.families import get_family
        from training.train import train_model

        config_type = get_family(model).config_type
        wanted = {"epochs": epochs, "seed": seed, "scheme": scheme, "batch_size": batch_size}
        config = config_type(**{f.name: wanted[f.name] for f in dataclasses.fields(config_type) if f.name in wanted})
        return train_model(
            store_root=features.root,
            model_root=self.root,
            model=model,
            clip_seconds=clip_seconds,
            params=features.params(),
            config=config,
        )

    def train_probes(
        self,
        *,
        features: FeatureStoreResource,
        classifier: str,
        clip_seconds: int,
        seeds: list[int],
        scheme: str,
    ) -> list[Any]:
        """Train a probe (a vector classifier on musicnn embeddings) per seed on one clip length.

        Returns each run's :class:`training.record.RunRecord`, published in this model store
        beside the Keras models, so that :meth:`runs` and the report list them.
        """
        from training.runner import train_seeds

        config = ProbeConfig(classifier=classifier, embedding_model=features.embedding_model, scheme=scheme)
        return train_seeds(
            model=config.declaration(),
            seeds=seeds,
            config=config,
            store_root=features.root,
            model_root=self.root,
            clip_seconds=clip_seconds,
            params=features.params(),
        )

    def load(self, *, params: FeatureParams, model: str, clip_seconds: int, seed: int = 0) -> Any:
        """Load a trained model from its ``.keras`` file (``safe_mode=True``)."""
        from training.train import load_model

        run = self.store().current(params=params, model=model, clip_seconds=clip_seconds, seed=seed)
        return load_model(run / "model.keras")

    def runs(self, *, params_hash: str | None = None) -> list[Any]:
        """Every published run (:class:`training.record.RunRecord`), optionally only those of one params hash."""
        return self.store().find(params_hash=params_hash)
