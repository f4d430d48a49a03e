"""Helpers that turn polars frames and files into Dagster metadata values.

Numbers are rounded to a fixed precision by what they measure (:func:`rounded`), so that the UI
shows ``0.8333`` and ``12.35`` rather than ``0.8333333333333334`` and ``12.349876012``; the model
store's ``metrics.json`` keeps the full values.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from feature_store import integrity

_TYPES = {pl.Int64: "int", pl.Int32: "int", pl.Float64: "float", pl.Float32: "float", pl.Boolean: "bool"}
#: PNG figures larger than this are linked by path instead of inlined into the UI.
MAX_INLINE_PNG_BYTES = 400_000
#: The largest report.md the report asset reads back (it is a few kB of tables).
MAX_REPORT_BYTES = 4 << 20


#: Decimal places of a float in metadata, by the end of its key (the first that matches): shares
#: such as accuracies and F1 to 4 places (0.8333), times in seconds and sizes in MB to 2, times
#: in milliseconds and hours to 3. Other floats: :data:`DEFAULT_DECIMALS`.
DECIMALS: tuple[tuple[str, int], ...] = (
    ("accuracy", 4), ("accuracy_std", 4), ("f1", 4), ("chance", 4), ("ratio", 4),
    ("seconds", 2), ("seconds_per_epoch", 2), ("_mb", 2),
    ("ms_per_clip", 3), ("_ms", 3), ("hours", 3), ("hours_of_audio", 3),
)
DEFAULT_DECIMALS = 4


def decimals(key: str) -> int:
    """Decimal places of a float metadata value called ``key`` (see :data:`DECIMALS`)."""
    return next((places for end, places in DECIMALS if key.endswith(end)), DEFAULT_DECIMALS)


def rounded(value: Any, key: str = "") -> Any:
    """``value`` with every float rounded to :func:`decimals` of its key.

    Goes into mappings (each value by its own key), lists and JSON metadata values; a table
    made by :func:`table` is rounded already; anything else is returned as it is. NaN and
    infinities stay what they are, and so do parameters (keys ending in ``params``: a feature
    parameter such as ``amin=1e-10`` is shown as it is hashed).
    """
    if key.endswith("params"):
        return value
    if isinstance(value, float):
        return round(value, decimals(key)) if math.isfinite(value) else value
    if isinstance(value, dg.JsonMetadataValue):
        return dg.MetadataValue.json(rounded(value.data, key))
    if isinstance(value, dg.MetadataValue):  # tables, paths, Markdown...: as they are
        return value
    if isinstance(value, Mapping):
        return {k: rounded(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, key) for v in value]
    return value


def md_table(df: pl.DataFrame, *, limit: int = 50) -> str:
    """A Markdown table of the first ``limit`` rows of ``df`` (``_none_`` when empty)."""
    if df.height == 0:
        return "_none_"
    cols = df.columns
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.head(limit).iter_rows():
        rows.append("| " + " | ".join("" if v is None else _cell(v) for v in r) + " |")
    if df.height > limit:
        rows.append(f"\n… and {df.height - limit} more")
    return "\n".join(rows)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def table(df: pl.DataFrame, *, limit: int = 200) -> dg.TableMetadataValue:
    """A Dagster table (rendered as a table in the UI) of the first ``limit`` rows of ``df``."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, _TYPES.get(dtype.base_type(), "string")) for name, dtype in df.schema.items()]
    )
    records = [
        dg.TableRecord({k: (rounded(v, k) if isinstance(v, int | float | bool) or v is None else str(v))
                        for k, v in row.items()})
        for row in df.head(limit).iter_rows(named=True)
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def size_bytes(path: str | os.PathLike[str]) -> int:
    """Size of a file, or of every file under a folder (0 when it does not exist)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return 0


def png_markdown(path: str | os.PathLike[str], *, title: str | None = None) -> str:
    """Markdown that shows a PNG inline (as a data URI), or links its path when too large."""
    p = Path(path)
    title = title or p.stem.replace("_", " ")
    try:
        data = integrity.read_bounded(p, limit=MAX_INLINE_PNG_BYTES, what="figure to inline")
    except integrity.IntegrityError:
        return f"**{title}**: `{p}` (not a regular file, or too large to inline)"
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(data).decode()})"


def clip_store_metadata(report: Any, clip_seconds: int, store: Any) -> dict[str, Any]:
    """Metadata of one clip length of a store that a build wrote (mel or embeddings).

    ``report`` is the build's report (``clip_lengths``, ``computed``, ``cached``, ``failed``,
    ``seconds``); ``store`` is the view's store. The view assets add their own keys.
    """
    info = report.clip_lengths[clip_seconds]
    params = store.view.clip_params
    return {
        "status": info["status"],
        "clips": info["clips"],
        "songs": info["songs"],
        "songs_computed": len(report.computed),
        "songs_cached": report.cached,
        "feature_failures": report.failed.height,
        "failed_songs": table(report.failed),
        "too_short_for_this_length": len(info["skipped_short"]),
        "params": dg.MetadataValue.json(params.to_dict()),
        "params_hash": params.hash(),
        "mode": params.mode,
        "generation": info["generation"],
        "hdf5_path": dg.MetadataValue.path(info["path"]),
        "hdf5_bytes": size_bytes(info["path"]),
        "index_path": dg.MetadataValue.path(info["index_path"]),
        "bytes": info["bytes"],
        "registry_path": dg.MetadataValue.path(str(store.registry_path)),
        "build_seconds": report.seconds,
        "dagster/row_count": info["clips"],
    }


def spread(values: list[float]) -> float:
    """Sample standard deviation of a metric over seeds (0 for a single seed)."""
    import statistics

    return statistics.stdev(values) if len(values) > 1 else 0.0


def step_metadata(metadata: Mapping[str, Any], features: Any) -> dict[str, Any]:
    """What a step records: ``metadata`` :func:`rounded` and :func:`with_sizes`, and the host it ran on
    (:func:`host_metadata`)."""
    return with_sizes(rounded({**metadata, **host_metadata(features)}))


def human_size(n: int) -> str:
    """``n`` bytes as the UI should say it: ``812 B``, ``4.2 kB``, ``13.1 MB``, ``2.05 GB`` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}" if n / scale < 100 else f"{n / scale:.0f} {unit}"
    return f"{n} B"


def with_sizes(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` with, after each byte count (a key ending in ``bytes``), its size in words.

    The count stays an integer (what scripts and tests read); ``<name>_size`` (``size`` for
    ``bytes``) says it as ``13.1 MB``, which the UI shows as text.
    """
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        out[key] = value
        if key.endswith("bytes") and isinstance(value, int) and not isinstance(value, bool):
            out[key.removesuffix("bytes").rstrip("_") + ("_size" if key != "bytes" else "size")] = (
                dg.MetadataValue.text(human_size(value)))
    return out


def host_metadata(features: Any) -> dict[str, str]:
    """``{"worker_host": name}``: the host this step runs on, for a step's metadata.

    The name is the features resource's ``host_name`` (each host of a deployment loads the code
    location with its own ``$GTZAN_HOST_NAME``; a network namespace keeps the machine's host
    name), else the machine's host name.
    """
    import socket

    return {"worker_host": getattr(features, "host_name", "") or socket.gethostname()}
