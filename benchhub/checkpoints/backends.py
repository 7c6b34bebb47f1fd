"""Where checkpoint chunks and manifests are kept: a local directory or an S3 bucket.

A :class:`ChunkBackend` is a small object store addressed by ``/``-separated keys. The layout
is the same for every backend (see :func:`chunk_object` and :func:`manifest_object`)::

    chunks/ab/cdef…           zstd-compressed chunk whose sha256 is abcdef…
    manifests/<workspace>/<checkpoint>.json
    locks/…                   garbage-collection lock and writer leases (see store.py)

Every ``put`` is atomic: a reader sees the whole old object, the whole new one, or none.
``put`` without ``overwrite`` skips an object that exists and refreshes its modification
time instead (:meth:`ChunkBackend.touch`), which is what protects a re-used chunk from the
garbage collector's grace rule. ``delete`` of a missing object succeeds.

The methods block; the hub service calls the store (and so these) through its executor.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from traitlets import Float, Integer, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from benchhub.atomic import atomic_write

from .chunking import is_chunk_key
from .errors import ObjectMissing
from .manifest import is_safe_path

__all__ = [
    "ChunkBackend",
    "LocalDirectoryBackend",
    "ObjectInfo",
    "S3Backend",
    "chunk_object",
    "manifest_object",
    "parse_chunk_object",
    "parse_manifest_object",
]


@dataclass(frozen=True)
class ObjectInfo:
    """An object's key, stored size in bytes and modification time (Unix seconds)."""

    key: str
    size: int
    modified: float


def chunk_object(key: str) -> str:
    """The object key of a chunk: ``chunks/ab/cdef…``."""
    return f"chunks/{key[:2]}/{key[2:]}"


def parse_chunk_object(name: str) -> str | None:
    """The chunk key stored at object ``name``, or None if it is not a chunk object."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "chunks" and is_chunk_key(parts[1] + parts[2]):
        return parts[1] + parts[2]
    return None


def manifest_object(workspace_id: str, checkpoint_id: str) -> str:
    """The object key of a manifest: ``manifests/<workspace>/<checkpoint>.json``."""
    return f"manifests/{workspace_id}/{checkpoint_id}.json"


def parse_manifest_object(name: str) -> tuple[str, str] | None:
    """``(workspace_id, checkpoint_id)`` of manifest object ``name``, or None."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "manifests" and parts[2].endswith(".json"):
        return parts[1], parts[2][: -len(".json")]
    return None


def _check_key(key: str) -> str:
    if not is_safe_path(key):
        raise ValueError(f"object key {key!r} must be a relative path without '..'")
    return key


