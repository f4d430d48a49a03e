"""The evaluation report: the study's tables reproduced beside ours, in Markdown and HTML.

:func:`write_report` writes, into one folder::

    report.md      the report (GitHub-flavoured Markdown, figures linked relatively)
    report.html    the same report as one HTML page
    figures/       accuracy_vs_clip.png, confusion.png, cost_accuracy.png, mel_spectrograms.png

Both documents are built from the same list of blocks, so they always say the same thing.
Every figure uses matplotlib's Agg backend (no display needed). All files are written
atomically.
"""

from __future__ import annotations

import html
import io
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from feature_store import atomic
from feature_store.params import CLIP_SECONDS, GENRES

#: Held-out accuracy published by the study (Tables 1-2), by model and clip seconds.
#: The study computed it with its ``indexOfMax``, on the first N seconds of each song.
STUDY_RESULTS: dict[str, dict[int, float]] = {
    "seed_cnn": {1: 0.17, 5: 0.21, 15: 0.35, 30: 0.42},
    "seed_rnn": {1: 0.14, 5: 0.21, 15: 0.15, 30: 0.14},
}
FIGURES = ("accuracy_vs_clip.png", "confusion.png", "cost_accuracy.png", "mel_spectrograms.png")


# ---------------------------------------------------------------------------------------
# grouping and summaries
# ---------------------------------------------------------------------------------------
def run_label(run: dict[str, Any]) -> str:
    """``model`` or ``model [variant]``: the row a run belongs to."""
    v = run.get("variant") or ""
    return f"{run['model']} [{v}]" if v else run["model"]


