"""The ``gtzan`` command line: a thin layer over ``feature_store`` and ``training``.

Every subcommand calls the same library functions as the Dagster assets and writes the
same stores, placed by the ``GTZAN_*`` environment variables of :mod:`pipelines.settings`.

The module starts fast: Dagster, TensorFlow and the heavier libraries are imported inside
the subcommand that needs them, never at import time.

Errors that the user can fix (a missing folder, an unknown genre or clip length, a model
that has not been trained, an unreadable file) print one line, ``gtzan: error: ...``, on
stderr and exit non-zero: 2 for a bad argument, 1 for anything else. ``GTZAN_DEBUG=1``
shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from pipelines import settings

#: Exit code of a failure (a store not built, a model not trained, files that cannot be read).
EXIT_FAILURE = 1
#: Exit code of a bad argument (unknown genre, clip length or model, a missing folder).
EXIT_USAGE = 2
#: Models ``gtzan train`` trains when ``--model`` is not given.
DEFAULT_TRAIN_MODELS = ("seed_cnn",)
#: Clip length ``gtzan train`` uses when ``--clip-seconds`` is not given.
DEFAULT_TRAIN_CLIP_SECONDS = (5,)
#: Columns of ``gtzan features query`` shown as a table unless ``--columns`` says otherwise.
TABLE_COLUMNS = ("clip_id", "genre", "segment", "start_seconds", "seed", "fault_filtered", "stratified", "hdf5_row")
#: Rows shown by the table format unless ``--limit`` says otherwise.
TABLE_ROWS = 20
#: Feature views of ``gtzan features``: the mel spectrograms, or the musicnn embeddings.
VIEWS = ("mel", "embeddings")
#: musicnn weights of ``--view embeddings`` (``feature_store.embeddings.MUSICNN_MODELS``).
EMBEDDING_MODELS = ("MSD_musicnn", "MTT_musicnn")
#: Probe names that ``gtzan train --model`` takes: ``probe_<classifier>_<weights>``.
PROBE_CLASSIFIERS = ("logreg", "mlp")
PROBE_WEIGHTS = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}
PROBE_MODELS = tuple(f"probe_{c}_{w}" for c in PROBE_CLASSIFIERS for w in PROBE_WEIGHTS)


# ---------------------------------------------------------------------------------------
# one-line errors
# ---------------------------------------------------------------------------------------
class CLIError(click.ClickException):
    """An error shown as one line, ``gtzan: error: <message>``, with an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"gtzan: error: {self.format_message()}", err=True)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _convert(exc: BaseException) -> CLIError | None:
    """The one-line error for ``exc``, or None if it is not an error the user can fix."""
    from feature_store.errors import GTZANError, ParameterError

    if isinstance(exc, CLIError):
        return exc
    if isinstance(exc, click.UsageError):
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        return CLIError(_one_line(exc.format_message()) + hint, EXIT_USAGE)
    if isinstance(exc, ParameterError):
        return CLIError(_one_line(str(exc)), EXIT_USAGE)
    if isinstance(exc, GTZANError):
        return CLIError(_one_line(str(exc)), EXIT_FAILURE)
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
        name = f"{exc.filename}: " if exc.filename else ""
        return CLIError(_one_line(f"{name}{exc.strerror or exc}"), EXIT_FAILURE)
    return None


class OneLineErrors(click.Group):
    """A click group whose usage and domain errors are one line, not a traceback."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise self._reraise(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, CLIError):
            raise
        except Exception as exc:
            raise self._reraise(exc) from exc

    @staticmethod
    def _reraise(exc: BaseException) -> BaseException:
        if os.environ.get("GTZAN_DEBUG"):
            return exc
        converted = _convert(exc)
        return converted if converted is not None else exc


# ---------------------------------------------------------------------------------------
# shared options and helpers
# ---------------------------------------------------------------------------------------
def _split_values(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in str(v).split(",") if x.strip())
    return out


def _clip_list(values: Iterable[str]) -> list[int]:
    from feature_store.params import validate_clip_seconds

    return sorted({validate_clip_seconds(v) for v in _split_values(values)})


def _progress_enabled(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_option(f: Callable) -> Callable:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show progress bars on stderr (default: when stderr is a terminal).",
    )(f)


def store_option(f: Callable) -> Callable:
    return click.option(
        "--store", "store_root", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Feature store root (default: $GTZAN_STORE_DIR or $GTZAN_DATA_DIR/store).",
    )(f)


def models_option(f: Callable) -> Callable:
    return click.option(
        "--models-dir", "model_root", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Model store root (default: $GTZAN_MODEL_DIR or $GTZAN_DATA_DIR/models).",
    )(f)


def feature_options(f: Callable) -> Callable:
    f = click.option("--dtype", default="float32", show_default=True,
                     help="Storage dtype of the mel store: float32 | float16.")(f)
    f = click.option("--mode", default=None,
                     help="Sampling mode: first (first N s of each song, as the study) | segments "
                          "(every N-s segment). Default: $GTZAN_MODE or first.")(f)
    return f


def view_options(f: Callable) -> Callable:
    f = click.option("--embedding-model", default="MSD_musicnn", show_default=True,
                     type=click.Choice(list(EMBEDDING_MODELS)),
                     help="musicnn weights of the embeddings view: MSD_musicnn (Million Song Dataset tags) "
                          "| MTT_musicnn (MagnaTagATune).")(f)
    f = click.option("--view", default="mel", show_default=True, type=click.Choice(list(VIEWS)),
                     help="Feature view: mel (mel spectrograms) | embeddings (pretrained musicnn "
                          "embeddings of the same clips; needs `pip install --no-deps musicnn==0.1.0`).")(f)
    return f


def _embedding_store(store_root: Path | None, mode: str | None, dtype: str, model: str) -> Any:
    from feature_store.embeddings import EmbeddingStore

    return EmbeddingStore(store_root or settings.store_dir(), model=model, params=_params(mode, dtype))


def _build_hint(clip_seconds: int | None, model: str) -> str:
    clip = f" --clip-seconds {clip_seconds}" if clip_seconds else ""
    emb = "" if model == "MSD_musicnn" else f" --embedding-model {model}"
    return f"`gtzan features build --view embeddings{clip}{emb}`"


def _params(mode: str | None, dtype: str) -> Any:
    from feature_store.params import FeatureParams

    return FeatureParams(mode=mode or settings.mode(), dtype=dtype)  # type: ignore[arg-type]


def _store(store_root: Path | None, mode: str | None, dtype: str) -> Any:
    from feature_store.store import FeatureStore

    return FeatureStore(store_root or settings.store_dir(), params=_params(mode, dtype))


def _audio_root(audio_dir: Path | None, *, write_demo: bool) -> tuple[Path, bool]:
    """The folder to ingest or build from: the argument, ``$GTZAN_DIR`` or the demo corpus."""
    chosen = audio_dir or settings.audio_dir()
    if chosen is not None:
        return Path(chosen).expanduser(), False
    demo = settings.demo_dir()
    if not (demo / "genres_original").is_dir():
        if not write_demo:
            raise CLIError(
                f"no audio folder given, $GTZAN_DIR is unset and there is no demo corpus at {demo}; "
                "run `gtzan demo` or `gtzan ingest` first, or pass the folder you ingested"
            )
        from feature_store.demo import write_demo_corpus

        click.echo(f"GTZAN_DIR is unset: writing the synthetic demo corpus to {demo}", err=True)
        write_demo_corpus(demo)
    return demo, True


def _tqdm_callback(enabled: bool, desc: str, unit: str) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A ``progress(done, total)`` callback drawing a tqdm bar, and a function that closes it."""
    if not enabled:
        return None, lambda: None
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
        bar.update(done - bar.n)

    def close() -> None:
        if state.get("bar") is not None:
            state["bar"].close()

    return update, close


