"""The evaluation report: the study's tables reproduced beside ours, in Markdown and HTML.

:func:`write_report` writes, into one folder::

    report.md      the report (GitHub-flavoured Markdown, figures linked relatively)
    report.html    the same report as one HTML page
    figures/       accuracy_vs_clip.png, confusion.png, cost_accuracy.png, mel_spectrograms.png

Both documents are built from the same list of blocks, so they always say the same thing.
The figures are drawn by :mod:`training.figures` (matplotlib's Agg backend, no display
needed). All files are written atomically.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from feature_store import atomic
from feature_store.params import CLIP_SECONDS
from training.record import RunRecord
from training.summary import STUDY_RESULTS, best_clip, best_run, collect, metric_values, run_labels

FIGURES = ("accuracy_vs_clip.png", "confusion.png", "cost_accuracy.png", "mel_spectrograms.png")

__all__ = ["FIGURES", "STUDY_RESULTS", "best_run", "report_paths", "write_report"]


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


# ---------------------------------------------------------------------------------------
# tables (header, rows) rendered to Markdown or HTML
# ---------------------------------------------------------------------------------------
Table = tuple[list[str], list[list[str]]]


def accuracy_rows(runs: list[RunRecord], *, metric: str = "song_accuracy") -> Table:
    """Models x 1/5/15/30 s of ``metric``, mean ± std over seeds, with the study's numbers.

    The study's published numbers sit under its two models, marked *as published*.
    """
    table = collect(runs)
    head = ["model"] + [f"{c} s" for c in CLIP_SECONDS]
    rows = []
    for label in sorted(table):
        rows.append([label] + [_fmt(metric_values(table[label].get(c, []), metric)) for c in CLIP_SECONDS])
        if label in STUDY_RESULTS:
            rows.append([f"*{label}, as published*"] + [_published(label, c) for c in CLIP_SECONDS])
    return head, rows


def study_rows(runs: list[RunRecord]) -> Table:
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
        rows.append([label, "ours, indexOfMax, clips"] + [_fmt(metric_values(by.get(c, []), "study_metric_accuracy")) for c in CLIP_SECONDS])
        rows.append([label, "ours, argmax, clips"] + [_fmt(metric_values(by.get(c, []), "clip_accuracy")) for c in CLIP_SECONDS])
        rows.append([label, "ours, argmax, songs"] + [_fmt(metric_values(by.get(c, []), "song_accuracy")) for c in CLIP_SECONDS])
    return head, rows


def recall_rows(runs: list[RunRecord]) -> Table:
    """Song-level recall per label (mean over seeds) of each model at its best clip length.

    The columns are the runs' labels (:attr:`~training.record.RunRecord.labels`), those that
    some run had held-out songs of.
    """
    table = collect(runs)
    present = [g for g in run_labels(runs) if any(_recall(r, g) is not None for r in runs)]
    head = ["model", "clip"] + present + ["macro-F1 (songs)"]
    rows = []
    for label in sorted(table):
        c = best_clip(table[label])
        rs = table[label][c]
        cells = []
        for g in present:
            v = [x for x in (_recall(r, g) for r in rs) if x is not None]
            cells.append(f"{np.mean(v):.2f}" if v else "–")
        rows.append([label, f"{c} s"] + cells + [_fmt(metric_values(rs, "song_macro_f1"), pct=False)])
    return head, rows


def _recall(run: RunRecord, label: str) -> float | None:
    """The run's song recall of ``label``; None if it had no held-out songs of it or lacks the label."""
    if label not in run.labels:
        return None
    i = run.labels.index(label)
    recalls = run.metrics.song_recall
    return recalls[i] if i < len(recalls) else None


