"""Models, training from the feature store, evaluation and reports.

This package never imports Dagster, and it imports TensorFlow only inside the functions
that need it, so that ``import training`` stays fast.
"""

import os

# What TensorFlow's C++ logs after its import hides our own output; errors still show. The import
# itself is made quiet by feature_store.quiet_tf.import_tensorflow, which every TensorFlow user calls.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
