"""What a feature view declares, and the one generic step that every view shares.

A *view* is a small declaration on the store engine (:mod:`feature_store.engine`): its name,
the frozen parameters whose hash names its folder, how one song becomes features (``prepare``,
run in a worker process), how the clips of a song are cut from those features
(``clip_rows``), and the arrays it writes per clip (:class:`ArraySpec`). The engine does the
rest: the per-song cache, the plan, worker processes, generations, locks, the registry, the
Parquet index and the queries.

Two kinds of view exist, by what their cache holds (``cache_scope``):

``"song"``
    ``prepare`` returns one float32 array ``(features, frames)`` of the whole song (the mel
    spectrogram, the timbral frame features); it is cached per content hash and every clip
    length is cut from it cheaply in the main process.
``"clip"``
    ``prepare`` returns an intermediate (musicnn's log-mel) that is not worth caching, and
    ``clip_rows`` is the expensive part (a network, run once per process in the main
    process): the rows of each (song, clip length) are cached.

Frames: every view has its own frame grid (``frame_rate`` frames per second); the clips of
the store are defined once, by :class:`~feature_store.params.FeatureParams` (``sr``,
``hop_length``, ``mode``), and ``view_frame`` maps a clip's start frame into the view's grid.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from feature_store.engine.frames import FrameSpec
from feature_store.errors import ParameterError
from feature_store.params import FeatureParams

#: Row storage of an array: ``row`` chunks hold one clip each (large per-clip arrays that are
#: read a few clips at a time, like spectrograms); ``block`` chunks hold many clips (vectors).
Chunking = Literal["row", "block"]
#: Clips per chunk of a ``block`` array.
BLOCK_ROWS = 256


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """One array a view writes per clip.

    Attributes
    ----------
    name : str
        Dataset name in the HDF5 file (and the Parquet table, if any).
    shape : tuple of int
        Shape of one clip's value.
    dtype : str
        Storage dtype (``float32``, ``float16``).
    chunking : {'row', 'block'}
        One clip per HDF5 chunk, or :data:`BLOCK_ROWS` clips per chunk.
    hdf5 : bool
        Stored in the HDF5 file (queries with ``tensors()`` read it).
    columns : tuple of str, optional
        Also (or only, with ``hdf5=False``) written as a Parquet table ``<name>.parquet``,
        one column per value (``shape`` must then be 1-d), for ``table()`` queries and DuckDB.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    chunking: Chunking = "block"
    hdf5: bool = True
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.columns is not None and (len(self.shape) != 1 or len(self.columns) != self.shape[0]):
            raise ParameterError(f"array {self.name!r}: {len(self.columns)} columns for shape {self.shape}")
        if not self.hdf5 and self.columns is None:
            raise ParameterError(f"array {self.name!r} is stored nowhere: give hdf5=True or columns")


#: Key of a params dataclass field's metadata that makes the field a user option (:func:`option`).
OPTION_KEY = "feature_store.view_option"


def option(help: str, *, name: str | None = None, choices: Sequence[str] | None = None) -> dict[str, Any]:
    """Metadata that makes a field of a view's params dataclass a user option.

    ``dtype: str = dataclasses.field(default="float32", metadata=option("Storage dtype.",
    choices=("float32", "float16")))``: the field becomes the flag ``--dtype`` of ``gtzan features
    build|describe|query|verify`` and a config field of the Dagster feature resource, with no
    edit there.

    Parameters
    ----------
    help : str
        One line for ``--help`` and the Dagster config description.
    name : str, optional
        The option's name when it is not the field's (``embedding_model`` sets ``model``).
    choices : sequence of str, optional
        The values allowed (checked before the params dataclass is made).
    """
    return {OPTION_KEY: {"help": help, "name": name, "choices": tuple(choices) if choices else None}}


@dataclasses.dataclass(frozen=True)
class Option:
    """A user option that a view declares: a field of its params dataclass.

    Attributes
    ----------
    name : str
        The option's name: flag ``--<name with dashes>``, config field, key of :class:`ViewOptions`.
    field : str
        The params field it sets.
    default : Any
        The field's default.
    help : str
        One line for ``--help``.
    choices : tuple of str, optional
        The values allowed.
    """

    name: str
    field: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        """``--embedding-model``."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value``, or a ParameterError naming the choices."""
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"{self.flag} {value!r} is not one of {', '.join(map(repr, self.choices))}")
        return value


