"""The distributed run's overhead per step (issue 14, item 5): Celery workers across hosts
against the multiprocess executor on one machine, the same small graph, read from Dagster's
event logs.

Two deployments on this machine, one after the other, each launching the same runs through
its webserver's GraphQL API (:mod:`deploy.graph`), one run at a time, waiting for each:

* **one machine**: ``dagster-webserver`` and ``dagster-daemon`` on 127.0.0.1 with a
  ``DAGSTER_HOME`` of their own (SQLite storage, the queued run coordinator polling every
  second and the default run launcher, as the cluster's ``deploy/dagster.yaml.in`` has them),
  ``GTZAN_EXECUTOR=multiprocess``: each step in a subprocess of the run's orchestrator;
* **the cluster**: ``deploy/cluster.py up`` (PostgreSQL, Redis, webserver and daemon on a
  control host, two Celery worker hosts, each host a network namespace),
  ``GTZAN_EXECUTOR=celery``: each step handed to a worker through Redis.

Both set ``GTZAN_WORKERS=1`` (the cluster's setting: one process per step). The graph: ingest
of the demo corpus, the features at 1 and 5 s (``mel`` and ``timbre``), one model (``cnn``,
``--epochs``) at 1 and 5 s, and the report. Per run, from the event log and the run record:

* queueing: run created -> ``RUN_START`` (dequeued by the daemon, run worker process started,
  code location loaded), with the part before ``RUN_STARTING``;
* first step: ``RUN_START`` -> the first ``STEP_START``;
* per step: ``STEP_START`` -> ``STEP_SUCCESS``, and the hand-over before it: from the
  executor's event that hands the step on (``Launching subprocess``, or ``Submitting celery
  task``) to ``STEP_START``, with the part until the step's process has it (``Executing step
  ... in subprocess``, or ``Executing steps ... in celery worker``: the pick-up);
* tail: the last ``STEP_SUCCESS`` -> ``RUN_SUCCESS``; total: created -> ``RUN_SUCCESS``.

Both deployments are torn down at the end, the cluster by ``deploy/cluster.py down --purge``
and the one-machine servers by their process groups; the script then checks that no process
started with its environment marker, and no namespace, is left (and says so if any is).
Needs root (the cluster's namespaces).

Usage::

    .venv/bin/python benchmarks/bench_distributed.py [--epochs 1] [--model cnn] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from feature_store.procs import free_loopback_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "deploy"))

import cluster as cl  # noqa: E402
from graph import Graph  # noqa: E402

BIN = Path(sys.executable).parent
#: In the environment of every process either deployment starts: what is left is found by it.
MARK = "GTZAN_BENCH_DISTRIBUTED_MARK"

RUN = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId jobName status
  creationTime startTime endTime } } }"""
#: The executor's first event about a step: a subprocess launched (multiprocess executor) or a
#: Celery task submitted (dagster-celery); the hand-over runs from it to ``STEP_START``.
SUBMITTED = ('Launching subprocess for "', 'Submitting celery task for step "')
#: The step's process (a new subprocess, or the Celery worker) has the step: ``Executing step "x" in
#: subprocess.`` or ``Executing steps x in celery worker``.
PICKED_UP = ("in subprocess.", "in celery worker")


def sequence(epochs: int, model: str) -> list[tuple[str, str | None, dict | None]]:
    """(job, partition, run config) of the runs, in order."""
    from assets.partitions import model_key

    train = {"ops": {"genre_models": {"config": {"epochs": epochs, "seeds": [0], "scheme": "seed"}}}}
    return ([("ingest_job", None, None)] + [("features_job", c, None) for c in ("1", "5")]
            + [("training_job", str(model_key(model=model, clip_seconds=c)), train) for c in ("1", "5")]
            + [("report_job", None, None)])