def _tf_log_level() -> None:
    """Quiet TensorFlow's C++ logging (before ``training`` sets its own default), unless asked."""
    if not os.environ.get("GTZAN_DEBUG"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _quiet_tensorflow() -> None:
    """Import TensorFlow with its native start-up chatter on stderr silenced.

    TensorFlow logs from C++ straight to file descriptor 2 while it loads, before any
    Python setting applies. ``TF_CPP_MIN_LOG_LEVEL`` (default here: 3) quiets the rest;
    ``GTZAN_DEBUG=1`` leaves everything as TensorFlow prints it.
    """
    if os.environ.get("GTZAN_DEBUG"):
        return
    _tf_log_level()
    if "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _patches(n: int) -> str:
    return f"{n} musicnn patch{'' if n == 1 else 'es'}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


# ---------------------------------------------------------------------------------------
# the group
# ---------------------------------------------------------------------------------------
EPILOG = (
    "\b\nWhere things live (environment variables, all optional):\n"
    + "\n".join(f"  {name:<17} {meaning}" for name, meaning in settings.ENV_VARS.items())
    + "\n\b\nExit codes: 0 success, 1 failure (missing store, untrained model, unreadable\n"
    "files), 2 bad arguments (unknown genre or clip length, missing folder).\n"
    "GTZAN_DEBUG=1 shows tracebacks.\n"
)


@click.group(cls=OneLineErrors, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gtzan-pipeline", prog_name="gtzan")
def main() -> None:
    """GTZAN genre recognition: build features, train, evaluate and predict.

    Each subcommand runs the same code as the Dagster assets of `make run` and
    writes to the same stores, so its results show up in the pipeline too.

    \b
    A first session:
      gtzan ingest                 catalog the demo corpus (or $GTZAN_DIR)
      gtzan features build         mel spectrograms for 1, 5, 15 and 30 s clips
      gtzan train --epochs 5       train the study's CNN on 5 s clips
      gtzan report                 write the evaluation report
      gtzan predict song.mp3       the genre of any audio file
    """


# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------
@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write into (default: $GTZAN_DATA_DIR/demo).")
@click.option("--songs-per-genre", type=int, default=10, show_default=True, help="Songs of each of the 10 genres.")
@click.option("--seconds", type=float, default=30.0, show_default=True, help="Length of each song.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same bytes).")
def demo(out: Path | None, songs_per_genre: int, seconds: float, seed: int) -> None:
    """Write the synthetic demo corpus (WAV files in the Kaggle GTZAN layout).

    Each genre has its own tempo, rhythm, timbre and harmony; key, tempo, mix
    and noise vary per song. Prints the genres folder, ready for `gtzan ingest`.

    \b
    Example:
      gtzan demo --out data/demo --songs-per-genre 10
    """
    from feature_store.demo import write_demo_corpus

    if not seconds > 0:
        raise CLIError(f"--seconds must be positive, got {seconds}", EXIT_USAGE)
    path = write_demo_corpus(out or settings.demo_dir(), songs_per_genre=songs_per_genre, duration=seconds, seed=seed)
    click.echo(str(path))


# ---------------------------------------------------------------------------------------
# ingest
# ---------------------------------------------------------------------------------------
@main.command()
@click.argument("audio_dir", required=False, type=click.Path(path_type=Path))
@click.option("--layout", default=None,
              help="Expected layout: auto | kaggle | original (default: $GTZAN_LAYOUT or auto).")
@store_option
@progress_option
def ingest(audio_dir: Path | None, layout: str | None, store_root: Path | None, progress: bool | None) -> None:
    """Catalog a GTZAN folder and write the catalog and split tables.

    AUDIO_DIR is a GTZAN copy in the Kaggle layout (genres_original/<genre>/
    <genre>.000NN.wav) or the original one (genres/<genre>/<genre>.000NN.au), or
    its genres folder; default $GTZAN_DIR, else the demo corpus. Every file is
    hashed and decoded; unreadable files are quarantined with a reason.

    \b
    Examples:
      gtzan ingest
      gtzan ingest ~/datasets/gtzan
    """
    from feature_store.ingest import ingest as do_ingest
    from feature_store.splits import summary

    from feature_store.catalog import find_genre_root
    from feature_store.errors import ParameterError

    wanted = layout or settings.layout()
    if wanted not in settings.LAYOUTS:
        raise ParameterError(f"--layout must be one of {list(settings.LAYOUTS)}, got {wanted!r}")
    root, is_demo = _audio_root(audio_dir, write_demo=True)
    found = find_genre_root(root)[1]
    if wanted != "auto" and found != wanted:
        raise ParameterError(f"audio folder {str(root)!r} has the {found!r} layout, but {wanted!r} was asked")
    store_root = store_root or settings.store_dir()
    cb, close = _tqdm_callback(_progress_enabled(progress), "decode", "file")
    try:
        result = do_ingest(root, store_root, progress=cb)
    finally:
        close()
    cat = result.catalog
    n_ok = int((cat["status"] == "ok").sum())
    n_dup = int(cat["duplicate_of"].is_not_null().sum())
    q = result.quarantined
    click.echo(
        f"cataloged {cat.height} files from {result.genre_root} ({result.layout} layout"
        f"{', synthetic demo' if is_demo else ''}): {n_ok} ok, {q.height} quarantined, {n_dup} duplicates"
    )
    for sid, path, reason in q.select("song_id", "path", "reason").iter_rows():
        click.echo(f"  quarantined {path}: {reason}")
    click.echo(f"catalog  {result.catalog_path}")
    click.echo(f"splits   {result.splits_path}")
    s = summary(result.splits)
    for scheme in s["scheme"].unique(maintain_order=True).to_list():
        parts = s.filter(s["scheme"] == scheme)
        text = ", ".join(f"{p} {n}" for p, n in parts.select("part", "songs").iter_rows())
        click.echo(f"  {scheme:<15} {text}")
    click.echo("next: gtzan features build" + ("" if audio_dir is None else f" {audio_dir}"))


# ---------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------
@main.group(cls=OneLineErrors)
def features() -> None:
    """Build, describe and query the feature store: mel spectrograms or musicnn embeddings.

    `--view embeddings` works on the pretrained musicnn embeddings of the same
    clips (same clip lengths, modes and clip ids) instead of the mel spectrograms.

    \b
    Examples:
      gtzan features build --clip-seconds 5
      gtzan features describe
      gtzan features query --clip-seconds 5 --genre jazz --split test
      gtzan features build --view embeddings --clip-seconds 5
    """


@features.command("build")
@click.argument("audio_dir", required=False, type=click.Path(path_type=Path))
@click.option("--clip-seconds", "clip_seconds", multiple=True, default=("1,5,15,30",), show_default=True,
              help="Clip lengths to build: 1, 5, 15, 30 (repeat or separate with commas).")
@click.option("--workers", type=int, default=None,
              help="Worker processes (default: $GTZAN_WORKERS, or 0 = the CPU count). With --view "
                   "embeddings: decode processes beside the network (default: a quarter of the cores).")
@view_options
@feature_options
@store_option
@progress_option
def features_build(audio_dir: Path | None, clip_seconds: tuple[str, ...], workers: int | None, view: str,
                   embedding_model: str, mode: str | None, dtype: str, store_root: Path | None,
                   progress: bool | None) -> None:
    """Compute mel spectrograms (or musicnn embeddings) and write the HDF5 + Parquet stores.

    One STFT per song, every clip length sliced from it; songs already computed
    are not decoded again. AUDIO_DIR is the folder you ingested (default
    $GTZAN_DIR, else the demo corpus). With --view embeddings, each clip of the
    mel store is embedded by the pretrained musicnn network instead (the mean
    over the 3 s patches inside the clip of its max_pool, mean_pool,
    penultimate and tags layers).

    \b
    Examples:
      gtzan features build --clip-seconds 5
      gtzan features build --clip-seconds 1,5,15,30 --mode segments --workers 8
      gtzan features build --view embeddings --clip-seconds 5,30
    """
    from feature_store.catalog import find_genre_root, resolve_in_root

    lengths = _clip_list(clip_seconds)
    explicit_workers = workers is not None
    if workers is None:
        workers = settings.workers()
    if workers < 0:
        raise CLIError(f"--workers must be 0 (the CPU count) or more, got {workers}", EXIT_USAGE)
    store = _store(store_root, mode, dtype)
    root, _ = _audio_root(audio_dir, write_demo=False)
    genre_root, _ = find_genre_root(root)
    catalog = store.catalog()
    ok = catalog.filter(catalog["status"] == "ok")
    if ok.height:
        first = ok["path"][0]
        if not resolve_in_root(genre_root, first).exists():
            raise CLIError(
                f"{genre_root} does not hold the cataloged files (no {first}); pass the folder you "
                f"ingested, or ingest this one first (`gtzan ingest {root}`)"
            )
    if view == "embeddings":
        _build_embeddings(root, lengths, workers if explicit_workers else 0, embedding_model, mode, dtype,
                          store_root, progress)
        return
    report = store.build(audio_root=root, clip_seconds=lengths, workers=workers or None,
                         progress=_progress_enabled(progress))
    _echo_build(
        f"features {store.store_dir} (mode {store.params.mode}, {store.params.dtype}): "
        f"{len(report.computed)} songs computed, {report.cached} cached, {report.failed.height} failed "
        f"in {report.seconds:.1f} s",
        report,
        store,
    )


def _echo_build(head: str, report: Any, store: Any, detail: Any = lambda info: "") -> None:
    """Print a build's summary line, its failed songs and a line per clip length
    (``detail(info)`` adds to that line)."""
    click.echo(head)
    for sid, reason in report.failed.iter_rows():
        click.echo(f"  failed {sid}: {reason}")
    for c, info in sorted(report.clip_lengths.items()):
        short = len(info.get("skipped_short", []))
        click.echo(
            f"  {c:>2} s  {info['status']:<9} {info['clips']} clips of {info['songs']} songs"
            + detail(info)
            + (f", {short} songs too short" if short else "")
            + f"  {store.clip_dir(c) / 'current' / 'index.parquet'}"
        )


def _build_embeddings(root: Path, lengths: list[int], workers: int, model: str, mode: str | None, dtype: str,
                      store_root: Path | None, progress: bool | None) -> None:
    """``gtzan features build --view embeddings``: embed what is missing, write the stores."""
    from feature_store.embeddings import musicnn as mn

    emb = _embedding_store(store_root, mode, dtype, model)
    mn.weights_folder(model)  # the install command, before anything is decoded
    _quiet_tensorflow()
    report = emb.build(audio_root=root, clip_seconds=lengths, workers=workers or None,
                       progress=_progress_enabled(progress))
    def detail(info: dict) -> str:
        ms = info.get("embed_ms_per_clip")
        return f", {_patches(int(info['patches_per_clip']))} per clip" + (f", {ms:.0f} ms per clip" if ms is not None else "")

    _echo_build(
        f"embeddings {emb.store_dir} ({model}, weights {report.weights_sha256[:12]}, mode {emb.params.mode}): "
        f"{len(report.computed)} songs embedded, {report.cached} cached, {report.failed.height} failed "
        f"in {report.seconds:.1f} s",
        report,
        emb,
        detail,
    )


def _other_stores(root: Path) -> str:
    found = []
    for reg in sorted((root / "features").glob("mel-*/registry.json")):
        try:
            mode = json.loads(reg.read_text())["params"].get("mode")
            dtype = json.loads(reg.read_text())["params"].get("dtype")
        except (ValueError, KeyError, OSError):
            continue
        found.append(f"{reg.parent.name} (--mode {mode} --dtype {dtype})")
    return f"; stores under {root}: {', '.join(found)}" if found else ""


def _other_embedding_stores(root: Path) -> str:
    found = []
    for reg in sorted((root / "features").glob("emb-*/registry.json")):
        try:
            doc = json.loads(reg.read_text())
            model, mode, built = doc["model"], doc["params"].get("mode"), sorted(doc.get("clip_lengths", {}), key=int)
        except (ValueError, KeyError, OSError, AttributeError):
            continue
        found.append(f"{reg.parent.name} (--embedding-model {model} --mode {mode}; {', '.join(built)} s)")
    return f"; embedding stores under {root}: {', '.join(found)}" if found else ""


def _describe_embeddings(as_json: bool, model: str, mode: str | None, dtype: str, store_root: Path | None) -> None:
    from feature_store.errors import StoreError

    emb = _embedding_store(store_root, mode, dtype, model)
    try:
        reg = emb.describe()
    except StoreError as exc:
        raise CLIError(f"{exc}; from the command line: {_build_hint(None, model)}{_other_embedding_stores(emb.root)}") \
            from exc
    if as_json:
        click.echo(json.dumps(reg, indent=2, sort_keys=True))
        return
    p, cat, inp = reg["params"], reg.get("catalog", {}), reg.get("input", {})
    click.echo(f"store       {emb.store_dir}")
    click.echo(f"model       {reg['model']}, weights sha256 {reg.get('weights_sha256')}")
    click.echo(f"weights     {reg.get('weights_package')} in {reg.get('weights_folder')}")
    click.echo(f"hash        {reg.get('embedding_hash')} (embedding code v{reg.get('embedding_code_version')}, "
               f"package {reg.get('package_version')})")
    click.echo(f"clips       mode={p.get('mode')}, as the mel store {reg.get('params_hash')} "
               f"(sr={p.get('sr')} hop_length={p.get('hop_length')})")
    click.echo(f"input       {inp.get('sr')} Hz, n_fft {inp.get('n_fft')}, hop {inp.get('hop_length')}, "
               f"{inp.get('n_mels')} mels, {inp.get('log')}; {inp.get('clip')}")
    click.echo("layers      " + ", ".join(f"{k} {v}" for k, v in reg.get("layers", {}).items()))
    click.echo(f"catalog     {emb.catalog_path}: {cat.get('files')} files, {cat.get('ok')} ok, "
               f"{cat.get('quarantined')} quarantined, {len(cat.get('feature_failures', []))} failures")
    click.echo(f"updated     {reg.get('updated_at')}")
    for c in sorted(reg.get("clip_lengths", {}), key=int):
        info = reg["clip_lengths"][c]
        cur = emb.clip_dir(int(c)) / "current"
        ms = info.get("embed_ms_per_clip")
        click.echo(f"{int(c):>2} s clips  {info.get('clips')} clips of {info.get('songs')} songs, "
                   f"{_patches(int(info.get('patches_per_clip', 0)))} per clip, {info.get('bytes', 0) / 1e6:.1f} MB"
                   + (f", {ms:.0f} ms per clip" if ms is not None else "") + f", built {info.get('created_at')}")
        click.echo(f"    index       {cur / 'index.parquet'}")
        click.echo(f"    embeddings  {cur / 'embeddings.h5'}")


@features.command("describe")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
@view_options
@feature_options
@store_option
def features_describe(as_json: bool, view: str, embedding_model: str, mode: str | None, dtype: str,
                      store_root: Path | None) -> None:
    """Show the store's parameters, counts and file paths.

    The index paths printed here are stable (they go through the `current`
    link), so DuckDB or polars can query them directly. With --view
    embeddings: the musicnn model, the sha256 of its weights, the layers and
    the embeddings.h5 files.

    \b
    Examples:
      gtzan features describe
      gtzan features describe --mode segments --json
      gtzan features describe --view embeddings
    """
    from feature_store.errors import StoreError

    if view == "embeddings":
        _describe_embeddings(as_json, embedding_model, mode, dtype, store_root)
        return
    store = _store(store_root, mode, dtype)
    try:
        reg = store.describe()
    except StoreError as exc:
        raise CLIError(str(exc) + _other_stores(store.root)) from exc
    if as_json:
        click.echo(json.dumps(reg, indent=2, sort_keys=True))
        return
    p = reg["params"]
    cat = reg.get("catalog", {})
    click.echo(f"store      {store.store_dir}")
    click.echo(f"hash       {reg['params_hash']} (feature code v{reg.get('feature_code_version')}, "
               f"package {reg.get('package_version')})")
    click.echo("params     " + " ".join(f"{k}={v}" for k, v in p.items()))
    click.echo(f"catalog    {store.catalog_path}: {cat.get('files')} files, {cat.get('ok')} ok, "
               f"{cat.get('quarantined')} quarantined, {len(cat.get('feature_failures', []))} feature failures")
    click.echo(f"splits     {store.splits_path}")
    click.echo(f"updated    {reg.get('updated_at')}")
    for c in sorted(reg.get("clip_lengths", {}), key=int):
        info = reg["clip_lengths"][c]
        cur = store.clip_dir(int(c)) / "current"
        click.echo(f"{int(c):>2} s clips {info.get('clips')} clips of {info.get('songs')} songs, "
                   f"{info.get('frames')} frames, {info.get('bytes', 0) / 1e6:.1f} MB, built {info.get('created_at')}")
        click.echo(f"    index    {cur / 'index.parquet'}")
        click.echo(f"    mel      {cur / 'mel.h5'}")
        click.echo(f"    summary  {cur / 'summary.parquet'}")


@features.command("query")
@click.option("--clip-seconds", "clip_seconds", required=True, help="Clip length: 1, 5, 15 or 30.")
@click.option("--genre", multiple=True, help="Keep these genres (repeat or separate with commas).")
@click.option("--split", multiple=True, help="Keep these parts of --scheme, e.g. train, test, valid, fold0.")
@click.option("--scheme", default="seed", show_default=True, help="Split scheme: seed | stratified | fault_filtered.")
@click.option("--song", "songs", multiple=True, help="Keep these song ids, e.g. jazz.00003.")
@click.option("--summary", "with_summary", is_flag=True, help="Add the per-band mean/std summary features (mel view).")
@click.option("--layers", default=None,
              help="With --view embeddings: add these layers' values as columns <layer>_NNN "
                   "(comma-separated: max_pool, mean_pool, penultimate, tags).")
@click.option("--columns", default=None, help="Comma-separated columns to output (default: all; a few for tables).")
@click.option("--limit", type=int, default=None, help=f"At most this many rows (table default {TABLE_ROWS}).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default=None,
              help="Output format (default: table on stdout, or from the --output suffix).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of stdout.")
@view_options
@feature_options
@store_option
def features_query(clip_seconds: str, genre: tuple[str, ...], split: tuple[str, ...], scheme: str,
                   songs: tuple[str, ...], with_summary: bool, layers: str | None, columns: str | None,
                   limit: int | None, fmt: str | None, output: Path | None, view: str, embedding_model: str,
                   mode: str | None, dtype: str, store_root: Path | None) -> None:
    """Select clips from the Parquet index: a table, CSV, JSON or Parquet.

    With --view embeddings the index is the embeddings view's (the same clips,
    plus the number of 3 s musicnn patches averaged per clip), and --layers adds
    the embedding values.

    \b
    Examples:
      gtzan features query --clip-seconds 5 --genre jazz --split test
      gtzan features query --clip-seconds 30 --scheme fault_filtered --split test --format csv -o test.csv
      gtzan features query --clip-seconds 5 --summary --format parquet -o clips.parquet
      gtzan features query --view embeddings --clip-seconds 5 --layers tags --format parquet -o tags.parquet
    """
    import polars as pl

    from feature_store.params import validate_clip_seconds

    c = validate_clip_seconds(clip_seconds)
    if limit is not None and limit < 0:
        raise CLIError(f"--limit must be >= 0, got {limit}", EXIT_USAGE)
    if fmt is None:
        if output is None:
            fmt = "table"
        else:
            fmt = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".txt": "table", ".md": "table"}.get(
                output.suffix.lower(), "")
            if not fmt:
                raise CLIError(f"cannot tell the format of {output.name}; add --format csv|json|parquet", EXIT_USAGE)
    kwargs: dict[str, Any] = dict(
        clip_seconds=c,
        genre=_split_values(genre) or None,
        split=_split_values(split) or None,
        scheme=scheme,
        song_ids=_split_values(songs) or None,
    )
    layer_names: list[str] = []
    if view == "embeddings":
        if with_summary:
            raise CLIError("--summary adds the mel view's band statistics; with --view embeddings use --layers",
                           EXIT_USAGE)
        layer_names = _split_values([layers]) if layers else []
        df = _query_embeddings(c, kwargs, layer_names, limit, embedding_model, mode, dtype, store_root)
    else:
        if layers:
            raise CLIError("--layers is for --view embeddings; the mel view has --summary", EXIT_USAGE)
        store = _store(store_root, mode, dtype)
        lf = store.summary(**kwargs) if with_summary else store.clips(**kwargs)
        if limit is not None:
            lf = lf.limit(limit)
        df = lf.collect()
    if columns:
        wanted = _split_values([columns])
        unknown = [col for col in wanted if col not in df.columns]
        if unknown:
            raise CLIError(f"unknown column(s) {unknown}; columns are {df.columns}", EXIT_USAGE)
        df = df.select(wanted)
    if fmt == "table":
        total = df.height
        shown = df.head(limit if limit is not None else TABLE_ROWS)
        if not columns:
            cols = [col for col in TABLE_COLUMNS if col in shown.columns]
            if with_summary:
                cols += [col for col in ("mean_000", "mean_064", "std_000") if col in shown.columns]
            if view == "embeddings":
                cols += ["patches"] + [col for name in layer_names for col in (f"{name}_000", f"{name}_001")]
            shown = shown.select(cols)
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                       tbl_formatting="ASCII_MARKDOWN", fmt_str_lengths=80, tbl_width_chars=400):
            text = str(shown) if shown.height else "(no clips match)"
        more = f" (showing {shown.height}; all of them: --format csv -o clips.csv)" if shown.height < total else ""
        text += f"\n{_plural(total, 'clip')}{more}\n"
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text)
            click.echo(f"wrote {_plural(total, 'clip')} to {output}", err=True)
        return
    if fmt == "parquet":
        if output is None:
            stream = sys.stdout.buffer
            if sys.stdout.isatty():
                raise CLIError("Parquet is binary: write it to a file with -o clips.parquet, or pipe it", EXIT_USAGE)
            df.write_parquet(stream)
            stream.flush()
        else:
            df.write_parquet(output)
    else:
        text = df.write_csv() if fmt == "csv" else df.write_json() + "\n"
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text)
    if output is not None:
        click.echo(f"wrote {_plural(df.height, 'clip')} to {output}", err=True)


