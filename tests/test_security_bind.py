"""The UI and webserver bind to 127.0.0.1 unless the user says otherwise.

The project starts the Dagster UI in two ways, ``make dev`` and ``gtzan ui``; both default to
127.0.0.1 and take an explicit override (``UI_HOST=...``, ``--host ...``). Nothing in the code
or the Dagster configuration binds to all interfaces by itself.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


def _make_dev(*args: str, env: dict | None = None) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "dev", *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr
    [line] = [ln for ln in out.stdout.splitlines() if "dagster dev" in ln]
    return line


def test_make_dev_binds_localhost_unless_told():
    assert re.search(r"dagster dev .*-h 127\.0\.0\.1 -p 3000\b", _make_dev())
    # an exported HOST (some shells set it to the machine's name) must not change it
    assert "-h 127.0.0.1 " in _make_dev(env={"HOST": "build-box.example.org"})
    assert "-h 0.0.0.0 " in _make_dev("UI_HOST=0.0.0.0")


def test_gtzan_ui_binds_localhost_unless_told(tmp_path):
    from pipelines import cli

    env = {"GTZAN_DATA_DIR": str(tmp_path / "data")}
    r = CliRunner().invoke(cli.main, ["ui", "--dry-run", "--port", "3999"], env=env)
    assert r.exit_code == 0, r.output
    assert re.search(r"dagster dev -w workspace\.yaml -h 127\.0\.0\.1 -p 3999$", r.stdout.strip())
    r = CliRunner().invoke(cli.main, ["ui", "--dry-run", "--host", "0.0.0.0"], env=env)
    assert r.exit_code == 0 and r.stdout.strip().endswith("-h 0.0.0.0 -p 3000")


def test_nothing_binds_all_interfaces_by_itself():
    """No code uses 0.0.0.0 or '' as an address, and no Dagster config sets another host."""
    bad = []
    for p in sorted(REPO.rglob("*.py")):
        rel = p.relative_to(REPO)
        if {".venv", ".git", "data", "tests"} & set(rel.parts) or rel.parts[0].endswith(".egg-info"):
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in ("0.0.0.0", "::"):
                bad.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.keyword) and node.arg in ("host", "bind") and isinstance(node.value, ast.Constant):
                if node.value.value not in ("127.0.0.1", "localhost", "::1"):
                    bad.append(f"{rel}:{node.value.lineno} {node.arg}={node.value.value!r}")
    for name in ("deploy/dagster.yaml", "workspace.yaml"):
        text = (REPO / name).read_text()
        if "0.0.0.0" in text:
            bad.append(name)
        for host in re.findall(r"^\s*host:\s*(\S+)", text, flags=re.M):
            if host.strip("'\"") not in ("127.0.0.1", "localhost"):
                bad.append(f"{name}: host {host}")
    assert bad == []