# ---------------------------------------------------------------------------------------
# reading a run's timings from its event log
# ---------------------------------------------------------------------------------------
def timings(graph: Graph, run_id: str) -> dict:
    """Queueing, per-step and tail seconds of one finished run (see the module docstring)."""
    run = graph.query(RUN, {"id": run_id})["runOrError"]
    evs = graph.logs(run_id)

    def first(kind: str) -> float | None:
        return next((int(e["timestamp"]) / 1000 for e in evs if e["__typename"] == kind), None)

    created, starting, started, done = run["creationTime"], first("RunStartingEvent"), first("RunStartEvent"), \
        first("RunSuccessEvent")
    steps: dict[str, dict] = {}
    for e in evs:
        key = e.get("stepKey")
        if not key:
            continue
        ts = int(e["timestamp"]) / 1000
        # events a Celery worker reports name their class first: "[CeleryExecutor] Executing steps ..."
        message = re.sub(r"^\[\w+\] ", "", e.get("message") or "")
        s = steps.setdefault(key, {})
        if message.startswith(SUBMITTED):
            s.setdefault("submitted", ts)
        elif message.startswith("Executing step") and message.endswith(PICKED_UP):
            s.setdefault("picked_up", ts)
        elif e["__typename"] == "ExecutionStepStartEvent":
            s["start"] = ts
        elif e["__typename"] == "ExecutionStepSuccessEvent":
            s["success"] = ts
    per_step = {
        key: {"duration_s": s["success"] - s["start"],
              "handover_s": s["start"] - s["submitted"] if "submitted" in s else None,
              "pickup_s": s["picked_up"] - s["submitted"] if "submitted" in s and "picked_up" in s else None}
        for key, s in steps.items() if "start" in s and "success" in s
    }
    starts = [s["start"] for s in steps.values() if "start" in s]
    ends = [s["success"] for s in steps.values() if "success" in s]
    return {
        "run_id": run_id, "job": run["jobName"], "status": run["status"],
        "queue_s": started - created if started else None,
        "queue_before_run_starting_s": starting - created if starting else None,
        "run_worker_start_s": started - starting if started and starting else None,
        "first_step_s": min(starts) - started if starts and started else None,
        "tail_s": done - max(ends) if done and ends else None,
        "total_s": done - created if done else None,
        "steps": per_step,
    }


def run_sequence(graph: Graph, runs: list[tuple[str, str | None, dict | None]], log=print) -> list[dict]:
    """Launch each run, wait for it, read its timings."""
    stopped = graph.stop_sensors()
    if stopped:
        log(f"  stopped the sensors {', '.join(stopped)}")
    out = []
    for job, partition, config in runs:
        run_id = graph.launch(job, partition=partition, run_config=config)
        status = graph.wait([run_id], timeout=1800)[run_id]
        if status != "SUCCESS":
            raise RuntimeError(f"{job} [{partition}] ended {status} (run {run_id})")
        t = timings(graph, run_id)
        t["partition"] = partition
        out.append(t)
        log(f"  {job:<13} {partition or '':<6} total {t['total_s']:6.1f} s, queue {t['queue_s']:5.1f} s, "
            f"steps " + ", ".join(f"{k} {v['duration_s']:.1f} s" for k, v in t["steps"].items()))
    return out


# ---------------------------------------------------------------------------------------
# the one-machine deployment
# ---------------------------------------------------------------------------------------


