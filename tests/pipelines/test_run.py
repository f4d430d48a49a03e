"""The whole graph through Dagster (what `make run` does), on a tiny corpus with 1 epoch."""

from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import build_defs
from pipelines.run import main, run_all


def test_whole_graph_on_tiny_corpus(tiny_resources):
    lines: list[str] = []
    with dg.DagsterInstance.ephemeral() as instance:
        out = run_all(
            instance=instance,
            defs=build_defs(tiny_resources),
            clip_seconds=[1, 5],
            models=["seed_cnn"],
            epochs=1,
            log=lines.append,
        )
        # ingest, 2 feature partitions, 2 model cells, the report
        assert len(out["runs"]) == 6
        runs = instance.get_runs()
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        keys = {k.to_user_string() for k in instance.get_asset_keys()}
        assert keys == {"audio_catalog", "song_splits", "mel_features", "genre_models", "evaluation_report"}
        feats = instance.get_materialized_partitions(dg.AssetKey("mel_features"))
        assert feats == {"1", "5"}
        cells = instance.get_materialized_partitions(dg.AssetKey("genre_models"))
        assert cells == {"1|seed_cnn", "5|seed_cnn"}
    report = out["report"]
    text = Path(report).read_text()
    assert "| seed_cnn |" in text
    store = tiny_resources["features"].store()
    assert store.catalog_path.is_file() and store.splits_path.is_file()
    assert (store.generation(1) / "mel.h5").is_file() and (store.generation(5) / "mel.h5").is_file()
    models = list((Path(tiny_resources["models"].root)).rglob("model.keras"))
    assert len(models) == 2
    assert lines[0] == "ingest" and any("training_job [5|seed_cnn]" in ln for ln in lines)


def test_main_refuses_unknown_models(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--models", "nope"])
    assert exc.value.code == 2
    assert "unknown models ['nope']" in capsys.readouterr().err