def _query_embeddings(c: int, kwargs: dict[str, Any], layer_names: list[str], limit: int | None, model: str,
                      mode: str | None, dtype: str, store_root: Path | None) -> Any:
    """The embeddings view's clips of ``gtzan features query``, with the ``layer_names`` values as columns."""
    import polars as pl

    from feature_store.errors import StoreError

    emb = _embedding_store(store_root, mode, dtype, model)
    try:
        if not layer_names:
            lf = emb.clips(**kwargs)
            return (lf.limit(limit) if limit is not None else lf).collect()
        t = emb.tensors(layers=layer_names, **kwargs)
    except StoreError as exc:
        if c in emb.available_clip_seconds():
            raise
        raise CLIError(f"{exc}; from the command line: {_build_hint(c, model)}{_other_embedding_stores(emb.root)}") \
            from exc
    from feature_store.embeddings.musicnn import LAYERS

    names = [f"{name}_{k:03d}" for name in t.layers for k in range(LAYERS[name])]
    values = pl.DataFrame(t.x, schema=names, orient="row")
    df = pl.concat([t.index, values], how="horizontal")
    return df.head(limit) if limit is not None else df


# ---------------------------------------------------------------------------------------
# train and report
# ---------------------------------------------------------------------------------------
def _probe_config(name: str, seed: int, scheme: str) -> Any:
    """The :class:`training.probe.ProbeConfig` that a probe name such as ``probe_logreg_msd`` means."""
    from training.probe import ProbeConfig

    _, classifier, weights = name.split("_", 2)
    return ProbeConfig(classifier=classifier, embedding_model=PROBE_WEIGHTS[weights], seed=seed, scheme=scheme)


