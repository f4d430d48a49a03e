"""``python -m pipelines.cli``: the ``gtzan`` command."""

from pipelines.cli import main

main(prog_name="gtzan")
