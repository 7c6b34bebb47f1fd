"""Checkpoints in an S3 bucket, against a real S3 HTTP endpoint (moto's server on loopback)."""

from __future__ import annotations

import socket

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto.server import ThreadedMotoServer
from test_checkpoint_trees import (
    MOUNT_POINTS,
    build_workspace_tree,
    describe_tree,
    needs_root,
    new_layer,
    without_excluded,
)

from benchhub.checkpoints.backends import S3Backend
from benchhub.checkpoints.errors import ObjectMissing
from benchhub.checkpoints.store import CheckpointStore

WS = "alice--analysis"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, request):
    name = "ckpt-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=name)
    return name


class FlakyS3Backend(S3Backend):
    """Answers the first ``fail_operation`` on a key containing ``fail_key`` with
    ``fail_status``."""

    fail_operation = "put_object"
    fail_key = "/chunks/"
    fail_status = 503

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self.slept: list[float] = []
        self.failed: list[str] = []

    def _request(self, operation, **params):
        self.calls.append(operation)
        targeted = operation == self.fail_operation and self.fail_key in params.get("Key", "")
        if targeted and not self.failed:
            self.failed.append(params["Key"])
            code = {503: "ServiceUnavailable", 403: "AccessDenied"}[self.fail_status]
            reply = {
                "Error": {"Code": code, "Message": "injected"},
                "ResponseMetadata": {"HTTPStatusCode": self.fail_status},
            }
            raise ClientError(reply, operation)
        return super()._request(operation, **params)

    def _sleep(self, seconds):
        self.slept.append(seconds)


def backend(cls, endpoint, bucket, **traits):
    return cls(bucket, "site-a", endpoint, retry_base_delay=0.01, **CREDENTIALS, **traits)


@needs_root
def test_checkpoints_round_trip_and_dedup_through_s3(tmp_path, s3_endpoint, bucket):
    store = CheckpointStore(backend=backend(S3Backend, s3_endpoint, bucket), racy_window=0)
    upper = new_layer(tmp_path, "container")
    build_workspace_tree(upper)

    first = store.create(WS, str(upper), exclude=MOUNT_POINTS)
    second = store.create(WS, str(upper), exclude=MOUNT_POINTS, parent=first.checkpoint_id)
    target = new_layer(tmp_path, "fresh")
    store.restore(WS, second.checkpoint_id, str(target))

    assert describe_tree(target) == without_excluded(describe_tree(upper))
    assert second.totals["new_chunks"] == 0 and second.chunks == first.chunks
    keys = [o["Key"] for o in store.backend.client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(k.startswith("site-a/chunks/") or k.startswith("site-a/manifests/") for k in keys)
    assert f"site-a/manifests/{WS}/{first.checkpoint_id}.json" in keys
    stored = sum(o.size for o in store.backend.list("chunks/"))
    assert stored == first.totals["new_stored_bytes"] == first.totals["stored_bytes"]

    store.gc_grace = 0
    store.delete_workspace(WS)
    assert len(store.collect_garbage().deleted) == len(first.chunks)
    assert list(store.backend.list("")) == []


@needs_root
def test_a_transient_503_is_retried_and_the_checkpoint_completes(tmp_path, s3_endpoint, bucket):
    flaky = backend(FlakyS3Backend, s3_endpoint, bucket, max_attempts=1)
    store = CheckpointStore(backend=flaky)
    upper = new_layer(tmp_path, "container")
    (upper / "results.txt").write_text("42\n")

    manifest = store.create(WS, str(upper))

    assert len(flaky.failed) == 1 and len(flaky.slept) == 1
    assert flaky.failed[0].startswith("site-a/chunks/")
    assert flaky.exists(flaky.failed[0][len("site-a/") :])  # stored on the second attempt
    store.verify(WS, manifest.checkpoint_id)


def test_a_client_error_is_not_retried(s3_endpoint, bucket):
    flaky = backend(FlakyS3Backend, s3_endpoint, bucket)
    flaky.fail_operation, flaky.fail_key, flaky.fail_status = "head_object", "", 403

    with pytest.raises(ClientError, match="AccessDenied"):
        flaky.head("chunks/ab/cd")

    assert flaky.calls == ["head_object"] and flaky.slept == []


def test_an_unreachable_endpoint_is_retried_then_reported(bucket):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = backend(
        FlakyS3Backend, f"http://127.0.0.1:{port}", bucket, max_attempts=1, operation_attempts=3
    )

    with pytest.raises(EndpointConnectionError):
        down.get("manifests/x/y.json")

    assert down.calls == ["get_object"] * 3 and len(down.slept) == 2


def test_missing_objects_and_refreshing_existing_ones(s3_endpoint, bucket):
    s3 = backend(S3Backend, s3_endpoint, bucket, touch_after=0)

    assert s3.head("chunks/00/11") is None
    with pytest.raises(ObjectMissing):
        s3.get("chunks/00/11")
    s3.delete("chunks/00/11")  # already gone is success
    assert s3.put("chunks/00/11", b"blob") is True
    assert s3.put("chunks/00/11", b"other") is False  # kept, but its time stamp refreshed

    assert s3.get("chunks/00/11") == b"blob"
    reply = s3.client.head_object(Bucket=bucket, Key="site-a/chunks/00/11")
    assert "touched" in reply["Metadata"]
