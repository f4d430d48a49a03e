"""The ``gtzan`` group and its one-line errors.

Errors that the user can fix (a missing folder, an unknown genre or clip length, a model
that has not been trained, an unreadable file) print one line, ``gtzan: error: ...``, on
stderr and exit non-zero: 2 for a bad argument, 1 for anything else. ``GTZAN_DEBUG=1``
shows the traceback instead.
"""

from __future__ import annotations

from typing import Any

import click

from pipelines import settings

#: Exit code of a failure (a store not built, a model not trained, files that cannot be read).
EXIT_FAILURE = 1
#: Exit code of a bad argument (unknown genre, clip length or model, a missing folder).
EXIT_USAGE = 2


class CLIError(click.ClickException):
    """An error shown as one line, ``gtzan: error: <message>``, with an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"gtzan: error: {self.format_message()}", err=True)


def one_line(text: str) -> str:
    """``text`` with its whitespace, newlines included, collapsed to single spaces."""
    return " ".join(str(text).split())


def _convert(exc: BaseException) -> CLIError | None:
    """The one-line error for ``exc``, or None if it is not an error the user can fix."""
    from feature_store.errors import GTZANError, ParameterError

    if isinstance(exc, CLIError):
        return exc
    if isinstance(exc, click.UsageError):
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        return CLIError(one_line(exc.format_message()) + hint, EXIT_USAGE)
    if isinstance(exc, ParameterError):
        return CLIError(one_line(str(exc)), EXIT_USAGE)
    if isinstance(exc, GTZANError):
        return CLIError(one_line(str(exc)), EXIT_FAILURE)
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
        name = f"{exc.filename}: " if exc.filename else ""
        return CLIError(one_line(f"{name}{exc.strerror or exc}"), EXIT_FAILURE)
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
        if settings.debug():
            return exc
        converted = _convert(exc)
        return converted if converted is not None else exc


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
      gtzan train                  train the compact models on 5 s clips
      gtzan report                 write the evaluation report
      gtzan predict song.mp3       the genre of any audio file
      gtzan run                    all of it as Dagster runs (what `make run` does)
    """
