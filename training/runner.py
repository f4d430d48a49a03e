"""Training runs for every model family: select, fit, score, record and publish.

One call of :func:`train_model` trains one model (a declaration of :mod:`training.families`) on
one clip length with one seed, and publishes its run folder in the model store
(:mod:`training.model_store`) atomically: the family's files and the :class:`RunRecord`.

The same steps for every family: the data selection of :mod:`training.selection`, peak memory
sampled by :class:`~training.memory.RssSampler` from the selection to the scoring of the
held-out clips, the metrics of :func:`training.evaluate.evaluate`, and one writer of
``metrics.json`` (:meth:`RunRecord.save`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_store import atomic
from feature_store.errors import ParameterError
from feature_store.params import FeatureParams, validate_clip_seconds
from training.config import DEFAULT_SEEDS, seed_configs
from training.evaluate import evaluate
from training.families import get_family
from training.families.base import Fit, ModelFamily, Scores
from training.memory import RssSampler
from training.model_store import ModelStore, validate_variant
from training.record import Costs, RunRecord
from training.selection import Selection, select, songs_of
from training.views import View, training_view


def train_model(
    *,
    store_root: str | os.PathLike[str],
    model_root: str | os.PathLike[str],
    model: str | ModelFamily,
    clip_seconds: int,
    params: FeatureParams | None = None,
    config: Any = None,
    progress: bool = False,
    test_store_root: str | os.PathLike[str] | None = None,
    variant: str = "",
) -> RunRecord:
    """Train ``model`` on one clip length and publish the run in the model store.

    Parameters
    ----------
    store_root : path
        Feature store root; the model's view must be built there for ``clip_seconds``.
    model_root : path
        Model store root.
    model : str or ModelFamily
        A model of :func:`training.families.model_names` (``cnn``, ``baseline``,
        ``probe_logreg_msd``...), or a declaration of one.
    clip_seconds : int
    params : FeatureParams, optional
        The clips' parameters: which stores to read (default ``FeatureParams()``).
    config : optional
        The family's config (``TrainConfig`` for the mel models, ``VectorConfig`` or
        ``ProbeConfig`` for the vector classifiers); default: its defaults.
    progress : bool
        Show the fit's progress (Keras: a bar per epoch).
    test_store_root : path, optional
        Another store (same params) to test on, e.g. songs by other artists: every song of
        ``store_root`` trains, every song of ``test_store_root`` is held out, and
        ``config.test_part`` is ignored.
    variant : str
        Suffix of the run folder (see :meth:`ModelStore.run_dir`) for set-ups other than the
        default, recorded in ``metrics.json``.

    Returns
    -------
    RunRecord
        The run's record as written to ``metrics.json`` (model, family, view, clip_seconds,
        seed, config, feature_params, layout, frames, ``labels`` (the data's), data sizes,
        held-out ``metrics``, ``costs``, ``history``), with ``run_dir`` (the published
        generation) and ``model_path`` set.

    Raises
    ------
    ParameterError
        Unknown model, clip length, variant, scheme or part; a config the model cannot take.
    StoreError
        The view is not built for these params and clip length, or the split leaves no
        training or held-out clips.
    """
    plan = plan_run(model=model, clip_seconds=clip_seconds, params=params, config=config, variant=variant)
    store = plan.view.store(store_root)
    test_store = plan.view.store(test_store_root) if test_store_root is not None else None
    return fit_and_publish(plan, store, test_store, model_root=model_root, progress=progress)


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a run trains, checked before any data is read (:func:`plan_run`)."""

    family: ModelFamily
    clip_seconds: int
    params: FeatureParams
    config: Any
    variant: str
    view: View


def plan_run(*, model: str | ModelFamily, clip_seconds: int, params: FeatureParams | None, config: Any,
             variant: str) -> RunPlan:
    """The family, clip length, parameters, config and view of a run, each checked.

    Raises
    ------
    ParameterError
        Unknown model, clip length or variant; a config the model cannot take.
    """
    family = model if isinstance(model, ModelFamily) else get_family(model)
    c = validate_clip_seconds(clip_seconds)
    params = params or FeatureParams()
    config = family.config_type() if config is None else config
    if not isinstance(config, family.config_type):
        raise ParameterError(f"{family.name!r} takes a {family.config_type.__name__}, got {type(config).__name__}")
    validate_variant(variant)
    family.check(config, c)
    view = training_view(family.view, params=params, options=family.options)
    return RunPlan(family, c, params, config, variant, view)