def _check_model_name(name: str) -> None:
    """Raise a usage error naming every valid model, Keras families and probes alike."""
    from feature_store.errors import ParameterError
    from training.models import MODELS

    if name not in MODELS and name not in PROBE_MODELS:
        raise ParameterError(f"unknown model {name!r}; valid models are {sorted(MODELS)} and the probes on musicnn "
                             f"embeddings {list(PROBE_MODELS)}")


@main.command()
@click.option("--model", "models", multiple=True,
              help=f"Model(s) to train (default: {', '.join(DEFAULT_TRAIN_MODELS)}): a Keras family, or a probe on "
                   f"musicnn embeddings ({', '.join(PROBE_MODELS)}).")
@click.option("--clip-seconds", "clip_seconds", multiple=True,
              help=f"Clip length(s): 1, 5, 15, 30 (default: {DEFAULT_TRAIN_CLIP_SECONDS[0]}).")
@click.option("--epochs", type=int, default=None,
              help="Epoch cap; early stopping may end sooner (default: 5, TrainConfig's). Not used by probes.")
@click.option("--seed", "seeds", multiple=True, help="Seed(s); one run per seed (default: 0).")
@click.option("--scheme", default="seed", show_default=True,
              help="Split scheme whose test part is held out: seed | stratified | fault_filtered.")
