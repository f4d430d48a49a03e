"""``gtzan ui``: the Dagster UI (``dagster dev``), as ``make dev`` starts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from pipelines.cli.group import CLIError
from pipelines.cli.options import SettingOption, pass_workspace
from pipelines.cli.workspace import Workspace, dagster_home, project_root


def dagster_exe() -> str:
    """The ``dagster`` command beside this Python, else on the PATH."""
    beside = Path(sys.executable).parent / "dagster"
    if beside.exists():
        return str(beside)
    found = shutil.which("dagster")
    if found is None:
        raise CLIError("the `dagster` command is not installed in this environment; run `make install`")
    return found


@click.command("ui")
@click.option("--port", cls=SettingOption, setting="ui_port", type=click.IntRange(1, 65535), help="Port of the web UI.")
@click.option("--host", cls=SettingOption, setting="ui_host",
              help="Address to bind. The default serves this machine only; 0.0.0.0 opens the UI to the network.")
@click.option("--dry-run", is_flag=True, help="Print the command and its environment instead of starting it.")
@pass_workspace
def ui_command(ws: Workspace, dry_run: bool) -> None:
    """Start the Dagster UI (dagster dev) on http://127.0.0.1:PORT.

    Same as `make dev`: it loads workspace.yaml, binds to 127.0.0.1 (unless --host says otherwise), and
    records runs in $DAGSTER_HOME (default: .dagster_home in the project, with
    the project's deploy/dagster.yaml, telemetry off). Stop it with Ctrl-C.

    \b
    Examples:
      gtzan ui
      gtzan ui --port 3001
    """
    root = project_root()
    s = ws.settings
    # the UI's code server runs in the project folder: pin the stores to where the CLI sees them
    env = {**os.environ, **s.env()}
    # as `make dev`: quiet TensorFlow's C++ logs and Dagster's notice about its newer `dg` tool
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONWARNINGS", "ignore:Function `dev_command` is superseded")
    cmd = [dagster_exe(), "dev", "-w", "workspace.yaml", "-h", s.ui_host, "-p", str(s.ui_port)]
    if dry_run:
        home = Path(os.environ.get("DAGSTER_HOME") or root / ".dagster_home").resolve()
        click.echo(f"cd {root}")
        click.echo(f"DAGSTER_HOME={home} GTZAN_DATA_DIR={env['GTZAN_DATA_DIR']} " + " ".join(cmd))
        return
    env["DAGSTER_HOME"] = str(dagster_home(root))
    click.echo(f"starting the Dagster UI on http://{s.ui_host}:{s.ui_port} (Ctrl-C stops it)", err=True)
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
