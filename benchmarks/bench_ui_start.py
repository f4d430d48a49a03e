"""Time from `make dev` to the GraphQL endpoint answering, with the whole graph loaded.

For each repetition it starts ``make dev`` (``dagster dev -w workspace.yaml``, webserver and
daemon) on a free loopback port in its own process group, against a fresh temporary
``DAGSTER_HOME`` and an empty data folder (so no sensor or automation launches a run), and
records two times:

* ``answer``: until ``POST /graphql`` answers at all;
* ``loaded``: until the code location is loaded and ``assetNodes`` lists every asset.

The baseline, measured in the same run and the same way, is ``dagster dev`` on a one-asset
code location (a file written to a temporary folder): the ratio is what our code location
adds to Dagster's own start-up. Import times of the code location and of bare Dagster are
measured too. The server is stopped through its process group id.

Usage::

    nice .venv/bin/python benchmarks/bench_ui_start.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from feature_store.procs import default_signals, free_loopback_port

REPO = Path(__file__).resolve().parents[1]
ASSETS = '{ assetNodes { assetKey { path } } }'
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"

TRIVIAL = '''
import dagster as dg

@dg.asset
def one() -> None:
    return None

defs = dg.Definitions(assets=[one])
'''






def _gql(url: str, query: str) -> dict | None:
    req = urllib.request.Request(url, data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read()).get("data")
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def time_start(cmd: list[str], *, env: dict, cwd: Path, n_assets: int, timeout: float = 180) -> dict:
    """Start ``cmd`` in its own process group; time the first answer and the loaded graph."""
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}/graphql"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, f"PORT={port}"] if cmd[0] == "make" else [*cmd, "-p", str(port)],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True, preexec_fn=default_signals,
    )
    answer = loaded = None
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited: {proc.stderr.read().decode()[-2000:]}")
            data = _gql(url, LOCATIONS)
            if data is not None and answer is None:
                answer = time.perf_counter() - t0
            entries = (data or {}).get("workspaceOrError", {}).get("locationEntries") or []
            if entries and entries[0]["loadStatus"] == "LOADED":
                nodes = (_gql(url, ASSETS) or {}).get("assetNodes") or []
                if len(nodes) == n_assets:
                    loaded = time.perf_counter() - t0
                    break
            time.sleep(0.1)
    finally:
        pgid = os.getpgid(proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait()
        stderr = proc.stderr.read().decode(errors="replace")
    if loaded is None:
        raise RuntimeError(f"{cmd} did not load in {timeout} s")
    warnings = [ln for ln in stderr.splitlines() if "Warning" in ln]
    return {"answer": answer, "loaded": loaded, "warnings": warnings}


def import_time(code: str, *, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    venv_bin = Path(sys.executable).parent
    results: dict[str, list] = {"ours": [], "baseline": [], "import_ours": [], "import_dagster": []}
    warnings: list[str] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "trivial").mkdir()
        (tmp / "trivial" / "trivial_location.py").write_text(TRIVIAL)
        for i in range(args.repeat):
            home = tmp / f"home{i}"
            home.mkdir()
            env = {**os.environ, "DAGSTER_HOME": str(home), "GTZAN_DATA_DIR": str(tmp / f"data{i}")}
            for var in ("GTZAN_DIR", "GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR"):
                env.pop(var, None)
            # `make dev`, as a user runs it (the install step is taken as done)
            ours = time_start(["make", "-s", "-o", ".venv/.installed", "dev"], env=env, cwd=REPO, n_assets=5)
            results["ours"].append(ours)
            warnings += ours["warnings"]
            bhome = tmp / f"bhome{i}"
            bhome.mkdir()
            shutil.copy(REPO / "deploy" / "dagster.yaml", bhome / "dagster.yaml")
            benv = {**env, "DAGSTER_HOME": str(bhome)}
            base = time_start(
                [str(venv_bin / "dagster"), "dev", "-f", "trivial_location.py", "-h", "127.0.0.1"],
                env=benv, cwd=tmp / "trivial", n_assets=1,
            )
            results["baseline"].append(base)
            results["import_ours"].append(import_time("import pipelines.definitions", env=env))
            results["import_dagster"].append(import_time("import dagster", env=env))
            print(f"run {i}: ours answer {ours['answer']:.1f} s, loaded {ours['loaded']:.1f} s; "
                  f"baseline answer {base['answer']:.1f} s, loaded {base['loaded']:.1f} s", flush=True)

    def med(key: str, field: str | None = None) -> float:
        vals = [r[field] if field else r for r in results[key]]
        return statistics.median(vals)

    summary = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "repeat": args.repeat,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "ours_answer_s": round(med("ours", "answer"), 2),
        "ours_loaded_s": round(med("ours", "loaded"), 2),
        "baseline_answer_s": round(med("baseline", "answer"), 2),
        "baseline_loaded_s": round(med("baseline", "loaded"), 2),
        "loaded_ratio": round(med("ours", "loaded") / med("baseline", "loaded"), 2),
        "import_ours_s": round(med("import_ours"), 2),
        "import_dagster_s": round(med("import_dagster"), 2),
        "warnings_in_make_dev_stderr": warnings,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
