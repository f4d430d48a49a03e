"""musicnn (Pons & Serra, 2019) ported to Keras 3 for inference, weights read by name.

The ``musicnn`` 0.1.0 package on PyPI (ISC licence) ships TensorFlow 1 checkpoints in its
package folders ``MSD_musicnn`` and ``MTT_musicnn``. Its TF1 graph code and its pinned
requirements do not fit this stack, so the package is installed with
``pip install --no-deps musicnn==0.1.0``, found with :func:`importlib.util.find_spec` (which
does not run the package's code) and only its checkpoint files are read, with
``tf.compat.v1.train.NewCheckpointReader``. The network of ``musicnn/models.py``
(``build_musicnn``) is rebuilt here layer by layer, each Keras layer named after the
checkpoint variables it takes:

Front end, over the batch-normalised log-mel patch (frames=187, mels=96, 1)
    ``batch_normalization`` (one scalar BN over the input), then five branches, each a
    conv with ReLU, a BN and a max over the frequency axis:

    * timbral: time-padded by 3 on both sides, ``conv2d`` 204 x (7, 38) valid and
      ``conv2d_1`` 204 x (7, 67) valid (BN ``_1``, ``_2``);
    * temporal: ``conv2d_2/3/4`` 51 x (128, 1), (64, 1), (32, 1) 'same' (BN ``_3`` to ``_5``).

    Concatenated: (frames, 561).
Mid end
    Three 1-D convs of 64 filters x 7 frames (``conv2d_5/6/7``, zero-padded by 3, ReLU,
    BN ``_6`` to ``_8``); the second and third add a residual connection. The front-end
    output and the three mid-end outputs are concatenated: (frames, 753).
Back end
    Max and mean over time (each 753), interleaved feature by feature into 1506 values
    as TF1's flatten of the (753, 2) stack gives, BN ``_9``, ``dense`` 200 with ReLU,
    BN ``_10`` (the *penultimate* layer), ``dense_1`` 50 logits, sigmoid (the *tags*).

Every BN is TF1's inference form ``gamma * (x - moving_mean) / sqrt(moving_variance + 1e-3)
+ beta``; dropout is inactive at inference.

Input, as musicnn's ``extractor.batch_data``: mono audio at 16 kHz, librosa's power mel
spectrogram with n_fft 512, hop 256 and 96 bands, ``log10(10000 * S + 1)``, transposed to
(frames, mels) and cut into non-overlapping patches of 187 frames (3 s). Unlike
``batch_data`` the mel is kept in float32: its cast to float16 overflows ``10000 * S`` to
inf on loud music. Inputs shorter than one patch are repeat-padded, as musicnn's training
code does for short audio (``pad_short: repeat-pad``).

TensorFlow and Keras are imported inside functions only.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from feature_store.embeddings.musicnn_input import (  # the input representation, re-exported
    HOP_LENGTH,
    LOG_MEL_BLOCK_FRAMES,
    N_FFT,
    N_MELS,
    PATCH_FRAMES,
    SR,
    clip_frames,
    clip_patches,
    log_mel,
    patch_count,
)
from feature_store.errors import ParameterError, StoreError
from feature_store.quiet_tf import import_tensorflow

#: musicnn models whose architecture this port implements (the VGG baselines are not ported).
MUSICNN_MODELS: tuple[str, ...] = ("MSD_musicnn", "MTT_musicnn")
#: The pinned release whose checkpoints are read.
MUSICNN_PACKAGE = "musicnn==0.1.0"
#: The command that installs the weights (``make install`` runs it too).
INSTALL_COMMAND = "python -m pip install --no-deps musicnn==0.1.0"
#: Files of a checkpoint (their prefix is empty) whose bytes make up the weights hash.
CHECKPOINT_FILES: tuple[str, ...] = (".index", ".data-00000-of-00001")

#: Layers the embedder returns, and their widths.
LAYERS: dict[str, int] = {"max_pool": 753, "mean_pool": 753, "penultimate": 200, "tags": 50}

#: Output tags of the MSD and MTT models (musicnn ``configuration.py``), in output order.
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)

_BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default


class MusicnnWeightsError(StoreError):
    """The musicnn package (its checkpoint folders) is not installed, or a checkpoint is unusable."""


def validate_model(model: str) -> str:
    """Return ``model`` if this port implements it, else raise :class:`ParameterError`."""
    if model not in MUSICNN_MODELS:
        raise ParameterError(f"unknown musicnn model {model!r}; valid models are {list(MUSICNN_MODELS)}")
    return model


def tag_names(model: str) -> tuple[str, ...]:
    """The 50 tag names of ``model``'s output, in order."""
    return MSD_TAGS if validate_model(model).startswith("MSD") else MTT_TAGS


