"""Helpers that turn polars frames and files into Dagster metadata values."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

_TYPES = {pl.Int64: "int", pl.Int32: "int", pl.Float64: "float", pl.Float32: "float", pl.Boolean: "bool"}
#: PNG figures larger than this are linked by path instead of inlined into the UI.
MAX_INLINE_PNG_BYTES = 400_000


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
        dg.TableRecord({k: (v if isinstance(v, int | float | bool) or v is None else str(v)) for k, v in row.items()})
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
    data = p.read_bytes()
    if len(data) > MAX_INLINE_PNG_BYTES:
        return f"**{title}**: `{p}` ({len(data) / 1e3:.0f} kB, too large to inline)"
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(data).decode()})"


def clip_store_metadata(report: Any, clip_seconds: int, store: Any) -> dict[str, Any]:
    """Metadata of one clip length of a store that a build wrote (mel or embeddings).

    ``report`` is the build's report (``clip_lengths``, ``computed``, ``cached``, ``failed``,
    ``seconds``); ``store`` has ``params`` and ``registry_path``. Each asset adds its own keys.
    """
    info = report.clip_lengths[clip_seconds]
    params = store.params
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
        "build_seconds": round(report.seconds, 2),
        "dagster/row_count": info["clips"],
    }


def spread(values: list[float]) -> float:
    """Sample standard deviation of a metric over seeds (0 for a single seed)."""
    import statistics

    return statistics.stdev(values) if len(values) > 1 else 0.0


def host_metadata() -> dict[str, str]:
    """``{"worker_host": name}``: the host this step runs on, for a step's metadata.

    The name is ``$GTZAN_HOST_NAME`` (each host of a deployment is started with its own; a
    network namespace keeps the machine's host name), else the machine's host name.
    """
    # Read when the step runs, in the process that runs it. pipelines.deployment is the one
    # module that reads the deployment's environment; importing it here, lazily, is the one
    # import from assets/ into pipelines/ (it is Dagster-free and imports nothing back).
    from pipelines.deployment import host_name

    return {"worker_host": host_name()}

