"""A child process for the fault tests: it does one job and says where it is on stdout.

Run as ``python _child.py <job> <json arguments>``. The test starts it in its own session
(``start_new_session=True``), reads its markers and SIGKILLs its process group at a random
moment. Markers, one per line and flushed at once:

``READY``      imports done (and, where asked, the slow first calls warmed up);
``PUBLISH``    a generation of the model store is being written (``train`` only);
``PUBLISHED``  it was published;
``DONE <json>`` the job finished, with a small JSON result.

Jobs
----
``build``   ingest ``audio`` into ``store`` and build ``clip_seconds`` (as ``gtzan features build``).
``train``   ``training.train.train_model`` of ``model`` at ``clip_seconds`` (1 epoch).
``report``  ``training.report.write_report`` of the runs in ``runs_json``; with ``slow`` every
            ``Path.write_bytes`` writes 256-byte pieces with a 1 ms pause (fault injection
            that widens the moment a kill can hit a half-written temporary file; the atomic
            write path itself is unchanged).
``read``    loop over ``FeatureStore.tensors`` until ``stop_file`` exists, checking every
            result against the known states in ``states_json``; write a summary to ``out``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from pathlib import Path


def say(marker: str, payload: dict | None = None) -> None:
    print(marker if payload is None else f"{marker} {json.dumps(payload)}", flush=True)


def job_build(a: dict) -> dict:
    from feature_store import FeatureStore, ingest
    from feature_store.errors import StoreLockedError

    if a.get("warm"):
        import numpy as np

        from feature_store.features import mel_spectrogram
        from feature_store.params import FeatureParams

        mel_spectrogram(np.zeros(4096, np.float32), params=FeatureParams())  # librosa's slow first call
    say("READY")
    if a.get("ingest", True):
        ingest(a["audio"], a["store"])
    try:
        report = FeatureStore(a["store"]).build(
            audio_root=a["audio"], clip_seconds=a["clip_seconds"], workers=a.get("workers", 1),
            lock_timeout=a.get("lock_timeout", 3600.0),
        )
    except StoreLockedError as exc:
        say("LOCKED", {"error": str(exc)})
        sys.exit(3)
    return {"status": {str(c): v["status"] for c, v in report.clip_lengths.items()}, "computed": len(report.computed)}


def job_train(a: dict) -> dict:
    import contextlib

    import keras  # noqa: F401  (the slow import happens before READY)

    from feature_store import atomic
    from training import train as tr

    real = atomic.new_generation

    @contextlib.contextmanager
    def announced(folder, **kw):
        say("PUBLISH")
        with real(folder, **kw) as tmp:
            yield tmp
        say("PUBLISHED")

    atomic.new_generation = announced
    say("READY")
    r = tr.train_model(store_root=a["store"], model_root=a["models"], model=a["model"], clip_seconds=a["clip_seconds"],
                       config=tr.TrainConfig(epochs=1, seed=a.get("seed", 0)))
    return {"run_dir": str(r.run_dir)}


def job_report(a: dict) -> dict:
    from training.report import write_report

    if a.get("slow"):
        def slow_write_bytes(self: Path, data: bytes) -> int:
            view = memoryview(data)
            with open(self, "wb") as fh:
                for i in range(0, len(view), 256):
                    fh.write(view[i : i + 256])
                    fh.flush()
                    time.sleep(0.001)
            return len(data)

        Path.write_bytes = slow_write_bytes  # type: ignore[method-assign]
    from training.record import RunRecord

    runs = [RunRecord.from_dict(r) for r in json.loads(Path(a["runs_json"]).read_text())]
    say("READY")
    path = write_report(runs, a["out"], figures=a.get("figures", False))
    return {"path": str(path)}


def job_read(a: dict) -> dict:
    from feature_store import FeatureStore

    states = json.loads(Path(a["states_json"]).read_text())  # [{"clip_ids": [...], "sha": "..."}, ...]
    store = FeatureStore(a["store"])
    stop = Path(a["stop_file"])
    reads, errors, mixed, seen = 0, [], 0, set()
    say("READY")
    while not stop.exists():
        try:
            t = store.tensors(clip_seconds=a["clip_seconds"])
        except Exception as exc:  # every error is a failure of the store
            errors.append("".join(traceback.format_exception_only(exc)).strip())
            continue
        reads += 1
        ids = t.index["clip_id"].to_list()
        sha = hashlib.sha256(t.x.tobytes()).hexdigest()
        match = [i for i, s in enumerate(states) if s["clip_ids"] == ids and s["sha"] == sha]
        if match:
            seen.add(match[0])
        else:
            mixed += 1
    result = {"reads": reads, "errors": errors[:20], "n_errors": len(errors), "mixed": mixed, "seen": sorted(seen)}
    Path(a["out"]).write_text(json.dumps(result))
    return result


JOBS = {"build": job_build, "train": job_train, "report": job_report, "read": job_read}

if __name__ == "__main__":
    job, args = sys.argv[1], json.loads(sys.argv[2])
    result = JOBS[job](args)
    say("DONE", result)
