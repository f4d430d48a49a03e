"""Which trained run predicts: :func:`choose_run`, the report's best run unless told otherwise.

The runs are the model store's (:meth:`training.model_store.ModelStore.runs`, typed records);
the best (model, clip length) is the report's (:func:`training.summary.best_run`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from feature_store.errors import StoreError
from feature_store.params import FeatureParams, validate_clip_seconds
from training.record import RunRecord

__all__ = ["RunChoice", "choose_run"]


@dataclasses.dataclass(frozen=True)
class RunChoice:
    """A published run chosen for prediction, and why it was chosen."""

    run_dir: Path
    model: str
    clip_seconds: int
    seed: int
    song_accuracy: float | None
    reason: str


def choose_run(
    *,
    model_root: str | os.PathLike[str],
    model: str | None = None,
    clip_seconds: int | None = None,
    seed: int | None = None,
    params: FeatureParams | None = None,
) -> RunChoice:
    """Pick the trained run to predict with.

    With no filters it is the best (model, clip length) of the evaluation report
    (:func:`training.summary.best_run`: highest mean held-out song accuracy over seeds),
    and of that pair the seed with the highest song accuracy (the lowest seed on a tie).
    ``model``, ``clip_seconds`` and ``seed`` restrict the candidates first.

    Parameters
    ----------
    model_root : path
        Model store root.
    model : str, optional
    clip_seconds : int, optional
    seed : int, optional
    params : FeatureParams, optional
        Only runs trained on features with these parameters (as the report does); all
        runs when omitted.

    Returns
    -------
    RunChoice

    Raises
    ------
    ParameterError
        Unknown clip length or model name.
    StoreError
        No trained run matches; the message lists what has been trained.
    """
    from training.families import get_family
    from training.model_store import ModelStore

    if clip_seconds is not None:
        clip_seconds = validate_clip_seconds(clip_seconds)
    if model is not None:
        get_family(model)
    store = ModelStore(model_root)
    runs = _runs_of(store, params)
    cands = [
        r for r in runs
        if (model is None or r.model == model)
        and (clip_seconds is None or r.clip_seconds == clip_seconds)
        and (seed is None or r.seed == seed)
    ]
    if not cands:
        raise _not_trained(runs, model=model, clip_seconds=clip_seconds, seed=seed)
    pick = _best_seed(cands)
    run_dir = Path(pick.run_dir)  # where the model store found the run, never a path a file holds
    if model is None and clip_seconds is None and seed is None:
        reason = "best model of the report"
    else:
        reason = "best trained run matching your choice"
    return RunChoice(
        run_dir=run_dir,
        model=pick.model,
        clip_seconds=pick.clip_seconds,
        seed=pick.seed,
        song_accuracy=float(pick.metrics.song_accuracy),
        reason=reason,
    )


def _runs_of(store: Any, params: FeatureParams | None) -> list[RunRecord]:
    """The store's runs on features of ``params`` (all runs for None); StoreError naming what exists."""
    all_runs = store.runs()
    runs = all_runs if params is None else [r for r in all_runs if r.params_hash == params.hash()]
    if runs:
        return runs
    if not all_runs:
        raise StoreError(f"no trained model under {store.root}; train one first (`make run` or `gtzan train`)")
    other = sorted({f"--mode {r.feature_params.get('mode')} --dtype {r.feature_params.get('dtype')}"
                    for r in all_runs})
    raise StoreError(
        f"no trained model under {store.root} for features {params.hash()} (mode {params.mode}, "
        f"dtype {params.dtype}); models were trained with: {'; '.join(other)}"
    )


def _not_trained(runs: list[RunRecord], *, model: str | None, clip_seconds: int | None,
                 seed: int | None) -> StoreError:
    """The error for a choice no run matches: what was asked, what was trained, how to train it."""
    trained = sorted({(r.model, r.clip_seconds, r.seed) for r in runs})
    wanted = " ".join(
        part for part in (
            f"model {model!r}" if model else "",
            f"at {clip_seconds} s" if clip_seconds else "",
            f"seed {seed}" if seed is not None else "",
        ) if part
    )
    have = ", ".join(f"{m} {c} s seed {s}" for m, c, s in trained)
    hint = "gtzan train" + (f" --model {model}" if model else "") + (
        f" --clip-seconds {clip_seconds}" if clip_seconds else "") + (f" --seed {seed}" if seed is not None else "")
    return StoreError(f"{wanted} has not been trained yet (trained: {have}); train it with `{hint}`")


def _best_seed(cands: list[RunRecord]) -> RunRecord:
    """Of the report's best (model, clip length) among ``cands``, the seed with the best song accuracy."""
    from training.summary import best_run

    best = best_run(cands)
    assert best is not None
    pair = [r for r in cands if r.model == best["model"] and r.clip_seconds == int(best["clip_seconds"])]
    return sorted(pair, key=lambda r: (-float(r.metrics.song_accuracy), r.seed))[0]