def one_machine(base: Path, runs: list, log=print) -> list[dict]:
    """The webserver and daemon of a local instance, the runs, then both stopped by process group."""
    home, data, tmp, logs = base / "home", base / "data", base / "tmp", base / "logs"
    for d in (home, data, tmp, logs):
        d.mkdir(parents=True, exist_ok=True)
    # the cluster's instance without its PostgreSQL storage (SQLite under DAGSTER_HOME instead)
    import yaml

    instance = yaml.safe_load((REPO / "deploy" / "dagster.yaml.in").read_text().replace("@SHARED@", str(base)))
    del instance["storage"]
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance, sort_keys=False))
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GTZAN_", "DAGSTER_"))}
    env = {**keep, MARK: os.environ[MARK], "DAGSTER_HOME": str(home), "GTZAN_DATA_DIR": str(data),
           "GTZAN_EXECUTOR": "multiprocess", "GTZAN_WORKERS": "1", "GTZAN_HOST_NAME": "single",
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp),
           "PATH": f"{BIN}{os.pathsep}{keep.get('PATH', '/usr/bin:/bin')}"}
    subprocess.run([str(BIN / "dagster"), "instance", "concurrency", "set", "training", "1"], env=env, cwd=REPO,
                   check=True, capture_output=True)
    port = free_loopback_port()
    workspace = str(REPO / "workspace.yaml")
    procs = []
    try:
        for name, cmd in (("webserver", [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1",
                                         "-p", str(port)]),
                          ("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace])):
            with open(logs / f"{name}.log", "ab") as out:
                procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True,
                                              preexec_fn=cl.default_signals))
        graph = Graph(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 240
        while True:
            with contextlib.suppress(Exception):
                if graph.location_loaded() and graph.daemons_healthy():
                    break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the one-machine webserver or daemon did not come up; see {logs}")
            time.sleep(0.5)
        log(f"one machine: webserver and daemon up on 127.0.0.1:{port}")
        return run_sequence(graph, runs, log=log)
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for p in procs:  # the group may outlive its leader (a run worker, a code server)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------
# the cluster
# ---------------------------------------------------------------------------------------
def on_cluster(base: Path, runs: list, log=print) -> tuple[list[dict], float]:
    t0 = time.monotonic()
    cluster = cl.up(base, workers=2, log=lambda m: log(f"cluster: {m}"))
    up_s = time.monotonic() - t0
    try:
        return run_sequence(cluster.graph(), runs, log=log), up_s
    finally:
        cl.down(base, purge=True, log=lambda m: log(f"cluster: {m}"))


def leftovers(token: str, *, mark: str = MARK, prefix: str = "gz", tries: int = 1) -> dict[str, list]:
    """Processes started with this run's marker (``mark=token`` in their environment), and
    namespaces whose name starts with ``prefix``, still there; ``tries`` looks again, a second
    apart, while a process is being collected."""
    marker, processes = f"{mark}={token}".encode(), []
    for attempt in range(max(1, tries)):
        if attempt:
            time.sleep(1)
        processes = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            with contextlib.suppress(OSError):
                pid = int(environ.parent.name)
                if pid != os.getpid() and marker in environ.read_bytes().split(b"\0"):
                    processes.append(pid)
        if not processes:
            break
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {"processes": processes, "namespaces": [line.split()[0] for line in netns.splitlines()
                                                   if line.startswith(prefix)]}


# ---------------------------------------------------------------------------------------
def compare(single: list[dict], celery: list[dict]) -> list[dict]:
    """One row per run and step: both sides' seconds and the difference."""
    rows = []
    for a, b in zip(single, celery, strict=True):
        label = a["job"] + (f" [{a['partition']}]" if a["partition"] else "")
        for what in ("queue_s", "first_step_s", "tail_s", "total_s"):
            rows.append({"run": label, "what": what, "single": a[what], "cluster": b[what]})
        for key in a["steps"]:
            for what in ("pickup_s", "handover_s", "duration_s"):
                rows.append({"run": label, "what": f"{key} {what}", "single": a["steps"][key][what],
                             "cluster": b["steps"].get(key, {}).get(what)})
    for r in rows:
        r["difference"] = None if r["single"] is None or r["cluster"] is None else r["cluster"] - r["single"]
    return rows


def summary(runs: list[dict]) -> dict:
    """Medians over runs (queueing, first step, tail) and over steps (pick-up, hand-over, duration)."""
    import statistics

    def med(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    steps = [s for r in runs for s in r["steps"].values()]
    return {
        **{what: med([r[what] for r in runs]) for what in ("queue_s", "first_step_s", "tail_s")},
        **{f"step_{what}": med([s[what] for s in steps]) for what in ("pickup_s", "handover_s", "duration_s")},
        "steps": len(steps),
        "total_s": sum(r["total_s"] for r in runs),
        "step_duration_sum_s": sum(s["duration_s"] for s in steps),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a new folder under /tmp (deleted)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("the cluster makes network namespaces: run this as root", file=sys.stderr)
        return 2
    token = secrets.token_hex(8)
    os.environ[MARK] = token  # reaches the cluster's processes too (cluster.env keeps it)
    base = Path(args.workdir or tempfile.mkdtemp(prefix="gtzan-bench-distributed-"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)  # PostgreSQL and Redis run as their own users below it
    runs = sequence(args.epochs, args.model)
    result: dict = {"date": dt.date.today().isoformat(), "command": "python benchmarks/bench_distributed.py "
                    + " ".join(sys.argv[1:]), "cpus": os.cpu_count(), "epochs": args.epochs, "model": args.model,
                    "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                          text=True).stdout.strip()}
    try:
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        result["single"] = one_machine(base / "single", runs)
        result["single_wall_s"] = time.monotonic() - t0
        result["single_loadavg_1min_before_after"] = [load, os.getloadavg()[0]]
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        result["cluster"], result["cluster_up_s"] = on_cluster(base / "cluster", runs)
        result["cluster_wall_s"] = time.monotonic() - t0
        result["cluster_loadavg_1min_before_after"] = [load, os.getloadavg()[0]]
        result["compare"] = compare(result["single"], result["cluster"])
        result["summary"] = {"single": summary(result["single"]), "cluster": summary(result["cluster"])}
    finally:
        left = leftovers(token)
        result["left_behind"] = left
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    for r in result.get("compare", []):
        fmt = lambda v: "-" if v is None else f"{v:7.2f}"  # noqa: E731
        print(f"{r['run']:<30} {r['what']:<40} {fmt(r['single'])} {fmt(r['cluster'])} {fmt(r['difference'])}")
    for side, s in result.get("summary", {}).items():
        print(f"{side}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in s.items()))
    print(f"left behind: {left}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if not any(left.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
