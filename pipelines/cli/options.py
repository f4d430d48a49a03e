"""Options shared by the ``gtzan`` commands, and how their flags reach the :class:`Workspace`.

A flag that changes a setting (``--mode``, ``--store``, ``--epochs``...) is a
:class:`SettingOption`: it names the :class:`~pipelines.settings.Settings` field it overrides,
and its ``--help`` shows that field's value now (the environment's, or the default). The
command does not receive such flags as arguments: :func:`pass_workspace` hands it one
:class:`~pipelines.cli.workspace.Workspace` with every flag applied.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from pipelines.cli.group import EXIT_USAGE, CLIError
from pipelines.cli.workspace import Workspace

#: Where the setting flags of one command line are gathered (a key of ``click.Context.meta``).
_OVERRIDES = "gtzan.settings"


class SettingOption(click.Option):
    """A flag that overrides the :class:`Settings` field ``setting``.

    Parameters
    ----------
    setting : str
        The field it sets.
    convert : callable, optional
        Turns the flag's value into the field's (e.g. ``"0,1"`` -> ``(0, 1)``); it may raise
        a :class:`ParameterError` or :class:`CLIError`.
    shown : str, optional
        The attribute of Settings that ``--help`` shows as the default (default: ``setting``).
    expose_value : bool
        Also pass the flag's own value to the command (default: only through the workspace).
    """

    def __init__(self, *decls: str, setting: str, convert: Callable[[Any], Any] | None = None,
                 shown: str | None = None, **kwargs: Any) -> None:
        self.setting, self.convert, self.shown = setting, convert, shown or setting
        kwargs.setdefault("expose_value", False)
        super().__init__(*decls, default=None, callback=self._keep, **kwargs)

    def _keep(self, ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value != ():
            ctx.meta.setdefault(_OVERRIDES, {})[self.setting] = self.convert(value) if self.convert else value
        return value

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        from pipelines.settings import Settings

        try:
            value = getattr(Settings.from_env(), self.shown)
        except Exception:  # a bad GTZAN_* variable: the command itself says which, in one line
            return extra
        extra["default"] = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
        return extra


def flag_given(setting: str) -> bool:
    """Whether the command line being run set the :class:`Settings` field ``setting`` with a flag."""
    return setting in click.get_current_context().meta.get(_OVERRIDES, {})


def pass_workspace(f: Callable[..., Any]) -> Callable[..., Any]:
    """Call the command with a :class:`Workspace` first: the environment's settings with the
    command's :class:`SettingOption` flags applied. Put it under the click decorators."""

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        overrides = click.get_current_context().meta.get(_OVERRIDES, {})
        return f(Workspace.from_env(**overrides), *args, **kwargs)

    return command


# ---------------------------------------------------------------------------------------
# lists of values: "--seed 0,1 --seed 2" -> (0, 1, 2)
# ---------------------------------------------------------------------------------------
def split_values(values: Iterable[str]) -> list[str]:
    """Every comma-separated item of ``values``, stripped, empty items dropped."""
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in str(v).split(",") if x.strip())
    return out


def clip_list(values: Iterable[str]) -> tuple[int, ...]:
    """Clip lengths, validated and sorted, from comma-separated values."""
    from feature_store.params import validate_clip_seconds

    return tuple(sorted({validate_clip_seconds(v) for v in split_values(values)}))


def int_list(flag: str, *, least: int = 0, most: int | None = None) -> Callable[[Iterable[str]], tuple[int, ...]]:
    """A converter of comma-separated integers in ``least..most`` whose error names ``flag``
    (``most`` defaults to the largest seed, :data:`pipelines.settings.MAX_SEED`)."""
    from pipelines.settings import MAX_SEED

    top = MAX_SEED if most is None else most

    def convert(values: Iterable[str]) -> tuple[int, ...]:
        try:
            out = tuple(int(s) for s in split_values(values))
        except ValueError as exc:
            raise CLIError(f"{flag} takes integers, got {list(values)}", EXIT_USAGE) from exc
        bad = [v for v in out if not least <= v <= top]
        if bad:
            raise CLIError(f"{flag} {bad[0]} is not in the range {least}..{top}", EXIT_USAGE)
        return out

    return convert


def workers_type() -> click.IntRange:
    """Worker counts: 0 (the default) up to :func:`feature_store.bounds.max_workers`."""
    from feature_store.bounds import max_workers

    return click.IntRange(0, max_workers())


def seed_type() -> click.IntRange:
    """Seeds: 0 up to :data:`pipelines.settings.MAX_SEED` (NumPy and TensorFlow take 32-bit seeds)."""
    from pipelines.settings import MAX_SEED

    return click.IntRange(0, MAX_SEED)


def name_list(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(split_values(values))


# ---------------------------------------------------------------------------------------
# shared options
# ---------------------------------------------------------------------------------------
def progress_option(f: Callable) -> Callable:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show progress bars on stderr (default: when stderr is a terminal).",
    )(f)


def progress_enabled(flag: bool | None) -> bool:
    """``--progress``/``--no-progress``, else whether stderr is a terminal."""
    if flag is not None:
        return flag
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def store_option(f: Callable) -> Callable:
    return click.option(
        "--store", cls=SettingOption, setting="store_dir", shown="store_root",
        type=click.Path(file_okay=False, path_type=Path),
        help="Feature store root ($GTZAN_STORE_DIR, else $GTZAN_DATA_DIR/store).",
    )(f)


def models_dir_option(f: Callable) -> Callable:
    return click.option(
        "--models-dir", cls=SettingOption, setting="model_dir", shown="model_root",
        type=click.Path(file_okay=False, path_type=Path),
        help="Model store root ($GTZAN_MODEL_DIR, else $GTZAN_DATA_DIR/models).",
    )(f)


def feature_options(f: Callable) -> Callable:
    f = click.option("--dtype", cls=SettingOption, setting="dtype",
                     help="Storage dtype of the mel store: float32 | float16.")(f)
    f = click.option("--mode", cls=SettingOption, setting="mode",
                     help="Sampling mode: first (first N s of each song, as the study) | segments "
                          "(every N-s segment); $GTZAN_MODE.")(f)
    return f


def _embedding_model(value: str) -> str:
    from feature_store.embeddings.musicnn import MUSICNN_MODELS

    if value not in MUSICNN_MODELS:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(map(repr, MUSICNN_MODELS))}.")
    return value


def view_options(f: Callable) -> Callable:
    from feature_store.views import VIEWS

    f = click.option("--embedding-model", cls=SettingOption, setting="embedding_model", convert=_embedding_model,
                     help="musicnn weights of the embeddings view: MSD_musicnn (Million Song Dataset tags) "
                          "| MTT_musicnn (MagnaTagATune).")(f)
    f = click.option("--view", default="mel", show_default=True, type=click.Choice(list(VIEWS)),
                     help="Feature view: " + " | ".join(f"{name} ({cls.title[:1].lower()}{cls.title[1:]})"
                                                         for name, cls in VIEWS.items()) + ".")(f)
    return f
