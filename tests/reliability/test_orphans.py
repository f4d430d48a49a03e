"""Workers die with their parent: SIGKILL a build (a CLI-like process, a Dagster step) mid-way."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from feature_store import ingest

TOY = Path(__file__).resolve().parents[1] / "feature_store"


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    """A process's command line, empty when it has ended meanwhile (a short-lived helper child)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def computing_workers(proc: subprocess.Popen) -> list[int]:
    """The two worker processes of the build ``proc``, once they have computed for a second."""
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.2)
        # the workers are the parent's children that have started computing (the
        # resource tracker of multiprocessing is a child too; it is not a worker)
        workers = [p for p in children(proc.pid) if "spawn_main" in _cmdline(p)]
        assert proc.poll() is None, "the build ended before it could be killed"
    assert len(workers) >= 2, "the workers never started"
    time.sleep(1.0)  # computing now
    return workers


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_corpus):
    root = tmp_path_factory.mktemp("orphans")
    for g in ("rock", "jazz", "pop"):
        shutil.copytree(tiny_corpus / "genres_original" / g, root / "audio" / "genres_original" / g)
    ingest(root / "audio", root / "store")
    return root


BUILD = """
import sys
sys.path.insert(0, {toy!r})
from toy_view import SlowToyView
from feature_store.engine.store import ViewStore
ViewStore({store!r}, SlowToyView()).build(audio_root={audio!r}, clip_seconds=[1], workers=2)
"""

STEP = """
import sys
sys.path.insert(0, {toy!r})
import dagster as dg
from toy_view import SlowToyView
from feature_store.engine.store import ViewStore

@dg.asset
def slow_features() -> None:
    ViewStore({store!r}, SlowToyView()).build(audio_root={audio!r}, clip_seconds=[1], workers=2)

dg.materialize([slow_features])
"""


@pytest.mark.parametrize("script", [BUILD, STEP], ids=["build", "dagster-step"])
def test_no_worker_survives_a_killed_parent(corpus, tmp_path, script):
    store = tmp_path / "store"
    shutil.copytree(corpus / "store", store)
    code = textwrap.dedent(script).format(toy=str(TOY), store=str(store), audio=str(corpus / "audio"))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers = computing_workers(proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in workers):
            time.sleep(0.1)
        assert not [p for p in workers if alive(p)], "workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in children(proc.pid):
            os.kill(p, signal.SIGKILL)


UNGUARDED = """
import sys
sys.path.insert(0, {repo!r})
from feature_store import FeatureStore
FeatureStore({store!r}).build(audio_root={audio!r}, clip_seconds=[1], workers=2)
"""


def test_a_script_without_a_main_guard_fails_in_one_line_instead_of_hanging(corpus, tmp_path):
    """Each spawned worker imports the script and builds again: without the refusal, that build
    waits for the lock its parent holds while the parent waits for it, until the lock times out."""
    store = tmp_path / "store"
    shutil.copytree(corpus / "store", store)
    script = tmp_path / "build_features.py"  # run as a file: spawn re-imports it in each worker
    script.write_text(UNGUARDED.format(repo=str(Path(__file__).resolve().parents[2]), store=str(store),
                                       audio=str(corpus / "audio")))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert 'put the script\'s code under `if __name__ == "__main__":`' in proc.stderr  # each worker says why
    assert proc.stderr.strip().splitlines()[-1] == (
        "feature_store.errors.WorkerDiedError: a worker process of the build died before it finished (killed, out of "
        "memory, or it failed as it started: its own error is above); nothing was published, run the build again")
    assert not list((store / "features").glob("*/clip-01s/current"))  # nothing published


def test_a_killed_worker_stops_the_build_in_one_line_and_publishes_nothing(corpus, tmp_path):
    """The out-of-memory killer or ``kill -9`` of one worker: the build stops with one line
    (a WorkerDiedError, which a Dagster step retries), its other worker goes too, and no generation is published."""
    store = tmp_path / "store"
    shutil.copytree(corpus / "store", store)
    code = textwrap.dedent(BUILD).format(toy=str(TOY), store=str(store), audio=str(corpus / "audio"))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        workers = computing_workers(proc)
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1].startswith(
        "feature_store.errors.WorkerDiedError: a worker process of the build died before it finished")
    assert not [p for p in workers if alive(p)]
    assert not list(store.glob("features/*/clip-01s/current"))
