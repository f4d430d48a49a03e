"""`make dev` on a tiny corpus, in its own process group, for the browser tests.

:class:`DevServer` starts ``make dev`` (the Dagster webserver and daemon) on a free loopback
port with SIGTERM and SIGINT at their defaults, in a new session, and stops it through that
group's id (never by name). :func:`browser` launches Debian's ``/usr/bin/chromium`` through
Playwright (never a browser that Playwright downloads) with a fresh profile.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from feature_store.procs import default_signals, free_loopback_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
#: The machine has no network: nothing of Chromium's may try to reach one.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"






class DevServer:
    """``make dev`` with ``env`` on a free port; its output goes to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_loopback_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "dev", f"PORT={self.port}", "UI_HOST=127.0.0.1"],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=default_signals,
        )

    def gql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out = json.loads(resp.read())
        assert "errors" not in out, out
        return out["data"]

    def wait_loaded(self, timeout: float = 180) -> str:
        """The code location's name, once it has loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()[-3000:]
            try:
                entries = self.gql(LOCATIONS, timeout=5)["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    return entries[0]["name"]
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(1)
        raise AssertionError(f"make dev did not serve the UI in {timeout} s: {self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM to the process group (make, dagster dev, webserver, daemon, code servers), then SIGKILL."""
        if self.proc.poll() is None:
            pgid = os.getpgid(self.proc.pid)
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if group_alive(self.proc.pid):
            self._log.write(f"\nstill running 30 s after SIGTERM, killed: {group_members(self.proc.pid)}\n".encode())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # what outlived make in the group
            deadline = time.monotonic() + 10
            while group_alive(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        self._log.close()


def group_members(pgid: int) -> list[str]:
    """``pid name`` of each live process (zombies left out) of the process group ``pgid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if rest[0] != "Z" and int(rest[2]) == pgid:
            out.append(f"{stat.parent.name} {name}")
    return out


def group_alive(pgid: int) -> bool:
    """Whether any live process of the group ``pgid`` is left."""
    return bool(group_members(pgid))


@contextlib.contextmanager
def browser(profile: Path) -> Iterator[object]:
    """A Playwright browser on Debian's Chromium with a fresh profile folder (``--user-data-dir``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()
