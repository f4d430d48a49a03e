"""The Keras 3 port of musicnn against reference outputs of the original TF1 code.

The fixtures in ``tests/fixtures/musicnn/`` were made once by ``make_reference.py`` there,
with musicnn's own graph code (tensorflow-cpu 2.21 + tf-keras, graph mode) on real GTZAN
patches; they hold the input log-mel patches too, so these tests need no audio.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feature_store.embeddings import musicnn as mn
from feature_store.errors import ParameterError, StoreError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "musicnn"
OUTPUTS = ("tags", "penultimate", "max_pool", "mean_pool")


def _weights_or_skip(model: str) -> Path:
    try:
        return mn.weights_folder(model)
    except mn.MusicnnWeightsError:
        pytest.skip(f"musicnn weights not installed; `{mn.INSTALL_COMMAND}` installs them")


def _reference(model: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"reference_{model}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def msd() -> mn.MusicnnEmbedder:
    _weights_or_skip("MSD_musicnn")
    return mn.shared_embedder("MSD_musicnn")


@pytest.mark.parametrize("model", mn.MUSICNN_MODELS)
def test_port_matches_the_original_tf1_outputs(model, msd):
    _weights_or_skip(model)
    ref = _reference(model)
    emb = mn.shared_embedder(model)
    out = emb.embed_patches(ref["patches"].astype(np.float32))
    for name in OUTPUTS:
        got, want = out[name], ref[name]
        assert got.shape == want.shape == (ref["patches"].shape[0], mn.LAYERS[name])
        scale = float(np.abs(want).max())
        # within 1e-4 of the layer's scale everywhere, and 1e-4 relative where values are not tiny
        assert float(np.abs(got - want).max()) <= 1e-4 * scale, name
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
    # the reference is not degenerate: different songs give different tags
    assert not np.allclose(ref["tags"][ref["clip"] == 0][0], ref["tags"][ref["clip"] == 1][0], atol=1e-3)
    assert "tf_keras" not in sys.modules  # the port runs on Keras 3 alone


def test_fixture_is_small_and_has_no_pickle():
    files = sorted(FIXTURES.glob("*.np[yz]"))
    assert files and sum(f.stat().st_size for f in files) < 1_000_000
    for f in files:
        with np.load(f, allow_pickle=False) as z:  # would raise on object arrays
            assert z["patches"].shape[1:] == (mn.PATCH_FRAMES, mn.N_MELS)


def test_checkpoint_is_read_by_name():
    _weights_or_skip("MSD_musicnn")
    w = mn.read_checkpoint("MSD_musicnn")
    assert len(w) == 64  # 8 convs + 2 dense (kernel, bias) and 11 BNs x 4, no optimizer state
    assert w["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert w["conv2d_5/kernel"].shape == (7, 561, 1, 64)
    assert w["dense/kernel"].shape == (1506, 200)
    assert w["batch_normalization_9/moving_mean"].shape == (1506,)
    assert not any("Adam" in k for k in w)


def test_a_wrong_checkpoint_is_refused():
    _weights_or_skip("MSD_musicnn")
    w = mn.read_checkpoint("MSD_musicnn")
    bad = dict(w, **{"dense_1/kernel": np.zeros((200, 49), np.float32)})
    with pytest.raises(mn.MusicnnWeightsError, match="dense_1/kernel"):
        mn.build_musicnn(weights=bad)
    missing = {k: v for k, v in w.items() if k != "batch_normalization_3/gamma"}
    with pytest.raises(mn.MusicnnWeightsError, match="batch_normalization_3/gamma"):
        mn.build_musicnn(weights=missing)


def test_weights_hash_is_the_sha256_of_the_checkpoint():
    folder = _weights_or_skip("MSD_musicnn")
    import hashlib

    h = hashlib.sha256()
    for name in mn.CHECKPOINT_FILES:
        h.update(name.encode())
        h.update((folder / name).read_bytes())
    assert mn.weights_sha256("MSD_musicnn") == h.hexdigest()
    assert mn.weights_sha256("MTT_musicnn") != h.hexdigest()


# -- the clear error when the package is missing -----------------------------------------
def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "musicnn" else real(name, *a))
    assert mn.package_dirs() == []
    with pytest.raises(mn.MusicnnWeightsError) as err:
        mn.weights_folder("MSD_musicnn")
    assert "pip install --no-deps musicnn==0.1.0" in str(err.value)
    assert isinstance(err.value, StoreError)
    with pytest.raises(mn.MusicnnWeightsError, match="pip install --no-deps musicnn==0.1.0"):
        mn.MusicnnEmbedder(model="MSD_musicnn")


def test_a_package_without_checkpoints_is_missing_too(monkeypatch, tmp_path):
    (tmp_path / "MSD_musicnn").mkdir()
    (tmp_path / "MSD_musicnn" / ".index").write_bytes(b"")  # no .data file
    monkeypatch.setattr(mn, "package_dirs", lambda: [tmp_path])
    with pytest.raises(mn.MusicnnWeightsError, match=str(tmp_path)) as err:
        mn.weights_folder("MSD_musicnn")
    assert mn.INSTALL_COMMAND in str(err.value)


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ParameterError, match="MSD_musicnn"):
        mn.weights_folder("MSD_vgg")
    with pytest.raises(ParameterError, match="MTT_musicnn"):
        mn.MusicnnEmbedder(model="musicnn")


# -- input representation, patches and clip means ----------------------------------------
def test_clip_geometry_known_answers():
    assert [mn.clip_frames(c) for c in (1, 3, 5, 15, 30)] == [63, 188, 313, 938, 1876]
    assert [mn.patch_count(mn.clip_frames(c)) for c in (1, 5, 15, 30)] == [1, 1, 5, 10]


def test_clip_patches_cut_and_repeat_pad():
    mel = np.arange(1876 * 96, dtype=np.float32).reshape(1876, 96)
    p = mn.clip_patches(mel, start=100, frames=938)
    assert p.shape == (5, 187, 96)
    np.testing.assert_array_equal(p[1], mel[100 + 187 : 100 + 374])
    short = mn.clip_patches(mel, start=10, frames=63)  # 1 s: tiled 3 times, cut to 187
    assert short.shape == (1, 187, 96)
    np.testing.assert_array_equal(short[0, :63], mel[10:73])
    np.testing.assert_array_equal(short[0, 63:126], mel[10:73])
    np.testing.assert_array_equal(short[0, 126:], mel[10:71])
    end = mn.clip_patches(mel, start=1870, frames=63)  # moved back to fit
    np.testing.assert_array_equal(end[0, :63], mel[1813:1876])
    with pytest.raises(ParameterError):
        mn.clip_patches(mel[:, :40], start=0, frames=63)


def test_log_mel_known_answers():
    silence = mn.log_mel(np.zeros(16000, np.float32))
    assert silence.shape == (63, 96) and silence.dtype == np.float32
    assert np.all(silence == 0.0)  # log10(10000 * 0 + 1)
    with pytest.raises(ParameterError):
        mn.log_mel(np.full(100, np.nan, np.float32))


def test_log_mel_of_real_audio_matches_the_reference_inputs(shared_data):
    from feature_store.audio import decode

    ref = _reference("MSD_musicnn")
    for ci, rel in enumerate(ref["clips"]):
        audio = decode(shared_data / "gtzan-mini" / "genres_original" / str(rel), sr=mn.SR, nominal_seconds=None)
        mel = mn.log_mel(audio.y)
        want = ref["patches"][ref["clip"] == ci].astype(np.float32)
        got = mn.clip_patches(mel, start=0, frames=want.shape[0] * mn.PATCH_FRAMES)
        # the fixture holds float16 inputs: our float32 ones round to exactly them
        np.testing.assert_array_equal(got.astype(np.float16).astype(np.float32), want)


def test_clip_embedding_is_the_mean_over_its_patches(msd):
    rng = np.random.default_rng(0)
    mel = rng.uniform(0, 4, size=(1876, 96)).astype(np.float32)
    clips = msd.embed_clips(mel, starts=[0, 900], frames=mn.clip_frames(15))
    patches = msd.embed_patches(np.concatenate([mn.clip_patches(mel, start=s, frames=938) for s in (0, 900)]))
    for name, width in mn.LAYERS.items():
        assert clips[name].shape == (2, width)
        np.testing.assert_allclose(clips[name][1], patches[name][5:].mean(axis=0), rtol=1e-5, atol=1e-5)
    assert not np.allclose(clips["penultimate"][0], clips["penultimate"][1])


def test_importing_the_view_loads_no_tensorflow():
    code = (
        "import sys, feature_store, feature_store.embeddings, training.families.vector\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tf_keras', 'dagster', 'musicnn') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
