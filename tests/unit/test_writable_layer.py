"""The writable layer's limit: what counts (measured with the real du on real files), when to
look again, what a run that began over the limit may do, and the resource model's disk_gb."""

import os

import pytest

from benchhub.resource_models import DEFAULT_DISK_GB, load_catalog
from benchhub.writable_layer import (
    CLEANUP_ALLOWANCE,
    INODE_CHARGE,
    Cadence,
    LayerUsage,
    hard_cap,
    measure,
    next_check_in,
    over_limit_reason,
    restore_refusal,
    run_ceiling,
)

GIB, MIB = 1024**3, 1024**2
LIMIT = 20 * GIB


def test_usage_counts_the_largest_of_apparent_size_blocks_and_inodes():
    assert LayerUsage(5 * GIB, MIB, 10).charged == 5 * GIB  # a sparse file counts in full
    assert LayerUsage(MIB, 2 * MIB, 10).charged == 2 * MIB  # small files fill whole blocks
    assert LayerUsage(0, 0, 1_000_000).charged == 1_000_000 * INODE_CHARGE  # empty files


async def test_du_measures_sparse_files_in_full_and_never_follows_a_symlink(tmp_path):
    layer = tmp_path / "upper"
    (layer / "home/jovyan/deep" / ("d/" * 200)).mkdir(parents=True)
    (layer / "home/jovyan/data.bin").write_bytes(os.urandom(3 * MIB))
    fd = os.open(layer / "home/jovyan/sparse", os.O_CREAT | os.O_WRONLY, 0o644)
    os.ftruncate(fd, 5 * GIB)  # sparse: takes no space, but a restore would write all of it
    os.close(fd)
    (layer / "home/jovyan/escape").symlink_to("/usr")  # the host's /usr must not count
    usage = await measure(str(layer))
    assert 5 * GIB + 3 * MIB <= usage.apparent_bytes < 5 * GIB + 4 * MIB
    assert 3 * MIB <= usage.allocated_bytes < 4 * MIB
    assert 200 < usage.inodes < 220
    assert usage.charged == usage.apparent_bytes


async def test_a_vanished_layer_is_an_error_not_a_size(tmp_path):
    with pytest.raises(OSError, match="du"):
        await measure(str(tmp_path / "gone"))


def test_the_reason_says_whose_files_passed_what_and_that_data_is_separate():
    assert over_limit_reason(LayerUsage(LIMIT, 0, 0), LIMIT, LIMIT) is None  # at it: fine
    assert over_limit_reason(LayerUsage(LIMIT + 1, 0, 0), LIMIT, LIMIT) == (
        "disk limit: the workspace's own files (home, /tmp, installed packages) passed 20 GB; "
        "/data is separate"
    )
    assert "passed 0.25 GB" in over_limit_reason(LayerUsage(GIB, 0, 0), GIB // 4, GIB // 4)


def test_a_run_restored_over_the_limit_may_clean_up_but_not_grow_and_never_past_the_cap():
    assert run_ceiling(LIMIT, None) == LIMIT  # an adopted run: no allowance
    assert run_ceiling(LIMIT, 5 * GIB) == LIMIT
    assert run_ceiling(LIMIT, LIMIT + GIB) == LIMIT + GIB + CLEANUP_ALLOWANCE
    assert run_ceiling(LIMIT, 3 * LIMIT) == hard_cap(LIMIT) == 2 * LIMIT
    assert hard_cap(GIB // 4) == GIB // 4 + GIB  # a small limit: room for a stop's overshoot
    reason = over_limit_reason(
        LayerUsage(LIMIT + 2 * GIB, 0, 0), LIMIT, run_ceiling(LIMIT, LIMIT + GIB)
    )
    assert reason.startswith(
        "disk limit: the workspace's own files (home, /tmp, installed "
        "packages) are 22 GB, over the 20 GB limit, and grew after the "
        "start"
    )


CADENCE = Cadence(min_interval=1, max_interval=60, assumed_rate=200 * MIB)


@pytest.mark.parametrize(
    ("usage", "rate", "seconds"),
    [
        (0, 0, 51.2),  # 20 GB of headroom at 200 MB/s, halved
        (19 * GIB, 0, 2.56),  # 1 GB left
        (int(19.9 * GIB), 0, 1),  # close: the shortest interval
        (LIMIT + 1, 0, 1),  # over (a restored run): watch closely
        (0, 2 * GIB, 5),  # growing fast: sooner
        (0, -GIB, 51.2),
        (0, 100 * MIB, 51.2),
    ],  # shrinking or slow: the assumed rate
)
def test_the_next_look_comes_before_the_headroom_can_be_used_up(usage, rate, seconds):
    assert next_check_in(usage, LIMIT, rate, CADENCE) == pytest.approx(seconds, rel=0.01)
    assert next_check_in(usage, 1000 * GIB, rate, CADENCE) <= 60


def test_a_checkpoint_too_big_for_the_model_is_not_restored():
    assert restore_refusal(2 * LIMIT, LIMIT, "x") is None
    assert restore_refusal(2 * LIMIT + 1, LIMIT, "x") is not None
    message = restore_refusal(1000 * GIB, LIMIT, "'big' (2026…)")
    assert message.startswith("restore_checkpoint: checkpoint 'big' (2026…) holds 1000 GB")
    assert "'none' for the image as built" in message


def test_a_resource_model_has_a_disk_limit_with_a_documented_default():
    catalog = load_catalog(
        {
            "small": {"cpus": 1, "memory_gb": 2},
            "tiny-disk": {"cpus": 1, "memory_gb": 2, "disk_gb": 0.5},
        }
    )
    assert catalog["small"].disk_gb == DEFAULT_DISK_GB == 20
    assert catalog["tiny-disk"].disk_gb == 0.5
    with pytest.raises(ValueError, match="'disk_gb' must be a number greater than 0"):
        load_catalog({"bad": {"cpus": 1, "memory_gb": 2, "disk_gb": 0}})
