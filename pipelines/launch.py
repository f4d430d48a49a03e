"""Launching runs through the instance and the code location, as ``dagster job launch`` does.

A :class:`CodeLocationLauncher` loads the code location of ``workspace.yaml`` in a code
server (Dagster's gRPC server, one process for the whole sequence) and creates each run from
the location's job, with its remote job origin and its partition tags. The runs are therefore
the same as those the UI launches: listed under their job, carrying their origin,
re-executable. Then either

* :meth:`~CodeLocationLauncher.execute_here` executes the run in this process, as a run
  worker does (``dagster api execute_run`` calls the same ``execute_run`` on the job
  reconstructed from the run's code origin): one process, TensorFlow imported once; or
* :meth:`~CodeLocationLauncher.launch_and_wait` hands it to the instance's run launcher
  (with the default launcher: a new run worker process started by the code server, as for
  a run launched from the UI) and waits for it to finish.

The calls are those of Dagster's own ``dagster job launch`` command
(``dagster/_cli/job.py``: ``execute_launch_command`` and ``_create_run``) and run worker,
which Dagster does not export as public API; they live in this one module so that a Dagster
upgrade touches nothing else. A launched run goes to ``instance.launch_run`` rather than
``submit_run``: the caller waits for each run, so queueing it for a daemon
(``QueuedRunCoordinator``, the default) would only add the daemon's polling delay, or wait
forever when no daemon runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from feature_store.errors import GTZANError

#: Seconds between two looks at a launched run's status.
POLL_SECONDS = 0.25


class CodeLocationError(GTZANError):
    """The workspace does not hold exactly one code location, or it failed to load."""


class CodeLocationLauncher:
    """Runs of the one code location of a workspace file, launched by the instance's run launcher.

    Use :func:`code_location_launcher` to make one.
    """

    def __init__(self, instance: dg.DagsterInstance, context: Any) -> None:
        from dagster._core.remote_representation.code_location import GrpcServerCodeLocation

        self.instance = instance
        self._context = context
        names = context.code_location_names
        if len(names) != 1:
            raise CodeLocationError(f"expected one code location in the workspace, found {names}")
        error = context.get_code_location_error(names[0])
        if error is not None:
            raise CodeLocationError(f"code location {names[0]} failed to load: {error.message.strip()}")
        self.location = context.get_code_location(names[0])
        if not isinstance(self.location, GrpcServerCodeLocation):  # the run launcher needs a code server
            raise CodeLocationError(f"code location {names[0]} is not served by a code server")
        [self.repository] = self.location.get_repositories().values()

    def create_run(self, job_name: str, *, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> dg.DagsterRun:
        """A run of ``job_name`` created in the instance (not started), as ``dagster job launch`` creates it."""
        from dagster._core.definitions.selector import JobSubsetSelector

        selector = JobSubsetSelector(location_name=self.location.name, repository_name=self.repository.name,
                                     job_name=job_name, op_selection=None)
        job = self.location.get_job(selector)
        plan = self.location.get_execution_plan(job, run_config, step_keys_to_execute=None, known_state=None,
                                                instance=self.instance).execution_plan_snapshot
        return self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=job.resolved_op_selection,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**job.tags, **tags},
            job_snapshot=job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
        )

    def execute_here(self, run: dg.DagsterRun) -> dg.DagsterRun:
        """Execute ``run`` in this process, as a run worker does (Dagster's ``execute_run`` on
        the job reconstructed from the run's code origin), and return it finished."""
        from dagster._core.execution.api import execute_run
        from dagster._utils.hosted_user_process import recon_job_from_origin

        execute_run(recon_job_from_origin(run.job_code_origin), run, self.instance)
        return self.instance.get_run_by_id(run.run_id)

    def launch_and_wait(self, run: dg.DagsterRun) -> dg.DagsterRun:
        """Launch ``run`` with the instance's run launcher and wait until it has finished.

        Ctrl-C terminates the run before it is passed on.
        """
        self.instance.launch_run(run.run_id, self._context)
        try:
            while True:
                current = self.instance.get_run_by_id(run.run_id)
                if current is not None and current.is_finished:
                    return current
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self.instance.run_launcher.terminate(run.run_id)
            raise


@contextmanager
def code_location_launcher(instance: dg.DagsterInstance, workspace_file: Path,
                           output: Path | None = None) -> Iterator[CodeLocationLauncher]:
    """Load the code location of ``workspace_file`` in a code server for as long as the block lasts.

    Parameters
    ----------
    output : Path, optional
        A file for what the code server and the run workers it starts print (Dagster's own
        notices, and TensorFlow's logs with ``GTZAN_DEBUG``); default: this process's stdout
        and stderr. The runs' logs are in the instance either way.
    """
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    target = WorkspaceFileTarget(paths=[str(workspace_file)])
    with contextlib.ExitStack() as stack:
        with _inherited_output(output):  # the code server and its run workers inherit these
            process_context = stack.enter_context(
                WorkspaceProcessContext(instance, target, code_server_log_level="WARNING"))
        yield CodeLocationLauncher(instance, process_context.create_request_context())


@contextmanager
def _inherited_output(path: Path | None) -> Iterator[None]:
    """While the block runs, file descriptors 1 and 2 write to ``path`` (appending), so that
    processes started meanwhile write there for good; this process's own are restored after."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
