"""Model factories: output shapes, exact study architectures, sizes, save/load round trips."""

from __future__ import annotations

import numpy as np
import pytest

from feature_store.errors import ParameterError
from feature_store.features import band_summary
from training.models import MODELS, build_model, get_spec, to_layout
from training.train import load_model

FRAMES_1S, FRAMES_5S, FRAMES_30S = 44, 216, 1292


def _layers(model):
    return [layer for layer in model.layers if layer.__class__.__name__ != "InputLayer"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_shape_and_round_trip(name, tmp_path):
    spec = get_spec(name)
    net = build_model(name, n_mels=128, frames=FRAMES_1S, n_classes=10)
    rng = np.random.default_rng(0)
    x = to_layout(rng.normal(size=(3, 128, FRAMES_1S)).astype(np.float32), spec.layout)
    if name == "baseline":  # untrained: give its Dense layer weights so the round trip means something
        k, b = net.get_layer("genre").get_weights()
        net.get_layer("genre").set_weights([rng.normal(size=k.shape).astype(np.float32), b])
    p = np.asarray(net.predict(x, verbose=0))
    assert p.shape == (3, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    path = tmp_path / f"{name}.keras"
    net.save(path)
    back = load_model(path)  # safe_mode=True
    np.testing.assert_allclose(np.asarray(back.predict(x, verbose=0)), p, atol=1e-6)
    assert back.count_params() == net.count_params()


def test_seed_cnn_is_the_studys_cnn():
    net = build_model("seed_cnn", n_mels=128, frames=FRAMES_30S, n_classes=10)
    kinds = [type(la).__name__ for la in _layers(net)]
    block = ["Conv2D", "ELU", "BatchNormalization", "MaxPooling2D", "Dropout"]
    assert kinds == block * 3 + ["Flatten", "Dense", "Dense"]
    convs = [la for la in _layers(net) if type(la).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == "valid" for c in convs)
    pools = [la.pool_size for la in _layers(net) if type(la).__name__ == "MaxPooling2D"]
    assert pools == [(2, 2), (4, 2), (4, 2)]
    assert all(la.rate == 0.1 for la in _layers(net) if type(la).__name__ == "Dropout")
    d1, d2 = [la for la in _layers(net) if type(la).__name__ == "Dense"]
    assert d1.units == 128 and d1.activation.__name__ == "linear"
    assert d2.units == 10 and d2.activation.__name__ == "softmax"
    assert net.input_shape == (None, 128, FRAMES_30S, 1)
    # the Flatten -> Dense 128 holds almost all of it: 3 x 159 x 128 inputs
    assert d1.count_params() == 3 * 159 * 128 * 128 + 128


def test_seed_rnn_is_the_studys_rnn():
    net = build_model("seed_rnn", n_mels=128, frames=FRAMES_5S, n_classes=10)
    kinds = [type(la).__name__ for la in _layers(net)]
    assert kinds == ["LSTM", "BatchNormalization"] * 3 + ["Dense", "Dense"]
    lstms = [la for la in _layers(net) if type(la).__name__ == "LSTM"]
    assert [(la.units, la.dropout, la.return_sequences) for la in lstms] == [(128, 0.3, True), (128, 0.3, True), (128, 0.3, False)]
    d1, d2 = [la for la in _layers(net) if type(la).__name__ == "Dense"]
    assert (d1.units, d1.activation.__name__, d2.units, d2.activation.__name__) == (128, "linear", 10, "softmax")
    assert net.input_shape == (None, FRAMES_5S, 128)


def test_crnn_follows_nasrullah_and_zhao():
    net = build_model("crnn", n_mels=128, frames=FRAMES_30S, n_classes=10)
    layers = _layers(net)
    assert type(layers[0]).__name__ == "BatchNormalization" and layers[0].axis in (1, [1])
    convs = [la for la in layers if type(la).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [64, 128, 128, 128]
    assert all(c.padding == "same" and c.kernel_size == (3, 3) for c in convs)
    assert [la.pool_size for la in layers if type(la).__name__ == "MaxPooling2D"] == [(2, 2), (4, 2), (4, 2), (4, 2)]
    grus = [la for la in layers if type(la).__name__ == "GRU"]
    assert [(g.units, g.return_sequences) for g in grus] == [(32, True), (32, False)]
    assert [la.rate for la in layers if type(la).__name__ == "Dropout"] == [0.1] * 4 + [0.3]
    assert layers[-1].units == 10 and layers[-1].activation.__name__ == "softmax"


def test_our_models_are_far_smaller():
    seed_cnn = build_model("seed_cnn", n_mels=128, frames=FRAMES_30S, n_classes=10).count_params()
    cnn = build_model("cnn", n_mels=128, frames=FRAMES_30S, n_classes=10).count_params()
    assert cnn * 20 <= seed_cnn  # the goal: <= 1/20 of the parameters
    assert build_model("rnn", n_mels=128, frames=FRAMES_30S, n_classes=10).count_params() * 5 < \
        build_model("seed_rnn", n_mels=128, frames=FRAMES_30S, n_classes=10).count_params()
    assert build_model("crnn_small", n_mels=128, frames=FRAMES_30S, n_classes=10).count_params() * 5 < \
        build_model("crnn", n_mels=128, frames=FRAMES_30S, n_classes=10).count_params()


@pytest.mark.parametrize("name", ["cnn", "rnn", "crnn_small", "baseline"])
def test_our_models_take_any_clip_length(name):
    spec = get_spec(name)
    net = build_model(name, n_mels=128, frames=FRAMES_1S, n_classes=10)
    for frames in (FRAMES_1S, FRAMES_5S):
        x = to_layout(np.zeros((1, 128, frames), np.float32), spec.layout)
        assert np.asarray(net.predict(x, verbose=0)).shape == (1, 10)


def test_baseline_layer_computes_the_store_summary():
    net = build_model("baseline", n_mels=128, frames=FRAMES_1S, n_classes=10)
    x = np.random.default_rng(1).normal(-30, 12, size=(4, 128, FRAMES_1S)).astype(np.float32)
    feats = np.asarray(net.get_layer("band_summary")(x[..., None]))
    np.testing.assert_allclose(feats, band_summary(x), rtol=1e-4, atol=1e-3)


def test_bad_dimensions_and_names_are_clear():
    with pytest.raises(ParameterError, match="valid models"):
        get_spec("resnet")
    with pytest.raises(ParameterError, match="frames"):
        build_model("seed_cnn", n_mels=128, frames=8, n_classes=10)
    with pytest.raises(ParameterError, match="n_classes"):
        build_model("cnn", n_mels=128, frames=FRAMES_1S, n_classes=1)
    with pytest.raises(ParameterError, match="layout"):
        to_layout(np.zeros((1, 2, 3)), "nchw")


def test_layouts():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert to_layout(x, "mels_frames_1").shape == (2, 3, 4, 1)
    t = to_layout(x, "frames_mels")
    assert t.shape == (2, 4, 3) and t[1, 2, 0] == x[1, 0, 2]
