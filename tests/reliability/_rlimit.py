"""A ``gtzan`` command in a child interpreter under RLIMIT_AS, reporting its exit code and
peak resident memory (shared by the memory tests of predict and of crafted files)."""

from __future__ import annotations

import textwrap

#: Address space a child may reserve, in GiB: TensorFlow reserves address space it never
#: touches, and a clean one-epoch `gtzan train` reserves about 3.8 GB; resident memory is what
#: the tests bound (peak RSS), this only stops a runaway allocation.
ADDRESS_SPACE_GIB = 4

#: Run as ``python -c CHILD OUT_JSON gtzan-args...``; writes {"exit": code, "peak_kib": kib}.
CHILD = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({cap} << 30, {cap} << 30))
    from pipelines.cli import main
    code = 0
    try:
        main(sys.argv[2:], prog_name="gtzan")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    peak = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    with open(sys.argv[1], "w") as fh:
        json.dump({{"exit": code, "peak_kib": peak}}, fh)
""").format(cap=ADDRESS_SPACE_GIB)
