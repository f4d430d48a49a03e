"""Shard writers run by hand on the cluster's worker hosts, and what the fault tests read back
(``tests/distributed/test_object_store_faults.py``).

A probe is this file run as the service user on a worker host (its network namespace), with
that host's environment (``GTZAN_*``, the S3 variables) and the JSON of its arguments on its
standard input; it answers one JSON line. Each probe publishes one shard of a view into an S3
prefix of its own (``s3://gtzan/store/probes/<name>``), so the graph's tables are left alone:

* ``publish``: :func:`feature_store.engine.sharded.publish_shard`, as the sharded asset runs it;
* ``race``: the same steps with a barrier between the build and the commit, so that two
  probes on two hosts commit the same shard at the same moment.

From the test process (root, the root namespace, which reaches the S3 server): start a probe
(:func:`start`), slow a host's uploads (:func:`limited`: ``tc``), watch a probe's bytes in
flight to the S3 port (:func:`bytes_sent`), read the step failures of runs (:func:`step_failures`)
and a table's rows and arrays (:func:`table_digest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Seconds a racing probe waits for the other at the barrier.
BARRIER_TIMEOUT = 120.0


# ---------------------------------------------------------------------------------------
# on a worker host, as the service user
# ---------------------------------------------------------------------------------------
def _shard_task(args: dict):
    """The store, storage and lineage of a probe's shard task (as the sharded asset makes them)."""
    sys.path.insert(0, str(REPO))
    from feature_store.engine.lake import Lineage
    from feature_store.engine.registry import package_version
    from feature_store.engine.storage import open_storage
    from pipelines.resources import make_resources
    from pipelines.settings import Settings

    res = make_resources(Settings.from_env())
    audio, features = res["audio"], res["features"]
    store = features.view_store(args["view"])
    storage = open_storage(args["url"])
    lineage = Lineage(params_hash=store.view.clip_params.hash(), code_version=package_version(),
                      run_id=args["task_id"])
    return store, storage, lineage, audio.genre_root(), features.workers_for(store.view)


def _publish(args: dict) -> dict:
    """publish_shard of one shard into the probe's own prefix."""
    from feature_store.engine.sharded import publish_shard

    store, storage, lineage, audio_root, workers = _shard_task(args)
    print(json.dumps({"phase": "publishing"}), flush=True)
    done = publish_shard(store, storage=storage, shard=args["shard"], shards=args["shards"],
                         clip_seconds=args["clip"], audio_root=audio_root, task_id=args["task_id"],
                         lineage=lineage, workers=workers)
    return {"committed": done.committed, "version": done.version, "rows": done.rows, "object_key": done.object_key}


def _race(args: dict) -> dict:
    """Build the shard, wait at the barrier for the other probe, then commit, as publish_shard does."""
    from feature_store.engine.sharded import index_table, table_rows
    from feature_store.engine.shards import build_shard
    from feature_store.errors import StoreError

    store, storage, lineage, audio_root, workers = _shard_task(args)
    built = build_shard(store, shard=args["shard"], shards=args["shards"], clip_seconds=args["clip"],
                        storage=storage, audio_root=audio_root, task_id=args["task_id"], workers=workers)
    table = index_table(storage, store.view, clip_seconds=args["clip"])
    barrier = Path(args["barrier"])
    (barrier / args["task_id"]).touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while len(list(barrier.iterdir())) < args["peers"] and time.monotonic() < deadline:
        time.sleep(0.01)
    out = {"object_key": built.object_key, "at": time.time()}
    try:
        result = table.commit_shard(table_rows(built.rows, table), shard=args["shard"], task_id=args["task_id"],
                                    lineage=lineage)
    except StoreError as exc:  # refused: the shard is another task's
        storage.delete(built.object_key)
        return {**out, "committed": False, "error": f"{type(exc).__name__}: {exc}"}
    if not result.committed:
        storage.delete(built.object_key)
    return {**out, "committed": result.committed, "version": result.version, "rows": result.rows,
            "note": getattr(result, "note", "")}


PROBES = {"publish": _publish, "race": _race}

if __name__ == "__main__":
    print(json.dumps(PROBES[sys.argv[1]](json.loads(sys.stdin.read()))), flush=True)


