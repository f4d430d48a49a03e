"""The sharded store at scale on the cluster's worker hosts (issue 19, "Must show"): every shard
task of the ``mel`` view run ON one, then ON two worker hosts, into the cluster's S3 server.

Corpus: :mod:`scale_corpus`, as ``bench_shard_scale.py``: ``--songs`` distinct synthetic songs of
``--duration`` s (default 6 s, short songs: the ``mel`` view's 1 s and 5 s clips), ingested
(timed, in a child process) into a store root in ``<workdir>/bench``, a folder only the
cluster's service user ``gtzan`` (and root) may read; each build gets its own copy of the root.

Then ``deploy/cluster.py up --workers 2 --object-store --shards S`` (S = songs /
``--songs-per-shard``), its sensors stopped, and every (shard, clip length) task, the 5 s ones
first, as :func:`feature_store.engine.sharded.publish_shard` calls ON worker hosts, as
``gtzan``, into a fresh prefix of the cluster's S3 (``GTZAN_STORE_URL/bench-<token>/hosts<N>``):
**one host**: every task on worker-1, one at a time; **two hosts**: worker-1 and worker-2 each
take the next task from one queue, one at a time each. A host runs one long-lived probe (this
file with ``--probe``, in the host's namespace and environment, BLAS single-threaded,
``workers=1``: the computation in the probe's process), one JSON request and answer a line,
as a Celery worker keeps its imports between tasks.

Per task: wall and CPU seconds of the probe (itself and its children), its peak RSS during the
task (``VmHWM``, reset through ``/proc/self/clear_refs``), the seconds of its commit
(``IndexTable.commit_shard``) and of any compaction after it. Per build: wall, CPU per song,
tasks per host, the load average before and after, and every version of both tables read back
(rows, distinct clips and songs: none lost or doubled). On the last build's table, from
worker-1, a new reader each time (medians): the selective query (one label, the seed scheme's
test part) at 5 s as built and after ``compact_table``, and ``read_clips`` of that selection.

The cluster is always torn down (``down --purge``); then no process with this run's marker in
its environment, and no namespace of the cluster, may be left. Needs root. Usage:
``.venv/bin/python benchmarks/bench_cluster_shards.py --workdir DIR [--songs 20000] [--json F]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import queue
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIEW = "mel"
#: In the environment of every process the run starts (the cluster's too): what is left is found by it.
MARK = "GTZAN_BENCH_CLUSTER_SHARDS_MARK"


# -- the probe: on a worker host, as the service user -----------------------------------
_TIMED: dict[str, float] = {}


def _timed(cls, name: str) -> None:
    """Add the seconds of every call of ``cls.name`` to ``_TIMED[name]``."""
    inner = getattr(cls, name)

    def timed(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return inner(self, *a, **kw)
        finally:
            _TIMED[name] = _TIMED.get(name, 0.0) + time.perf_counter() - t0

    setattr(cls, name, timed)


def _cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _publish(req: dict) -> dict:
    """One shard task, measured."""
    from bench_shard_scale import _status

    from feature_store.engine.sharded import lineage_of, publish_shard
    from feature_store.engine.storage import open_storage
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    with open("/proc/self/clear_refs", "w") as fh:  # VmHWM from here on: this task's peak
        fh.write("5")
    _TIMED.clear()
    rss0, c0, t0, start = _status("VmRSS"), _cpu(), time.perf_counter(), time.time()
    view = get_view(VIEW)
    done = publish_shard(ViewStore(req["root"], view), storage=open_storage(req["url"]), shard=req["shard"],
                         shards=req["shards"], clip_seconds=req["clip"], audio_root=req["audio"],
                         task_id=f"{req['run']}.c{req['clip']}.shard-{req['shard']}",
                         lineage=lineage_of(view, run_id=req["run"]), workers=1)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"shard": req["shard"], "clip": req["clip"], "pid": os.getpid(), "start": start, "end": time.time(),
            "wall_s": wall, "cpu_s": cpu, "commit_s": _TIMED.get("commit_shard", 0.0),
            "compact_s": _TIMED.get("compact_small", 0.0), "rows": done.rows, "version": done.version,
            "committed": done.committed, "compacted": done.compacted, "note": done.note,
            "rss_before_mib": rss0, "peak_rss_mib": _status("VmHWM")}


def _query(req: dict) -> dict:
    """A new reader's selective query and ``read_clips`` of its selection, medians in ms."""
    from bench_shard_scale import _median_cpu_ms, _median_ms

    from feature_store.engine.sharded import index_table, read_clips
    from feature_store.engine.storage import open_storage
    from feature_store.views import get_view

    view, url, clip, label, n = get_view(VIEW), req["url"], req["clip"], req["label"], req["repeats"]
    where = {"labels": [label], "scheme": "seed", "parts": ["test"]}

    def once():
        return index_table(open_storage(url), view, clip_seconds=clip).scan(**where).collect()

    def clips():
        return read_clips(open_storage(url), view, clip_seconds=clip, **where)

    rows, (got_rows, got) = once(), clips()  # warm: the imports, the server's caches
    table = index_table(open_storage(url), view, clip_seconds=clip)
    return {"query_ms": _median_ms(once, n), "query_cpu_ms": _median_cpu_ms(once, n),
            "rows": rows.height, "files_read": len(table.files(**where)), "files_total": len(table.files()),
            "version": table.latest_version(), "read_clips_ms": _median_ms(clips, max(3, n // 3)),
            "clips": got_rows.height, "objects": got_rows["object_key"].n_unique(),
            "bytes": int(sum(a.nbytes for a in got.arrays.values()))}


def _compact(req: dict) -> dict:
    from feature_store.engine.sharded import compact_table
    from feature_store.engine.storage import open_storage
    from feature_store.views import get_view

    out = {}
    for clip in req["clips"]:
        t0 = time.perf_counter()
        v = compact_table(open_storage(req["url"]), get_view(VIEW), clip_seconds=clip)
        out[str(clip)] = {"seconds": round(time.perf_counter() - t0, 2), "version": v}
    return out


def _tables(req: dict) -> dict:
    """Every version of each clip length's table: its history's totals and what it holds."""
    from feature_store.engine.sharded import index_table
    from feature_store.engine.storage import open_storage
    from feature_store.views import get_view

    out = {}
    for clip in req["clips"]:
        table = index_table(open_storage(req["url"]), get_view(VIEW), clip_seconds=clip)
        versions = []
        for v in table.history():
            held = table.scan(version=v.version).select("clip_id", "song_id").collect()
            versions.append({"version": v.version, "operation": v.operation, "shard": v.shard,
                             "history_total_rows": v.total_rows, "rows": held.height,
                             "clips": held["clip_id"].n_unique(), "songs": held["song_id"].n_unique()})
        out[str(clip)] = versions
    return out


PROBE_OPS = {"publish": _publish, "query": _query, "compact": _compact, "tables": _tables}


def probe_main() -> int:
    """Answer one JSON line per request line until ``{"op": "exit"}`` or the end of input."""
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a library prints goes to the log, not into the answers
    from feature_store.engine.lake import IndexTable
    from feature_store.engine.sharded import publish_shard  # noqa: F401 - imported once, as a worker has it
    from feature_store.views import get_view

    get_view(VIEW)
    _timed(IndexTable, "commit_shard")
    _timed(IndexTable, "compact_small")
    answers.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "exit":
            break
        try:
            res = PROBE_OPS[req["op"]](req)
        except Exception as exc:  # noqa: BLE001 - answered in one line; the driver stops
            res = {"error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"}
        answers.write(json.dumps(res, default=str) + "\n")
    return 0


# -- the driver: root, the root namespace -----------------------------------------------
class Probe:
    """A probe process on one worker host (its own process group) and its request/answer lines."""

    def __init__(self, cluster, host: str, log: Path) -> None:
        from hosts import SERVICE_USER, as_user, server_preexec

        from bench_shard_scale import THREADS

        self.host, self.log = host, log
        cmd = ["ip", "netns", "exec", cluster.namespace(host), *as_user(SERVICE_USER), cluster.python,
               str(Path(__file__).resolve()), "--probe"]
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                         cwd=REPO, env={**cluster.env(host), **THREADS}, start_new_session=True,
                                         preexec_fn=server_preexec)
        try:
            self.pid = self._read()["ready"]
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the probe on {self.host} ended (exit {self.proc.poll()}); its log ends:\n{tail}")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"on {self.host}: {out['error']}")
        return out

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.write('{"op": "exit"}\n')
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)  # its group, whatever is left in it
        self.proc.wait()


