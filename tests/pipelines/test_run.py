"""The whole graph through Dagster (what `make run` does), on a tiny corpus with 1 epoch.

`gtzan run` creates its runs in the instance from the code location, so each run is listed
under its job, carries its origin, and re-executes from the UI (here: through the
webserver's GraphQL, as "Re-execute all" does). It executes them in its own process, or
with `--run-launcher` hands them to the instance's run launcher.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from assets.views import asset_name
from feature_store.views import VIEWS
from pipelines import cli
from pipelines.run import RunFailedError, plan_runs, run_all
from pipelines.settings import Settings

REPO = Path(__file__).resolve().parents[2]
GTZAN = Path(sys.executable).with_name("gtzan")
#: TensorFlow's start-up lines (absl, oneDNN) and its retracing warning: in no run's output.
TF_NOISE = ("absl::InitializeLog", "oneDNN custom operations", "triggered tf.function retracing")


def run_output(home: Path, run_ids=None) -> str:
    """Everything the runs of a DAGSTER_HOME printed: each step's captured stdout and stderr (what the
    UI shows per step), the code server's and run workers' log, and the runs' event log messages."""
    files = [f for f in (home / "storage").glob("*/compute_logs/*") if f.suffix in (".out", ".err")]
    if run_ids is not None:
        files = [f for f in files if f.parts[-3] in run_ids]
    text = "".join(f.read_text(errors="replace") for f in files)
    text += "".join(f.read_text(errors="replace") for f in (home / "logs").glob("*.log"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            if run_ids is None or run.run_id in run_ids:
                text += "".join(e.message or "" for e in instance.all_logs(run.run_id))
    return text


def test_plan_is_the_graph_in_dependency_order():
    s = Settings(clip_seconds=(1, 5), models=("cnn", "baseline"), epochs=3, seeds=(0, 1), scheme="stratified")
    plan = plan_runs(s, with_embeddings=True)
    assert [p.label for p in plan] == [
        "ingest_job", "features_job [1]", "features_job [5]", "training_job [1|cnn]", "training_job [1|baseline]",
        "training_job [5|cnn]", "training_job [5|baseline]", "embeddings_job [1]", "embeddings_job [5]", "report_job"]
    assert [p.stage for p in plan].index("report") == len(plan) - 1
    cell = plan[3]
    assert cell.tags == {"dagster/partition": "1|cnn", "dagster/partition/clip": "1", "dagster/partition/model": "cnn"}
    assert cell.config == {"ops": {"genre_models": {"config": {"epochs": 3, "seeds": [0, 1], "scheme": "stratified",
                                                                "batch_size": s.batch_size}}}}
    probes = plan[7].config["ops"]["probe_models"]["config"]
    assert probes == {"classifiers": ["logreg"], "seeds": [0, 1], "scheme": "stratified"}
    assert plan[1].tags == {"dagster/partition": "1"} and plan[0].tags == {} and plan[0].config == {}
    assert "embeddings_job" not in {p.job for p in plan_runs(s)}


@pytest.fixture(scope="module")
def made(tmp_path_factory, dagster_home_at) -> dict:
    """`gtzan run` on a tiny corpus: 1 and 5 s clips, seed_cnn, 1 epoch, into its own DAGSTER_HOME."""
    from feature_store.demo import write_demo_corpus

    root = tmp_path_factory.mktemp("gtzan-run")
    corpus = write_demo_corpus(root / "corpus", songs_per_genre=3, duration=6.0)
    home = dagster_home_at(root / "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTZAN_")}
    env.update(DAGSTER_HOME=str(home), GTZAN_DIR=str(corpus), GTZAN_DATA_DIR=str(root / "data"), GTZAN_WORKERS="1")
    p = subprocess.run([str(GTZAN), "run", "--clip-seconds", "1", "5", "--models", "seed_cnn", "--epochs", "1"],
                       env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}\n{(home / 'logs' / 'gtzan-run.log').read_text()[-3000:]}"
    return {"root": root, "home": home, "data": root / "data", "env": env, "output": p.stdout, "stderr": p.stderr}


def test_whole_graph_on_tiny_corpus(made):
    lines = made["output"].splitlines()
    with dg.DagsterInstance.from_config(str(made["home"])) as instance:
        runs = [r for r in instance.get_runs() if r.parent_run_id is None]  # not the test's re-execution
        # ingest, 2 feature partitions, 2 model cells, the report
        assert len(runs) == 6 and [ln.split()[-1] for ln in lines if ln.startswith("  ok")] == [
            r.run_id[:8] for r in reversed(runs)]
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        keys = {k.to_user_string() for k in instance.get_asset_keys()}
        default_views = {asset_name(n) for n, cls in VIEWS.items() if not cls.opt_in}
        assert default_views >= {"mel_features", "timbre_features"}
        assert keys == {"audio_catalog", "song_splits", *default_views, "genre_models", "evaluation_report"}
        for view in default_views:
            assert instance.get_materialized_partitions(dg.AssetKey(view)) == {"1", "5"}
        assert instance.get_materialized_partitions(dg.AssetKey("genre_models")) == {"1|seed_cnn", "5|seed_cnn"}
        for run in runs:  # launched from the code location, with the config asked for
            assert run.remote_job_origin is not None and run.job_code_origin is not None
            assert run.remote_job_origin.job_name == run.job_name
            # what a job's page in the UI lists: its runs of this repository
            label = run.remote_job_origin.repository_origin.get_label()
            listed = instance.get_runs(dg.RunsFilter(job_name=run.job_name, tags={".dagster/repository": label}))
            assert run.run_id in {r.run_id for r in listed}
            assert run.run_config["execution"] == {"config": {"in_process": {}}}
        [cell] = [r for r in runs if r.tags.get("dagster/partition") == "5|seed_cnn"]
        assert cell.job_name == "training_job" and cell.tags["dagster/partition/model"] == "seed_cnn"
        assert cell.run_config["ops"]["genre_models"]["config"]["epochs"] == 1
    report = Path(lines[-1].removeprefix("evaluation report: "))
    assert report == made["data"] / "reports" / "report.md" and "| seed_cnn |" in report.read_text()
    assert len(list((made["data"] / "models").rglob("model.keras"))) == 2
    assert lines.index("ingest") < lines.index("features") < lines.index("training") < lines.index("report")
    assert any("training_job [5|seed_cnn]" in ln for ln in lines)
    assert f"6 runs recorded in {made['home']}" in made["output"]
    # TensorFlow's start-up lines and retracing warnings are kept quiet, here and in the runs' logs
    everything = made["output"] + made["stderr"] + run_output(made["home"])
    assert "seed_cnn 5 s seed 0: song accuracy" in everything  # the training step's own log line is there
    assert not [n for n in TF_NOISE if n in everything]
    assert lines[0] == f"code server output: {made['home'] / 'logs' / 'gtzan-run.log'}"


JOB_RUNS = """
query($selector: PipelineSelector!) { pipelineOrError(params: $selector) {
  __typename ... on Pipeline { runs { runId jobName } } } }
"""
REEXECUTE = """
mutation($parent: String!) { launchRunReexecution(reexecutionParams: {parentRunId: $parent, strategy: ALL_STEPS}) {
  __typename ... on LaunchRunSuccess { run { runId jobName } } ... on PythonError { message } } }
"""


@pytest.mark.timeout(600)
def test_make_run_runs_are_listed_under_their_job_and_reexecute(made, webserver):
    """What "Re-execute all" does in the UI, through the webserver's GraphQL."""
    with dg.DagsterInstance.from_config(str(made["home"])) as instance:
        runs = {r.run_id: r for r in instance.get_runs()}
    server = webserver(made["env"])
    location = server.wait_loaded()
    selector = {"repositoryLocationName": location["name"],
                "repositoryName": location["locationOrLoadError"]["repositories"][0]["name"]}
    for job in ("ingest_job", "features_job", "training_job", "report_job"):
        listed = server.gql(JOB_RUNS, {"selector": {**selector, "pipelineName": job}})["pipelineOrError"]["runs"]
        assert sorted(r["runId"] for r in listed) == sorted(i for i, r in runs.items() if r.job_name == job), job
    [parent] = [i for i, r in runs.items() if r.tags.get("dagster/partition") == "5|seed_cnn"]
    launched = server.gql(REEXECUTE, {"parent": parent})["launchRunReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert launched["run"]["jobName"] == "training_job"
    run = server.wait_run(launched["run"]["runId"])
    assert run["status"] == "SUCCESS", server.log_text()[-3000:]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == "5|seed_cnn" and tags["dagster/parent_run_id"] == parent
    with dg.DagsterInstance.from_config(str(made["home"])) as instance:
        child = instance.get_run_by_id(launched["run"]["runId"])
        assert child.remote_job_origin is not None and child.parent_run_id == parent
        # the re-executed cell is a new materialization of the same partition
        records = instance.fetch_materializations(dg.AssetKey("genre_models"), limit=10).records
        assert [r.run_id for r in records].count(child.run_id) == 1
    # it trained in a run worker that the webserver's code server started: quietly
    output = run_output(made["home"], {child.run_id})
    assert "seed_cnn 5 s seed 0" in output and not [n for n in TF_NOISE if n in output + server.log_text()]


def test_gtzan_run_refuses_unknown_models(tmp_path):
    r = CliRunner().invoke(cli.main, ["run", "--models", "cnn", "nope"], env={"GTZAN_DATA_DIR": str(tmp_path)})
    assert r.exit_code == 2
    assert r.stderr.startswith("gtzan: error: unknown models ['nope']")
    assert not (tmp_path / "store").exists()


def test_a_failed_run_stops_the_sequence_with_its_error(tmp_path, dagster_home):
    """An audio folder that is not there: the ingest run fails, and nothing after it starts."""
    settings = Settings(audio_dir=tmp_path / "nowhere", data_dir=tmp_path / "data", workers=1, clip_seconds=(1,),
                        models=("baseline",))
    lines: list[str] = []
    with pytest.raises(RunFailedError, match=r"run \S+ \(ingest_job\) failure: audio_catalog: .*does not exist"):
        run_all(settings=settings, workspace_file=REPO / "workspace.yaml", dagster_home=dagster_home,
                run_launcher=True, log=lines.append)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        [run] = instance.get_runs()
        assert run.job_name == "ingest_job" and run.status == dg.DagsterRunStatus.FAILURE
    assert lines[-1] == "ingest"


def test_runs_here_refuse_definitions_imported_with_other_settings(tmp_path, dagster_home):
    """In this (test) process pipelines.definitions was imported with other folders: executing the
    runs here would write there, so it refuses before any run; --run-launcher would be fine."""
    import pipelines.definitions  # noqa: F401

    settings = Settings(data_dir=tmp_path / "elsewhere", clip_seconds=(1,), models=("baseline",))
    with pytest.raises(RunFailedError, match="imported pipelines.definitions with other GTZAN_\\* settings"):
        run_all(settings=settings, workspace_file=REPO / "workspace.yaml", dagster_home=dagster_home,
                log=lambda _: None)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_runs() == []


def _weights_or_skip() -> None:
    from feature_store.embeddings import musicnn as mn

    try:
        mn.weights_folder("MSD_musicnn")
    except mn.MusicnnWeightsError:
        pytest.skip(f"musicnn weights not installed; `{mn.INSTALL_COMMAND}` installs them")


def test_with_embeddings_adds_embeddings_and_probes_to_the_report(tiny_corpus, tmp_path, dagster_home):
    """Through the instance's run launcher: a run worker process per run."""
    _weights_or_skip()
    lines: list[str] = []
    data = tmp_path / "data"
    settings = Settings(audio_dir=tiny_corpus, data_dir=data, workers=1, clip_seconds=(5,), models=("baseline",),
                        epochs=1, seeds=(0, 1))
    out = run_all(settings=settings, workspace_file=REPO / "workspace.yaml", dagster_home=dagster_home,
                  run_launcher=True, with_embeddings=True, log=lines.append)
    # ingest, 1 feature partition, 1 model cell, 1 embeddings + probe run, the report
    assert len(out["runs"]) == 5
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("musicnn_embeddings")) == {"5"}
        assert instance.get_materialized_partitions(dg.AssetKey("probe_models")) == {"5"}
        run = instance.get_run_by_id(out["runs"][3])
        assert run.job_name == "embeddings_job" and run.tags["dagster/partition"] == "5"
        assert ".dagster/grpc_info" in run.tags  # started by the code server, not in this process
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        checks = {r.event_log_entry.dagster_event.event_specific_data.check_name for r in records}
        assert checks == {"embeddings_sane", "probe_above_chance"}
    text = Path(out["report"]).read_text()
    assert "| baseline |" in text and "| probe_logreg_msd |" in text
    from training.train import ModelStore

    runs = ModelStore(data / "models").runs()
    assert sorted((r.model, r.seed) for r in runs) == [
        ("baseline", 0), ("baseline", 1), ("probe_logreg_msd", 0), ("probe_logreg_msd", 1)]
    assert lines.index("embeddings and probes") < lines.index("report")
    assert any("embeddings_job [5]" in ln for ln in lines)
    # run workers (one process per run) import TensorFlow for the model and musicnn: quietly
    output = run_output(dagster_home)
    assert "probe_logreg_msd 5 s seed 1" in output and not [n for n in TF_NOISE if n in output]


def test_with_embeddings_without_the_weights_fails_before_any_run(tmp_path, dagster_home, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "musicnn" else real(name, *a))
    with pytest.raises(RunFailedError, match=r"--with-embeddings: .*pip install --no-deps musicnn==0\.1\.0"):
        run_all(settings=Settings(data_dir=tmp_path, clip_seconds=(5,), models=("baseline",)),
                workspace_file=REPO / "workspace.yaml", dagster_home=dagster_home, with_embeddings=True,
                log=lambda _: None)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_runs() == []


def test_python_m_pipelines_run_is_gtzan_run():
    p = subprocess.run([sys.executable, "-m", "pipelines.run", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Usage: gtzan run [OPTIONS]") and "--with-embeddings" in p.stdout
