"""The report's figures: each drawn by a ``draw_*`` function that returns the matplotlib figure,
and written as a PNG by :func:`save` (what :func:`training.report.write_report` does).

* :func:`draw_accuracy_vs_clip`: held-out accuracy against clip length per model. Its panels
  follow the sampling mode of the runs: with ``first`` (one clip per song, the first N s) song
  and clip accuracy are the same number, so there is one panel; with ``segments`` there are
  two, song accuracy (the mean probability over a song's segments) and clip accuracy (each
  segment alone).
* :func:`draw_confusions`: a song-level confusion matrix per model.
* :func:`draw_cost_accuracy`: song accuracy against parameters and seconds per epoch, on log
  axes labelled with plain numbers (``1 k``, ``10 k``; ``0.1``, ``1``, ``10``) at each decade.
* :func:`draw_mel_examples`: one mel spectrogram per genre on one colour scale, with the
  colour bar (in dB) in a column of its own beside the panels.

Matplotlib is imported inside the functions, with the Agg backend (no display needed).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from feature_store import atomic
from feature_store.params import CLIP_SECONDS
from training.record import RunRecord
from training.summary import STUDY_RESULTS, best_clip, collect, metric_values

#: The titles of the accuracy figure's panels, by sampling mode: (metric, title) per panel.
ACCURACY_PANELS: dict[str, list[tuple[str, str]]] = {
    "first": [("song_accuracy", "held-out accuracy on the first N s of each song")],
    "segments": [("song_accuracy", "songs: mean probability over each song's N-s segments"),
                 ("clip_accuracy", "clips: each N-s segment scored alone")],
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


#: Widest PNG a figure is saved as, in pixels: it fits the Dagster UI's metadata dialog (80 % of a
#: 1280 px window, less its padding) and a laptop's browser, so no colour bar or label is cut.
MAX_FIGURE_PX = 880


def save(fig: Any, path: Path, *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically, in a 256-colour palette) and close it.

    A figure wider than :data:`MAX_FIGURE_PX` at ``dpi`` is saved at the lower resolution that
    makes it that wide.
    """
    import matplotlib.pyplot as plt

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    width = Image.open(io.BytesIO(buf.getvalue())).width
    if width > MAX_FIGURE_PX:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi * MAX_FIGURE_PX / width * 0.995, bbox_inches="tight")
    plt.close(fig)
    # a 256-colour palette keeps the spectrogram figure small, and is lossless for the plots
    out = io.BytesIO()
    Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=256).save(out, format="PNG", optimize=True)
    return atomic.write_bytes_atomic(path, out.getvalue())


def sampling_mode(runs: list[RunRecord]) -> str:
    """The sampling mode of the runs (``first`` or ``segments``); ``mixed`` when they differ."""
    modes = {r.feature_params.get("mode") for r in runs}
    return modes.pop() if len(modes) == 1 and modes <= set(ACCURACY_PANELS) else "mixed"


def accuracy_panels(runs: list[RunRecord]) -> list[tuple[str, str]]:
    """(metric, title) of each panel of the accuracy figure, for the runs' sampling mode."""
    mode = sampling_mode(runs)
    if mode in ACCURACY_PANELS:
        return ACCURACY_PANELS[mode]
    return [("song_accuracy", "songs (runs of both sampling modes)"),
            ("clip_accuracy", "clips (runs of both sampling modes)")]


def draw_accuracy_vs_clip(runs: list[RunRecord]) -> Any:
    """Held-out accuracy against clip length per model, mean ± std over seeds (see the module doc).

    The study's published numbers (clip accuracy on the first N s, its own metric) are drawn
    on the panel of clip accuracy, which in ``first`` mode is the one panel.
    """
    plt = _plt()
    table = collect(runs)
    panels = accuracy_panels(runs)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), sharey=True, squeeze=False)
    one = len(panels) == 1
    for ax, (metric, title) in zip(axes[0], panels, strict=True):
        for label in sorted(table):
            clips = sorted(table[label])
            m = [np.mean(metric_values(table[label][c], metric)) for c in clips]
            s = [np.std(metric_values(table[label][c], metric), ddof=1) if len(table[label][c]) > 1 else 0.0 for c in clips]
            ax.errorbar(clips, m, yerr=s, marker="o", capsize=3, label=label)
        if one or metric == "clip_accuracy":
            for label, pub in STUDY_RESULTS.items():
                if label in table:
                    ax.plot(list(pub), list(pub.values()), ls=":", marker="x", color="grey")
        ax.set_xscale("log")
        ax.set_xticks(list(CLIP_SECONDS), [str(c) for c in CLIP_SECONDS])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("clip length N (s)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (argmax)")
    shown = any(label in STUDY_RESULTS for label in table)
    axes[0][-1].legend(fontsize=7, loc="upper left", title_fontsize=7,
                       title="grey dotted: the study, as published (indexOfMax)" if shown else None)
    return fig


