"""Resource instances, configured from environment variables with repo-local defaults.

=====================  ===============================  ==================================
variable               default                          meaning
=====================  ===============================  ==================================
``GTZAN_DIR``          (unset: the synthetic demo)      GTZAN copy to ingest
``GTZAN_DATA_DIR``     ``data``                         parent of the store folders below
``GTZAN_STORE_DIR``    ``$GTZAN_DATA_DIR/store``        feature store root
``GTZAN_MODEL_DIR``    ``$GTZAN_DATA_DIR/models``       model store root
``GTZAN_REPORT_DIR``   ``$GTZAN_DATA_DIR/reports``      evaluation reports
``GTZAN_MODE``         ``first``                        sampling mode: first | segments
=====================  ===============================  ==================================
"""

from __future__ import annotations

import os
from pathlib import Path

from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource


def data_dir() -> Path:
    return Path(os.environ.get("GTZAN_DATA_DIR", "data"))


def make_resources() -> dict[str, object]:
    """The resources of the code location, read from the environment now."""
    base = data_dir()
    return {
        "audio": AudioSource(path=os.environ.get("GTZAN_DIR", ""), demo_dir=str(base / "demo")),
        "features": FeatureStoreResource(
            root=os.environ.get("GTZAN_STORE_DIR", str(base / "store")),
            mode=os.environ.get("GTZAN_MODE", "first"),
        ),
        "models": ModelStoreResource(
            root=os.environ.get("GTZAN_MODEL_DIR", str(base / "models")),
            report_dir=os.environ.get("GTZAN_REPORT_DIR", str(base / "reports")),
        ),
    }