def build(probes: list[Probe], specs: list[dict], *, timeout: float) -> tuple[list[dict], float]:
    """Every task of ``specs``, each probe taking the next from one queue; (tasks, wall seconds)."""
    todo: queue.Queue = queue.Queue()
    for s in specs:
        todo.put(s)
    done, failed = [], []

    def serve(p: Probe) -> None:
        while not failed:
            try:
                spec = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.append({"host": p.host, **p.ask(op="publish", **spec)})
            except BaseException as exc:  # noqa: BLE001 - reported by the driver
                failed.append(f"{p.host}: {exc}")
                return

    t0 = time.perf_counter()
    threads = [threading.Thread(target=serve, args=(p,), daemon=True) for p in probes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, timeout - (time.perf_counter() - t0)))
    wall = time.perf_counter() - t0
    if any(t.is_alive() for t in threads):
        failed.append(f"the build ran past {timeout:.0f} s")
    if failed:
        raise RuntimeError("; ".join(failed))
    return done, wall


def check_tables(tables: dict, tasks: list[dict], songs: int) -> dict:
    """Whether every version holds its history's rows, each clip once, and the last every song."""
    out = {}
    for clip, versions in tables.items():
        mine = [t for t in tasks if t["clip"] == int(clip)]
        last = versions[-1]
        out[clip] = {"versions": len(versions), "rows": last["rows"], "songs": last["songs"],
                     "rows_committed_by_tasks": sum(t["rows"] for t in mine),
                     "every_version_as_history_says": all(v["rows"] == v["history_total_rows"] for v in versions),
                     "no_clip_twice_in_any_version": all(v["clips"] == v["rows"] for v in versions),
                     "rows_grow_by_commits_only": all(b["rows"] >= a["rows"] for a, b in zip(versions, versions[1:])),
                     "last_version_every_song": last["songs"] == songs,
                     "last_version_every_committed_row": last["rows"] == sum(t["rows"] for t in mine)}
    return out


