"""Labels come from the data: a store whose labels are not GTZAN's genres trains, reports and predicts with them."""

from __future__ import annotations

import polars as pl
import pytest

RENAME = {"blues": "gamma", "classical": "alpha", "country": "beta"}


class Relabelled:
    """A view store that shows only three genres of the tiny store, under other names (a non-GTZAN corpus)."""

    def __init__(self, store) -> None:
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def _relabel(self, frame):
        return (frame.filter(pl.col("genre").is_in(list(RENAME)))
                .with_columns(pl.col("genre").replace_strict(RENAME, default=None)))

    def clips(self, **kw):
        return self._relabel(self._store.clips(**kw))

    def tensors(self, **kw):
        t = self._store.tensors(**kw)
        keep = t.index["genre"].is_in(list(RENAME)).to_numpy()
        return t._replace(x=t.x[keep], y=t.y[keep], index=self._relabel(t.index))


@pytest.fixture(scope="module")
def relabelled_run(tiny_store, tmp_path_factory):
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view
    from training.runner import train_model
    from training.views import View

    ViewStore(tiny_store, get_view("timbre")).build(audio_root=tiny_store.parent / "audio", clip_seconds=[5],
                                                    workers=1)
    mp = pytest.MonkeyPatch()
    real = View.store
    mp.setattr(View, "store", lambda self, root: Relabelled(real(self, root)))
    try:
        record = train_model(store_root=tiny_store, model_root=tmp_path_factory.mktemp("labels"),
                             model="timbre_logreg", clip_seconds=5)
    finally:
        mp.undo()
    return record


def test_a_run_records_the_labels_of_its_data(relabelled_run):
    from training.record import RunRecord

    rec = RunRecord.load(relabelled_run.run_dir)
    assert rec.labels == ["alpha", "beta", "gamma"] == relabelled_run.labels  # sorted, distinct, from the index
    assert len(rec.metrics.song_recall) == 3 and len(rec.metrics.song_confusion) == 3
    assert rec.test_songs == 3 and sum(map(sum, rec.metrics.song_confusion)) == 3
    assert rec.costs.parameters == 50 * 3 + 3  # three outputs, not ten


def test_predict_answers_with_the_runs_labels(relabelled_run, tiny_store):
    from training.predict import Predictor

    p = Predictor(relabelled_run.run_dir)
    assert p.labels == ("alpha", "beta", "gamma") and p.describe()["labels"] == ["alpha", "beta", "gamma"]
    wav = tiny_store.parent / "audio" / "genres_original" / "classical" / "classical.00002.wav"
    res = p.predict_file(wav)
    assert res.labels == ("alpha", "beta", "gamma") and res.probabilities.shape == (3,)
    assert res.genre in ("alpha", "beta", "gamma")
    assert set(res.to_dict()["probabilities"]) == {"alpha", "beta", "gamma"}
