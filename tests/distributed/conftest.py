"""The distributed test runs only when asked for (``make test-distributed``: ``-m distributed``).

It needs root and minutes; a plain ``pytest`` or ``-m "not slow"`` skips it with that reason.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    if "distributed" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="brings up the multi-host cluster (root, minutes): run `make test-distributed`")
    for item in items:
        if item.get_closest_marker("distributed") is not None:
            item.add_marker(skip)
