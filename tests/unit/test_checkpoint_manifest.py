"""The pure parts of checkpoints: chunking, chunk keys, and the manifest format's rules."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime

import pytest

from benchhub.checkpoints.chunking import (
    ChunkingParams,
    ChunkMismatch,
    chunk_key,
    compress,
    iter_chunks,
    unpack_chunk,
)
from benchhub.checkpoints.errors import InvalidCheckpointName, ManifestInvalid
from benchhub.checkpoints.manifest import (
    Entry,
    Manifest,
    build_manifest,
    check_id,
    is_excluded,
    normalise_excludes,
    normalise_name,
)

PARAMS = ChunkingParams()
CREATED = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def keys_of(data: bytes, params=PARAMS) -> list[str]:
    return [chunk_key(c) for c in iter_chunks(io.BytesIO(data), params)]


def test_an_insertion_changes_only_the_chunks_around_it():
    data = random.Random(3).randbytes(12 * 1024 * 1024)
    edited = data[:5_000_000] + b"one more line\n" + data[5_000_000:]

    before, after = keys_of(data), keys_of(edited)

    assert len(set(after) - set(before)) <= 2
    sizes = [len(c) for c in iter_chunks(io.BytesIO(data), PARAMS)]
    assert all(PARAMS.min_size <= s <= PARAMS.max_size for s in sizes[:-1])
    assert keys_of(b"") == []


def test_stored_chunks_are_checked_against_their_key():
    data = b"results " * 10_000
    blob = compress(data, level=3)

    assert len(blob) < len(data) / 10
    assert unpack_chunk(chunk_key(data), blob) == data
    with pytest.raises(ChunkMismatch, match="hashes to"):
        unpack_chunk(chunk_key(b"something else"), blob)
    with pytest.raises(ChunkMismatch, match="zstd"):
        unpack_chunk(chunk_key(data), b"not zstd at all")


def test_chunking_settings_that_cannot_work_say_how_to_fix_them():
    with pytest.raises(ValueError, match="min_size <= avg_size"):
        ChunkingParams(avg_size=1024, min_size=4096)
    with pytest.raises(ValueError, match="zstd level"):
        ChunkingParams(level=0)


def tree(*extra: Entry) -> list[Entry]:
    key = chunk_key(b"hello\n")
    return [
        Entry(path="home", type="dir", mode=0o755, opaque=True),
        Entry(
            path="home/a.txt",
            type="file",
            mode=0o644,
            size=6,
            chunks=(key,),
            xattrs=(("user.k", b"\x00v"),),
            ino=5,
            ctime_ns=7,
        ),
        Entry(path="home/b.txt", type="hardlink", mode=0o644, target="home/a.txt"),
        Entry(path="home/gone", type="whiteout", mode=0),
        Entry(path="home/link", type="symlink", mode=0o777, target="../../etc/passwd"),
        *extra,
    ]


def manifest_of(entries, **kwargs) -> Manifest:
    table = {chunk_key(b"hello\n"): (6, 15)}
    return build_manifest("alice--analysis", entries, table, created=CREATED, **kwargs)


def test_manifest_round_trips_through_json_with_lineage_and_totals():
    manifest = manifest_of(tree(), name="before upgrade", parent="20250101T000000000Z-abcdef")

    loaded = Manifest.from_bytes(manifest.to_bytes())

    assert loaded == manifest
    assert loaded.checkpoint_id.startswith("20250102T030405678Z-")
    assert (loaded.kind, loaded.name) == ("named", "before_upgrade")
    assert loaded.totals == {
        "entries": 5,
        "files": 1,
        "logical_bytes": 6,
        "chunks": 1,
        "referenced_bytes": 6,
        "stored_bytes": 15,
        "new_chunks": 0,
        "new_stored_bytes": 0,
    }
    assert manifest_of(tree()).kind == "automatic"


@pytest.mark.parametrize(
    "bad, problem",
    [
        (Entry(path="home/../etc/shadow", type="file", mode=0o600), "normalised"),
        (Entry(path="/etc/shadow", type="file", mode=0o600), "relative"),
        (Entry(path="home/a.txt", type="dir", mode=0o755), "twice"),
        (Entry(path="nowhere/x", type="dir", mode=0o755), "before its directory"),
        (Entry(path="home/link/x", type="dir", mode=0o755), "before its directory"),
        (Entry(path="home/c", type="hardlink", mode=0o644, target="home/link"), "hard link"),
        (Entry(path="home/d", type="hardlink", mode=0o644, target="../x"), "hard link"),
        (
            Entry(path="home/e", type="file", mode=0o644, size=7, chunks=(chunk_key(b"hello\n"),)),
            "add up",
        ),
        (
            Entry(
                path="home/f", type="dir", mode=0o755, xattrs=(("trusted.overlay.redirect", b"/x"),)
            ),
            "xattrs",
        ),
        (Entry(path="home/g", type="whiteout", mode=0o70000), "mode"),
    ],
)
def test_manifest_validation_refuses_what_a_restore_could_not_do_safely(bad, problem):
    with pytest.raises(ManifestInvalid, match=problem):
        manifest_of(tree(bad))


def test_stored_manifests_from_another_format_or_version_are_refused():
    data = manifest_of(tree()).to_json()

    with pytest.raises(ManifestInvalid, match="version"):
        Manifest.from_bytes(json.dumps({**data, "version": 99}).encode())
    with pytest.raises(ManifestInvalid, match="not a BenchHub"):
        Manifest.from_bytes(b'{"entries": []}')
    with pytest.raises(ManifestInvalid, match="chunk table"):
        Manifest.from_bytes(json.dumps({**data, "chunks": {}}).encode())


def test_names_ids_and_excludes_are_normalised_or_refused():
    assert normalise_name("  nightly  run 2 ") == "nightly_run_2"
    for bad in ("", "   ", "../x", "a/b", "-flag", "x" * 65, "ünïcode"):
        with pytest.raises(InvalidCheckpointName, match="spaces become '_'"):
            normalise_name(bad)
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="letters, digits"):
            check_id("workspace id", bad)
    assert normalise_excludes(["/data/", "/data/project", "/etc/hosts"]) == (
        "data",
        "data/project",
        "etc/hosts",
    )
    with pytest.raises(ValueError, match="absolute"):
        normalise_excludes(["data"])
    assert is_excluded("data/project/x", ["data"]) and not is_excluded("database", ["data"])


def test_reason_and_base_image_are_kept_and_checked():
    created = datetime(2025, 1, 1, tzinfo=UTC)
    image = {"name": "benchhub/jupyterlab:latest", "id": "sha256:" + "a" * 64}
    manifest = build_manifest("alice--lab", [], {}, created=created, reason="on stop", image=image)
    again = Manifest.from_bytes(manifest.to_bytes())
    assert (again.reason, dict(again.image)) == ("on stop", image)
    assert again.summary()["image"] == image and again.summary()["reason"] == "on stop"
    with pytest.raises(ManifestInvalid, match="image"):
        manifest.with_changes(image={"name": 7})
    with pytest.raises(ManifestInvalid, match="reason"):
        manifest.with_changes(reason="x" * 201)
