"""Where the store's objects live: one interface, two backends.

* :class:`~feature_store.engine.storage.base.Storage`: create-only puts
  (:meth:`~Storage.put_new`), size-bounded reads (:meth:`~Storage.get`), batched ranged reads
  (:meth:`~Storage.get_ranges`), :meth:`~Storage.head`, :meth:`~Storage.list`,
  :meth:`~Storage.delete`, and :meth:`~Storage.storage_options` for deltalake and polars;
* :class:`~feature_store.engine.storage.local.LocalStorage`: files under a folder (the default);
* :class:`~feature_store.engine.storage.s3.S3Storage`: ``s3://bucket/prefix`` through obstore,
  endpoint and credentials from the standard AWS variables.

:func:`open_storage` picks one from a URL or a path (``GTZAN_STORE_URL``, read by
``pipelines.settings``). The engine does not store its views here yet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from feature_store.engine.storage.base import (ObjectExists, ObjectInfo, ObjectNotFound, ObjectTooLarge, Storage,
                                               check_key)
from feature_store.engine.storage.local import LocalStorage

__all__ = ["LocalStorage", "ObjectExists", "ObjectInfo", "ObjectNotFound", "ObjectTooLarge", "Storage",
           "check_key", "open_storage"]


def open_storage(location: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> Storage:
    """The storage at ``location``: ``s3://bucket/prefix`` is S3, anything else a local folder.

    Parameters
    ----------
    location : str or PathLike
        ``s3://...`` or a folder.
    environ : mapping, optional
        Where the AWS variables of an S3 location are read (default: this process's environment).

    Raises
    ------
    ParameterError
        A malformed ``s3://`` URL, another URL scheme, or an S3 configuration that is refused.
    """
    from feature_store.errors import ParameterError

    text = os.fspath(location)
    if text.startswith("s3://"):
        from feature_store.engine.storage.s3 import S3Config, S3Storage

        return S3Storage(text, config=S3Config.from_env(os.environ if environ is None else environ))
    if "://" in text:
        raise ParameterError(f"a store location is a folder or s3://bucket/prefix, got {text!r}")
    return LocalStorage(text)