class ChunkBackend(LoggingConfigurable):
    """The object-store interface the :class:`CheckpointStore` uses (all methods block)."""

    def head(self, key: str) -> ObjectInfo | None:
        """Size and modification time of ``key``, or None if it does not exist."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return self.head(key) is not None

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> bool:
        """Store ``data`` at ``key`` atomically; True if written.

        Without ``overwrite`` an existing object is kept, its modification time refreshed
        (:meth:`touch`), and False returned.
        """
        raise NotImplementedError

    def touch(self, key: str) -> ObjectInfo | None:
        """Refresh ``key``'s modification time (may skip one refreshed recently); returns its
        info, or None if it does not exist."""
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        """The bytes at ``key``; raises :class:`ObjectMissing`."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is success."""
        raise NotImplementedError

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``."""
        raise NotImplementedError


class LocalDirectoryBackend(ChunkBackend):
    """Objects as files under :attr:`root`; writes are temp file + fsync + ``os.replace``."""

    root = Unicode(
        "/var/lib/benchhub/checkpoints",
        help="Directory holding chunks/, manifests/ and locks/ (created when missing), "
        "e.g. /srv/benchhub/checkpoints. Keep it off the workspaces' own volumes.",
    ).tag(config=True)

    def __init__(self, root: str | None = None, **kwargs):
        if root is not None:
            kwargs["root"] = str(root)
        super().__init__(**kwargs)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, _check_key(key))

    def head(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key), follow_symlinks=False)
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> bool:
        if not overwrite and self.touch(key) is not None:
            return False
        atomic_write(self._path(key), data, 0o600)
        return True

    def touch(self, key: str) -> ObjectInfo | None:
        try:
            os.utime(self._path(key), follow_symlinks=False)
        except FileNotFoundError:
            return None
        return self.head(key)

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def delete(self, key: str) -> None:
        _unlink_quietly(self._path(key))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = os.path.join(self.root, prefix.rpartition("/")[0])
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):  # a put in progress (or left by a crash)
                    continue
                key = os.path.relpath(os.path.join(dirpath, name), self.root)
                key = key.replace(os.sep, "/")
                if key.startswith(prefix):
                    info = self.head(key)
                    if info is not None:
                        yield info


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "503",
    "500",
}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


class S3Backend(ChunkBackend):
    """Objects in an S3 (or S3-compatible) bucket via boto3.

    Each request gets botocore's ``standard`` retries (:attr:`max_attempts`); on top, a whole
    operation that still fails with a 5xx, a throttle or a timeout is retried with
    exponential backoff and jitter (:attr:`operation_attempts`, :attr:`retry_base_delay`).
    Credentials come from the usual boto3 chain unless given here.
    """

    bucket = Unicode(help="Bucket name, e.g. 'benchhub-checkpoints' (must exist).").tag(config=True)
    prefix = Unicode("", help="Key prefix inside the bucket, e.g. 'site-a/'.").tag(config=True)
    endpoint_url = Unicode(
        None,
        allow_none=True,
        help="S3 endpoint for S3-compatible stores, e.g. 'https://s3.example.org'; "
        "None uses AWS's.",
    ).tag(config=True)
    region_name = Unicode(None, allow_none=True, help="Region, e.g. 'eu-west-1'.").tag(config=True)
    access_key_id = Unicode(None, allow_none=True, help="Access key; None: boto3's chain.").tag(
        config=True
    )
    secret_access_key = Unicode(None, allow_none=True, help="Secret for access_key_id.").tag(
        config=True
    )
    max_attempts = Integer(5, help="botocore attempts per request (standard mode), e.g. 5.").tag(
        config=True
    )
    operation_attempts = Integer(
        4, help="Attempts of a whole operation after botocore gave up on 5xx/timeouts, e.g. 4."
    ).tag(config=True)
    retry_base_delay = Float(
        0.5, help="Seconds before the first operation retry; doubles each time, e.g. 0.5."
    ).tag(config=True)
    retry_max_delay = Float(20.0, help="Longest wait between operation retries, seconds.").tag(
        config=True
    )
    connect_timeout = Float(10.0, help="Seconds to open a connection, e.g. 10.").tag(config=True)
    read_timeout = Float(60.0, help="Seconds to wait for a response, e.g. 60.").tag(config=True)
    touch_after = Float(
        3600.0,
        help="A re-used chunk's time stamp is refreshed (a server-side copy) only when older "
        "than this many seconds; keep it well below CheckpointStore.gc_grace.",
    ).tag(config=True)

    def __init__(
        self,
        bucket: str | None = None,
        prefix: str | None = None,
        endpoint_url: str | None = None,
        **kwargs,
    ):
        for name, value in (("bucket", bucket), ("prefix", prefix), ("endpoint_url", endpoint_url)):
            if value is not None:
                kwargs[name] = value
        super().__init__(**kwargs)
        self._client = None

    @validate("prefix")
    def _normalise_prefix(self, proposal):
        prefix = proposal["value"].strip("/")
        return prefix + "/" if prefix else ""

    @default("region_name")
    def _default_region(self):
        return os.environ.get("AWS_DEFAULT_REGION", "us-east-1")

    @property
    def client(self):
        """The boto3 S3 client (created on first use; boto3 clients are thread-safe)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"mode": "standard", "max_attempts": self.max_attempts},
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
            )
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self.secret_access_key,
                config=config,
            )
        return self._client

    def _request(self, operation: str, **params):
        """One client call; the seam fault-injecting tests override."""
        return getattr(self.client, operation)(**params)

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _retrying(self, what: str, call: Callable):
        """Run ``call()``, retrying transient failures with exponential backoff."""
        for attempt in range(1, self.operation_attempts + 1):
            try:
                return call()
            except Exception as e:
                if attempt == self.operation_attempts or not _is_transient(e):
                    raise
                delay = min(self.retry_max_delay, self.retry_base_delay * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)
                self.log.warning("S3 %s failed (%s); retry %d in %.2fs", what, e, attempt, delay)
                self._sleep(delay)

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            reply = self._retrying(
                f"HEAD {key}",
                lambda: self._request("head_object", Bucket=self.bucket, Key=self._key(key)),
            )
        except Exception as e:
            if _error_code(e) in _MISSING_CODES:
                return None
            raise
        return ObjectInfo(key, reply["ContentLength"], reply["LastModified"].timestamp())

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> bool:
        if not overwrite and self.touch(key) is not None:
            return False
        self._retrying(
            f"PUT {key}",
            lambda: self._request("put_object", Bucket=self.bucket, Key=self._key(key), Body=data),
        )
        return True

    def touch(self, key: str) -> ObjectInfo | None:
        info = self.head(key)
        if info is None or time.time() - info.modified < self.touch_after:
            return info
        target = {"Bucket": self.bucket, "Key": self._key(key)}
        stamp = datetime.now(UTC).isoformat()
        try:
            self._retrying(
                f"touch {key}",
                lambda: self._request(
                    "copy_object",
                    CopySource=target,
                    MetadataDirective="REPLACE",
                    Metadata={"touched": stamp},
                    **target,
                ),
            )
        except Exception as e:
            if _error_code(e) in _MISSING_CODES:
                return None
            raise
        return ObjectInfo(key, info.size, time.time())

    def get(self, key: str) -> bytes:
        def read():
            reply = self._request("get_object", Bucket=self.bucket, Key=self._key(key))
            return reply["Body"].read()

        try:
            return self._retrying(f"GET {key}", read)
        except Exception as e:
            if _error_code(e) in _MISSING_CODES:
                raise ObjectMissing(key) from None
            raise

    def delete(self, key: str) -> None:
        self._retrying(
            f"DELETE {key}",
            lambda: self._request("delete_object", Bucket=self.bucket, Key=self._key(key)),
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        params = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        while True:
            page = self._retrying(
                f"LIST {prefix}", lambda p=dict(params): self._request("list_objects_v2", **p)
            )
            for item in page.get("Contents", ()):
                key = item["Key"][len(self.prefix) :]
                yield ObjectInfo(key, item["Size"], item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]


def _error_code(error: Exception) -> str | None:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    return str(response.get("Error", {}).get("Code"))


def _is_transient(error: Exception) -> bool:
    """5xx, throttling and timeouts are worth another attempt; 4xx are not."""
    from botocore.exceptions import ConnectionError, HTTPClientError

    if isinstance(error, ConnectionError | HTTPClientError):
        return True
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return status >= 500 or _error_code(error) in _TRANSIENT_CODES