# ---------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------
def package_dirs() -> list[Path]:
    """Folders of the installed ``musicnn`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("musicnn")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def weights_folder(model: str = "MSD_musicnn") -> Path:
    """The checkpoint folder of ``model`` inside the installed musicnn package.

    Parameters
    ----------
    model : {'MSD_musicnn', 'MTT_musicnn'}

    Returns
    -------
    Path
        A folder holding ``.index`` and ``.data-00000-of-00001`` (empty checkpoint prefix).

    Raises
    ------
    MusicnnWeightsError
        If the package is not installed (the message names :data:`INSTALL_COMMAND`).
    """
    validate_model(model)
    dirs = package_dirs()
    for d in dirs:
        folder = d / model
        if all((folder / f).is_file() for f in CHECKPOINT_FILES):
            return folder
    where = f"; looked in {[str(d) for d in dirs]}" if dirs else ""
    raise MusicnnWeightsError(
        f"the musicnn weights ({model}) are not installed{where}. Install them with "
        f"`{INSTALL_COMMAND}` (`make install` does it); --no-deps is needed because the "
        "package's own requirements do not fit this stack"
    )


@functools.lru_cache(maxsize=8)
def _hash_folder(folder: str, stamp: tuple[tuple[int, int], ...]) -> str:
    h = hashlib.sha256()
    for name in CHECKPOINT_FILES:
        h.update(name.encode())
        with open(Path(folder) / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def weights_sha256(model: str = "MSD_musicnn") -> str:
    """sha256 of the checkpoint's ``.index`` and ``.data`` files (recorded in every store)."""
    folder = weights_folder(model)
    stamp = tuple((int(s.st_size), int(s.st_mtime_ns)) for s in ((folder / f).stat() for f in CHECKPOINT_FILES))
    return _hash_folder(str(folder), stamp)


def read_checkpoint(model: str = "MSD_musicnn") -> dict[str, np.ndarray]:
    """Every model variable of the checkpoint, by name (optimizer state left out).

    Returns
    -------
    dict of str to np.ndarray
        E.g. ``conv2d/kernel`` [shape=(7, 38, 1, 204)], ``dense_1/bias`` [shape=(50,)].
    """
    folder = weights_folder(model)
    tf = import_tensorflow()  # without TensorFlow's start-up lines

    try:
        reader = tf.compat.v1.train.NewCheckpointReader(str(folder) + os.sep)
    except Exception as exc:  # a truncated or foreign checkpoint
        raise MusicnnWeightsError(f"cannot read the musicnn checkpoint in {folder}: {exc}") from exc
    names = [
        n for n in reader.get_variable_to_shape_map()
        if "/Adam" not in n and not n.startswith(("beta1_power", "beta2_power"))
    ]
    return {n: np.asarray(reader.get_tensor(n), dtype=np.float32) for n in sorted(names)}


