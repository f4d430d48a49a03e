"""Start :mod:`_child` jobs, follow their markers and SIGKILL their process group.

Children run in their own session, so one ``os.killpg`` reaches every process they started
(worker pools included) and nothing else; they are always reaped, so no zombie is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

CHILD = Path(__file__).with_name("_child.py")
REPO = Path(__file__).resolve().parents[2]


class Child:
    """One running job: its process, its marker lines (with arrival times) and its stderr file."""

    def __init__(self, job: str, args: dict, *, log: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), job, json.dumps(args)],
            stdout=subprocess.PIPE, stderr=self._err, cwd=str(REPO), env=env, start_new_session=True,
        )
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.seen: list[tuple[float, str]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))
        self.lines.put((time.monotonic(), "<EOF>"))

    def wait_for(self, marker: str, timeout: float = 120.0) -> float:
        """Block until a line starting with ``marker``; return when it arrived."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise TimeoutError(f"no {marker!r} from the child in {timeout} s; stderr: {self.stderr()[-2000:]}")
            try:
                t, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append((t, line))
            if line.startswith(marker):
                return t
            if line == "<EOF>":
                self.proc.wait()
                raise RuntimeError(
                    f"the child ended (rc={self.proc.returncode}) before {marker!r}; stderr: {self.stderr()[-3000:]}"
                )

    def kill(self) -> int:
        """SIGKILL the child's whole process group and reap it; return its exit status."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.wait()

    def group_gone(self, timeout: float = 10.0) -> bool:
        """Whether every process of the child's group (pool workers too) has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._err.close()
        return rc

    def result(self) -> dict:
        """The JSON of the child's ``DONE`` line (waits for it)."""
        self.wait_for("DONE")
        return json.loads(self.seen[-1][1].split(" ", 1)[1])

    def stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""


def killed(rc: int) -> bool:
    """Whether an exit status is death by SIGKILL."""
    return rc == -signal.SIGKILL


def link_copy(src: Path, dst: Path) -> Path:
    """Copy a store by hard links (fast). Safe because stores never rewrite a file in place:
    every write goes to a new temporary file that is renamed over the old name."""
    shutil.copytree(src, dst, copy_function=os.link, symlinks=True)
    return dst


def temporaries(root: Path) -> list[Path]:
    """Every ``.tmp-*`` leftover under ``root``."""
    return sorted(p for p in root.rglob(".tmp-*"))
