"""The feature-view assets by their historical names (made by :mod:`assets.views`)."""

from assets.views import VIEW_ASSETS, VIEW_CHECKS

#: Mel spectrograms, one HDF5 + Parquet store per clip length.
mel_features = VIEW_ASSETS["mel"]
features_sane = VIEW_CHECKS["mel"]
#: The classic timbral summary (Tzanetakis & Cook 2002) per clip.
timbre_features = VIEW_ASSETS["timbre"]
timbre_sane = VIEW_CHECKS["timbre"]