# ---------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------
def build_musicnn(*, model: str = "MSD_musicnn", weights: Mapping[str, np.ndarray] | None = None) -> Any:
    """The musicnn network in Keras 3, with the checkpoint's weights loaded by name.

    Parameters
    ----------
    model : {'MSD_musicnn', 'MTT_musicnn'}
    weights : mapping, optional
        Variables by checkpoint name (default: :func:`read_checkpoint` of ``model``).

    Returns
    -------
    keras.Model
        Input [shape=(batch, 187, 96)]; outputs a dict ``max_pool`` (batch, 753),
        ``mean_pool`` (batch, 753), ``penultimate`` (batch, 200), ``tags`` (batch, 50,
        sigmoid) and ``logits`` (batch, 50).

    Raises
    ------
    MusicnnWeightsError
        If the weights are missing, or a variable is absent or has another shape.
    """
    validate_model(model)
    if weights is None:
        weights = read_checkpoint(model)
    import_tensorflow()
    import keras
    from keras import layers

    def bn(name: str) -> Any:
        return layers.BatchNormalization(axis=-1, momentum=0.99, epsilon=_BN_EPSILON, name=name)

    def freq_max(x: Any, channels: int, name: str) -> Any:
        x = layers.MaxPooling2D(pool_size=(1, x.shape[2]), strides=(1, x.shape[2]), name=f"{name}_freqmax")(x)
        return layers.Reshape((PATCH_FRAMES, channels), name=f"{name}_squeeze")(x)

    inp = keras.Input((PATCH_FRAMES, N_MELS), name="log_mel")
    x = layers.Reshape((PATCH_FRAMES, N_MELS, 1), name="expand")(inp)
    x = bn("batch_normalization")(x)
    # front end: timbral (time padded for a cheap 'same') and temporal branches
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)), name="pad_timbral")(x)
    branches = []
    for i, (filters, kernel, pad) in enumerate(
        ((204, (7, 38), "valid"), (204, (7, 67), "valid"), (51, (128, 1), "same"), (51, (64, 1), "same"),
         (51, (32, 1), "same"))
    ):
        src = padded if pad == "valid" else x
        h = layers.Conv2D(filters, kernel, padding=pad, activation="relu", name=_conv(i))(src)
        h = bn(f"batch_normalization_{i + 1}")(h)
        branches.append(freq_max(h, filters, f"front{i}"))
    front = layers.Concatenate(axis=-1, name="frontend")(branches)
    # mid end: three 1-D convs over time, the last two residual
    mids = [front]
    h = front
    for j in range(3):
        p = layers.ZeroPadding1D(3, name=f"pad_mid{j}")(h)
        c = layers.Conv1D(64, 7, padding="valid", activation="relu", name=_conv(5 + j))(p)
        c = bn(f"batch_normalization_{6 + j}")(c)
        h = c if j == 0 else layers.Add(name=f"residual_{j}")([c, h])
        mids.append(h)
    mid = layers.Concatenate(axis=-1, name="midend")(mids)
    # back end: temporal pooling, interleaved (max_k, mean_k) as TF1's flatten of (753, 2)
    max_pool = layers.GlobalMaxPooling1D(name="max_pool")(mid)
    mean_pool = layers.GlobalAveragePooling1D(name="mean_pool")(mid)
    width = LAYERS["max_pool"]
    pooled = layers.Concatenate(axis=-1, name="pool_pairs")(
        [layers.Reshape((width, 1), name="max_col")(max_pool), layers.Reshape((width, 1), name="mean_col")(mean_pool)]
    )
    flat = layers.Flatten(name="pool_flat")(pooled)
    flat = bn("batch_normalization_9")(flat)
    dense = layers.Dense(200, activation="relu", name="dense")(flat)
    penultimate = bn("batch_normalization_10")(dense)
    logits = layers.Dense(50, name="dense_1")(penultimate)
    tags = layers.Activation("sigmoid", name="tags")(logits)
    net = keras.Model(
        inp,
        {"max_pool": max_pool, "mean_pool": mean_pool, "penultimate": penultimate, "tags": tags, "logits": logits},
        name=model,
    )
    _load_weights(net, weights)
    return net


def _conv(i: int) -> str:
    return "conv2d" if i == 0 else f"conv2d_{i}"


def _load_weights(net: Any, weights: Mapping[str, np.ndarray]) -> None:
    """Set every conv, dense and BN layer of ``net`` from the checkpoint variables of its name."""
    from keras import layers

    used: set[str] = set()
    for layer in net.layers:
        if isinstance(layer, layers.BatchNormalization):
            names = ["gamma", "beta", "moving_mean", "moving_variance"]
        elif isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Dense)):
            names = ["kernel", "bias"]
        else:
            continue
        values = []
        for var, target in zip(names, layer.get_weights(), strict=True):
            key = f"{layer.name}/{var}"
            if key not in weights:
                raise MusicnnWeightsError(f"the checkpoint has no variable {key!r}")
            v = np.asarray(weights[key], dtype=np.float32)
            if isinstance(layer, layers.Conv1D) and var == "kernel":
                v = v.reshape(v.shape[0], v.shape[1], v.shape[3])  # (7, c_in, 1, c_out): a 1-D conv
            if v.shape != target.shape:
                raise MusicnnWeightsError(f"checkpoint variable {key!r} has shape {v.shape}, the port needs {target.shape}")
            values.append(v)
            used.add(key)
        layer.set_weights(values)
    expected = {k for k in weights if not k.startswith(("beta1_power", "beta2_power")) and "/Adam" not in k}
    if expected - used:
        raise MusicnnWeightsError(f"checkpoint variables the port does not use: {sorted(expected - used)}")


