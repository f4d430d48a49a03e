"""musicnn's input representation (no TensorFlow): its log-mel spectrogram and 3 s patches.

The network and its weights are in :mod:`feature_store.embeddings.musicnn`, which re-exports
these names.
"""

from __future__ import annotations

import numpy as np

from feature_store.errors import ParameterError

__all__ = ["HOP_LENGTH", "LOG_MEL_BLOCK_FRAMES", "N_FFT", "N_MELS", "PATCH_FRAMES", "SR", "clip_frames",
           "clip_patches", "log_mel", "patch_count"]

#: Signal processing of musicnn's ``configuration.py``.
SR: int = 16000
N_FFT: int = 512
HOP_LENGTH: int = 256
N_MELS: int = 96
#: STFT frames per block when :func:`log_mel` transforms a whole file (bounded memory).
LOG_MEL_BLOCK_FRAMES = 4096
#: Frames of one input patch: 3 s, ``librosa.time_to_frames(3, sr, hop, n_fft) + 1``.
PATCH_FRAMES: int = 187


def log_mel(y: np.ndarray, *, block_frames: int | None = None, centered: bool = True) -> np.ndarray:
    """musicnn's input representation of mono 16 kHz audio.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at :data:`SR`.
    block_frames : int > 0, optional
        Compute the STFT this many frames at a time (librosa on each block's samples), so
        that a whole file of any length takes bounded memory; :data:`LOG_MEL_BLOCK_FRAMES`
        suits that. Without it, one librosa call over all of ``y``, as musicnn does.
    centered : bool
        False: ``y`` is a stretch of already padded audio whose frames start at its first
        sample (a long stream, piece by piece); one librosa call, ``center=False``.

    Returns
    -------
    np.ndarray [shape=(frames, 96), dtype=float32]
        ``log10(10000 * S + 1)`` of librosa's power mel spectrogram, frames first;
        ``frames = 1 + n // 256`` when centred, ``1 + (n - 512) // 256`` otherwise.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"y must be non-empty mono audio of shape (n,), got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ParameterError("y holds NaN or infinite samples")
    if not centered:
        if y.size < N_FFT:
            raise ParameterError(f"an uncentred stretch needs at least {N_FFT} samples, got {y.size}")
        S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS,
                                           center=False)
        return np.log10(10000.0 * S.T + 1.0).astype(np.float32)
    if block_frames is None:
        S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS)
        return np.log10(10000.0 * S.T + 1.0).astype(np.float32)
    if not isinstance(block_frames, int) or isinstance(block_frames, bool) or block_frames < 1:
        raise ParameterError(f"block_frames must be a positive integer, got {block_frames!r}")
    total = 1 + y.size // HOP_LENGTH
    padded = np.pad(y, (N_FFT // 2, N_FFT // 2))  # librosa's centre padding (pad_mode='constant')
    blocks = []
    for f0 in range(0, total, block_frames):
        f1 = min(total, f0 + block_frames)
        seg = padded[f0 * HOP_LENGTH : (f1 - 1) * HOP_LENGTH + N_FFT]
        S = librosa.feature.melspectrogram(y=seg, sr=SR, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS,
                                           center=False)
        blocks.append(S[:, : f1 - f0])
    return np.log10(10000.0 * np.concatenate(blocks, axis=1).T + 1.0).astype(np.float32)


def clip_frames(clip_seconds: float) -> int:
    """musicnn frames of ``clip_seconds`` of audio: ``1 + floor(N * 16000 / 256)`` (63 for 1 s)."""
    return 1 + int(clip_seconds * SR) // HOP_LENGTH


def patch_count(frames: int) -> int:
    """Patches that a clip of ``frames`` frames yields: whole patches, or 1 repeat-padded one."""
    if frames < 1:
        raise ParameterError(f"frames must be positive, got {frames}")
    return max(1, frames // PATCH_FRAMES)


def clip_patches(mel: np.ndarray, *, start: int, frames: int) -> np.ndarray:
    """The 3 s patches of the clip ``mel[start : start + frames]``.

    Non-overlapping patches from the clip's start, as musicnn's extractor cuts them; a
    remainder shorter than a patch is dropped. A clip shorter than one patch is
    repeat-padded (tiled, then cut to :data:`PATCH_FRAMES`), as musicnn's training did.

    Parameters
    ----------
    mel : np.ndarray [shape=(song_frames, 96)]
        From :func:`log_mel`.
    start, frames : int
        The clip; ``start`` is moved back if the clip would run past the end.

    Returns
    -------
    np.ndarray [shape=(patch_count(frames), 187, 96), dtype=float32]
    """
    if mel.ndim != 2 or mel.shape[1] != N_MELS:
        raise ParameterError(f"mel must have shape (frames, {N_MELS}), got {mel.shape}")
    if frames > mel.shape[0]:
        raise ParameterError(f"a clip of {frames} frames does not fit a mel of {mel.shape[0]} frames")
    start = min(max(0, int(start)), mel.shape[0] - frames)
    clip = mel[start : start + frames]
    if frames < PATCH_FRAMES:
        reps = -(-PATCH_FRAMES // frames)
        return np.concatenate([clip] * reps, axis=0)[None, :PATCH_FRAMES].astype(np.float32)
    n = frames // PATCH_FRAMES
    return clip[: n * PATCH_FRAMES].reshape(n, PATCH_FRAMES, N_MELS).astype(np.float32)