def fit_and_publish(plan: RunPlan, store: Any, test_store: Any, *, model_root: str | os.PathLike[str],
                    progress: bool = False, extra: dict[str, Any] | None = None) -> RunRecord:
    """Select, fit, score and publish one run of ``plan`` on ``store`` (and ``test_store``, if
    given); ``extra`` sets fields of the record before it is published."""
    p = plan
    run_dir = ModelStore(model_root).run_dir(params=p.params, model=p.family.name, clip_seconds=p.clip_seconds,
                                             seed=p.config.seed, variant=p.variant)
    with RssSampler() as rss:
        data = select(p.view, store, test_store, clip_seconds=p.clip_seconds, scheme=p.config.scheme,
                      test_part=p.config.test_part)
        fit = p.family.fit(data, p.config, progress=progress)
        scores = p.family.score(fit, data)
    record = _record(p.family, p.view, data, fit, scores, rss, config=p.config, variant=p.variant)
    for name, value in (extra or {}).items():
        setattr(record, name, value)
    return publish(run_dir, fit.model, record)


def train_seeds(*, seeds: Sequence[int] = DEFAULT_SEEDS, config: Any = None, **kwargs: Any) -> list[RunRecord]:
    """Run :func:`train_model` once per seed (default 0, 1, 2) and return every result.

    Parameters
    ----------
    seeds : sequence of int
        Distinct seeds, one run each; ``config.seed`` is replaced by each of them.
    config : optional
        The family's config (default: its defaults).
    **kwargs
        Passed on to :func:`train_model` (``store_root``, ``model_root``, ``model``,
        ``clip_seconds``, ``params``, ``test_store_root``, ``variant``, ``progress``).

    Returns
    -------
    list of RunRecord
        One record per seed; :func:`training.evaluate.summarize_runs` gives mean ± std.
    """
    if config is None:
        model = kwargs.get("model")
        config = (model if isinstance(model, ModelFamily) else get_family(model)).config_type()
    return [train_model(config=cfg, **kwargs) for cfg in seed_configs(config, seeds)]


def _record(family: ModelFamily, view: View, data: Selection, fit: Fit, scores: Scores, rss: RssSampler, *,
            config: Any, variant: str) -> RunRecord:
    """The run record of a fit (``costs.model_mb`` is filled in by :func:`publish`)."""
    params = view.params
    arrays = getattr(fit.model, "arrays", None)
    valid = fit.valid_index
    return RunRecord(
        model=family.name, family=family.family, view=family.view, variant=variant, trainer=family.trainer,
        clip_seconds=data.clip_seconds, seed=config.seed, config=_config_dict(config),
        feature_params=params.to_dict(), params_hash=params.hash(), layout=family.layout,
        frames=params.clip_frames(data.clip_seconds), labels=list(data.labels), store_root=str(data.train_store.root),
        test_store_root=None if data.test_store is data.train_store else str(data.test_store.root),
        held_out=data.held_out,
        train_clips=int(fit.train_index.height), train_songs=len(songs_of(fit.train_index)),
        valid_clips=int(0 if valid is None else valid.height), valid_songs=len(songs_of(valid)),
        test_clips=int(data.test_index.height), test_songs=len(songs_of(data.test_index)),
        streamed=fit.streamed,
        songs={"train": songs_of(fit.train_index), "valid": songs_of(valid), "test": songs_of(data.test_index)},
        metrics=evaluate(scores.probs, scores.y, scores.song_ids, n_classes=len(data.labels)),
        history=fit.history, costs=_costs(view, data, fit, scores, rss), view_options=dict(family.options),
        embedding=view.provenance(data.train_store, arrays or ()),
    )


def _config_dict(config: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _costs(view: View, data: Selection, fit: Fit, scores: Scores, rss: RssSampler) -> Costs:
    per_epoch = fit.train_seconds / max(1, fit.epochs_run)
    steady = _steady_seconds(fit.history.get("epoch_seconds"), per_epoch)
    extract_ms = view.extraction_ms_per_clip(data.train_store, data.clip_seconds)
    return Costs(
        parameters=fit.model.n_parameters, model_mb=0.0, train_seconds=fit.train_seconds,
        seconds_per_epoch=per_epoch, steady_seconds_per_epoch=steady,
        epochs_run=fit.epochs_run, best_epoch=fit.best_epoch, peak_rss_mb=rss.peak_mb, rss_at_start_mb=rss.start_mb,
        inference_ms_per_clip=scores.ms_per_clip + (extract_ms or 0.0),
        embedding_ms_per_clip=extract_ms, probe_ms_per_clip=None if extract_ms is None else scores.ms_per_clip,
    )


def _steady_seconds(epoch_seconds: list[float] | None, fallback: float) -> float:
    """Median seconds of the epochs after the first (which also builds the graph)."""
    if not epoch_seconds:
        return fallback
    rest = epoch_seconds[1:] or epoch_seconds
    return float(np.median(rest))


def publish(run_dir: Any, model: Any, record: RunRecord) -> RunRecord:
    """Write ``model``'s files and ``record`` as a new generation of ``run_dir``.

    Returns
    -------
    RunRecord
        ``record`` as written, its ``run_dir`` set to the published generation.
    """
    with atomic.new_generation(run_dir) as tmp:
        main = model.save(tmp)
        record.costs.model_mb = main.stat().st_size / 1e6
        record.list_files(tmp)  # the model's files, with their sha256, in the checked record
        record.save(tmp)
    record.run_dir = atomic.resolve_current(run_dir)
    return record
