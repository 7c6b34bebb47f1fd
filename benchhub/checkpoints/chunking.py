"""Content-defined chunking, compression and chunk keys for checkpoints.

A file is cut with FastCDC (:mod:`pyfastcdc`) so that an insertion or deletion moves only the
chunk boundaries around it: the unchanged rest of the file yields the same chunks again and is
stored once. Each chunk is addressed by the SHA-256 hex digest of its *uncompressed* bytes and
stored zstd-compressed, so the key names the content whatever compression level wrote it.

Everything here is a pure function of its arguments (no I/O beyond the stream it is given).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import zstandard
from pyfastcdc import FastCDC

__all__ = [
    "MAX_CHUNK_BYTES",
    "ChunkMismatch",
    "ChunkingParams",
    "chunk_key",
    "compress",
    "decompress",
    "is_chunk_key",
    "iter_chunks",
    "unpack_chunk",
]

#: Hard ceiling for one decompressed chunk (FastCDC's own upper bound for ``max_size``).
#: Decompression never produces more, whatever a stored blob claims.
MAX_CHUNK_BYTES = 16 * 1024 * 1024

_KEY = re.compile(r"[0-9a-f]{64}")


class ChunkMismatch(ValueError):
    """A stored chunk does not decompress, or decompresses to bytes of another hash."""


@dataclass(frozen=True)
class ChunkingParams:
    """How files are cut and compressed.

    ``avg_size``, ``min_size`` and ``max_size`` are in bytes (FastCDC's effective average is
    about ``avg_size + min_size``); ``level`` is the zstd level (1-22, 3 is zstd's default).
    Construction raises :class:`ValueError` naming the bad field.
    """

    avg_size: int = 1024 * 1024
    min_size: int = 256 * 1024
    max_size: int = 4 * 1024 * 1024
    level: int = 3

    def __post_init__(self) -> None:
        ordered = self.min_size <= self.avg_size <= self.max_size
        # FastCDC's own bounds: min 64 B-1 MiB, avg 256 B-4 MiB, max 1 KiB-16 MiB.
        bounded = (
            64 <= self.min_size <= 1 << 20
            and 256 <= self.avg_size <= 4 << 20
            and 1024 <= self.max_size <= MAX_CHUNK_BYTES
        )
        if not (ordered and bounded):
            raise ValueError(
                "chunk sizes must satisfy min_size <= avg_size <= max_size with min_size "
                "64 B-1 MiB, avg_size 256 B-4 MiB, max_size 1 KiB-16 MiB; got "
                f"min_size={self.min_size}, avg_size={self.avg_size}, max_size={self.max_size} "
                "(e.g. 262144, 1048576, 4194304)"
            )
        if not 1 <= self.level <= 22:
            raise ValueError(f"zstd level must be 1-22 (e.g. 3), got {self.level}")

    def describe(self) -> dict:
        """The parameters as recorded in a manifest."""
        return {
            "algorithm": "fastcdc2020",
            "avg_size": self.avg_size,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "compression": "zstd",
            "level": self.level,
        }


def chunk_key(data: bytes | memoryview) -> str:
    """The key of a chunk: SHA-256 hex digest of its uncompressed bytes."""
    return hashlib.sha256(data).hexdigest()


def is_chunk_key(key: object) -> bool:
    """Whether ``key`` has the shape of a chunk key (64 lower-case hex digits)."""
    return isinstance(key, str) and _KEY.fullmatch(key) is not None


def iter_chunks(stream: BinaryIO, params: ChunkingParams) -> Iterator[memoryview]:
    """Cut ``stream`` into content-defined chunks; yields nothing for an empty stream.

    Each yielded view is valid only until the next one is requested: hash, compress or copy
    it before advancing.
    """
    cutter = FastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size)
    for chunk in cutter.cut_stream(stream):
        yield chunk.data


def compress(data: bytes | memoryview, level: int = 3) -> bytes:
    """zstd-compress one chunk (the frame records its size, so :func:`decompress` needs none)."""
    return zstandard.ZstdCompressor(level=level).compress(data)


def decompress(blob: bytes) -> bytes:
    """Decompress one stored chunk; raises :class:`ChunkMismatch` if it is not a zstd frame
    or would exceed :data:`MAX_CHUNK_BYTES`."""
    try:
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=MAX_CHUNK_BYTES)
    except zstandard.ZstdError as e:
        raise ChunkMismatch(f"not a valid zstd chunk: {e}") from e


def unpack_chunk(key: str, blob: bytes) -> bytes:
    """Decompress a stored chunk and check it hashes to ``key``; returns the raw bytes.

    Raises :class:`ChunkMismatch` when the blob is damaged or belongs to another key.
    """
    data = decompress(blob)
    actual = chunk_key(data)
    if actual != key:
        raise ChunkMismatch(f"content hashes to {actual[:12]}…, not {key[:12]}…")
    return data