def summarize(tasks: list[dict], *, wall: float, songs: int, hosts: int, load: list[float]) -> dict:
    import numpy as np

    cpu = sum(t["cpu_s"] for t in tasks)
    clips = sorted({t["clip"] for t in tasks}, reverse=True)
    commit = [t["commit_s"] for t in tasks]
    return {"hosts": hosts, "tasks": len(tasks), "songs": songs, "wall_s": round(wall, 1), "load": load,
            "cpu_s": round(cpu, 1), "cpu_ms_per_song": round(1000 * cpu / songs, 2),
            "wall_ms_per_song": round(1000 * wall / songs, 2),
            "tasks_per_host": {h: sum(t["host"] == h for t in tasks) for h in sorted({t["host"] for t in tasks})},
            "cpu_s_per_clip_length": {c: round(sum(t["cpu_s"] for t in tasks if t["clip"] == c), 1) for c in clips},
            "task_wall_s_median": {c: round(statistics.median(t["wall_s"] for t in tasks if t["clip"] == c), 2)
                                   for c in clips},
            "task_cpu_s_median": {c: round(statistics.median(t["cpu_s"] for t in tasks if t["clip"] == c), 2)
                                  for c in clips},
            "task_peak_rss_mib": {"median": round(statistics.median(t["peak_rss_mib"] for t in tasks), 1),
                                  "max": round(max(t["peak_rss_mib"] for t in tasks), 1),
                                  "rss_before_median": round(statistics.median(t["rss_before_mib"] for t in tasks), 1)},
            "commit_s": {"median": round(statistics.median(commit), 3),
                         "p90": round(float(np.percentile(commit, 90)), 3), "max": round(max(commit), 3)},
            "compact_s_total": round(sum(t["compact_s"] for t in tasks), 2),
            "compactions": sum(t["compacted"] is not None for t in tasks)}


