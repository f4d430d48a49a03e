"""Bad parameters get a clear error, naming the valid values, before any work starts.

"Before any work" is checked by what is left behind: no store, model or report folder is
created, and where a store does not even exist the parameter error still comes first (not
a "build it first" error, which would mean the bad value got that far).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from feature_store import FeatureParams, FeatureStore, ingest
from feature_store.demo import write_demo_corpus
from feature_store.errors import ParameterError
from feature_store.datasets.gtzan import GENRES

CLIP_VALUES = r"\[1, 5, 15, 30\]"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    """A store of 20 six-second songs with 1 s clips."""
    base = tmp_path_factory.mktemp("badparams")
    audio = base / "audio"
    write_demo_corpus(audio, songs_per_genre=2, duration=6.0, genres=GENRES)
    ingest(audio, base / "store")
    FeatureStore(base / "store").build(audio_root=audio, clip_seconds=[1], workers=1)
    return {"audio": audio, "store": base / "store", "base": base}


def _nothing_under(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())


@pytest.mark.parametrize("bad", [-5, 0, 7, "-5", "five", 2.5, True, None])
def test_bad_clip_length_before_any_work(small, tmp_path, bad):
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(ParameterError, match=CLIP_VALUES):
        store.build(audio_root=small["audio"], clip_seconds=[bad])
    assert not (tmp_path / "store").exists()
    with pytest.raises(ParameterError, match=CLIP_VALUES):
        FeatureStore(small["store"]).clips(clip_seconds=bad)
    with pytest.raises(ParameterError, match=CLIP_VALUES):
        FeatureStore(small["store"]).tensors(clip_seconds=bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"n_mels": 0}, "n_mels must be a positive integer"), ({"n_mels": -3}, "n_mels must be a positive integer"),
     ({"sr": 0}, "sr must be a positive integer"), ({"hop_length": 4096}, "must not exceed n_fft"),
     ({"mode": "random"}, r"valid modes are \['first', 'segments'\]"), ({"dtype": "int8"}, "float32"),
     ({"fmax": 40000.0}, "fmax must be in")],
)
def test_bad_feature_params(change, message):
    with pytest.raises(ParameterError, match=message):
        FeatureParams(**change)


def test_unknown_model_before_any_work(tmp_path):
    from training.train import ModelStore, TrainConfig, train_model

    for bad in ("resnet", "../seed_cnn", ""):
        with pytest.raises(ParameterError, match=r"valid models are \['baseline'"):
            train_model(store_root=tmp_path / "no-store", model_root=tmp_path / "models", model=bad, clip_seconds=5)
        with pytest.raises(ParameterError, match="valid models"):
            ModelStore(tmp_path / "models").run_dir(params=FeatureParams(), model=bad, clip_seconds=5, seed=0)
    with pytest.raises(ParameterError, match=CLIP_VALUES):
        train_model(store_root=tmp_path / "no-store", model_root=tmp_path / "models", model="seed_cnn", clip_seconds=-5)
    with pytest.raises(ParameterError, match="valid schemes"):
        TrainConfig(scheme="random")
    assert _nothing_under(tmp_path / "models")


def test_unknown_split_or_genre(small, tmp_path):
    from training.train import TrainConfig, train_model

    store = FeatureStore(small["store"])
    with pytest.raises(ParameterError, match=r"valid splits are \['train', 'test', 'excluded'\]"):
        store.tensors(clip_seconds=1, split="validation")
    with pytest.raises(ParameterError, match=r"valid splits are \['train', 'valid', 'test', 'excluded'\]"):
        store.clips(clip_seconds=1, split="validation", scheme="fault_filtered")
    with pytest.raises(ParameterError, match="valid schemes"):
        store.clips(clip_seconds=1, split="train", scheme="kfold")
    with pytest.raises(ParameterError, match="valid genres"):
        store.tensors(clip_seconds=1, genre="polka")
    with pytest.raises(ParameterError, match=r"test_part 'holdout' is not a part of scheme 'seed' here; valid parts"):
        train_model(store_root=small["store"], model_root=tmp_path / "models", model="seed_cnn", clip_seconds=1,
                    config=TrainConfig(test_part="holdout"))
    assert _nothing_under(tmp_path / "models")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["features", "build", "{audio}", "--clip-seconds", "-5", "--store", "{new}"], CLIP_VALUES),
        (["features", "build", "{audio}", "--clip-seconds", "0", "--store", "{new}"], CLIP_VALUES),
        (["features", "build", "{audio}", "--mode", "random", "--store", "{new}"], "valid modes"),
        (["features", "query", "--clip-seconds", "1", "--split", "validation", "--store", "{store}"], "valid splits"),
        (["features", "query", "--clip-seconds", "1", "--scheme", "kfold", "--store", "{store}"], "valid schemes"),
        (["train", "--model", "resnet", "--store", "{store}", "--models-dir", "{new}"], "valid models"),
        (["train", "--clip-seconds", "-5", "--store", "{store}", "--models-dir", "{new}"], CLIP_VALUES),
        (["train", "--clip-seconds", "1", "--scheme", "random", "--store", "{store}", "--models-dir", "{new}"],
         "valid schemes"),
    ],
)
def test_cli_says_so_in_one_line(small, tmp_path, args, message):
    import re

    from pipelines import cli

    new = tmp_path / "new"
    argv = [a.format(audio=small["audio"], store=small["store"], new=new) for a in args]
    r = CliRunner().invoke(cli.main, argv, env={"GTZAN_DEBUG": None, "GTZAN_DATA_DIR": str(tmp_path / "data")})
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("gtzan: error: ")]
    assert errors and re.search(message, errors[-1]), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not new.exists() and not (tmp_path / "data").exists()


def test_dagster_bad_run_config_fails_at_once(small, tmp_path):
    """An unknown split scheme in the training run config fails the step without retries or training."""
    from assets import genre_models
    from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource

    store = tmp_path / "store"
    shutil.copytree(small["store"], store, symlinks=True)
    result = dg.materialize(
        [genre_models],
        resources={"audio": AudioSource(path=str(small["audio"])),
                   "features": FeatureStoreResource(root=str(store), workers=1),
                   "models": ModelStoreResource(root=str(tmp_path / "models"), report_dir=str(tmp_path / "r"))},
        partition_key=dg.MultiPartitionKey({"clip": "1", "model": "baseline"}),
        run_config={"ops": {"genre_models": {"config": {"scheme": "random", "epochs": 1}}}},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "valid schemes" in failure.step_failure_data.error.message
    assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in result.all_events]
    assert _nothing_under(tmp_path / "models")
