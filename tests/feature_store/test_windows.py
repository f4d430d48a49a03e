"""Window features of whole files, piece by piece: the same windows and numbers, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from feature_store.audio import decode
from feature_store.engine.frames import FrameSpec, framed
from feature_store.engine.windows import WindowStream, audio_windows, file_windows, window_starts
from feature_store.errors import AudioError, ParameterError
from feature_store.features import power_mel
from feature_store.params import FeatureParams
from feature_store.views import get_view

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n", [1, 511, 2048, 22050 * 3 + 17])
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_stretches_of_a_stream_give_the_frames_of_the_whole_signal(n, chunk):
    y = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    whole = power_mel(y, params=FeatureParams())
    blocks = [y[i: i + 999] for i in range(0, n, 999)]
    parts = [(power_mel(seg, params=FeatureParams(), centered=False), k)
             for seg, k in framed(blocks, FrameSpec(22050, 2048, 512), chunk_frames=chunk)]
    assert all(p.shape[1] == k <= chunk for p, k in parts)
    np.testing.assert_array_equal(np.concatenate([p for p, _ in parts], axis=1), whole)


def test_a_short_stream_is_padded_to_the_samples_asked_for():
    y = np.ones(3000, np.float32)
    parts = [power_mel(seg, params=FeatureParams(), centered=False)
             for seg, _ in framed([y], FrameSpec(22050, 2048, 512), min_samples=22050)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1),
                                  power_mel(np.pad(y, (0, 22050 - 3000)), params=FeatureParams()))


def test_window_starts_cover_the_end():
    assert window_starts(total_frames=100, frames=30, hop_frames=30) == [0, 30, 60, 70]
    assert window_starts(total_frames=91, frames=30, hop_frames=30) == [0, 30, 60]  # 1 frame left: < 5 %
    with pytest.raises(ParameterError, match="positive and finite"):
        window_starts(total_frames=100, frames=30, hop_frames=float("inf"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("windows")
    rng = np.random.default_rng(0)
    out = {}
    for name, seconds, sr, channels in (("stereo", 47.3, 44100, 2), ("short", 3.2, 22050, 1), ("long", 125.0, 8000, 1)):
        path = root / f"{name}.wav"
        sf.write(path, (0.1 * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32), sr)
        out[name] = path
    return out


@pytest.mark.parametrize("view_name", ["mel", "timbre"])
@pytest.mark.parametrize(("clip", "hop"), [(5, None), (1, 0.7), (30, None)])
@pytest.mark.parametrize("name", ["stereo", "short", "long"])
def test_streamed_windows_equal_the_whole_files_windows(files, view_name, clip, hop, name):
    view = get_view(view_name)
    x, starts, padded = audio_windows(view, decode(files[name], sr=view.sample_rate, nominal_seconds=None).y,
                                      clip_seconds=clip, hop_seconds=hop)
    ws = WindowStream(view, files[name], clip_seconds=clip, hop_seconds=hop, batch=4)
    batches = list(ws)
    assert all(len(b.starts_seconds) <= 4 for b in batches) and ws.windows == len(starts)
    np.testing.assert_array_equal(np.concatenate([b.x for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b.starts_seconds for b in batches]), starts)
    assert ws.padded_seconds == padded and ws.source_channels == sf.info(files[name]).channels


def test_streamed_embeddings_match_within_the_networks_rounding(files):
    pytest.importorskip("musicnn", reason="needs the musicnn weights package")
    view = get_view("embeddings")
    whole = file_windows(view, files["stereo"], clip_seconds=5)
    x, _, _ = audio_windows(view, decode(files["stereo"], sr=16000, nominal_seconds=None).y, clip_seconds=5)
    np.testing.assert_allclose(whole.x, x, atol=1e-4)  # patches batched differently through the network


def test_a_file_longer_than_the_maximum_is_refused(files):
    with pytest.raises(AudioError, match="more than the maximum of 60 s"):
        list(WindowStream(get_view("mel"), files["long"], clip_seconds=5, max_seconds=60))


def test_an_hour_streams_in_memory_that_does_not_grow_with_it(tmp_path):
    """60 minutes at 22050 Hz (317 MB as float32) through the mel windows, in a child process."""
    sys.path.insert(0, str(REPO / "tests" / "reliability"))
    from _lying import _hour_of_silence

    path = tmp_path / "hour.flac"
    _hour_of_silence(path)
    code = textwrap.dedent(f"""
        import json
        from feature_store.engine.windows import WindowStream
        from feature_store.views import get_view
        ws = WindowStream(get_view("mel"), {str(path)!r}, clip_seconds=5, batch=64)
        n = sum(len(b.starts_seconds) for b in ws)
        with open("/proc/self/status") as fh:
            hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        print(json.dumps({{"windows": n, "duration": ws.duration, "vmhwm_kib": hwm}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["windows"] == 3600 // 5 and out["duration"] == 3600.0
    assert out["vmhwm_kib"] * 1024 < 400e6, out  # the whole decoded hour alone would be 317 MB
