"""The S3 backend, through ``obstore`` (the Rust ``object_store`` that deltalake also uses).

Everything goes through obstore, boto3 is not needed:

* a create-only put is one ``PUT`` with ``If-None-Match: *`` (obstore's ``mode="create"``,
  which never uses a multipart upload): the server refuses it with 412 when the key exists,
  and it becomes :class:`~feature_store.engine.storage.base.ObjectExists`. An object is thus
  at most one PUT (5 GiB on AWS S3), held in memory while it is sent;
* each object carries the sha256 of its bytes as user metadata (``x-amz-meta-sha256``);
  :meth:`S3Storage.get` checks it and :meth:`S3Storage.head` returns it;
* a get reads the response's headers first and refuses an object larger than ``max_bytes``
  before any of its body is read (one request: no window between a HEAD and a GET);
* ranged reads of one object are one ``get_ranges`` call (obstore coalesces nearby ranges).

Where and as whom, from the standard AWS variables (as deltalake and the AWS tools read them):
``AWS_ENDPOINT_URL_S3`` or else ``AWS_ENDPOINT_URL`` (unset: AWS S3 itself),
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
else ``AWS_DEFAULT_REGION`` (default ``us-east-1``), and ``AWS_ALLOW_HTTP=true`` to allow an
``http://`` endpoint (refused without it, as obstore and deltalake do). Without keys,
obstore's own chain applies (instance or container credentials); a request is never sent
unsigned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from feature_store.engine.storage.base import (DEFAULT_MAX_GET_BYTES, DEFAULT_MAX_RANGES_BYTES, Data, ObjectExists,
                                               ObjectInfo, ObjectNotFound, Storage, bytes_of, check_key,
                                               check_prefix, check_ranges, too_large)
from feature_store.errors import ParameterError, StoreError

#: The user metadata key of an object's sha256.
SHA256_ATTRIBUTE = "sha256"
#: Region when neither AWS_REGION nor AWS_DEFAULT_REGION is set (S3-compatible servers ignore it).
DEFAULT_REGION = "us-east-1"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TRUE = ("1", "true", "yes")


@dataclasses.dataclass(frozen=True, kw_only=True)
class S3Config:
    """Where the S3 server is and the credentials for it (see the module's docstring).

    Attributes
    ----------
    endpoint : str or None
        ``http(s)://host:port`` of an S3-compatible server; None: AWS S3.
    region : str
    access_key_id, secret_access_key, session_token : str or None
    allow_http : bool
        Whether an ``http://`` endpoint is allowed.
    """

    endpoint: str | None = None
    region: str = DEFAULT_REGION
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    allow_http: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> S3Config:
        """The configuration of the AWS variables of ``environ``."""

        def get(*names: str) -> str | None:
            return next((environ[n].strip() for n in names if environ.get(n, "").strip()), None)

        return cls(endpoint=get("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
                   region=get("AWS_REGION", "AWS_DEFAULT_REGION") or DEFAULT_REGION,
                   access_key_id=get("AWS_ACCESS_KEY_ID"), secret_access_key=get("AWS_SECRET_ACCESS_KEY"),
                   session_token=get("AWS_SESSION_TOKEN"),
                   allow_http=(get("AWS_ALLOW_HTTP") or "").lower() in _TRUE)

    def check(self) -> None:
        """ParameterError for an endpoint that is not http(s), or http without ``allow_http``."""
        if self.endpoint is None:
            return
        if not re.fullmatch(r"https?://[^/\s]+/?", self.endpoint):
            raise ParameterError(f"AWS_ENDPOINT_URL must be http(s)://host[:port], got {self.endpoint!r}")
        if self.endpoint.startswith("http://") and not self.allow_http:
            raise ParameterError(f"the S3 endpoint {self.endpoint} is plain http: set AWS_ALLOW_HTTP=true to allow it")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ParameterError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket[/prefix]``; ParameterError naming the URL otherwise."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ParameterError(f"an S3 location must be s3://bucket/prefix, got {url!r}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ParameterError(f"{url!r}: {bucket!r} is not an S3 bucket name (3 to 63 of a-z, 0-9, '.', '-')")
    prefix = prefix.rstrip("/")
    if prefix:
        check_key(prefix)
    return bucket, prefix


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


class S3Storage(Storage):
    """Objects under ``s3://bucket/prefix``.

    Parameters
    ----------
    url : str
        ``s3://bucket`` or ``s3://bucket/prefix``.
    config : S3Config, optional
        Endpoint and credentials; default: :meth:`S3Config.from_env` of this process.
    """

    concurrent_reads = 8

    def __init__(self, url: str, *, config: S3Config | None = None) -> None:
        from obstore.store import S3Store

        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.config = config or S3Config.from_env()
        self.config.check()
        c = self.config
        opts: dict[str, Any] = {"region": c.region}
        if c.endpoint:
            opts["endpoint"] = c.endpoint.rstrip("/")
        if c.access_key_id:
            opts.update(access_key_id=c.access_key_id, secret_access_key=c.secret_access_key)
        if c.session_token:
            opts["session_token"] = c.session_token
        self._store = S3Store(self.bucket, prefix=self.prefix or None, client_options={"allow_http": c.allow_http},
                              **opts)

    def _fail(self, exc: Exception, key: str) -> StoreError:
        """Our one-line error for an obstore error about ``key``."""
        from obstore import exceptions as e

        if isinstance(exc, e.AlreadyExistsError | e.PreconditionError):
            return ObjectExists(f"{self.url}: object {key!r} already exists; it was not overwritten")
        if isinstance(exc, e.NotFoundError | FileNotFoundError):
            return ObjectNotFound(f"{self.url}: no object {key!r}")
        if isinstance(exc, e.PermissionDeniedError | e.UnauthenticatedError):
            return StoreError(f"{self.url}: access to {key!r} refused (check AWS_ACCESS_KEY_ID and "
                              f"AWS_SECRET_ACCESS_KEY): {_one_line(exc)}")
        return StoreError(f"{self.url}: {key!r}: {_one_line(exc)}")

    def put_new(self, key: str, data: Data) -> ObjectInfo:
        import obstore
        from obstore import exceptions as e

        check_key(key)
        body, sha = bytes_of(data, what=f"{self.url}/{key}")
        try:
            put = obstore.put(self._store, key, body, mode="create", use_multipart=False,
                              attributes={SHA256_ATTRIBUTE: sha})
        except (e.BaseError, OSError) as exc:
            raise self._fail(exc, key) from None
        return ObjectInfo(key=key, size=len(body), etag=put.get("e_tag"), sha256=sha)

    def get(self, key: str, *, max_bytes: int = DEFAULT_MAX_GET_BYTES) -> bytes:
        import obstore
        from obstore import exceptions as e

        from feature_store.integrity import IntegrityError

        check_key(key)
        try:
            result = obstore.get(self._store, key)
            size = int(result.meta["size"])
            if size > max_bytes:  # the headers alone were read: the body is dropped unread
                raise too_large(f"{self.url}/{key}", size, max_bytes)
            parts, total = [], 0
            for chunk in result.stream(min_chunk_size=1 << 20):
                total += len(chunk)
                if total > max_bytes:
                    raise too_large(f"{self.url}/{key}", total, max_bytes)
                parts.append(bytes(chunk))
        except (e.BaseError, OSError) as exc:
            raise self._fail(exc, key) from None
        data = b"".join(parts)
        if len(data) != size:
            raise IntegrityError(f"{self.url}/{key}: {len(data)} bytes read, the server announced {size}")
        expected = result.attributes.get(SHA256_ATTRIBUTE)
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise IntegrityError(f"{self.url}/{key}: its bytes do not match the sha256 stored with it: damaged")
        return data

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]], *,
                   max_bytes: int = DEFAULT_MAX_RANGES_BYTES, size: int | None = None) -> list[bytes]:
        import obstore
        from obstore import exceptions as e

        check_key(key)
        starts, lengths = check_ranges(key, ranges, size=None, max_bytes=max_bytes)
        # a range past the end fails below (the server's error, or fewer bytes than asked)
        check_ranges(key, ranges, size=self.head(key).size if size is None else int(size), max_bytes=max_bytes)
        wanted = [i for i, n in enumerate(lengths) if n > 0]  # S3 has no empty range
        out = [b""] * len(lengths)
        if not wanted:
            return out
        try:
            got = obstore.get_ranges(self._store, key, starts=[starts[i] for i in wanted],
                                     lengths=[lengths[i] for i in wanted])
        except (e.BaseError, OSError) as exc:
            raise self._fail(exc, key) from None
        for i, b in zip(wanted, got, strict=True):
            out[i] = bytes(b)
            if len(out[i]) != lengths[i]:
                raise StoreError(f"{self.url}/{key}: range {ranges[i]!r} came back with {len(out[i])} bytes")
        return out

    def get_start(self, key: str, *, length: int) -> tuple[bytes, ObjectInfo]:
        import obstore
        from obstore import exceptions as e

        check_key(key)
        if not isinstance(length, int) or isinstance(length, bool) or not 0 < length <= DEFAULT_MAX_RANGES_BYTES:
            raise ParameterError(f"the start of {key!r} to read must be 1 to {DEFAULT_MAX_RANGES_BYTES} bytes, "
                                 f"got {length!r}")
        try:  # one GET of the first bytes: its answer also gives the object's size
            result = obstore.get(self._store, key, options={"range": (0, length)})
            size, data = int(result.meta["size"]), bytes(result.bytes())
        except (e.BaseError, OSError) as exc:
            raise self._fail(exc, key) from None
        if len(data) != min(length, size):
            raise StoreError(f"{self.url}/{key}: its first {min(length, size)} bytes came back as {len(data)}")
        meta = result.meta
        return data, ObjectInfo(key=key, size=size, etag=meta.get("e_tag"), last_modified=meta.get("last_modified"))

    def head(self, key: str) -> ObjectInfo:
        import obstore
        from obstore import exceptions as e

        check_key(key)
        try:
            result = obstore.get(self._store, key, options={"head": True})
        except (e.BaseError, OSError) as exc:
            raise self._fail(exc, key) from None
        meta = result.meta
        return ObjectInfo(key=key, size=int(meta["size"]), etag=meta.get("e_tag"),
                          sha256=result.attributes.get(SHA256_ATTRIBUTE), last_modified=meta.get("last_modified"))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        import obstore
        from obstore import exceptions as e

        prefix = check_prefix(prefix)
        try:
            found = [ObjectInfo(key=m["path"], size=int(m["size"]), etag=m.get("e_tag"),
                                last_modified=m.get("last_modified"))
                     for batch in obstore.list(self._store, prefix=prefix or None) for m in batch]
        except (e.BaseError, OSError) as exc:
            raise self._fail(exc, prefix) from None
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        import obstore
        from obstore import exceptions as e

        check_key(key)
        try:
            obstore.delete(self._store, key)
        except (e.NotFoundError, FileNotFoundError):
            return
        except (e.BaseError, OSError) as exc:
            raise self._fail(exc, key) from None

    def uri(self, key: str) -> str:
        return f"{self.url}/{check_key(key)}"

    def storage_options(self) -> dict[str, str]:
        c = self.config
        opts = {"aws_region": c.region, "aws_allow_http": "true" if c.allow_http else "false"}
        if c.endpoint:
            opts["aws_endpoint_url"] = c.endpoint.rstrip("/")
        if c.access_key_id and c.secret_access_key:
            opts.update(aws_access_key_id=c.access_key_id, aws_secret_access_key=c.secret_access_key)
        if c.session_token:
            opts["aws_session_token"] = c.session_token
        return opts
