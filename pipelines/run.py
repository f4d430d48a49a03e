"""``python -m pipelines.run [options]``: the same as ``gtzan run [options]``.

The sequence of runs itself is :mod:`pipelines.sequence` (re-exported here); this module is only
the command's second entry point, so that the CLI and the sequence do not import each other.
"""

from __future__ import annotations

import sys

from pipelines.sequence import RunFailedError, plan_runs, refuse_leaking_splits, run_all

__all__ = ["RunFailedError", "main", "plan_runs", "refuse_leaking_splits", "run_all"]


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.run ARGS``: the same as ``gtzan run ARGS``."""
    from pipelines.cli import main as gtzan

    return gtzan.main(["run", *(sys.argv[1:] if argv is None else argv)], prog_name="gtzan")


if __name__ == "__main__":
    sys.exit(main())
