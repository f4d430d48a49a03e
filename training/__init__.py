"""Models, training from the feature store, evaluation and reports.

This package never imports Dagster, and it imports TensorFlow only inside the functions
that need it, so that ``import training`` stays fast.
"""

import os

# TensorFlow's C++ start-up chatter hides our own output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
