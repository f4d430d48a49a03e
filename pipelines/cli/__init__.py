"""The ``gtzan`` command line: a thin layer over ``feature_store``, ``training`` and the pipeline.

Every command calls the same library functions as the Dagster assets and writes the same
stores, placed by the settings object (:class:`pipelines.settings.Settings`: the
``GTZAN_*`` variables, overridden by the command's flags). One module per command group:

==============  ===========================================================
module          commands
==============  ===========================================================
``group``       the ``gtzan`` group and its one-line errors
``options``     shared options; the flags that override settings
``workspace``   :class:`Workspace`, what every command receives
``demo``        ``gtzan demo``
``ingest``      ``gtzan ingest``
``features``    ``gtzan features build|describe|query``
``train``       ``gtzan train``
``report``      ``gtzan report``
``predict``     ``gtzan predict``
``ui``          ``gtzan ui``
``run``         ``gtzan run`` (what ``make run`` does)
==============  ===========================================================

The package starts fast: Dagster, TensorFlow and the heavier libraries are imported inside
the command that needs them, never at import time.
"""

from pipelines.cli.demo import demo_command
from pipelines.cli.features import features_group
from pipelines.cli.ingest import ingest_command
from pipelines.cli.group import EXIT_FAILURE, EXIT_USAGE, CLIError, main
from pipelines.cli.predict import predict_command
from pipelines.cli.report import report_command
from pipelines.cli.run import run_command
from pipelines.cli.train import train_command
from pipelines.cli.ui import ui_command
from pipelines.cli.workspace import Workspace

for _command in (demo_command, ingest_command, features_group, train_command, report_command, predict_command,
                 ui_command, run_command):
    main.add_command(_command)

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CLIError", "Workspace", "main"]