def collect(runs: list[dict[str, Any]]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Group run metrics by label (model and variant) and clip length."""
    table: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        table[run_label(r)][int(r["clip_seconds"])].append(r)
    return table


def best_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The (model, clip length) with the highest mean song accuracy over seeds.

    Returns
    -------
    dict or None
        ``model``, ``variant`` (``""`` for the default set-up), ``clip_seconds``,
        ``song_accuracy`` (mean over seeds) and ``seeds``; None without runs.
    """
    table = collect(runs)
    best, best_acc = None, -1.0
    for label in sorted(table):
        for clip in sorted(table[label]):
            rs = table[label][clip]
            acc = float(np.mean([r["metrics"]["song_accuracy"] for r in rs]))
            if acc > best_acc:
                best_acc = acc
                best = {
                    "model": rs[0]["model"],
                    "variant": rs[0].get("variant", ""),
                    "clip_seconds": clip,
                    "song_accuracy": acc,
                    "seeds": sorted(r["seed"] for r in rs),
                }
    return best


def _vals(rs: list[dict[str, Any]], metric: str) -> list[float]:
    return [float(r["metrics"][metric]) for r in rs if r["metrics"].get(metric) is not None]


def _fmt(values: list[float], *, pct: bool = True) -> str:
    if not values:
        return "–"
    arr = np.asarray(values, dtype=float) * (100 if pct else 1)
    unit = " %" if pct else ""
    if arr.size == 1:
        return f"{arr[0]:.0f}{unit} (n=1)" if pct else f"{arr[0]:.2f} (n=1)"
    if pct:
        return f"{arr.mean():.0f} ± {arr.std(ddof=1):.0f}{unit} (n={arr.size})"
    return f"{arr.mean():.2f} ± {arr.std(ddof=1):.2f} (n={arr.size})"


def _published(label: str, clip: int) -> str:
    """The study's published accuracy of ``label`` at ``clip`` seconds; a dash where it published none."""
    v = STUDY_RESULTS.get(label, {}).get(clip)
    return "–" if v is None else f"{100 * v:.0f} %"


def _best_clip(by_clip: dict[int, list[dict[str, Any]]]) -> int:
    return max(sorted(by_clip), key=lambda c: np.mean(_vals(by_clip[c], "song_accuracy")))


# ---------------------------------------------------------------------------------------
# tables (header, rows) rendered to Markdown or HTML
# ---------------------------------------------------------------------------------------
Table = tuple[list[str], list[list[str]]]


def accuracy_rows(runs: list[dict[str, Any]], *, metric: str = "song_accuracy") -> Table:
    """Models x 1/5/15/30 s of ``metric``, mean ± std over seeds, with the study's numbers.

    The study's published numbers sit under its two models, marked *as published*.
    """
    table = collect(runs)
    head = ["model"] + [f"{c} s" for c in CLIP_SECONDS]
    rows = []
    for label in sorted(table):
        rows.append([label] + [_fmt(_vals(table[label].get(c, []), metric)) for c in CLIP_SECONDS])
        if label in STUDY_RESULTS:
            rows.append([f"*{label}, as published*"] + [_published(label, c) for c in CLIP_SECONDS])
    return head, rows


def study_rows(runs: list[dict[str, Any]]) -> Table:
    """The study's Tables 1-2 reshaped: published, ours with its metric, ours with the argmax.

    ``indexOfMax`` on clips is what the study computed, so that row compares like with like.
    """
    table = collect(runs)
    head = ["model", "figure"] + [f"{c} s" for c in CLIP_SECONDS]
    rows = []
    for label in sorted(table):
        by = table[label]
        if label in STUDY_RESULTS:
            rows.append([label, "published (indexOfMax, clips)"] + [_published(label, c) for c in CLIP_SECONDS])
        rows.append([label, "ours, indexOfMax, clips"] + [_fmt(_vals(by.get(c, []), "study_metric_accuracy")) for c in CLIP_SECONDS])
        rows.append([label, "ours, argmax, clips"] + [_fmt(_vals(by.get(c, []), "clip_accuracy")) for c in CLIP_SECONDS])
        rows.append([label, "ours, argmax, songs"] + [_fmt(_vals(by.get(c, []), "song_accuracy")) for c in CLIP_SECONDS])
    return head, rows


def recall_rows(runs: list[dict[str, Any]]) -> Table:
    """Song-level recall per genre (mean over seeds) of each model at its best clip length."""
    table = collect(runs)
    present = [g for i, g in enumerate(GENRES) if any(r["metrics"]["song_recall"][i] is not None for r in runs)]
    head = ["model", "clip"] + present + ["macro-F1 (songs)"]
    rows = []
    for label in sorted(table):
        c = _best_clip(table[label])
        rs = table[label][c]
        cells = []
        for g in present:
            i = GENRES.index(g)
            v = [r["metrics"]["song_recall"][i] for r in rs if r["metrics"]["song_recall"][i] is not None]
            cells.append(f"{np.mean(v):.2f}" if v else "–")
        rows.append([label, f"{c} s"] + cells + [_fmt(_vals(rs, "song_macro_f1"), pct=False)])
    return head, rows


def cost_rows(runs: list[dict[str, Any]]) -> Table:
    """Parameters, .keras MB, s/epoch, epochs, peak RSS and ms per clip, per model and clip."""
    table = collect(runs)
    head = ["model", "clip", "parameters", "file MB", "s / epoch", "epochs run", "train s", "peak RSS MB", "ms / clip"]
    rows = []
    for label in sorted(table):
        for clip in sorted(table[label]):
            cs = [r["costs"] for r in table[label][clip]]
            rows.append([
                label, f"{clip} s", f"{cs[0]['parameters']:,}",
                f"{np.mean([c['model_mb'] for c in cs]):.2f}",
                f"{np.mean([c.get('steady_seconds_per_epoch', c['seconds_per_epoch']) for c in cs]):.2f}",
                f"{np.mean([c['epochs_run'] for c in cs]):.1f}",
                f"{np.mean([c['train_seconds'] for c in cs]):.0f}",
                f"{np.max([c['peak_rss_mb'] for c in cs]):.0f}",
                f"{np.mean([c['inference_ms_per_clip'] for c in cs]):.2f}",
            ])
    return head, rows


def accuracy_table(runs: list[dict[str, Any]], *, metric: str = "song_accuracy") -> str:
    """Markdown table shaped like the study's: models x 1/5/15/30 s."""
    return _md_table(*accuracy_rows(runs, metric=metric))


def cost_table(runs: list[dict[str, Any]]) -> str:
    """Markdown table of parameters, size, seconds per epoch, peak RSS and ms per clip."""
    return _md_table(*cost_rows(runs))


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    def cell(s: str, tag: str) -> str:
        s = html.escape(s)
        if s.startswith("*") and s.endswith("*"):
            s = f"<em>{s[1:-1]}</em>"
        return f"<{tag}>{s}</{tag}>"

    out = ["<table>", "<tr>" + "".join(cell(h, "th") for h in head) + "</tr>"]
    out += ["<tr>" + "".join(cell(c, "td") for c in r) + "</tr>" for r in rows]
    return "\n".join(out + ["</table>"])


# ---------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------
def _save(fig: Any, path: Path, *, dpi: int = 100) -> Path:
    import matplotlib.pyplot as plt

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    # a 256-colour palette keeps the spectrogram figure small, and is lossless for the plots
    out = io.BytesIO()
    Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=256).save(out, format="PNG", optimize=True)
    return atomic.write_bytes_atomic(path, out.getvalue())


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_clip(runs: list[dict[str, Any]], path: Path) -> Path:
    """Song- and clip-level accuracy against clip length per model, mean ± std over seeds."""
    plt = _plt()
    table = collect(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, metric, title in ((axes[0], "song_accuracy", "songs (mean prob. over segments)"),
                              (axes[1], "clip_accuracy", "clips")):
        for label in sorted(table):
            clips = sorted(table[label])
            m = [np.mean(_vals(table[label][c], metric)) for c in clips]
            s = [np.std(_vals(table[label][c], metric), ddof=1) if len(table[label][c]) > 1 else 0.0 for c in clips]
            ax.errorbar(clips, m, yerr=s, marker="o", capsize=3, label=label)
        for label, pub in STUDY_RESULTS.items():
            if label in table and metric == "clip_accuracy":
                ax.plot(list(pub), list(pub.values()), ls=":", marker="x", color="grey")
        ax.set_xscale("log")
        ax.set_xticks(list(CLIP_SECONDS), [str(c) for c in CLIP_SECONDS])
        ax.set_xlabel("clip length (s)")
        ax.set_title(f"held-out accuracy, {title}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (argmax)")
    shown = any(label in STUDY_RESULTS for label in table)
    axes[1].legend(fontsize=7, loc="upper left", title_fontsize=7,
                   title="grey dotted: the study, as published (indexOfMax)" if shown else None)
    return _save(fig, path)


def plot_confusions(runs: list[dict[str, Any]], path: Path) -> Path:
    """Song-level confusion matrix of each model at its best clip length, summed over seeds."""
    plt = _plt()
    table = collect(runs)
    labels = sorted(table)
    n = len(labels)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    short = [g[:4] for g in GENRES]
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, label in zip(axes.flat, labels, strict=False):
        c = _best_clip(table[label])
        cm = np.sum([np.asarray(r["metrics"]["song_confusion"]) for r in table[label][c]], axis=0)
        ax.imshow(cm, cmap="Blues")
        for i, j in zip(*np.nonzero(cm), strict=True):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xticks(range(len(GENRES)), short, rotation=90, fontsize=7)
        ax.set_yticks(range(len(GENRES)), short, fontsize=7)
        ax.set_title(f"{label}, {c} s (n={len(table[label][c])} seeds)", fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_cost_accuracy(runs: list[dict[str, Any]], path: Path) -> Path:
    """The study's thesis in one picture: song accuracy against parameters and s/epoch."""
    plt = _plt()
    table = collect(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for label in sorted(table):
        c = max(table[label])
        rs = table[label][c]
        acc = np.mean(_vals(rs, "song_accuracy"))
        params = rs[0]["costs"]["parameters"]
        spe = np.mean([r["costs"].get("steady_seconds_per_epoch", r["costs"]["seconds_per_epoch"]) for r in rs])
        for ax, x in ((axes[0], params), (axes[1], spe)):
            ax.scatter([x], [acc])
            ax.annotate(f"{label} ({c} s)", (x, acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for ax, xl in ((axes[0], "parameters"), (axes[1], "seconds per epoch")):
        ax.set_xscale("log")
        ax.set_xlabel(xl + " (log)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out song accuracy")
    axes[0].set_title("accuracy against size (longest clip per model)")
    axes[1].set_title("accuracy against training time")
    return _save(fig, path)


def plot_mel_examples(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """One mel spectrogram per genre from the runs' feature store, like the study's Figure 1.

    Returns None (and draws nothing) when no run names a feature store that still exists.
    """
    from feature_store.params import FeatureParams
    from feature_store.store import FeatureStore

    store = None
    for r in runs:
        root = r.get("store_root")
        if root and Path(root).is_dir():
            try:
                store = FeatureStore(root, params=FeatureParams.from_dict(r["feature_params"]))
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
    genres = [g for g in GENRES if g in set(index["genre"].to_list())]
    picks = [index.filter(index["genre"] == g).sort("song_id", "segment").row(0, named=True)["song_id"] for g in genres]
    t = store.tensors(clip_seconds=clip, song_ids=picks)
    plt = _plt()
    import librosa.display

    p = store.params
    n = len(genres)
    cols = min(5, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    img = None
    for k, (ax, g) in enumerate(zip(axes.flat, genres, strict=False)):
        i = next(k for k, row in enumerate(t.index.iter_rows(named=True)) if row["genre"] == g)
        img = librosa.display.specshow(t.x[i], sr=p.sr, hop_length=p.hop_length, x_axis="time", y_axis="mel",
                                       fmin=p.fmin, fmax=p.fmax or p.sr / 2, ax=ax, cmap="magma")
        ax.set_title(f"{g}: {t.index['song_id'][i]}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("time (s)" if k >= n - cols else "", fontsize=7)
        ax.set_ylabel("Hz (mel scale)" if k % cols == 0 else "", fontsize=7)
    if img is not None:
        fig.colorbar(img, ax=axes, format="%+2.0f dB", shrink=0.8)
    fig.suptitle(f"Log-power mel spectrograms ({p.n_mels} bands, n_fft {p.n_fft}, hop {p.hop_length}), "
                 f"the first {clip} s clip of one song per genre", fontsize=9)
    return _save(fig, path, dpi=80)


# ---------------------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------------------
def _setup_lines(runs: list[dict[str, Any]]) -> list[str]:
    seeds = sorted({r["seed"] for r in runs})
    stores = sorted({r.get("store_root") or "?" for r in runs})
    held = sorted({r.get("held_out") or f"{r.get('config', {}).get('scheme', '?')}:test" for r in runs})
    schemes = sorted({r.get("config", {}).get("scheme", "?") for r in runs})
    modes = sorted({r["feature_params"]["mode"] for r in runs})
    epochs = sorted({r["config"]["epochs"] for r in runs if "epochs" in r.get("config", {})})
    n_per = collect(runs)
    ns = sorted({len(rs) for by in n_per.values() for rs in by.values()})
    train_songs = sorted({r.get("train_songs") for r in runs if r.get("train_songs") is not None})
    test_songs = sorted({r.get("test_songs") for r in runs if r.get("test_songs") is not None})
    return [
        f"**Data:** feature store(s) {', '.join(f'`{s}`' for s in stores)}; training songs per run {train_songs or '?'} "
        f"(validation songs for early stopping are drawn from them), held-out songs per run {test_songs or '?'}, "
        f"held-out clips per run {sorted({r['test_clips'] for r in runs if 'test_clips' in r})}.",
        f"**Split:** scheme {', '.join(schemes)}; held out: {', '.join(held)}. **Mode:** {', '.join(modes)} "
        "(`first`: the first N seconds of each song, as the study; `segments`: every N-second segment, "
        "songs scored by the mean probability over their segments).",
        f"**Seeds:** {seeds}; runs per cell n = {ns[0] if len(ns) == 1 else ns}; epoch cap {epochs or '–'} with early "
        "stopping on validation loss. Cells show mean ± sample standard deviation over seeds.",
    ]


def _blocks(runs: list[dict[str, Any]], title: str, figs: dict[str, Path | None]) -> list[tuple]:
    best = best_run(runs)
    b: list[tuple] = [("h1", title),
                      ("p", f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {len(runs)} runs.")]
    b += [("p", line) for line in _setup_lines(runs)]
    if best:
        v = f" [{best['variant']}]" if best.get("variant") else ""
        b.append(("p", f"**Best model:** {best['model']}{v} at {best['clip_seconds']} s "
                       f"(mean held-out song accuracy {100 * best['song_accuracy']:.0f} % over seeds {best['seeds']})."))
    b += [
        ("h2", "Held-out song accuracy (true argmax), mean ± std over seeds"),
        ("p", "Shaped like the study's Tables 1–2: models by clip length. A song's prediction is the mean "
              "probability over its clips (one clip per song in `first` mode)."),
        ("table", accuracy_rows(runs, metric="song_accuracy")),
        ("h2", "Beside the study's published numbers"),
        ("p", "The study scored each clip with its `indexOfMax`, which returns the *last* class whose probability "
              "beats class 0, not the argmax: even a perfect classifier scores far below 100 %. The row "
              "*ours, indexOfMax* computes that same metric on our predictions, so it compares like with like with "
              "the published row; the argmax rows are the true accuracy."),
        ("table", study_rows(runs)),
    ]
    if figs.get("accuracy_vs_clip.png"):
        b.append(("img", "figures/accuracy_vs_clip.png", "Held-out accuracy against clip length, mean ± std over seeds"))
    b += [
        ("h2", "Per-genre recall and macro-F1 (songs, each model at its best clip length)"),
        ("table", recall_rows(runs)),
    ]
    if figs.get("confusion.png"):
        b += [("h2", "Confusion matrices"),
              ("p", "Song level, each model at its best clip length, counts summed over seeds; rows are the true genre."),
              ("img", "figures/confusion.png", "Confusion matrices")]
    b += [
        ("h2", "Costs"),
        ("p", "Parameters and file size of the saved model (`.keras`); seconds per epoch (median of the epochs "
              "after the first, which also builds the graph) and training seconds on this machine; peak resident memory of the process during the run (sampled, so it includes what the "
              "process already held); inference milliseconds per clip (steady state, reading and normalising "
              "included). Means over seeds; peak RSS is the maximum."),
        ("table", cost_rows(runs)),
    ]
    if figs.get("cost_accuracy.png"):
        b.append(("img", "figures/cost_accuracy.png", "Accuracy against parameters and seconds per epoch"))
    if figs.get("mel_spectrograms.png"):
        b += [("h2", "What the models see"),
              ("p", "One log-power mel spectrogram per genre from the feature store, as in the study's Figure 1."),
              ("img", "figures/mel_spectrograms.png", "Mel spectrograms, one per genre")]
    return b


def _render_md(blocks: list[tuple]) -> str:
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h1":
            out.append(f"# {blk[1]}")
        elif kind == "h2":
            out.append(f"## {blk[1]}")
        elif kind == "p":
            out.append(blk[1])
        elif kind == "table":
            out.append(_md_table(*blk[1]))
        elif kind == "img":
            out.append(f"![{blk[2]}]({blk[1]})")
        out.append("")
    return "\n".join(out)


def _inline_html(text: str) -> str:
    import re

    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"`(.+?)`", r"<code>\1</code>", s)
    s = re.sub(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])", r"<em>\1</em>", s)
    return s


def _render_html(blocks: list[tuple], title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}"
        "img{max-width:100%}code{background:#f3f3f3;padding:0 3px}</style>",
        "</head><body>",
    ]
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline_html(blk[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(blk[1])}</p>")
        elif kind == "table":
            out.append(_html_table(*blk[1]))
        elif kind == "img":
            out.append(f'<figure><img src="{html.escape(blk[1])}" alt="{html.escape(blk[2])}">'
                       f"<figcaption>{html.escape(blk[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def report_paths(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Where :func:`write_report` puts things: ``markdown``, ``html`` and ``figures`` (a dict)."""
    out = Path(out_dir)
    return {"markdown": out / "report.md", "html": out / "report.html",
            "figures": {name: out / "figures" / name for name in FIGURES}}


def write_report(
    runs: list[dict[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    title: str = "GTZAN genre recognition",
    figures: bool = True,
) -> Path:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``out_dir``.

    Parameters
    ----------
    runs : list of dict
        ``metrics.json`` contents of the runs to report (see :class:`training.train.ModelStore`).
    out_dir : path
    title : str
    figures : bool
        Draw the PNG figures (accuracy against clip length, confusion matrices, cost against
        accuracy, and one mel spectrogram per genre when the runs' feature store exists).

    Returns
    -------
    Path
        The Markdown file; the HTML file and figures sit beside it (see :func:`report_paths`).
    """
    paths = report_paths(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if not runs:
        blocks = [("h1", title), ("p", "No trained models yet: train some first (`gtzan train`).")]
    else:
        figs: dict[str, Path | None] = {}
        if figures:
            f = paths["figures"]
            figs["accuracy_vs_clip.png"] = plot_accuracy_vs_clip(runs, f["accuracy_vs_clip.png"])
            figs["confusion.png"] = plot_confusions(runs, f["confusion.png"])
            figs["cost_accuracy.png"] = plot_cost_accuracy(runs, f["cost_accuracy.png"])
            figs["mel_spectrograms.png"] = plot_mel_examples(runs, f["mel_spectrograms.png"])
        blocks = _blocks(runs, title, figs)
    atomic.write_bytes_atomic(paths["html"], _render_html(blocks, title).encode())
    return atomic.write_bytes_atomic(paths["markdown"], _render_md(blocks).encode())
