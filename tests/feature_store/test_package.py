"""The package's lazily imported names mean the same whatever was imported before them.

Importing a submodule binds its name in the package: a lazy name equal to a submodule's name
(``feature_store.ingest`` the function, ``feature_store/ingest.py`` the module) then turns into
the module, depending on import order. Checked in a fresh interpreter that imports every
submodule first.
"""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, types
import feature_store
for info in pkgutil.walk_packages(feature_store.__path__, "feature_store."):
    if info.name.startswith("feature_store.embeddings.musicnn"):
        continue  # TensorFlow: slow to import, and defines no lazy name
    importlib.import_module(info.name)
bad = []
for name, module in feature_store._LAZY.items():
    value = getattr(feature_store, name)
    if isinstance(value, types.ModuleType) or value is not getattr(importlib.import_module(module), name):
        bad.append(name)
print(",".join(bad))
"""


def test_lazy_names_are_never_shadowed_by_submodules():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""
