"""The report's figures, checked through their matplotlib objects (titles, axes, tick labels,
the colour bar's place), not through pixels."""

from __future__ import annotations

import pytest

from feature_store.params import FeatureParams
from feature_store.datasets.gtzan import GENRES
from training import figures
from training.record import Costs, RunRecord


def fake_run(model: str, clip: int, seed: int, acc: float, *, mode: str = "first", parameters: int = 10,
             seconds_per_epoch: float = 1.0, store_root: str | None = None) -> RunRecord:
    """A run record with what the figures read, without training anything."""
    costs = Costs(parameters=parameters, model_mb=0.1, train_seconds=1.0, seconds_per_epoch=seconds_per_epoch,
                  steady_seconds_per_epoch=seconds_per_epoch, epochs_run=1, best_epoch=1, peak_rss_mb=1.0,
                  rss_at_start_mb=1.0, inference_ms_per_clip=1.0)
    params = FeatureParams(mode=mode)
    return RunRecord(
        model=model, family="mel", view="mel", variant="", trainer="keras", clip_seconds=clip, seed=seed, config={},
        feature_params=params.to_dict(), params_hash=params.hash(), layout="mels_frames_1", frames=1,
        labels=list(GENRES), store_root=store_root, test_store_root=None, held_out="seed:test", train_clips=1,
        train_songs=1, valid_clips=0, valid_songs=0, test_clips=1, test_songs=1, streamed=False, songs={},
        metrics={"song_accuracy": acc, "clip_accuracy": acc * 0.8, "song_confusion": [[1] * 10] * 10},
        history={}, costs=costs)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _data_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_title()]


def _labels(axis) -> list[str]:
    """The major tick labels of an axis, inside its limits, as drawn."""
    axis.axes.figure.canvas.draw()
    lo, hi = sorted(axis.get_view_interval())
    fmt = axis.get_major_formatter()
    return [fmt(v) for v in axis.get_majorticklocs() if lo <= v <= hi]


def _minor_labels(axis) -> list[str]:
    axis.axes.figure.canvas.draw()
    return [t.get_text() for t in axis.get_minorticklabels() if t.get_text()]


def test_accuracy_figure_in_first_mode_is_one_panel_of_the_first_n_seconds():
    runs = [fake_run("seed_cnn", c, s, 0.3 + 0.01 * c) for c in (1, 5) for s in (0, 1)]
    fig = figures.draw_accuracy_vs_clip(runs)
    [ax] = _data_axes(fig)
    assert ax.get_title() == "held-out accuracy on the first N s of each song"
    assert "segment" not in ax.get_title()
    assert ax.get_xlabel() == "clip length N (s)"
    # ours (mean over the 2 seeds at 1 and 5 s) and the study's published numbers (its 4 clip lengths)
    [ours] = [c.lines[0] for c in ax.containers]
    assert list(ours.get_xdata()) == [1, 5] and list(ours.get_ydata()) == pytest.approx([0.31, 0.35])
    [study] = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert list(study.get_xdata()) == [1, 5, 15, 30]
    assert _labels(ax.xaxis) == ["1", "5", "15", "30"] and _minor_labels(ax.xaxis) == []


def test_accuracy_figure_in_segments_mode_shows_songs_and_clips():
    runs = [fake_run("cnn", c, 0, 0.5, mode="segments") for c in (1, 5)]
    fig = figures.draw_accuracy_vs_clip(runs)
    songs, clips = _data_axes(fig)
    assert songs.get_title() == "songs: mean probability over each song's N-s segments"
    assert clips.get_title() == "clips: each N-s segment scored alone"
    # each panel plots its own metric: songs 0.5, clips 0.4
    [song_line] = [c.lines[0] for c in songs.containers]
    [clip_line] = [c.lines[0] for c in clips.containers]
    assert list(song_line.get_ydata()) == [0.5, 0.5] and list(clip_line.get_ydata()) == pytest.approx([0.4, 0.4])


def test_accuracy_figure_of_both_modes_says_so():
    runs = [fake_run("cnn", 1, 0, 0.5), fake_run("cnn", 5, 0, 0.5, mode="segments")]
    assert figures.sampling_mode(runs) == "mixed"
    titles = [ax.get_title() for ax in _data_axes(figures.draw_accuracy_vs_clip(runs))]
    assert titles == ["songs (runs of both sampling modes)", "clips (runs of both sampling modes)"]


def test_cost_figure_labels_its_log_axes_with_plain_numbers():
    runs = [fake_run("baseline", 30, 0, 0.4, parameters=1_290, seconds_per_epoch=0.2),
            fake_run("cnn", 30, 0, 0.6, parameters=54_000, seconds_per_epoch=3.5),
            fake_run("seed_cnn", 30, 0, 0.5, parameters=2_400_000, seconds_per_epoch=41.0)]
    fig = figures.draw_cost_accuracy(runs)
    size, time = _data_axes(fig)
    assert size.get_xscale() == "log" and time.get_xscale() == "log"
    assert _labels(size.xaxis) == ["1 k", "10 k", "100 k", "1 M", "10 M"]
    assert _labels(time.xaxis) == ["0.1", "1", "10", "100"]
    for ax in (size, time):
        assert _minor_labels(ax.xaxis) == []  # no 2×10^3... between the decades
        assert not any("$" in label or "^" in label for label in _labels(ax.xaxis))
        lo, hi = ax.get_xlim()
        assert all(lo < x < hi for x in ax.collections[0].get_offsets()[:, 0])  # every point is shown
    assert size.get_xlabel() == "parameters (log scale)" and time.get_xlabel() == "seconds per epoch (log scale)"


def test_plain_log_axis_of_values_within_one_decade_still_labels_two_decades():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.scatter([52_000, 61_000], [0, 1])
    figures.plain_log_axis(ax, [52_000, 61_000], figures.count_label)
    assert _labels(ax.xaxis) == ["10 k", "100 k"]
    assert [figures.count_label(v) for v in (1, 10, 100, 1e3, 1e6, 3e9)] == ["1", "10", "100", "1 k", "1 M", "3 G"]


def test_mel_figure_has_a_colour_bar_in_db_beside_the_panels(tiny_store):
    runs = [fake_run("cnn", 5, 0, 0.5, store_root=str(tiny_store))]
    fig = figures.draw_mel_examples(runs)
    fig.canvas.draw()
    panels = _data_axes(fig)
    assert len(panels) == 10 and all(":" in ax.get_title() for ax in panels)
    [cbar_ax] = [ax for ax in fig.axes if ax not in panels]
    assert cbar_ax.get_ylabel() == "power (dB)"
    bar = cbar_ax.get_window_extent()
    for ax in panels:
        box = ax.get_tightbbox()  # the panel with its tick labels and titles
        assert box.x1 <= bar.x0 or not box.overlaps(bar), ax.get_title()
        assert bar.x0 >= ax.get_window_extent().x1  # to the right of every panel
    # one colour scale: every panel's image has the colour bar's limits
    [clim] = {ax.images[0].get_clim() if ax.images else ax.collections[0].get_clim() for ax in panels}
    assert clim == pytest.approx(cbar_ax.get_ylim())
    assert figures.draw_mel_examples([fake_run("cnn", 5, 0, 0.5)]) is None  # no store: no figure
