"""Fixtures of the browser tests: `make dev` on a tiny corpus, and a Chromium page on it.

Only `make test-ui` runs these tests (marker ``ui``). A failed test leaves a screenshot of the
page and the server's log under ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ui.stack import REPO, DevServer, browser, group_members

ARTIFACTS = REPO / "test-artifacts"
GTZAN = Path(sys.executable).with_name("gtzan")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.stash[FAILED] = rep.failed
    return rep


FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> dict:
    """`gtzan run` (ingest, 1 and 5 s features, timbre_logreg, the report) on 3 songs per genre of 6 s,
    then `make dev` on the same DAGSTER_HOME and data, on a free port in its own process group."""
    from feature_store.demo import write_demo_corpus

    if not Path("/usr/bin/chromium").is_file():
        pytest.fail("no /usr/bin/chromium: run `make test-ui` (it installs chromium and chromium-driver)")
    root = tmp_path_factory.mktemp("ui")
    corpus = write_demo_corpus(root / "corpus", songs_per_genre=3, duration=6.0)
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GTZAN_", "DAGSTER_"))}
    env.pop("PORT", None)
    env.update(DAGSTER_HOME=str(home), GTZAN_DIR=str(corpus), GTZAN_DATA_DIR=str(root / "data"), GTZAN_WORKERS="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    p = subprocess.run([str(GTZAN), "run", "--clip-seconds", "1", "5", "--models", "timbre_logreg", "--epochs", "1"],
                       env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    server = DevServer(env, root / "make-dev.log")
    try:
        location = server.wait_loaded()
        yield {"server": server, "location": location, "root": root, "corpus": corpus, "home": home, "env": env}
    finally:
        server.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(server.log_path, ARTIFACTS / "make-dev.log")
    left = group_members(server.proc.pid)
    assert not left, f"processes of make dev outlived the stop: {left}"


@pytest.fixture(scope="module")
def context(stack):
    with browser(stack["root"] / "chromium-profile") as ctx:
        yield ctx


@pytest.fixture
def page(context, stack, request):
    """A fresh page on the UI; a screenshot of it goes to test-artifacts/ when the test fails."""
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    if request.node.stash.get(FAILED, False):
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    pg.close()