@click.option("--batch-size", type=int, default=None,
              help="Batch size (default: 32, TrainConfig's). Not used by probes.")
@feature_options
@store_option
@models_option
@progress_option
def train(models: tuple[str, ...], clip_seconds: tuple[str, ...], epochs: int | None, seeds: tuple[str, ...],
          scheme: str, batch_size: int | None, mode: str | None, dtype: str, store_root: Path | None,
          model_root: Path | None, progress: bool | None) -> None:
    """Train models on the feature store and publish them in the model store.

    Each (model, clip length, seed) is one run with its .keras file, normaliser
    and held-out metrics, exactly as the pipeline's genre_models asset makes.
    A probe (probe_logreg_msd: logistic regression; probe_mlp_msd: one hidden
    layer; _mtt: on MTT_musicnn embeddings) trains on the embeddings view
    (`gtzan features build --view embeddings` first) and is published beside
    the Keras models as plain arrays, as the pipeline's probe_models asset does.
    Run `gtzan report` afterwards to update the report.

    \b
    Examples:
      gtzan train --model seed_cnn --clip-seconds 5 --epochs 5
      gtzan train --model seed_cnn,seed_rnn --clip-seconds 1,5,15,30 --seed 0,1,2
      gtzan train --model probe_logreg_msd --clip-seconds 5
    """
    _tf_log_level()
    from feature_store.errors import StoreError

    names = _split_values(models) or list(DEFAULT_TRAIN_MODELS)
    for n in names:
        _check_model_name(n)
    lengths = _clip_list(clip_seconds) if clip_seconds else list(DEFAULT_TRAIN_CLIP_SECONDS)
    try:
        seed_list = [int(s) for s in _split_values(seeds)] or [0]
    except ValueError as exc:
        raise CLIError(f"--seed takes integers, got {list(seeds)}", EXIT_USAGE) from exc
    params = _params(mode, dtype)
    store_root = store_root or settings.store_dir()
    model_root = model_root or settings.model_dir()
    probes = [n for n in names if n in PROBE_MODELS]
    keras_models = [n for n in names if n not in PROBE_MODELS]
    # clear errors before TensorFlow loads: features or embeddings that are missing
    if keras_models:
        store = _store(store_root, mode, dtype)
        for c in lengths:
            store.generation(c)
    for name in probes:
        cfg = _probe_config(name, 0, scheme)
        emb = _embedding_store(store_root, mode, dtype, cfg.embedding_model)
        for c in lengths:
            try:
                emb.generation(c)
            except StoreError as exc:
                raise CLIError(f"{exc}; from the command line: {_build_hint(c, cfg.embedding_model)}") from exc
    if keras_models:
        _quiet_tensorflow()
    show = _progress_enabled(progress)
    for c in lengths:
        for name in names:
            for seed in seed_list:
                if name in PROBE_MODELS:
                    _train_probe(name, c, seed, scheme, params, store_root, model_root)
                else:
                    _train_keras(name, c, seed, scheme, epochs, batch_size, params, store_root, model_root, show)
    click.echo("next: gtzan report")


