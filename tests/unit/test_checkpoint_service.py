"""The checkpoints service without a hub: when a periodic checkpoint is due, which workspaces'
checkpoints cleanup deletes, and what the page shows (escaped, in the hub's look). Who may act
is the one access rule: tests/unit/test_access.py."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from benchhub.checkpoints.backends import LocalDirectoryBackend, manifest_object
from benchhub.checkpoints.errors import CheckpointNotFound
from benchhub.checkpoints.manifest import build_manifest
from benchhub.checkpoints.store import CheckpointStore
from benchhub.checkpoints.workspace import WorkspaceCheckpoints, write_pending_clone
from benchhub.hub_client import HubClient
from benchhub.service_pages import MenuEntry, hub_page_context
from hub_services.checkpoints.page import TEMPLATES, TITLE, human_bytes, page_context
from hub_services.checkpoints.service import CheckpointService, _epoch, summary


@pytest.fixture
def service(tmp_path):
    store = CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"))
    return CheckpointService(
        store=store,
        storage_root=str(tmp_path / "root"),
        interval=300,
        orphan_grace=0,
        hub=HubClient("http://127.0.0.1:1/hub/api", "unused"),
    )


def _publish(store: CheckpointStore, workspace_id: str, created: datetime):
    manifest = build_manifest(workspace_id, [], {}, created=created, reason="on stop")
    store.backend.put(
        manifest_object(workspace_id, manifest.checkpoint_id), manifest.to_bytes(), overwrite=True
    )
    return manifest


def _record(service, user, name):
    host_dir = service.storage_root + f"/{user}/{name}"
    os.makedirs(host_dir)
    return WorkspaceCheckpoints(service.store, host_dir, 3).ensure(user, name)


def test_cleanup_deletes_only_checkpoints_of_workspaces_that_are_gone(service):
    now = datetime.now(UTC)
    live = _record(service, "ann", "lab")
    _publish(service.store, live.workspace_id, now)
    _publish(service.store, "ann.deleted.aaaaaa", now)
    _publish(service.store, "ann.copy.bbbbbb", now)  # a start-as-new not started yet
    write_pending_clone(service.storage_root, "ann", "copy", "ann.copy.bbbbbb", {})
    assert service.orphans() == ["ann.deleted.aaaaaa"]
    service.orphan_grace = 3600  # deleted a minute ago: kept for now
    assert service.orphans() == []


def test_cleanup_deletes_nothing_when_no_workspace_record_is_found(service, tmp_path):
    _publish(service.store, "ann.lab.aaaaaa", datetime.now(UTC))
    (tmp_path / "root").mkdir()
    assert service.orphans() == []  # a wrong storage root must not look like "all deleted"
    service.storage_root = str(tmp_path / "elsewhere")
    assert service.orphans() == []


def _inspect(started: datetime, host_dir: str) -> dict:
    return {
        "State": {"StartedAt": started.isoformat().replace("+00:00", "123Z")},
        "Mounts": [{"Type": "bind", "Destination": "/data", "Source": f"{host_dir}/mnt"}],
    }


def test_a_periodic_checkpoint_is_due_an_interval_after_start_or_the_last_one(service):
    state = _record(service, "ann", "lab")
    host_dir = service.storage_root + "/ann/lab"
    now = datetime.now(UTC)
    assert not service._due("ann/lab", _inspect(now - timedelta(seconds=60), host_dir))
    assert service._due("ann/lab", _inspect(now - timedelta(seconds=301), host_dir))
    ops = WorkspaceCheckpoints(service.store, host_dir, 3)
    with_last = {
        "checkpoint": "x",
        "at": (now - timedelta(seconds=30)).isoformat(),
        "reason": "periodic",
    }
    with_restored = {**with_last, "reason": "restored"}  # restored: counts from the start
    ops._update(last=with_last)
    assert not service._due("ann/lab", _inspect(now - timedelta(hours=1), host_dir))
    ops._update(last=with_restored)
    assert service._due("ann/lab", _inspect(now - timedelta(hours=1), host_dir))
    service._attempted["ann/lab"] = time.time()  # a failed try waits an interval too
    assert not service._due("ann/lab", _inspect(now - timedelta(hours=1), host_dir))
    assert state.workspace_id


def test_docker_and_manifest_times_are_read_alike():
    assert _epoch("2026-11-21T14:18:41.592123456Z") == pytest.approx(1795270721.592123)
    assert _epoch("2026-11-21T14:18:41.592000+00:00") == pytest.approx(1795270721.592)
    assert _epoch("0001-01-01T00:00:00Z") == 0.0 and _epoch(None) == 0.0


def render_page(user, workspaces, xsrf):
    chrome = hub_page_context(
        {"kind": "user", "name": user},
        "/hub/",
        [MenuEntry("checkpoints", "/services/checkpoints/")],
        "t",
        "/login",
    )
    context = page_context(user, workspaces, "/services/checkpoints/", xsrf)
    return TEMPLATES.render("checkpoints.html", {**chrome, "page_title": TITLE, **context})


def test_the_page_escapes_what_users_wrote_and_offers_actions(tmp_path):
    manifest = build_manifest(
        "ann.lab.aaaaaa",
        [],
        {},
        created=datetime(2026, 11, 30, 7, 4, 31, 123456, tzinfo=UTC),
        name="before_upgrade",
        reason="on stop",
    )
    row = summary(manifest, manifest.checkpoint_id)
    workspace = {
        "workspace": "lab<script>",
        "running": False,
        "checkpoints": [row],
        "periodic_error": {"at": "2026-01-01T00:00:00", "message": "<b>S3 down</b>"},
        "unsaved": None,
        "origin": None,
    }
    page = render_page("ann", [workspace], b"xsrf-token")
    assert "lab<script>" not in page and "lab&lt;script&gt;" in page
    assert "&lt;b&gt;S3 down&lt;/b&gt;" in page
    assert "before_upgrade" in page and "restore at next start" in page
    assert '"xsrf": "xsrf-token"' in page and "current" in page
    assert "2026-11-30 07:04 UTC" in page and "07:04:31" not in page  # a time for people
    assert "failed at 2026-01-01 00:00 UTC" in page
    assert 'href="/hub/home"' in page and 'href="/services/checkpoints/"' in page  # the navbar
    empty = render_page("ann", [], "t")
    assert "No workspace has checkpoints yet" in empty


def test_sizes_read_like_a_person_would_write_them():
    assert [human_bytes(n) for n in (None, 512, 1536, 3 * 1024**3)] == [
        "—",
        "512 B",
        "1.5 KiB",
        "3.0 GiB",
    ]


def test_an_unknown_workspace_is_a_404_sentence(service):
    with pytest.raises(CheckpointNotFound, match="ann has no workspace 'nope' with checkpoints"):
        service._host_dir("ann", "nope")
