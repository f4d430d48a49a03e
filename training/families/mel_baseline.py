"""The mel baseline: logistic regression on per-band mean and std, frozen into a Keras model.

It is fitted with scikit-learn on the store's ``summary`` table (no early stopping, so on
every training song), and the standardisation of the features is folded into the ``genre``
Dense layer of :func:`training.models.baseline`, which computes the same statistics from raw dB
clips. Its runs are stored, loaded and scored exactly as :class:`KerasMel`'s.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from training.config import TrainConfig
from training.families.base import Fit
from training.families.keras_mel import KerasMel
from training.models import MODELS


@dataclasses.dataclass(frozen=True)
class MelBaseline(KerasMel):
    """:class:`KerasMel` whose fit is a logistic regression on the band summary."""

    trainer = "summary_logreg"

    def fit(self, data: Any, config: TrainConfig, *, progress: bool = False) -> Fit:
        from feature_store.views.mel import summary_columns
        from training.keras_fit import KerasMelModel, set_determinism
        from training.normalizer import BandNormalizer
        from training.sklearn_fit import fit_logreg, standardisation

        params = data.view.params
        summ = (data.train_store.table("summary", clip_seconds=data.clip_seconds, split=data.fit_parts,
                                       scheme=data.scheme)
                .sort("hdf5_row").collect())
        cols = list(summary_columns(params.n_mels))
        f = summ.select(cols).to_numpy().astype(np.float64)
        t0 = time.perf_counter()
        mu, sd = standardisation(f)
        w, b, iterations = fit_logreg((f - mu) / sd, data.codes(summ), C=1.0, max_iter=5000,
                                      class_weighting=config.class_weighting, seed=config.seed, n_classes=len(data.labels))
        train_seconds = time.perf_counter() - t0
        set_determinism(config.seed)
        frames = params.clip_frames(data.clip_seconds)
        net = self.spec.factory(n_mels=params.n_mels, frames=frames, n_classes=len(data.labels))
        # (f - mu) / sd @ w + b == f @ (w / sd) + (b - (mu / sd) @ w): raw statistics in, same logits out
        kernel, bias = w / sd[:, None], b - (mu / sd) @ w
        net.get_layer("genre").set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        model = KerasMelModel(net, BandNormalizer.identity(params.n_mels), self.layout, frames)
        return Fit(model, summ, None, {"lbfgs_iterations": [float(iterations)]}, train_seconds, 1, 1)


DECLARATIONS = tuple(MelBaseline(spec) for spec in MODELS.values() if spec.trainer == "summary_logreg")
