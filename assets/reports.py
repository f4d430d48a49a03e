"""The evaluation report asset."""

import re
from pathlib import Path

import dagster as dg

from assets.embeddings import probe_models
from assets.metadata import MAX_INLINE_PNG_BYTES, MAX_REPORT_BYTES, png_markdown, size_bytes, step_metadata
from assets.models import genre_models
from assets.policies import ON_ANY_MODEL_UPDATED, RETRY_POLICY, permanent
from assets.resources import FeatureStoreResource, ModelStoreResource
from feature_store import integrity

_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+\.png)\)")


def inline_images(markdown: str, base: Path) -> str:
    """Replace relative PNG links of ``markdown`` with inline data URIs the Dagster UI shows.

    Images that are missing, outside ``base`` or larger than
    :data:`assets.metadata.MAX_INLINE_PNG_BYTES` keep their link, with their path spelled out.
    """
    import base64

    root = base.resolve()

    def swap(m: re.Match[str]) -> str:
        src = m["src"]
        if src.startswith(("data:", "http://", "https://")):
            return m[0]
        p = (root / src).resolve()
        if root not in p.parents:
            return f"{m[0]} (`{p}`)"
        try:
            data = integrity.read_bounded(p, limit=MAX_INLINE_PNG_BYTES, what="figure to inline")
        except (OSError, integrity.IntegrityError):
            return f"{m[0]} (`{p}`)"
        return f"![{m['alt']}](data:image/png;base64,{base64.b64encode(data).decode()})"

    return _IMAGE.sub(swap, markdown)


@dg.asset(
    group_name="reports",
    kinds={"markdown", "matplotlib"},
    deps=[genre_models, probe_models],
    retry_policy=RETRY_POLICY,
    automation_condition=ON_ANY_MODEL_UPDATED,
    description="The evaluation report over every trained model of the current feature parameters (the "
    "Keras models and the probes on musicnn embeddings): "
    "held-out song and clip accuracy shaped like the study's tables (models × 1/5/15/30 s, mean ± std "
    "over seeds), the study's published numbers and its own metric beside ours, costs, and figures. "
    "Written as Markdown (and HTML and PNG figures where the report module draws them) into the "
    "report folder; the tables and figures are shown inline in the UI.",
)
def evaluation_report(
    context: dg.AssetExecutionContext, features: FeatureStoreResource, models: ModelStoreResource
) -> dg.MaterializeResult:
    from training.report import best_run, write_report

    params_hash = features.params().hash()
    with permanent():
        runs = models.runs(params_hash=params_hash)
        path = Path(write_report(runs, models.report_dir))
    best = best_run(runs)
    out_dir = path.parent
    text = integrity.read_bounded(path, limit=MAX_REPORT_BYTES, what="report", remedy="write the report again").decode()
    linked = set(_IMAGE.findall(text))
    figures = sorted(p for p in out_dir.rglob("*.png") if p.is_file())
    unlinked = [p for p in figures if not any(src == p.relative_to(out_dir).as_posix() for _alt, src in linked)]
    html = sorted(out_dir.glob("*.html"))
    cells = sorted({(r.model, r.clip_seconds) for r in runs})
    context.log.info(f"report over {len(runs)} runs ({len(cells)} model × clip cells): {path}")
    metadata: dict = {
        "path": dg.MetadataValue.path(str(path)),
        "report_dir": dg.MetadataValue.path(str(out_dir)),
        "bytes": size_bytes(out_dir),
        "runs": len(runs),
        "cells": len(cells),
        "models": dg.MetadataValue.json(sorted({m for m, _ in cells})),
        "params_hash": params_hash,
        "best": dg.MetadataValue.json(best or {}),
        "report": dg.MetadataValue.md(inline_images(text, out_dir)),
        "figures": dg.MetadataValue.json([str(p) for p in figures]),
    }
    if best:
        metadata["best_song_accuracy"] = float(best["song_accuracy"])
    if unlinked:
        metadata["figures_inline"] = dg.MetadataValue.md("\n\n".join(png_markdown(p) for p in unlinked))
    if html:
        metadata["html"] = dg.MetadataValue.path(str(html[0]))
    return dg.MaterializeResult(metadata=step_metadata(metadata, features))
