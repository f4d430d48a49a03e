"""Fixtures of the pipeline tests: a tiny demo corpus, resources on temporary folders, a webserver."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from feature_store.procs import default_signals, free_loopback_port

import pytest

from assets import AudioSource, FeatureStoreResource, ModelStoreResource
from feature_store.demo import write_demo_corpus

REPO = Path(__file__).resolve().parents[2]
WEBSERVER = Path(sys.executable).with_name("dagster-webserver")
LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } }
                        ... on PythonError { message } } } } } }
"""


@pytest.fixture(scope="session")
def tiny_corpus_master(tmp_path_factory) -> Path:
    """3 songs per genre of 6 s (only 1 s and 5 s clips exist); copy it before changing it."""
    root = tmp_path_factory.mktemp("tiny")
    write_demo_corpus(root, songs_per_genre=3, duration=6.0)
    return root


@pytest.fixture
def tiny_corpus(tiny_corpus_master, tmp_path) -> Path:
    dst = tmp_path / "corpus"
    shutil.copytree(tiny_corpus_master, dst)
    return dst


@pytest.fixture
def tiny_resources(tiny_corpus, tmp_path) -> dict:
    data = tmp_path / "data"
    return {
        "audio": AudioSource(path=str(tiny_corpus)),
        "features": FeatureStoreResource(root=str(data / "store"), workers=1),
        "models": ModelStoreResource(root=str(data / "models"), report_dir=str(data / "reports")),
    }


def write_dagster_home(path: Path) -> Path:
    """Make ``path`` a ``DAGSTER_HOME``: the project's ``deploy/dagster.yaml`` plus the immediate run
    coordinator, because no daemon runs beside a bare webserver to dequeue runs."""
    path.mkdir(parents=True, exist_ok=True)
    config = (REPO / "deploy" / "dagster.yaml").read_text()
    config += "\nrun_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    (path / "dagster.yaml").write_text(config)
    return path


@pytest.fixture(scope="session")
def dagster_home_at():
    """:func:`write_dagster_home`, for fixtures of any scope."""
    return write_dagster_home


@pytest.fixture
def dagster_home(tmp_path) -> Path:
    """A fresh ``DAGSTER_HOME`` (see :func:`write_dagster_home`)."""
    return write_dagster_home(tmp_path / "home")






class Webserver:
    """dagster-webserver serving ``workspace.yaml`` on a free loopback port.

    It runs in its own process group with SIGTERM and SIGINT at their defaults, and is
    stopped through that group's id (never by name). ``command`` starts something else that
    serves the UI on the port (``gtzan ui``, ``dagster dev``): its words, with ``{port}`` in
    place of the port.
    """

    def __init__(self, env: dict[str, str], log_path: Path, command: list[str] | None = None) -> None:
        self.log_path = log_path
        port = free_loopback_port()
        self.url = f"http://127.0.0.1:{port}/graphql"
        self._log = open(log_path, "wb")  # noqa: SIM115
        command = command or [str(WEBSERVER), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", "{port}"]
        self.proc = subprocess.Popen(
            [word.replace("{port}", str(port)) for word in command],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=default_signals,
        )

    def gql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                out = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"HTTP {exc.code} for {query.split()[0:3]}: {exc.read()[:2000]!r}") from exc
        assert "errors" not in out, out
        return out["data"]

    def wait_loaded(self, timeout: float = 120) -> dict:
        """The code location's entry, once it has loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()
            try:
                entries = self.gql(LOCATIONS, timeout=5)["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    return entries[0]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"the webserver did not answer in {timeout} s")

    def wait_run(self, run_id: str, timeout: float = 240) -> dict:
        """The run (status and tags) once it has finished."""
        query = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status tags { key value } } } }"
        deadline = time.monotonic() + timeout
        while True:
            run = self.gql(query, {"id": run_id})["runOrError"]
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") or time.monotonic() > deadline:
                return run
            time.sleep(1)

    def log_text(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            pgid = os.getpgid(self.proc.pid)
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def webserver(tmp_path):
    """``start(env, command=None)``: a :class:`Webserver` with that environment, stopped after the test."""
    started: list[Webserver] = []

    def start(env: dict[str, str], command: list[str] | None = None) -> Webserver:
        started.append(Webserver(env, tmp_path / f"webserver-{len(started)}.log", command))
        return started[-1]

    yield start
    for server in started:
        server.stop()
