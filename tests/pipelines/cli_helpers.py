"""Helpers of the CLI tests: run ``gtzan`` in-process with a clean environment (a module with
a unique name: conftest modules are not importable)."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner, Result

from pipelines import cli

GTZAN_VARS = ("GTZAN_DIR", "GTZAN_DATA_DIR", "GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR", "GTZAN_MODE",
              "GTZAN_LAYOUT", "GTZAN_WORKERS", "GTZAN_DEBUG")


def env_for(data: Path, **extra: str) -> dict[str, str | None]:
    """An environment with every GTZAN_* variable unset except the data folder (and ``extra``)."""
    env: dict[str, str | None] = dict.fromkeys(GTZAN_VARS)
    env.update(GTZAN_DATA_DIR=str(data), GTZAN_WORKERS="1", **extra)
    return env


def run(args: list[str], env: dict[str, str | None]) -> Result:
    return CliRunner().invoke(cli.main, [str(a) for a in args], env=env, prog_name="gtzan")


def ok(args: list[str], env: dict[str, str | None]) -> Result:
    r = run(args, env)
    assert r.exit_code == 0, f"gtzan {' '.join(map(str, args))} -> {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception!r}"
    return r


def fails(args: list[str], env: dict[str, str | None], code: int, pattern: str) -> Result:
    """Assert one clear error line on stderr, no traceback, and the exit code."""
    r = run(args, env)
    assert r.exit_code == code, f"expected exit {code}, got {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception!r}"
    assert isinstance(r.exception, SystemExit), f"an exception escaped: {r.exception!r}"
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("gtzan: error: ")]
    assert errors, r.stderr
    assert re.search(pattern, errors[-1]), f"{pattern!r} not in {errors[-1]!r}"
    assert "Traceback" not in r.stderr + r.stdout
    return r
