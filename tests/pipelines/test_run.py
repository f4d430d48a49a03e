"""The whole graph through Dagster (what `make run` does), on a tiny corpus with 1 epoch."""

from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from pipelines import cli
from pipelines.definitions import build_defs
from pipelines.run import RunFailedError, run_all
from pipelines.settings import Settings


def test_whole_graph_on_tiny_corpus(tiny_resources):
    lines: list[str] = []
    with dg.DagsterInstance.ephemeral() as instance:
        out = run_all(
            settings=Settings(clip_seconds=(1, 5), models=("seed_cnn",), epochs=1),
            instance=instance,
            defs=build_defs(tiny_resources),
            log=lines.append,
        )
        # ingest, 2 feature partitions, 2 model cells, the report
        assert len(out["runs"]) == 6
        runs = instance.get_runs()
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        keys = {k.to_user_string() for k in instance.get_asset_keys()}
        assert keys == {"audio_catalog", "song_splits", "mel_features", "timbre_features", "genre_models",
                        "evaluation_report"}
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


def test_gtzan_run_refuses_unknown_models(tmp_path):
    r = CliRunner().invoke(cli.main, ["run", "--models", "cnn", "nope"], env={"GTZAN_DATA_DIR": str(tmp_path)})
    assert r.exit_code == 2
    assert r.stderr.startswith("gtzan: error: unknown models ['nope']")
    assert not (tmp_path / "store").exists()


def _weights_or_skip() -> None:
    from feature_store.embeddings import musicnn as mn

    try:
        mn.weights_folder("MSD_musicnn")
    except mn.MusicnnWeightsError:
        pytest.skip(f"musicnn weights not installed; `{mn.INSTALL_COMMAND}` installs them")


def test_with_embeddings_adds_embeddings_and_probes_to_the_report(tiny_resources):
    _weights_or_skip()
    lines: list[str] = []
    with dg.DagsterInstance.ephemeral() as instance:
        out = run_all(
            settings=Settings(clip_seconds=(5,), models=("baseline",), epochs=1, seeds=(0, 1)),
            instance=instance,
            defs=build_defs(tiny_resources),
            with_embeddings=True,
            log=lines.append,
        )
        # ingest, 1 feature partition, 1 model cell, 1 embeddings + probe run, the report
        assert len(out["runs"]) == 5
        assert instance.get_materialized_partitions(dg.AssetKey("musicnn_embeddings")) == {"5"}
        assert instance.get_materialized_partitions(dg.AssetKey("probe_models")) == {"5"}
        run = instance.get_run_by_id(out["runs"][3])
        assert run.job_name == "embeddings_job" and run.tags["dagster/partition"] == "5"
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        checks = {r.event_log_entry.dagster_event.event_specific_data.check_name for r in records}
        assert checks == {"embeddings_sane", "probe_above_chance"}
    text = Path(out["report"]).read_text()
    assert "| baseline |" in text and "| probe_logreg_msd |" in text
    runs = tiny_resources["models"].runs()
    assert sorted((r["model"], r["seed"]) for r in runs) == [
        ("baseline", 0), ("baseline", 1), ("probe_logreg_msd", 0), ("probe_logreg_msd", 1)]
    assert lines.index("embeddings and probes") < lines.index("report")
    assert any("embeddings_job [5]" in ln for ln in lines)


def test_with_embeddings_without_the_weights_fails_before_any_run(tiny_resources, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "musicnn" else real(name, *a))
    with dg.DagsterInstance.ephemeral() as instance:
        with pytest.raises(RunFailedError, match=r"--with-embeddings: .*pip install --no-deps musicnn==0\.1\.0"):
            run_all(settings=Settings(clip_seconds=(5,), models=("baseline",)), instance=instance,
                    defs=build_defs(tiny_resources), with_embeddings=True, log=lambda _: None)
        assert instance.get_runs() == []


def test_python_m_pipelines_run_is_gtzan_run():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "pipelines.run", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Usage: gtzan run [OPTIONS]") and "--with-embeddings" in p.stdout
