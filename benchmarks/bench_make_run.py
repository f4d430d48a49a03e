"""Wall and CPU time of `make run` on the demo corpus, from an empty data folder.

Runs ``make -o .venv/.installed run`` (the install step taken as done) with a fresh
temporary ``DAGSTER_HOME`` and ``GTZAN_DATA_DIR``, so the demo corpus is written, ingested,
featurized, trained and reported from scratch, as on a fresh clone. Reports the wall time,
the CPU time of the whole process tree, the 1-minute load average before and after (other
work on the machine slows the wall time, not the CPU time), and the ratio of the wall time
to the 5-minute budget of issue 2.

Usage::

    nice .venv/bin/python benchmarks/bench_make_run.py [--run-args "--models all"]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 300.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-args", default="", help="passed to make as RUN_ARGS")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DAGSTER_HOME": f"{tmp}/home", "GTZAN_DATA_DIR": f"{tmp}/data"}
        for var in ("GTZAN_DIR", "GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR"):
            env.pop(var, None)
        load0 = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["make", "-s", "-o", ".venv/.installed", "run", f"RUN_ARGS={args.run_args}"],
            cwd=REPO, env=env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        load1 = os.getloadavg()[0]
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        steps = re.findall(r"ok\s+(\S+(?: \[[^\]]+\])?)\s+([\d.]+) s", proc.stdout)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        summary = {
            "machine": f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"),
            "run_args": args.run_args,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "load_average_1min": [round(load0, 2), round(load1, 2)],
            "wall_over_budget": round(wall / BUDGET_S, 2),
            "runs": len(steps),
            "slowest": sorted(((float(s), n) for n, s in steps), reverse=True)[:5],
        }
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