def configure_threads(threads: int | None) -> None:
    """Limit TensorFlow's CPU threads (call before the first TensorFlow op of the process)."""
    if not threads:
        return
    tf = import_tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime is already initialised: keep its settings
        pass


class MusicnnEmbedder:
    """Embeds log-mel patches and clips with one musicnn model.

    Parameters
    ----------
    model : {'MSD_musicnn', 'MTT_musicnn'}
    batch_size : int > 0
        Patches per forward pass.

    Examples
    --------
    >>> emb = MusicnnEmbedder(model="MSD_musicnn")                      # doctest: +SKIP
    >>> out = emb.embed_patches(patches)        # patches: (n, 187, 96)  # doctest: +SKIP
    >>> out["penultimate"].shape                                         # doctest: +SKIP
    (n, 200)
    """

    def __init__(self, *, model: str = "MSD_musicnn", batch_size: int = 32) -> None:
        self.model = validate_model(model)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.weights_sha256 = weights_sha256(model)
        self.net = build_musicnn(model=model)
        import tensorflow as tf

        net = self.net

        @tf.function(input_signature=[tf.TensorSpec([None, PATCH_FRAMES, N_MELS], tf.float32)], reduce_retracing=True)
        def forward(x: Any) -> Any:
            out = net(x, training=False)
            return {k: out[k] for k in LAYERS}

        self._forward = forward
        forward(np.zeros((1, PATCH_FRAMES, N_MELS), np.float32))  # trace once now, not in the first timing

    def embed_patches(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer of :data:`LAYERS` for each patch.

        Parameters
        ----------
        patches : np.ndarray [shape=(n, 187, 96)]
            Log-mel patches from :func:`clip_patches`.

        Returns
        -------
        dict of str to np.ndarray [shape=(n, LAYERS[name]), dtype=float32]
        """
        patches = np.asarray(patches, dtype=np.float32)
        if patches.ndim != 3 or patches.shape[1:] != (PATCH_FRAMES, N_MELS):
            raise ParameterError(f"patches must have shape (n, {PATCH_FRAMES}, {N_MELS}), got {patches.shape}")
        outs: dict[str, list[np.ndarray]] = {k: [] for k in LAYERS}
        for i in range(0, patches.shape[0], self.batch_size):
            res = self._forward(patches[i : i + self.batch_size])
            for k in LAYERS:
                outs[k].append(res[k].numpy())
        return {
            k: (np.concatenate(v, axis=0) if v else np.zeros((0, LAYERS[k]), np.float32)).astype(np.float32)
            for k, v in outs.items()
        }

    def embed_clips(self, mel: np.ndarray, *, starts: list[int], frames: int) -> dict[str, np.ndarray]:
        """Clip embeddings: the mean of each layer over the 3 s patches inside each clip.

        Parameters
        ----------
        mel : np.ndarray [shape=(song_frames, 96)]
            From :func:`log_mel`.
        starts : list of int
            Start frame of each clip (musicnn frames).
        frames : int
            Frames of each clip (:func:`clip_frames`).

        Returns
        -------
        dict of str to np.ndarray [shape=(len(starts), LAYERS[name]), dtype=float32]
        """
        per_clip = patch_count(frames)
        if not starts:
            return {k: np.zeros((0, w), np.float32) for k, w in LAYERS.items()}
        patches = np.concatenate([clip_patches(mel, start=s, frames=frames) for s in starts], axis=0)
        out = self.embed_patches(patches)
        return {k: v.reshape(len(starts), per_clip, -1).mean(axis=1).astype(np.float32) for k, v in out.items()}


_SHARED: dict[tuple[str, str], MusicnnEmbedder] = {}


def shared_embedder(model: str = "MSD_musicnn") -> MusicnnEmbedder:
    """One :class:`MusicnnEmbedder` per model and weights in this process, built on first use.

    Builds, predictions and assets that run in one process share it instead of rebuilding the
    network (a few seconds each time).
    """
    key = (validate_model(model), weights_sha256(model))
    if key not in _SHARED:
        _SHARED[key] = MusicnnEmbedder(model=model)
    return _SHARED[key]
