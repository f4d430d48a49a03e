"""genre_models (one cell, 1 epoch) and evaluation_report on the session's tiny store."""

import base64
from pathlib import Path

import dagster as dg
import pytest

from assets import ModelStoreResource, evaluation_report, genre_models, model_above_chance
from assets.metadata import decimals
from assets.partitions import model_key
from assets.reports import inline_images

# A valid 1 x 1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def trained(built, tmp_path_factory):
    data = tmp_path_factory.mktemp("models")
    res = {**built, "models": ModelStoreResource(root=str(data / "models"), report_dir=str(data / "reports"))}
    result = dg.materialize(
        [genre_models, model_above_chance],
        resources=res,
        partition_key=model_key(model="seed_cnn", clip_seconds=1),
        run_config={"ops": {"genre_models": {"config": {"epochs": 1, "seeds": [0]}}}},
    )
    assert result.success
    return res, result


def test_model_saved_as_keras_through_the_resource(trained):
    res, result = trained
    md = {k: v.value for k, v in result.asset_materializations_for_node("genre_models")[0].metadata.items()}
    path = Path(md["model_path"])
    # <models root>/mel-<hash>/seed_cnn/clip-01s/seed-0/<generation>/model.keras
    assert path.name == "model.keras" and path.parts[-5:-2] == ("seed_cnn", "clip-01s", "seed-0")
    assert path.is_relative_to(res["models"].root)
    assert path.is_file() and md["model_bytes"] == path.stat().st_size
    assert 0.0 <= md["song_accuracy"] <= 1.0 and md["chance_accuracy"] == pytest.approx(0.1)
    assert md["parameters"] > 0 and md["seconds_per_epoch"] > 0 and md["peak_rss_mb"] > 0
    assert md["params_hash"] == res["features"].params().hash()
    [row] = md["per_seed"].records
    assert row.data["seed"] == 0 and row.data["epochs_run"] == 1
    net = res["models"].load(params=res["features"].params(), model="seed_cnn", clip_seconds=1, seed=0)
    assert net.output_shape == (None, 10)


def test_above_chance_check_matches_the_accuracy(trained):
    _res, result = trained
    md = result.asset_materializations_for_node("genre_models")[0].metadata
    [ev] = result.get_asset_check_evaluations()
    assert ev.check_name == "model_above_chance" and ev.severity == dg.AssetCheckSeverity.WARN
    assert ev.passed == (md["song_accuracy"].value > 0.1)
    [cell] = ev.metadata["cells"].value.records
    assert cell.data["model"] == "seed_cnn" and cell.data["clip_seconds"] == 1 and cell.data["seeds"] == 1


def floats(metadata, key: str = ""):
    """Every (key, float) of a metadata mapping, in tables and JSON values too."""
    if isinstance(metadata, float):
        yield key, metadata
    elif isinstance(metadata, dg.TableMetadataValue):
        for record in metadata.records:
            yield from floats(record.data)
    elif isinstance(metadata, dg.MetadataValue):
        yield from floats(metadata.value, key)
    elif isinstance(metadata, dict):
        for k, v in metadata.items():
            yield from floats(v, k)
    elif isinstance(metadata, list):
        for v in metadata:
            yield from floats(v, key)


def test_metadata_numbers_are_rounded(trained):
    """Accuracies to 4 places, seconds and MB to 2, ms to 3; the run's metrics.json keeps them all."""
    res, result = trained
    md = result.asset_materializations_for_node("genre_models")[0].metadata
    found = dict(floats(md))
    assert {"song_accuracy", "clip_accuracy", "song_macro_f1", "train_seconds", "seconds_per_epoch", "model_mb",
            "peak_rss_mb", "inference_ms_per_clip"} <= set(found)
    assert (decimals("song_accuracy"), decimals("train_seconds"), decimals("model_mb"),
            decimals("inference_ms_per_clip")) == (4, 2, 2, 3)
    for key, value in floats(md):
        assert value == round(value, decimals(key)), (key, value)
    [run] = res["models"].runs()
    assert md["song_accuracy"].value == round(run.metrics.song_accuracy, 4)
    assert md["train_seconds"].value == round(run.costs.train_seconds, 2)
    assert md["inference_ms_per_clip"].value == round(run.costs.inference_ms_per_clip, 3)
    assert md["per_seed"].value.records[0].data["train_seconds"] == round(run.costs.train_seconds, 2)
    # the check's metadata too
    [ev] = result.get_asset_check_evaluations()
    [cell] = ev.metadata["cells"].value.records
    assert cell.data["song_accuracy"] == round(run.metrics.song_accuracy, 4)
    assert ev.metadata["chance"].value == 0.1


def test_report_over_trained_models(trained):
    res, _ = trained
    result = dg.materialize([evaluation_report], resources=res)
    md = {k: v.value for k, v in result.asset_materializations_for_node("evaluation_report")[0].metadata.items()}
    report = Path(md["path"])
    assert report.is_file() and report.parent == Path(res["models"].report_dir)
    assert md["runs"] == 1 and md["models"] == ["seed_cnn"]
    assert md["best"]["model"] == "seed_cnn" and md["best"]["clip_seconds"] == 1
    assert "| seed_cnn |" in md["report"]
    for key, value in floats(result.asset_materializations_for_node("evaluation_report")[0].metadata):
        assert value == round(value, decimals(key)), (key, value)


def test_inline_images(tmp_path):
    (tmp_path / "fig").mkdir()
    (tmp_path / "fig" / "acc.png").write_bytes(PNG)
    md = "# r\n\n![accuracy](fig/acc.png)\n\n![gone](fig/missing.png)\n\n![out](../x.png)\n"
    out = inline_images(md, tmp_path)
    assert "![accuracy](data:image/png;base64," + base64.b64encode(PNG).decode() + ")" in out
    assert f"![gone](fig/missing.png) (`{tmp_path / 'fig' / 'missing.png'}`)" in out
    assert "![out](../x.png) (`" in out and out.count("data:image/png") == 1
