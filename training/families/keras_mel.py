"""Keras networks on mel windows: every trainable factory of :data:`training.models.MODELS`.

A model of this family is a factory in :mod:`training.models` and its :class:`ModelSpec`
entry in ``MODELS``; nothing here changes when one is added. Runs hold ``model.keras`` (loaded
with ``safe_mode``) and ``normalizer.json`` (the per-band statistics of the training songs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from feature_store.errors import ParameterError, StoreError
from feature_store.params import FeatureParams
from training.config import TrainConfig
from training.families.base import Fit, ModelFamily, Scores
from training.models import MODELS, ModelSpec


@dataclasses.dataclass(frozen=True)
class KerasMel(ModelFamily):
    """A Keras network on mel clips, fitted by gradient descent (:func:`training.keras_fit.fit_keras`)."""

    spec: ModelSpec
    family = "mel"
    trainer = "keras"
    files = ("model.keras", "normalizer.json")
    config_type = TrainConfig
    view = "mel"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.spec.name

    @property
    def layout(self) -> str:  # type: ignore[override]
        return self.spec.layout

    @property
    def options(self) -> Mapping[str, Any]:  # type: ignore[override]
        return {}

    def check(self, config: TrainConfig, clip_seconds: int) -> None:
        if config.crop_seconds and config.crop_seconds >= clip_seconds:
            raise ParameterError(
                f"crop_seconds ({config.crop_seconds}) must be shorter than the clips ({clip_seconds} s)"
            )

    def fit(self, data: Any, config: TrainConfig, *, progress: bool = False) -> Fit:
        from training.keras_fit import fit_keras

        return fit_keras(self.spec, data, config=config, progress=progress)

    def score(self, fit: Fit, data: Any) -> Scores:
        from training.feeding import make_source
        from training.keras_fit import predict_source

        model: Any = fit.model  # a KerasMelModel
        with make_source(data.view, data.test_store, data.test_index, clip_seconds=data.clip_seconds,
                         stream=fit.streamed) as src:
            probs, ms = predict_source(model.net, src, normalizer=model.normalizer, layout=model.layout)
        return Scores(probs, src.y, src.song_ids, ms)

    def load(self, folder: Path, record: Any) -> Any:
        from training.keras_fit import KerasMelModel

        self.require_files(folder)
        params = FeatureParams.from_dict(record.feature_params)
        frames = params.clip_frames(record.clip_seconds)
        if int(record.frames) != frames:
            raise StoreError(f"run at {folder} was trained on {record.frames} frames, but {record.clip_seconds} s "
                             f"clips have {frames}")
        return KerasMelModel.load(folder, layout=record.layout, frames=frames, n_mels=params.n_mels)


DECLARATIONS = tuple(KerasMel(spec) for spec in MODELS.values() if spec.trainer == "keras")