def cost_rows(runs: list[RunRecord]) -> Table:
    """Parameters, .keras MB, s/epoch, epochs, peak RSS and ms per clip, per model and clip."""
    table = collect(runs)
    head = ["model", "clip", "parameters", "file MB", "s / epoch", "epochs run", "train s", "peak RSS MB", "ms / clip"]
    rows = []
    for label in sorted(table):
        for clip in sorted(table[label]):
            cs = [r.costs for r in table[label][clip]]
            rows.append([
                label, f"{clip} s", f"{cs[0].parameters:,}",
                f"{np.mean([c.model_mb for c in cs]):.2f}",
                f"{np.mean([c.steady_seconds_per_epoch for c in cs]):.2f}",
                f"{np.mean([c.epochs_run for c in cs]):.1f}",
                f"{np.mean([c.train_seconds for c in cs]):.0f}",
                f"{np.max([c.peak_rss_mb for c in cs]):.0f}",
                f"{np.mean([c.inference_ms_per_clip for c in cs]):.2f}",
            ])
    return head, rows


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
# the document
# ---------------------------------------------------------------------------------------
def _setup_lines(runs: list[RunRecord]) -> list[str]:
    seeds = sorted({r.seed for r in runs})
    stores = sorted({r.store_root or "?" for r in runs})
    held = sorted({r.held_out or f"{r.config.get('scheme', '?')}:test" for r in runs})
    schemes = sorted({r.config.get("scheme", "?") for r in runs})
    modes = sorted({r.feature_params["mode"] for r in runs})
    epochs = sorted({r.config["epochs"] for r in runs if "epochs" in r.config})
    n_per = collect(runs)
    ns = sorted({len(rs) for by in n_per.values() for rs in by.values()})
    train_songs = sorted({r.train_songs for r in runs})
    test_songs = sorted({r.test_songs for r in runs})
    tables = sorted({line for r in runs if (line := r.table_line())})
    return [
        *([f"**Table versions:** {'; '.join(tables)}."] if tables else []),
        f"**Data:** feature store(s) {', '.join(f'`{s}`' for s in stores)}; training songs per run {train_songs or '?'} "
        f"(validation songs for early stopping are drawn from them), held-out songs per run {test_songs or '?'}, "
        f"held-out clips per run {sorted({r.test_clips for r in runs})}.",
        f"**Split:** scheme {', '.join(schemes)}; held out: {', '.join(held)}. **Mode:** {', '.join(modes)} "
        "(`first`: the first N seconds of each song, as the study; `segments`: every N-second segment, "
        "songs scored by the mean probability over their segments).",
        f"**Seeds:** {seeds}; runs per cell n = {ns[0] if len(ns) == 1 else ns}; epoch cap {epochs or '–'} with early "
        "stopping on validation loss. Cells show mean ± sample standard deviation over seeds.",
    ]


def _blocks(runs: list[RunRecord], title: str, figs: dict[str, Path | None]) -> list[tuple]:
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
        ("h2", "Per-label recall and macro-F1 (songs, each model at its best clip length)"),
        ("table", recall_rows(runs)),
    ]
    if figs.get("confusion.png"):
        b += [("h2", "Confusion matrices"),
              ("p", "Song level, each model at its best clip length, counts summed over seeds; rows are the true label."),
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
    runs: list[RunRecord],
    out_dir: str | os.PathLike[str],
    *,
    title: str = "GTZAN genre recognition",
    figures: bool = True,
) -> Path:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``out_dir``.

    Parameters
    ----------
    runs : list of RunRecord
        The runs to report (:meth:`training.model_store.ModelStore.runs`).
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
            from training import figures as fg  # matplotlib and the figures, only when drawing them

            f = paths["figures"]
            figs["accuracy_vs_clip.png"] = fg.save(fg.draw_accuracy_vs_clip(runs), f["accuracy_vs_clip.png"])
            figs["confusion.png"] = fg.save(fg.draw_confusions(runs), f["confusion.png"])
            figs["cost_accuracy.png"] = fg.save(fg.draw_cost_accuracy(runs), f["cost_accuracy.png"])
            mel = fg.draw_mel_examples(runs)
            figs["mel_spectrograms.png"] = None if mel is None else fg.save(mel, f["mel_spectrograms.png"], dpi=80)
        blocks = _blocks(runs, title, figs)
    atomic.write_bytes_atomic(paths["html"], _render_html(blocks, title).encode())
    return atomic.write_bytes_atomic(paths["markdown"], _render_md(blocks).encode())