def one_build(cluster, work: Path, *, hosts: int, url: str, store: Path, audio: Path, args, songs: int) -> dict:
    """Every task of the view on ``hosts`` worker hosts, then both tables read back."""
    from bench_shard_scale import load

    run, shards = f"hosts{hosts}", max(1, songs // args.songs_per_shard)
    specs = [{"root": str(store), "audio": str(audio), "url": url, "shard": k, "shards": shards, "clip": c,
              "run": run} for c in args.clips for k in range(shards)]
    probes = []
    try:
        for h in cluster.workers[:hosts]:
            probes.append(Probe(cluster, h, work / "logs" / f"probe-{run}-{h}.log"))
        l0 = load()
        tasks, wall = build(probes, specs, timeout=args.build_timeout)
        l1 = load()
        bad = [t for t in tasks if not t["committed"]]
        if bad:
            raise RuntimeError(f"tasks committed nothing: {bad[:2]}")
        out = {"url": url, "shards": shards, **summarize(tasks, wall=wall, songs=songs, hosts=hosts, load=[l0, l1])}
        out["tables"] = probes[0].ask(op="tables", url=url, clips=args.clips)
        out["checks"] = check_tables(out["tables"], tasks, songs)
        out["per_task"] = sorted(tasks, key=lambda t: t["start"])
        return out
    finally:
        for p in probes:
            p.close()


def reader(cluster, work: Path, *, url: str, args) -> dict:
    """From worker-1: the selective query as the build left the table and after compaction."""
    from bench_shard_scale import load

    p = Probe(cluster, cluster.workers[0], work / "logs" / "probe-reader.log")
    try:
        l0 = load()
        q = {"url": url, "clip": 5, "label": args.label, "repeats": args.query_repeats}
        before = p.ask(op="query", **q)
        packed = p.ask(op="compact", url=url, clips=args.clips)
        after = p.ask(op="query", **q)
        return {"host": cluster.workers[0], "label": args.label, "as_built": before, "compact": packed,
                "compacted": after, "load": [l0, load()]}
    finally:
        p.close()


def prepare(work: Path, args) -> tuple[Path, Path, dict]:
    """The corpus and its ingested store root (audio folder, store root, what each took)."""
    from bench_shard_scale import ingest_child, load
    from scale_corpus import make_corpus

    audio = work / "audio"
    l0 = load()
    corpus = {**make_corpus(audio, size=args.songs, base=args.base, duration=args.duration,
                            workers=os.cpu_count() or 1), "load": [l0, load()]}
    print(f"corpus: {corpus}", flush=True)
    base = work / "store-base"
    ingested = ingest_child(audio / "genres_original", base)
    print(f"ingest: {ingested}", flush=True)
    return audio / "genres_original", base, {"corpus": corpus, "ingest": ingested}


def leftovers(token: str, prefix: str | None) -> dict[str, list]:
    """Processes started with this run's marker, and namespaces of its cluster, still there."""
    from bench_distributed import leftovers as marked

    # no cluster prefix yet: no namespace of this run can exist, so none is counted
    return marked(token, mark=MARK, prefix=f"{prefix}-" if prefix else "\0", tries=10)


def run_all(args, work: Path, result: dict, save, token: str) -> None:
    """Corpus, ingest, the cluster, each build, the reader; the cluster always torn down."""
    import cluster as cl

    audio, base, result["prepare"] = prepare(work, args)
    songs = result["prepare"]["ingest"]["songs"] - result["prepare"]["ingest"]["quarantined"]
    stores = {h: work / f"store-hosts{h}" for h in args.hosts}
    for s in stores.values():
        shutil.copytree(base, s)
    shutil.rmtree(base)
    subprocess.run(["chown", "-R", f"{cl.SERVICE_USER}:{cl.SERVICE_USER}", str(work)], check=True)
    os.chmod(work, 0o700)  # the corpus and the stores: the service user's alone
    os.environ[MARK] = token  # from here on: the cluster's processes and the probes (cluster.env keeps it)
    shared, t0 = args.workdir / "cluster", time.perf_counter()
    try:
        cluster = cl.up(shared, workers=max(args.hosts), object_store=True,
                        shards=max(1, songs // args.songs_per_shard), log=lambda m: print(f"cluster: {m}", flush=True))
        result["prefix"], result["cluster_up_s"] = cluster.prefix, round(time.perf_counter() - t0, 1)
        result["stopped_sensors"] = cluster.graph().stop_sensors()
        root_url = f"{cluster.s3_env()['GTZAN_STORE_URL']}/bench-{token}"
        for h in args.hosts:
            b = one_build(cluster, args.workdir, hosts=h, url=f"{root_url}/hosts{h}", store=stores[h],
                          audio=audio, args=args, songs=songs)
            result["builds"].append(b)
            print(json.dumps({k: v for k, v in b.items() if k not in ("per_task", "tables")}), flush=True)
            save()
            if h != args.hosts[-1] and not args.keep:
                shutil.rmtree(stores[h])  # its per-song cache: disk the next build needs
        result["reader"] = reader(cluster, args.workdir, url=result["builds"][-1]["url"], args=args)
        print(f"reader: {json.dumps(result['reader'])}", flush=True)
    finally:
        if (shared / cl.STATE).exists():
            cl.down(shared, purge=True, log=lambda m: print(f"cluster: {m}", flush=True))
        result["left_behind"] = leftovers(token, result.get("prefix"))
        save()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="scratch folder, outside the repository (deleted)")
    ap.add_argument("--songs", type=int, default=20000)
    ap.add_argument("--songs-per-shard", type=int, default=1250)
    ap.add_argument("--hosts", type=int, nargs="+", default=[1, 2], help="worker hosts of each build, in order")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per song")
    ap.add_argument("--base", type=int, default=100, help="rendered songs per genre (the rest are copies)")
    ap.add_argument("--clips", type=int, nargs="+", default=[5, 1], help="clip lengths, in task order")
    ap.add_argument("--label", type=int, default=5, help="the label queried (5: jazz)")
    ap.add_argument("--query-repeats", type=int, default=15)
    ap.add_argument("--build-timeout", type=float, default=3600.0, help="seconds one build may take")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        ap.error("the cluster makes network namespaces: run this as root")
    if args.workdir.resolve().is_relative_to(REPO):
        ap.error("--workdir must be outside the repository")
    if sorted(args.hosts) != args.hosts or min(args.hosts) < 1:
        ap.error("--hosts: increasing counts of worker hosts, from 1")
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "deploy")]
    from bench_shard_scale import THREADS, _git

    import cluster as cl

    cl.ensure_service_user()
    token = secrets.token_hex(8)
    os.environ.update(THREADS)
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(args.workdir, 0o755)  # the cluster's users enter it; the folders below are theirs
    (args.workdir / "logs").mkdir(mode=0o700, exist_ok=True)
    work = args.workdir / "bench"
    work.mkdir(mode=0o700)
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "git": _git(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                         f"Python {platform.python_version()}", "command": " ".join(sys.argv),
              "songs_asked": args.songs, "duration_s": args.duration, "songs_per_shard": args.songs_per_shard,
              "builds": []}

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(result, indent=1, default=str))

    try:
        run_all(args, work, result, save, token)
    finally:
        save()
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    report(result)
    return 0 if not any(result.get("left_behind", {"?": [1]}).values()) else 1


def report(result: dict) -> None:
    """The short summary."""
    for b in result["builds"]:
        print(f"{b['hosts']} host(s): {b['tasks']} tasks, {b['songs']} songs, wall {b['wall_s']} s, CPU "
              f"{b['cpu_ms_per_song']} ms/song, tasks per host {b['tasks_per_host']}, peak RSS "
              f"{b['task_peak_rss_mib']}, commit {b['commit_s']} s, load {b['load']}, tables {b['checks']}")
    for when, q in ((w, result["reader"][w]) for w in ("as_built", "compacted") if result.get("reader")):
        print(f"reader ({when}): query {q['query_ms']} ms ({q['query_cpu_ms']} ms CPU, {q['rows']} rows, "
              f"{q['files_read']}/{q['files_total']} files), read_clips {q['read_clips_ms']} ms ({q['clips']} "
              f"clips, {q['objects']} objects)")
    print(f"left behind: {result.get('left_behind')}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        sys.exit(probe_main())
    sys.exit(main())