def _train_keras(name: str, c: int, seed: int, scheme: str, epochs: int | None, batch_size: int | None, params: Any,
                 store_root: Path, model_root: Path, show: bool) -> None:
    from training.train import TrainConfig, train_model

    overrides: dict[str, Any] = {"scheme": scheme}
    if epochs is not None:
        overrides["epochs"] = epochs
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    cfg = TrainConfig(seed=seed, **overrides)
    click.echo(f"training {name} on {c} s clips, seed {seed}, up to {cfg.epochs} epochs", err=True)
    r = train_model(store_root=store_root, model_root=model_root, model=name, clip_seconds=c,
                    params=params, config=cfg, progress=show)
    m, costs = r["metrics"], r["costs"]
    click.echo(
        f"{name} {c} s seed {seed}: song accuracy {_pct(m['song_accuracy'])}, clip accuracy "
        f"{_pct(m['clip_accuracy'])} on {m['songs']} held-out songs "
        f"({costs['epochs_run']} epochs, {costs['seconds_per_epoch']:.1f} s/epoch)  {r['run_dir']}"
    )


def _train_probe(name: str, c: int, seed: int, scheme: str, params: Any, store_root: Path, model_root: Path) -> None:
    from training.probe import train_probe

    cfg = _probe_config(name, seed, scheme)
    click.echo(f"training {name} on {c} s {cfg.embedding_model} embeddings, seed {seed}", err=True)
    r = train_probe(store_root=store_root, model_root=model_root, clip_seconds=c, params=params, config=cfg)
    m, costs = r["metrics"], r["costs"]
    click.echo(
        f"{name} {c} s seed {seed}: song accuracy {_pct(m['song_accuracy'])}, clip accuracy "
        f"{_pct(m['clip_accuracy'])} on {m['songs']} held-out songs "
        f"({r['train_clips']} training clips, {costs['inference_ms_per_clip']:.0f} ms per clip with musicnn)  "
        f"{r['run_dir']}"
    )


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: $GTZAN_REPORT_DIR or $GTZAN_DATA_DIR/reports).")
@feature_options
@models_option
def report(out_dir: Path | None, mode: str | None, dtype: str, model_root: Path | None) -> None:
    """Write the evaluation report of every trained run.

    The tables are shaped like the study's (models x 1/5/15/30 s): song and clip
    accuracy with a true argmax, the study's own buggy metric, and costs. The
    best model of the report is what `gtzan predict` uses by default.

    \b
    Example:
      gtzan report
    """
    from training.report import best_run, write_report
    from training.train import ModelStore

    params = _params(mode, dtype)
    model_root = model_root or settings.model_dir()
    runs = [r for r in ModelStore(model_root).runs() if r.get("params_hash") == params.hash()]
    if not runs:
        raise CLIError(
            f"no trained model under {Path(model_root).resolve()} for features {params.hash()} "
            f"(mode {params.mode}); train one first (`gtzan train`)"
        )
    path = write_report(runs, out_dir or settings.report_dir())
    best = best_run(runs)
    click.echo(f"report of {_plural(len(runs), 'run')}: {path}")
    if Path(path).with_suffix(".html").exists():
        click.echo(f"as HTML: {Path(path).with_suffix('.html')}")
    if best:
        click.echo(f"best model: {best['model']} at {best['clip_seconds']} s "
                   f"(song accuracy {_pct(best['song_accuracy'])})")


