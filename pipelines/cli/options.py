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
#: Where the flags of the views' own options that no setting holds are gathered.
_VIEW_VALUES = "gtzan.view_options"


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
        meta = click.get_current_context().meta
        ws = Workspace.from_env(**meta.get(_OVERRIDES, {})).with_view_values(meta.get(_VIEW_VALUES, {}))
        return f(ws, *args, **kwargs)

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


def output_options(f: Callable) -> Callable:
    """``--format`` and ``-o/--output`` of the commands that print a table of rows."""
    f = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Write to this file instead of stdout.")(f)
    return click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default=None,
                        help="Output format (default: table on stdout, or from the --output suffix).")(f)


def feature_options(f: Callable) -> Callable:
    f = click.option("--dtype", cls=SettingOption, setting="dtype",
                     help="Storage dtype of the mel store: float32 | float16.")(f)
    f = click.option("--mode", cls=SettingOption, setting="mode",
                     help="Sampling mode: first (first N s of each song, as the study) | segments "
                          "(every N-s segment); $GTZAN_MODE.")(f)
    return f


class ViewOptionFlag(click.Option):
    """The flag of an option that a view declares and no setting holds (``--smoothing``): its
    value reaches the views through :meth:`Workspace.with_view_values`."""

    def __init__(self, *decls: str, name: str, **kwargs: Any) -> None:
        self.view_option = name
        kwargs.setdefault("expose_value", False)
        super().__init__(*decls, default=None, callback=self._keep, **kwargs)

    def _keep(self, ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            ctx.meta.setdefault(_VIEW_VALUES, {})[self.view_option] = value
        return value


def _checked(option: Any) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if option.choices is not None and value not in option.choices:
            raise click.BadParameter(f"{value!r} is not one of {', '.join(map(repr, option.choices))}.")
        return value

    return convert


def view_option_flags(f: Callable, *, skip: Iterable[str] = ("dtype",)) -> Callable:
    """A flag per option that a view declares (:func:`feature_store.views.declared_options`),
    but those in ``skip`` (``--dtype`` comes with :func:`feature_options`): a setting's flag
    where the settings hold the option (``--embedding-model``), else a :class:`ViewOptionFlag`
    with the view's default."""
    import dataclasses

    from feature_store.views import declared_options
    from pipelines.settings import Settings

    settings = {fld.name for fld in dataclasses.fields(Settings)}
    for o in reversed(list(declared_options().values())):
        if o.name in skip:
            continue
        kind = type(o.default) if isinstance(o.default, int | float) and not isinstance(o.default, bool) else str
        if o.name in settings:
            f = click.option(o.flag, cls=SettingOption, setting=o.name, convert=_checked(o), type=kind, help=o.help)(f)
        else:
            f = click.option(o.flag, cls=ViewOptionFlag, name=o.name, help=f"{o.help} [default: {o.default}]",
                             type=click.Choice(o.choices) if o.choices else kind)(f)
    return f


def view_options(f: Callable) -> Callable:
    """``--view`` (the registry's views, with their titles) and every view's own options."""
    from feature_store.views import VIEWS

    f = view_option_flags(f)
    f = click.option("--view", default="mel", show_default=True, type=click.Choice(list(VIEWS)),
                     help="Feature view: " + " | ".join(f"{name} ({cls.title[:1].lower()}{cls.title[1:]})"
                                                         for name, cls in VIEWS.items()) + ".")(f)
    return f
