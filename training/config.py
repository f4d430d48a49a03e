"""Hyper-parameters of training runs: :class:`TrainConfig` (the mel families) and
:class:`VectorConfig` (the vector classifier family), with the checks they share.

Every field is validated when the config is made, so a bad value fails with a
:class:`~feature_store.errors.ParameterError` naming it before any data is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from feature_store.errors import ParameterError
from feature_store.splits import validate_scheme

#: The augmentation set-up of our models on small corpora (see :class:`TrainConfig`): a random
#: gain of up to ±6 dB, a shift of up to ±4 mel bands, two SpecAugment time and frequency masks
#: per clip, and mixup with Beta(0.2, 0.2). ``TrainConfig(**AUGMENT)`` turns it on.
AUGMENT: dict[str, Any] = {"gain_db": 6.0, "freq_shift": 4, "spec_masks": 2, "mixup": 0.2}
#: Default seeds of :func:`training.train.train_seeds`.
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
_STREAM_CHOICES = ("auto", "memory", "stream")


def check_ints(config: Any, names: Iterable[str], *, low: int) -> None:
    """Raise :class:`ParameterError` unless each named field is an integer >= ``low`` (0 or 1)."""
    what = "a positive integer" if low == 1 else "a non-negative integer"
    for name in names:
        v = getattr(config, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ParameterError(f"{name} must be {what}, got {v!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Parameters
    ----------
    epochs : int > 0
        Epoch cap (default 2, quick on a small machine; the study trained 30); early stopping
        may end the run sooner. ``gtzan train``, ``gtzan run`` and the pipeline's run config
        all take their default from here.
    batch_size : int > 0
        The study used 32.
    learning_rate : float > 0
        Adam's learning rate.
    seed : int >= 0
        Seeds Keras, NumPy, Python and the batch generator, with op determinism.
    scheme : str
        Split scheme of the store (``seed``, ``stratified``, ``fault_filtered``).
    test_part : str
        The part of ``scheme`` held out for testing (``test``; ``fold0`` ... for
        ``stratified``). Every other part except ``excluded`` is training data. Ignored when
        :func:`train_model` is given a ``test_store_root``.
    validation_share : float in [0, 0.5)
        Share of the training songs of each genre kept for early stopping (0 disables it).
        A scheme with its own ``valid`` part (``fault_filtered``) uses that part instead.
    patience : int > 0
        Early-stopping patience in epochs (on validation loss; best weights are restored).
    class_weighting : bool
        Weight examples by inverse class frequency when the classes are unbalanced.
    label_smoothing : float in [0, 0.5)
    weight_decay : float >= 0
        AdamW's decoupled weight decay (0: plain Adam).
    crop_seconds : int >= 0
        Train on random crops of this many seconds of each training clip (a random time shift
        per example and epoch; each epoch draws ``clip // crop`` crops of every clip); validation
        and test use whole clips. 0 disables it. Needs a model that accepts any clip length
        (``cnn``, ``rnn``, ``crnn_small``).
    gain_db : float >= 0
        Add a random gain in [-gain_db, +gain_db] dB to each training clip.
    freq_shift : int >= 0
        Shift each training clip up or down by up to this many mel bands (a rough pitch shift).
    spec_masks : int >= 0
        SpecAugment: this many time masks and this many frequency masks per training clip, each
        up to 1/10 of its axis, set to the band mean.
    mixup : float >= 0
        Mixup's Beta(alpha, alpha) parameter (0 disables it); mixes labels and weights too.
    stream : {'auto', 'memory', 'stream'}
        Where batches come from: memory, the HDF5 store, or ``auto`` (stream when the training
        clips exceed ``stream_above_mb``).
    stream_above_mb : float > 0
    """

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    scheme: str = "seed"
    validation_share: float = 0.1
    patience: int = 5
    test_part: str = "test"
    class_weighting: bool = True
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    crop_seconds: int = 0
    gain_db: float = 0.0
    freq_shift: int = 0
    spec_masks: int = 0
    mixup: float = 0.0
    stream: str = "auto"
    stream_above_mb: float = 2048.0

    def __post_init__(self) -> None:
        check_ints(self, ("epochs", "batch_size", "patience"), low=1)
        check_ints(self, ("seed", "crop_seconds", "freq_shift", "spec_masks"), low=0)
        if not self.learning_rate > 0:
            raise ParameterError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not 0 <= self.validation_share < 0.5:
            raise ParameterError(f"validation_share must be in [0, 0.5), got {self.validation_share!r}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ParameterError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing!r}")
        for name in ("weight_decay", "gain_db", "mixup"):
            if not getattr(self, name) >= 0:
                raise ParameterError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.stream not in _STREAM_CHOICES:
            raise ParameterError(f"stream must be one of {list(_STREAM_CHOICES)}, got {self.stream!r}")
        if not self.stream_above_mb > 0:
            raise ParameterError(f"stream_above_mb must be positive, got {self.stream_above_mb!r}")
        validate_scheme(self.scheme)

    @property
    def augments(self) -> bool:
        """Whether any training-time augmentation is on."""
        return bool(self.crop_seconds or self.gain_db or self.freq_shift or self.spec_masks or self.mixup)


@dataclasses.dataclass(frozen=True)
class VectorConfig:
    """Hyper-parameters of a vector classifier run (:mod:`training.families.vector`).

    Which classifier and which arrays of which view are the model's declaration; this holds
    what may change between runs of one model.

    Parameters
    ----------
    C : float > 0
        Inverse L2 strength of the logistic regression.
    hidden_units : int > 0
        Width of the MLP's hidden layer.
    alpha : float >= 0
        L2 strength of the MLP.
    max_iter : int > 0
        Iteration cap of either solver.
    seed : int >= 0
        Seeds the solver (the logistic regression is deterministic: seeds give one result).
    scheme : str
        Split scheme of the store.
    test_part : str
        Part of ``scheme`` held out for testing; every other part but ``excluded`` trains.
        Ignored when the run gets a ``test_store_root``.
    class_weighting : bool
        Weight classes by inverse frequency.
    """

    C: float = 1.0
    hidden_units: int = 256
    alpha: float = 1e-2
    max_iter: int = 2000
    seed: int = 0
    scheme: str = "seed"
    test_part: str = "test"
    class_weighting: bool = True

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise ParameterError(f"C must be positive, got {self.C!r}")
        if not self.alpha >= 0:
            raise ParameterError(f"alpha must be >= 0, got {self.alpha!r}")
        check_ints(self, ("hidden_units", "max_iter"), low=1)
        check_ints(self, ("seed",), low=0)
        validate_scheme(self.scheme)


def seed_configs(config: Any, seeds: Iterable[int]) -> list[Any]:
    """``config`` once per seed (its ``seed`` replaced); the seeds must be distinct integers."""
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ParameterError(f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
    return [dataclasses.replace(config, seed=int(s)) for s in seeds]
