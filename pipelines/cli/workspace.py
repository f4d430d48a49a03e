"""The workspace every ``gtzan`` command works in: the settings, the resolved stores, the params.

A command receives one :class:`Workspace` (see :func:`pipelines.cli.options.pass_workspace`),
built from :meth:`Settings.from_env` with the command's flags applied, instead of loose
``(mode, dtype, store_root, ...)`` arguments. Stores are made here, so that a command names
a view (``ws.view_store("mel")``) and not the class that stores it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from feature_store.errors import GTZANError
from feature_store.params import FeatureParams
from pipelines.settings import Settings

#: The project checkout this package was imported from.
PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class AudioRoot:
    """The folder a command ingests or builds from.

    Attributes
    ----------
    path : Path
        The folder given, ``$GTZAN_DIR``, or the demo corpus.
    is_demo : bool
        Whether it is the synthetic demo corpus.
    """

    path: Path
    is_demo: bool


@dataclasses.dataclass(frozen=True)
class Workspace:
    """Settings, the resolved store folders and the feature parameters of one command.

    Attributes
    ----------
    settings : Settings
        The environment's settings with the command's flags applied.
    store_root, model_root, report_root : Path
        The feature store, model store and report folders.
    params : FeatureParams
        The feature parameters of ``settings.mode`` and ``settings.dtype``, which name the store.
    view_values : dict
        Values of the views' own options that no setting holds (their flags).
    """

    settings: Settings
    store_root: Path
    model_root: Path
    report_root: Path
    params: FeatureParams
    view_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Workspace:
        """The workspace of ``settings``.

        Raises
        ------
        ParameterError
            An unknown sampling mode or dtype.
        """
        return cls(
            settings=settings,
            store_root=settings.store_root,
            model_root=settings.model_root,
            report_root=settings.report_root,
            params=FeatureParams(mode=settings.mode, dtype=settings.dtype),  # type: ignore[arg-type]
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> Workspace:
        """The workspace of the environment's settings, with ``overrides`` (None: not overridden)."""
        return cls.from_settings(Settings.from_env(environ).replace(**overrides))

    def with_settings(self, **changes: Any) -> Workspace:
        """This workspace with some settings changed (e.g. another ``embedding_model``)."""
        return dataclasses.replace(Workspace.from_settings(self.settings.replace(**changes)),
                                   view_values=self.view_values)

    def with_view_values(self, values: Mapping[str, Any]) -> Workspace:
        """This workspace with values of the views' own options that no setting holds."""
        return dataclasses.replace(self, view_values={**self.view_values, **values}) if values else self

    def view_options(self) -> Any:
        """The options the views read (:class:`feature_store.engine.view.ViewOptions`): the
        mode, every declared option the settings hold, and :attr:`view_values`."""
        from feature_store.engine.view import ViewOptions
        from feature_store.views import declared_options

        s = self.settings
        held = {name: getattr(s, name) for name in declared_options() if hasattr(s, name)}
        return ViewOptions(mode=s.mode, **{**held, **self.view_values})

    def view_store(self, view: str = "mel") -> Any:
        """The store of a feature view (:class:`feature_store.engine.store.ViewStore`) with
        this workspace's options. Nothing is read yet.

        Raises
        ------
        ParameterError
            An unknown view (the message names the valid ones).
        """
        from feature_store.engine.store import ViewStore
        from feature_store.views import get_view

        return ViewStore(self.store_root, get_view(view, self.view_options()))

    def model_store(self) -> Any:
        """The model store (:class:`training.train.ModelStore`)."""
        from training.train import ModelStore

        return ModelStore(self.model_root)

    def _recorded_root(self) -> Path | None:
        """The audio folder the store's last ingest recorded, when it is still there."""
        from feature_store.tables import recorded_genre_root

        root = recorded_genre_root(self.store_root)
        return root if root is not None and root.is_dir() else None

    def audio_root(self, audio_dir: Path | None = None, *, write_demo: bool) -> AudioRoot:
        """The folder to ingest or build from: ``audio_dir``, ``$GTZAN_DIR``, for a build the
        folder the store's ingest recorded, or the demo corpus.

        Parameters
        ----------
        write_demo : bool
            With neither folder, write the demo corpus if it is missing (else fail).

        Raises
        ------
        GTZANError
            No folder is given and there is no demo corpus, with ``write_demo`` False.
        """
        chosen = audio_dir or self.settings.audio_dir
        if chosen is not None:
            return AudioRoot(Path(chosen).expanduser(), False)
        demo = self.settings.demo_root
        if not write_demo and (recorded := self._recorded_root()) is not None:
            return AudioRoot(recorded, False)
        if not (demo / "genres_original").is_dir():
            if not write_demo:
                raise GTZANError(
                    f"no audio folder given, $GTZAN_DIR is unset and there is no demo corpus at {demo}; "
                    "run `gtzan demo` or `gtzan ingest` first, or pass the folder you ingested"
                )
            from feature_store.demo import write_demo_corpus

            click.echo(f"GTZAN_DIR is unset: writing the synthetic demo corpus to {demo}", err=True)
            s = self.settings
            write_demo_corpus(demo, songs_per_genre=s.demo_songs_per_genre, duration=s.demo_seconds, seed=s.demo_seed)
        return AudioRoot(demo, True)


def project_root() -> Path:
    """The folder holding ``workspace.yaml``: the working directory or the project checkout.

    Raises
    ------
    GTZANError
        Neither holds one.
    """
    for candidate in (Path.cwd(), PROJECT_DIR):
        if (candidate / "workspace.yaml").is_file():
            return candidate
    raise GTZANError("no workspace.yaml here or in the project checkout; run gtzan from the project folder")


#: The instance configuration of one machine, relative to the project root; it is copied into
#: ``$DAGSTER_HOME``. Not at the root: ``dagster dev`` warns that a ``dagster.yaml`` in the
#: folder it starts in "will not be used" when ``DAGSTER_HOME`` is another folder.
INSTANCE_YAML = Path("deploy") / "dagster.yaml"


def dagster_home(root: Path) -> Path:
    """``$DAGSTER_HOME``, else ``.dagster_home`` in the project ``root``: created, with the
    project's instance configuration (:data:`INSTANCE_YAML`) as its ``dagster.yaml`` when it
    has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or root / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (root / INSTANCE_YAML).exists():
        shutil.copyfile(root / INSTANCE_YAML, home / "dagster.yaml")
    return home