def params_options(params_type: type) -> tuple[Option, ...]:
    """The options that the fields of ``params_type`` declare with :func:`option`."""
    out = []
    for f in dataclasses.fields(params_type):
        meta = f.metadata.get(OPTION_KEY)
        if meta is not None:
            out.append(Option(meta["name"] or f.name, f.name, f.default, meta["help"], meta["choices"]))
    return tuple(out)


class ViewOptions(Mapping[str, Any]):
    """User option values, by option name: ``ViewOptions(mode="first", dtype="float16")``.

    ``mode`` (which clips a song gives) is every view's; each other option belongs to the
    views that declare it (:meth:`FeatureView.declared_options`), and a view ignores the
    options it does not declare, so a command line or an asset builds every view the same way.
    Read a value as ``options["dtype"]`` or ``options.dtype``.
    """

    def __init__(self, mode: str = "first", **values: Any) -> None:
        self._values = {"mode": mode, **values}

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):  # noqa: ANN204
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._values:
            raise AttributeError(name)
        return self._values[name]

    def __repr__(self) -> str:
        return f"ViewOptions({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


#: A song's clips at one clip length, as start frames in the view's own frame grid.
Starts = Sequence[int]
#: Per array name, the rows of some clips: ``(clips, *spec.shape)``.
Rows = dict[str, np.ndarray]