def draw_confusions(runs: list[RunRecord]) -> Any:
    """Song-level confusion matrix of each model at its best clip length, summed over seeds."""
    plt = _plt()
    table = collect(runs)
    labels = sorted(table)
    n = len(labels)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, label in zip(axes.flat, labels, strict=False):
        c = best_clip(table[label])
        # the seeds of one cell trained on the same data: the same labels, in the same order
        short = [g[:4] for g in table[label][c][0].labels]
        cm = np.sum([np.asarray(r.metrics.song_confusion) for r in table[label][c]], axis=0)
        ax.imshow(cm, cmap="Blues")
        for i, j in zip(*np.nonzero(cm), strict=True):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xticks(range(len(short)), short, rotation=90, fontsize=7)
        ax.set_yticks(range(len(short)), short, fontsize=7)
        ax.set_title(f"{label}, {c} s (n={len(table[label][c])} seeds)", fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.tight_layout()
    return fig


def count_label(value: float) -> str:
    """A count at a decade in plain words: ``1``, ``10``, ``100``, ``1 k``, ``10 k``, ``1 M``..."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g}"


def seconds_label(value: float) -> str:
    """Seconds at a decade as a plain number: ``0.01``, ``0.1``, ``1``, ``10``, ``100``."""
    return f"{value:g}"


def plain_log_axis(ax: Any, values: list[float], label: Any) -> None:
    """Make the x axis of ``ax`` logarithmic over whole decades around ``values``, with a tick
    at each decade labelled by ``label(value)`` and no labels at the minor ticks.

    The limits reach the decades on both sides of the values (one more when they all fall in
    one), so that at least two ticks are labelled whatever the range.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    positive = [v for v in values if v and v > 0 and math.isfinite(v)] or [1.0]
    lo, hi = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    if hi == lo:
        hi += 1
    ax.set_xscale("log")
    decades = [10.0 ** e for e in range(lo, hi + 1)]
    ax.xaxis.set_major_locator(FixedLocator(decades))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: label(v)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(decades[0] / 1.25, decades[-1] * 1.25)


def draw_cost_accuracy(runs: list[RunRecord]) -> Any:
    """The study's thesis in one picture: song accuracy against parameters and s/epoch."""
    plt = _plt()
    table = collect(runs)
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.8), sharey=True)
    xs: list[list[float]] = [[], []]
    placed: list[dict[tuple[int, int], int]] = [{}, {}]
    for label in sorted(table):
        c = max(table[label])
        rs = table[label][c]
        acc = np.mean(metric_values(rs, "song_accuracy"))
        params = rs[0].costs.parameters
        spe = np.mean([r.costs.steady_seconds_per_epoch for r in rs])
        for k, (ax, x) in enumerate(((axes[0], params), (axes[1], spe))):
            xs[k].append(float(x))
            ax.scatter([x], [acc])
            # labels of points close together are stacked upwards rather than drawn over each other
            cell = (round(np.log10(max(float(x), 1e-9)) * 4), round(float(acc) * 25))
            near = placed[k][cell] = placed[k].get(cell, -1) + 1
            ax.annotate(f"{label} ({c} s)", (x, acc), fontsize=7, xytext=(3, 3 + 9 * near), textcoords="offset points")
    for ax, values, xl, label in ((axes[0], xs[0], "parameters (log scale)", count_label),
                                  (axes[1], xs[1], "seconds per epoch (log scale)", seconds_label)):
        plain_log_axis(ax, values, label)
        ax.set_xlabel(xl)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out song accuracy")
    axes[0].set_title("accuracy against size (longest clip per model)")
    axes[1].set_title("accuracy against training time")
    return fig


def draw_mel_examples(runs: list[RunRecord]) -> Any | None:
    """One mel spectrogram per genre from the runs' feature store, like the study's Figure 1.

    Every panel uses one colour scale, shown by a colour bar in dB in a column of its own to
    the right of the panels (its axes are the figure's last).

    Returns
    -------
    Figure or None
        None (nothing drawn) when no run names a feature store that still exists.
    """
    from feature_store.params import FeatureParams
    from feature_store.store import FeatureStore

    store = None
    for r in runs:
        root = r.store_root
        if root and Path(root).is_dir():
            try:
                store = FeatureStore(root, params=FeatureParams.from_dict(r.feature_params))
                clips = store.available_clip_seconds()
            except Exception:  # an unreadable or foreign store: no figure rather than no report
                store = None
                continue
            if clips:
                break
            store = None
    if store is None:
        return None
    clip = max(clips)
    index = store.clips(clip_seconds=clip).collect()
    genres = sorted(set(index["genre"].to_list()))
    picks = [index.filter(index["genre"] == g).sort("song_id", "segment").row(0, named=True)["song_id"] for g in genres]
    t = store.tensors(clip_seconds=clip, song_ids=picks)
    plt = _plt()
    import librosa.display

    p = store.params
    n = len(genres)
    cols = min(5, n)
    rows = -(-n // cols)
    fig = plt.figure(figsize=(2.1 * cols + 0.8, 1.8 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1.0] * cols + [0.06])
    axes = [fig.add_subplot(grid[k // cols, k % cols]) for k in range(n)]
    shown = [next(i for i, row in enumerate(t.index.iter_rows(named=True)) if row["genre"] == g) for g in genres]
    lo, hi = float(np.min(t.x[shown])), float(np.max(t.x[shown]))  # one colour scale for every panel
    img = None
    for k, (ax, g, i) in enumerate(zip(axes, genres, shown, strict=True)):
        img = librosa.display.specshow(t.x[i], sr=p.sr, hop_length=p.hop_length, x_axis="time", y_axis="mel",
                                       fmin=p.fmin, fmax=p.fmax or p.sr / 2, ax=ax, cmap="magma", vmin=lo, vmax=hi)
        ax.set_title(f"{g}: {t.index['song_id'][i]}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("time (s)" if k >= n - cols else "", fontsize=7)
        ax.set_ylabel("Hz (mel scale)" if k % cols == 0 else "", fontsize=7)
    if img is not None:
        cbar = fig.colorbar(img, cax=fig.add_subplot(grid[:, cols]), format="%.0f")
        cbar.set_label("power (dB)", fontsize=8)
        cbar.ax.tick_params(labelsize=7)
    fig.suptitle(f"Log-power mel spectrograms ({p.n_mels} bands, n_fft {p.n_fft}, hop {p.hop_length}), "
                 f"the first {clip} s clip of one song per genre", fontsize=9)
    return fig