# ---------------------------------------------------------------------------------------
# as root, from the test
# ---------------------------------------------------------------------------------------
def start(cluster, host: str, probe: str, args: dict) -> subprocess.Popen:
    """Start ``probe`` on worker ``host`` as the service user, in its own process group."""
    from hosts import SERVICE_USER, as_user, server_preexec

    cmd = ["ip", "netns", "exec", cluster.namespace(host), *as_user(SERVICE_USER), cluster.python,
           str(Path(__file__).resolve()), probe]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=REPO, env=cluster.env(host), start_new_session=True, preexec_fn=server_preexec)
    p.stdin.write(json.dumps(args))
    p.stdin.close()
    p.stdin = None  # written and closed: communicate() has nothing more to send
    return p


def answer(p: subprocess.Popen, *, timeout: float = 300) -> dict:
    """The last JSON line of a probe that exited 0 (AssertionError with its stderr otherwise)."""
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def stop(p: subprocess.Popen) -> None:
    """SIGKILL a probe's process group (it is its own) and collect it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, 9)
    p.wait()


@contextlib.contextmanager
def limited(cluster, host: str, rate: str):
    """Every packet ``host`` sends out at most at ``rate`` (``tc``'s token bucket on its link)."""
    ns = cluster.namespace(host)
    subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate,
                    "burst", "32kbit", "latency", "2s"], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root"], capture_output=True)


def bytes_sent(cluster, host: str, pid: int, port: int) -> int:
    """Bytes that process ``pid`` on ``host`` has sent over its TCP connections to ``port``
    (``ss``: each connection's line names its process, the line below it its counters)."""
    p = subprocess.run(["ip", "netns", "exec", cluster.namespace(host), "ss", "-tinpH", "dport", "=", f":{port}"],
                       capture_output=True, text=True)
    total, mine = 0, False
    for line in p.stdout.splitlines():
        if line and not line[0].isspace():
            mine = f"pid={pid}," in line
        elif mine and (m := re.search(r"bytes_sent:(\d+)", line)):
            total += int(m.group(1))
    return total


FAILURES = """query($id: ID!, $cursor: String) { logsForRun(runId: $id, afterCursor: $cursor) { __typename
  ... on EventConnection { cursor hasMore events { __typename
    ... on ExecutionStepFailureEvent { stepKey error { message className causes { message className } } }
    ... on ExecutionStepUpForRetryEvent { stepKey error { message className causes { message className } } }
  } } } }"""


def step_failures(graph, run_ids) -> list[dict]:
    """Every step failure and retry of the runs: run, step, kind, and the error the step raised
    (a retry's is the cause of Dagster's RetryRequestedFromPolicy): its class and message."""
    found = []
    for run_id in run_ids:
        cursor = None
        while True:
            out = graph.query(FAILURES, {"id": run_id, "cursor": cursor})["logsForRun"]
            for e in out["events"]:
                if e["__typename"] in ("ExecutionStepFailureEvent", "ExecutionStepUpForRetryEvent"):
                    error = e.get("error") or {}
                    if error.get("className") == "RetryRequestedFromPolicy" and error.get("causes"):
                        error = error["causes"][0]
                    found.append({"run": run_id, "step": e["stepKey"], "kind": e["__typename"],
                                  "class": error.get("className"), "message": error.get("message", "")})
            cursor = out["cursor"]
            if not out.get("hasMore"):
                break
    return found


def table_digest(storage, view_name: str, clip: int) -> dict:
    """What an index table holds at its newest version: its rows (where and by what they were
    written left out), their clip ids, and the sha256 of each array's bytes in clip order."""
    from feature_store.engine.sharded import index_table, read_clips
    from feature_store.views import get_view

    view = get_view(view_name)
    table = index_table(storage, view, clip_seconds=clip)
    if not table.exists():
        return {"exists": False}
    rows, arrays = read_clips(storage, view, clip_seconds=clip)
    lineage = [c for c in ("object_key", "object_row", "task_id", "run_id", "code_version") if c in rows.columns]
    return {"exists": True, "rows": rows.drop(lineage), "clip_ids": rows["clip_id"].to_list(),
            "songs": rows["song_id"].to_list(), "shards": rows["shard"].to_list(),
            "versions": [v.version for v in table.history()],
            "arrays": {n: (a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest())
                       for n, a in arrays.arrays.items()}}
