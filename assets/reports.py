"""The evaluation report asset."""

import dagster as dg

from assets.models import genre_models
from assets.resources import FeatureStoreResource, ModelStoreResource


@dg.asset(
    group_name="reports",
    kinds={"markdown"},
    deps=[genre_models],
    description="Held-out accuracy of every trained model, shaped like the study's tables, with the "
    "study's published numbers and its buggy metric beside ours.",
)
def evaluation_report(
    context: dg.AssetExecutionContext, features: FeatureStoreResource, models: ModelStoreResource
) -> dg.MaterializeResult:
    from training.report import best_run, write_report

    params_hash = features.params().hash()
    runs = [r for r in models.store().runs() if r["params_hash"] == params_hash]
    path = write_report(runs, models.report_dir)
    best = best_run(runs)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "runs": len(runs),
            "best": dg.MetadataValue.json(best or {}),
            "report": dg.MetadataValue.md(path.read_text()),
        }
    )