# ---------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", default=None,
              help="Model name, a Keras family or a probe such as probe_logreg_msd (default: the best model of "
                   "the report).")
@click.option("--clip-seconds", "clip_seconds", default=None, help="Clip length of the model: 1, 5, 15 or 30.")
@click.option("--seed", type=int, default=None, help="Seed of the run (default: its best seed).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A run folder (holding model.keras) instead of choosing from the model store.")
@click.option("--hop", "hop_seconds", type=float, default=None,
              help="Seconds between window starts (default: the clip length, no overlap).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with per-window probabilities.")
@click.option("--strict", is_flag=True, help="Exit 1 if any file fails (default: only if every file fails).")
@feature_options
@models_option
@progress_option
def predict(files: tuple[Path, ...], model: str | None, clip_seconds: str | None, seed: int | None,
            run_dir: Path | None, hop_seconds: float | None, as_json: bool, strict: bool, mode: str | None,
            dtype: str, model_root: Path | None, progress: bool | None) -> None:
    """Predict the genre of audio files: the top 3 genres of each.

    FILES may be any format libsndfile reads (wav, au, flac, ogg, mp3...), mono
    or stereo, any sample rate and any length. Windows of the model's clip length
    slide over the whole file; the file's probabilities are their mean. A file
    shorter than one window is padded with silence, and the output says so. An
    unreadable file is reported and skipped; the exit code is 1 only when no file
    could be predicted (or any, with --strict).

    \b
    Examples:
      gtzan predict song.mp3
      gtzan predict a.wav b.flac --model seed_rnn --clip-seconds 30
      gtzan predict song.ogg --json > song.json
    """
    _tf_log_level()
    from training.predict import FileFailure, Predictor, choose_run

    if hop_seconds is not None and not hop_seconds > 0:
        raise CLIError(f"--hop must be positive, got {hop_seconds}", EXIT_USAGE)
    if model is not None:
        _check_model_name(model)
    if run_dir is not None:
        if model or clip_seconds or seed is not None:
            raise CLIError("--run names one run; leave out --model, --clip-seconds and --seed", EXIT_USAGE)
        reason = "the run you named"
    else:
        choice = choose_run(
            model_root=model_root or settings.model_dir(),
            model=model,
            clip_seconds=clip_seconds,
            seed=seed,
            params=_params(mode, dtype),
        )
        run_dir, reason = choice.run_dir, choice.reason
    _quiet_tensorflow()
    predictor = Predictor(run_dir)
    info = predictor.describe()
    header = (f"model: {info['model']} on {info['clip_seconds']} s clips, seed {info['seed']} ({reason}; "
              f"held-out song accuracy {_pct(info['song_accuracy'])})")
    if not as_json:
        click.echo(header)

    bar = None
    if _progress_enabled(progress) and len(files) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), desc="predict", unit="file", leave=False, file=sys.stderr)

    def show(res: Any) -> None:
        if bar is not None:
            bar.update()
        if isinstance(res, FileFailure):
            click.echo(f"gtzan: error: {_one_line(res.error)} (skipped)", err=True)
            return
        if as_json:
            return
        chans = {1: "mono", 2: "stereo"}.get(res.source_channels, f"{res.source_channels} channels")
        n = res.window_starts.size
        note = (f"; shorter than one {res.window_seconds} s window: padded with {res.padded_seconds:.1f} s of silence"
                if res.padded else "")
        click.echo(f"{res.path}  ({res.duration:.1f} s, {res.source_sr} Hz, {chans}; "
                   f"{n} window{'s' if n != 1 else ''} of {res.window_seconds} s{note})")
        for g, pr in res.top(3):
            click.echo(f"  {g:<10} {100 * pr:5.1f} %")

    results = predictor.predict_files(files, hop_seconds=hop_seconds, on_result=show)
    if bar is not None:
        bar.close()
    failed = [r for r in results if isinstance(r, FileFailure)]
    if as_json:
        doc = {"model": info, "files": [r.to_dict() for r in results]}
        click.echo(json.dumps(doc, indent=2))
    if failed and (strict or len(failed) == len(results)):
        what = "every file failed" if len(failed) == len(results) else f"{len(failed)} of {len(results)} files failed"
        raise CLIError(what)