class FeatureView(abc.ABC):
    """A feature view: a declaration that the store engine builds and queries.

    Subclasses set the class attributes and implement the abstract methods; see
    ``feature_store/views/_template.py`` for a contributor template.

    Attributes
    ----------
    name : str
        Registry key and ``--view`` value (``mel``); the Dagster asset and check are named
        after it (:mod:`assets.views`).
    title : str
        One line: what the view holds (the first line of the class docstring).
    description : str
        A paragraph for the UI (the rest of the class docstring).
    cache_scope : {'song', 'clip'}
        What the per-song cache holds (module docstring).
    main_process : bool
        ``clip_rows`` must run in the build's own process (a network loaded once); workers
        then only ``prepare``.
    cost_name : str, optional
        Registry key of the measured compute milliseconds per clip (``clip`` scope only).
    opt_in : bool
        Not part of the default pipeline run.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    cache_scope: ClassVar[Literal["song", "clip"]] = "song"
    main_process: ClassVar[bool] = False
    cost_name: ClassVar[str | None] = None
    #: Left out of the default pipeline run (slow, or needs something installed): built on
    #: request only (``make run --with-embeddings``, its own job).
    opt_in: ClassVar[bool] = False
    #: File of a generation that holds the HDF5 arrays (default ``<name>.h5``).
    data_file: ClassVar[str] = ""
    #: Arrays that ``tensors()`` returns when none are named.
    default_arrays: ClassVar[tuple[str, ...]]
    #: The view's frozen params dataclass: it has ``hash()`` and ``clip_params()`` (the
    #: :class:`~feature_store.params.FeatureParams` that define the clips).
    params_type: ClassVar[type]

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.params_type()
        if not isinstance(self.params, self.params_type):
            raise ParameterError(f"params must be a {self.params_type.__name__}, got {type(self.params).__name__}")

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        """``class TimbreView(FeatureView, name="timbre")``."""
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
        if "name" in vars(cls) and not vars(cls).get("data_file"):
            cls.data_file = f"{cls.name}.h5"
        if "__doc__" in vars(cls) and cls.__doc__ and "title" not in vars(cls):
            first, _, rest = inspect.cleandoc(cls.__doc__).partition("\n")
            cls.title = first.rstrip(".")
            cls.description = " ".join(rest.split())

    # -- identity -------------------------------------------------------------------------
    @classmethod
    def declared_options(cls) -> tuple[Option, ...]:
        """The user options of this view beyond ``mode`` (flags, config fields), in order: the
        fields of its params dataclass declared with :func:`option`. A view whose params class
        is not its own (the mel view's :class:`~feature_store.params.FeatureParams`) overrides it."""
        return params_options(cls.params_type)

    @property
    def reads(self) -> tuple[str, ...]:
        """The options that pick this view's store: ``mode`` and the declared ones."""
        return ("mode", *(o.name for o in self.declared_options()))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FeatureView:
        """The view for these user options (those it does not declare are ignored)."""
        values = {o.field: o.check(options[o.name]) for o in cls.declared_options() if o.name in options}
        return cls(cls.params_type(mode=options.get("mode", "first"), **values))

    def options(self) -> ViewOptions:
        """The user options that give this view (inverse of :meth:`from_options`)."""
        return ViewOptions(mode=self.clip_params.mode,
                           **{o.name: getattr(self.params, o.field) for o in self.declared_options()})

    def summary(self, provenance: Mapping[str, Any]) -> str:
        """A few words that tell a store of this view from another (a build's first line)."""
        return ", ".join([f"mode {self.clip_params.mode}", *(f"{k} {str(v)[:12]}" for k, v in provenance.items())])

    def describe_fields(self, registry: Mapping[str, Any]) -> dict[str, str]:
        """Lines of ``gtzan features describe`` that only this view has (label -> text)."""
        return {}

    @property
    def clip_params(self) -> FeatureParams:
        """The parameters that define the clips (``sr``, ``hop_length``, ``mode``)."""
        return self.params.clip_params()

    def hash(self) -> str:
        """Short stable hash of every parameter that changes the stored numbers."""
        return self.params.hash()

    @property
    def folder(self) -> str:
        """Folder of the view's stores under ``<root>/features``: ``<name>-<hash>``."""
        return f"{self.name}-{self.hash()}"

    def cache_folder(self, provenance: Mapping[str, Any]) -> str:
        """Folder of the per-song cache under ``<root>/cache``; views sharing it share entries.

        The default is the store's folder name, plus a digest of the provenance when there is
        one: entries made by other weights are never reused.
        """
        if not provenance:
            return self.folder
        from feature_store.params import digest

        return f"{self.folder}-{digest(dict(provenance))[:8]}"

    def label(self) -> str:
        """What the view's store is called in messages: ``timbre store 1a2b3c (mode 'first')``."""
        return f"{self.name} store {self.hash()} (mode {self.clip_params.mode!r})"

    def provenance(self) -> dict[str, Any]:
        """Facts about what computes the numbers beyond the params (weights' sha256...).

        Called once per build; recorded in the registry and in every HDF5 file, and a stored
        generation whose provenance differs is rebuilt. Raise a StoreError when what is
        needed is not installed.
        """
        return {}

    def to_spec(self) -> tuple[str, dict[str, Any]]:
        """``("module:Class", params as a dict)``: enough for a worker process to rebuild the view
        (:func:`feature_store.engine.plugins.view_from_spec`), a view declared outside this package too."""
        return f"{type(self).__module__}:{type(self).__qualname__}", dataclasses.asdict(self.params)

    # -- geometry: by default the clip geometry's own grid ------------------------------------
    @property
    def sample_rate(self) -> int:
        """Rate the view decodes audio at."""
        return self.clip_params.sr

    @property
    def frame_rate(self) -> float:
        """Frames per second of the view's frame grid."""
        return self.clip_params.sr / self.clip_params.hop_length

    def clip_frames(self, clip_seconds: int) -> int:
        """Frames of one clip in the view's grid."""
        return self.clip_params.clip_frames(clip_seconds)

    def view_frame(self, start_frame: int) -> int:
        """The view-grid frame of a clip starting at ``start_frame`` of the clip geometry."""
        p = self.clip_params
        return int(round(start_frame * p.hop_length / p.sr * self.frame_rate))

    # -- computing --------------------------------------------------------------------------
    @abc.abstractmethod
    def array_specs(self, clip_seconds: int) -> list[ArraySpec]:
        """The arrays written per clip at this clip length."""

    def entry_shape(self) -> tuple[int, ...] | None:
        """Shape of a ``song``-scope cache entry (``(features, frames)`` of the nominal song)."""
        return None

    @abc.abstractmethod
    def prepare(self, y: np.ndarray, *, whole_file: bool = False) -> Any:
        """The song-level features of mono audio ``y`` at :attr:`sample_rate`.

        ``whole_file`` is True for a file of any length (prediction): memory then stays
        bounded by blocks where the view can do it.
        """

    # -- frames of a long stream (prediction in bounded memory): see engine.frames ----------
    @property
    def frame_spec(self) -> FrameSpec | None:
        """How the view frames audio (by default the clip geometry's STFT), or None when it
        cannot compute a stream piece by piece (it does not implement :meth:`frame_chunk`)."""
        if type(self).frame_chunk is FeatureView.frame_chunk:
            return None
        p = self.clip_params
        return FrameSpec(p.sr, p.n_fft, p.hop_length)

    def frame_chunk(self, segment: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """The raw frames ``(values, k)`` of a stretch of padded samples (:func:`~feature_store.
        engine.frames.framed`), and the state the next stretch needs (``state`` starts None)."""
        raise NotImplementedError(f"the {self.name} view does not stream")

    @property
    def needs_peak(self) -> bool:
        """Whether :meth:`finish_frames` needs a statistic of the whole signal (two passes)."""
        return False

    def frame_peak(self, raw: np.ndarray) -> float:
        """The statistic of one stretch's raw frames; the signal's is their maximum."""
        return float(raw.max()) if raw.size else float("-inf")

    def finish_frames(self, raw: np.ndarray, peak: float | None) -> np.ndarray:
        """The entry frames ``(features, k)`` of raw frames, given the whole signal's peak."""
        return raw

    def entry_frames(self, entry: Any) -> int:
        """Frames of a prepared entry (``entry.shape[1]`` for ``(features, frames)`` arrays)."""
        return int(entry.shape[1])

    @abc.abstractmethod
    def clip_rows(self, entry: Any, wanted: Mapping[int, Starts]) -> dict[int, Rows]:
        """The rows of the clips ``wanted`` (clip length -> start frames) of one song.

        Returns, per clip length, each array of :meth:`array_specs` as
        ``(len(starts), *shape)`` float32 values, in the order of the starts.
        """

    # -- records ----------------------------------------------------------------------------
    def index_columns(self, clip_seconds: int) -> dict[str, int]:
        """Constant columns added to the index of a clip length (name -> value)."""
        return {}

    def clip_info(self, clip_seconds: int) -> dict[str, Any]:
        """Constant facts recorded per clip length in the registry and build report."""
        return {}

    def registry_fields(self) -> dict[str, Any]:
        """Fields written when the registry is created (params and hash are added)."""
        return {}

    def build_fields(self, provenance: Mapping[str, Any]) -> dict[str, Any]:
        """Fields refreshed on every build."""
        return dict(provenance)

    def hdf5_attrs(self, clip_seconds: int) -> dict[str, Any]:
        """Attributes of each HDF5 file (beside params, hash, clip length and provenance)."""
        return {}

    def describe_clip(self, info: Mapping[str, Any]) -> str:
        """A few words about one built clip length for ``gtzan features build`` (or '')."""
        return ""

    def file_windows(self, path: Any, *, clip_seconds: int, hop_seconds: float | None = None,
                     arrays: Sequence[str] | None = None, max_seconds: float | None = None) -> Any:
        """The features of windows of ``clip_seconds`` slid over one audio file (prediction).

        See :func:`feature_store.engine.windows.file_windows`, and
        :class:`~feature_store.engine.windows.WindowStream` for batches in bounded memory.
        """
        from feature_store.engine.windows import file_windows

        return file_windows(self, path, clip_seconds=clip_seconds, hop_seconds=hop_seconds, arrays=arrays,
                            max_seconds=max_seconds)

    def default_workers(self) -> int | None:
        """Worker processes of a build when none are asked for (None: the CPU count)."""
        return None

    def before_build(self, *, threads: int | None = None) -> None:
        """Called once in the build's process before any work (load-time settings)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.params == self.params  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.params))


def window_rows(entry: np.ndarray, starts: Starts, frames: int) -> np.ndarray:
    """``entry[:, s : s + frames]`` for each start, stacked: ``(len(starts), features, frames)``.

    Raises
    ------
    ParameterError
        If a window runs out of the entry.
    """
    if any(s < 0 or s + frames > entry.shape[1] for s in starts):
        raise ParameterError(f"a clip of {frames} frames at {list(starts)} exceeds the {entry.shape[1]} frames")
    if not len(starts):
        return np.empty((0, entry.shape[0], frames), dtype=entry.dtype)
    return np.stack([entry[:, s : s + frames] for s in starts])
