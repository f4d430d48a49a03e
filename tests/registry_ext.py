"""A pytest plugin and helper of tests/test_registries.py: registers the throwaway view and model
family that the test wrote to a temporary folder, the way a contributor's modules are found.

``GTZAN_TEST_EXTRA_VIEWS`` and ``GTZAN_TEST_EXTRA_FAMILIES`` name folders that join the
packages ``feature_store.views`` and ``training.families``: their modules are then discovered
exactly like the files of those packages (the checkout itself is not written to).
"""

from __future__ import annotations

import os


def register() -> None:
    """Add the folders named by the environment to the two discovered packages."""
    import feature_store.views
    import training.families

    for var, package in (("GTZAN_TEST_EXTRA_VIEWS", feature_store.views),
                         ("GTZAN_TEST_EXTRA_FAMILIES", training.families)):
        folder = os.environ.get(var)
        if folder and folder not in package.__path__:
            package.__path__.append(folder)


register()