# ---------------------------------------------------------------------------------------
# ui
# ---------------------------------------------------------------------------------------
def project_root() -> Path:
    """The folder holding ``workspace.yaml``: the working directory or the checkout of this package."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (candidate / "workspace.yaml").is_file():
            return candidate
    raise CLIError("no workspace.yaml here or in the project checkout; run `gtzan ui` from the project folder")


def _dagster_exe() -> str:
    beside = Path(sys.executable).parent / "dagster"
    if beside.exists():
        return str(beside)
    found = shutil.which("dagster")
    if found is None:
        raise CLIError("the `dagster` command is not installed in this environment; run `make install`")
    return found


@main.command()
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True, help="Port of the web UI.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. The default serves this machine only; 0.0.0.0 opens the UI to the network.")
@click.option("--dry-run", is_flag=True, help="Print the command and its environment instead of starting it.")
def ui(port: int, host: str, dry_run: bool) -> None:
    """Start the Dagster UI (dagster dev) on http://127.0.0.1:PORT.

    Same as `make dev`: it loads workspace.yaml, binds to 127.0.0.1 (unless --host says otherwise), and
    records runs in $DAGSTER_HOME (default: .dagster_home in the project, with
    the project's dagster.yaml, telemetry off). Stop it with Ctrl-C.

    \b
    Examples:
      gtzan ui
      gtzan ui --port 3001
    """
    root = project_root()
    env = dict(os.environ)
    home = Path(env.get("DAGSTER_HOME") or root / ".dagster_home").resolve()
    env["DAGSTER_HOME"] = str(home)
    # the UI's code server runs in the project folder: pin the stores to where the CLI sees them
    env["GTZAN_DATA_DIR"] = str(settings.data_dir().resolve())
    for var in ("GTZAN_DIR", "GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR"):
        if env.get(var, "").strip():
            env[var] = str(Path(env[var]).expanduser().resolve())
    # as `make dev`: quiet TensorFlow's C++ logs and Dagster's notice about its newer `dg` tool
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONWARNINGS", "ignore:Function `dev_command` is superseded")
    cmd = [_dagster_exe(), "dev", "-w", "workspace.yaml", "-h", host, "-p", str(port)]
    if dry_run:
        click.echo(f"cd {root}")
        click.echo(f"DAGSTER_HOME={home} GTZAN_DATA_DIR={env['GTZAN_DATA_DIR']} " + " ".join(cmd))
        return
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (root / "dagster.yaml").exists():
        shutil.copyfile(root / "dagster.yaml", home / "dagster.yaml")
    click.echo(f"starting the Dagster UI on http://{host}:{port} (Ctrl-C stops it)", err=True)
    proc = subprocess.Popen(cmd, cwd=root, env=env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    if code not in (0, -2, -15, 130):
        raise CLIError(f"dagster dev exited with code {code}")


if __name__ == "__main__":
    main()
