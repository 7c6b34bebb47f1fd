"""Storage admission on real directories: what counts as allocated, who owns it, claims under
the lock, and settling a failed creation (benchhub.storage_allocations). Images are sparse
files made with truncate: they take no disk space. A stated capacity keeps every verdict
independent of this machine's free space."""

import json
import os
import threading

import pytest
from traitlets import TraitError

from benchhub.storage_admission import GIB, StorageRequest
from benchhub.storage_allocations import RECORD_NAME, StorageAdmission, StorageRefused


def sparse(path, gb):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.truncate(int(gb * GIB))


def admission(tmp_path, **settings) -> StorageAdmission:
    roots = [tmp_path / "workspaces", tmp_path / "scratch"]
    return StorageAdmission(roots=roots, **{"capacity_gb": 10, "user_quota": "", **settings})


def data(gb, owner="alice") -> StorageRequest:
    return StorageRequest("storage_gb", owner, int(gb * GIB))


def test_images_half_made_images_size_markers_and_claims_all_count(tmp_path):
    sparse(tmp_path / "workspaces/alice/one/data.ext4", 2)
    sparse(tmp_path / "workspaces/alice/two/data.tmp", 3)  # mkfs under way
    (tmp_path / "workspaces/bob/dir").mkdir(parents=True)
    (tmp_path / "workspaces/bob/dir/size_gb").write_text("4")  # DirectoryVolume
    claim = tmp_path / "scratch/c0ffee/m1"
    claim.mkdir(parents=True)
    (claim / RECORD_NAME).write_text(json.dumps({"owner": "bob", "bytes": GIB}))
    (tmp_path / "workspaces/carol/never-started").mkdir(parents=True)  # nothing allocated
    (tmp_path / "workspaces/.checkpoint-clones/x").mkdir(parents=True)  # not a volume
    found = {
        os.path.relpath(a.path, tmp_path): (a.owner, a.allocated_bytes // GIB)
        for a in admission(tmp_path).allocations()
    }
    assert found == {
        "workspaces/alice/one": ("alice", 2),
        "workspaces/alice/two": ("alice", 3),
        "workspaces/bob/dir": ("bob", 4),
        "scratch/c0ffee/m1": ("bob", 1),
    }
    assert all(a.used_bytes < GIB for a in admission(tmp_path).allocations())  # sparse: unused


def test_an_admitted_volume_is_claimed_before_it_exists_and_counts_for_its_owner(tmp_path):
    adm = admission(tmp_path)
    volume = tmp_path / "workspaces/alice/new"
    adm.admit(volume, data(6))
    assert json.loads((volume / RECORD_NAME).read_text()) == {"owner": "alice", "bytes": 6 * GIB}
    assert adm.usage("alice") == 6 * GIB
    with pytest.raises(StorageRefused) as refused:
        adm.admit(tmp_path / "workspaces/bob/other", data(5, owner="bob"))
    assert str(refused.value).startswith("storage_gb: 5 GB of /data does not fit: only 4 GB")
    assert not (tmp_path / "workspaces/bob/other").exists()  # a refusal creates nothing


def test_an_owner_is_counted_across_workspaces_and_cluster_scratch_for_the_quota(tmp_path):
    adm = admission(tmp_path, capacity_gb=100, user_quota="8")
    sparse(tmp_path / "workspaces/alice/one/data.ext4", 5)
    adm.admit(
        tmp_path / "scratch/c0ffee/m1",
        StorageRequest("scratch_gb", "alice", 2 * GIB, what="/scratch"),
    )
    with pytest.raises(StorageRefused, match="alice's storage quota is 8 GB, of which 7 GB"):
        adm.admit(tmp_path / "workspaces/alice/two", data(2))
    adm.admit(tmp_path / "workspaces/bob/two", data(2, owner="bob"))  # bob has his own quota


def test_an_owners_own_quota_replaces_the_site_quota_for_them_alone_and_is_named(tmp_path):
    adm = admission(tmp_path, capacity_gb=100, user_quota="50%")
    sparse(tmp_path / "workspaces/alice/one/data.ext4", 2)
    adm.set_owner_quota("alice", "3", "max_storage_gb, limit of group free-tier")
    scratch = StorageRequest("scratch_gb", "alice", GIB, units=2, what="/scratch")
    verdict = adm.check(tmp_path / "scratch", scratch)
    assert not verdict.admitted
    assert verdict.message.startswith(
        "2 x 1 GB of /scratch (2 GB in all) does not fit: alice's storage quota is 3 GB "
        "(max_storage_gb, limit of group free-tier), of which 2 GB is allocated, so 1 GB is left"
    )
    with pytest.raises(StorageRefused, match=r"max_storage_gb, limit of group free-tier"):
        adm.admit(tmp_path / "scratch/c0ffee/m1", StorageRequest("scratch_gb", "alice", 2 * GIB))
    adm.admit(tmp_path / "scratch/c0ffee/m1", StorageRequest("scratch_gb", "alice", GIB))
    adm.admit(tmp_path / "workspaces/bob/big", data(40, owner="bob"))  # bob: the site's 50%
    adm.set_owner_quota("alice", "", "max_storage_gb, limit of group staff")  # no limit
    assert adm.check(tmp_path / "scratch", scratch).admitted
    adm.set_owner_quota("alice", None)  # back to the site's quota
    assert adm.policy_for("alice").quota.share == 0.5


def test_growth_is_checked_against_the_volume_it_grows_from(tmp_path):
    adm = admission(tmp_path)
    volume = tmp_path / "workspaces/alice/grow"
    sparse(volume / "data.ext4", 4)
    sparse(tmp_path / "workspaces/bob/big/data.ext4", 5)
    adm.admit(volume, data(5))  # one more GB: fits
    with pytest.raises(StorageRefused, match="growing /data from 5 GB to 7 GB"):
        adm.admit(volume, data(7))
    adm.admit(volume, data(4))  # not growing (shrinking is refused elsewhere): the claim stays
    assert json.loads((volume / RECORD_NAME).read_text())["bytes"] == 5 * GIB
    assert adm.check_volume(volume, data(5)).admitted


def test_concurrent_claims_never_both_pass_the_check(tmp_path):
    adm = admission(tmp_path)
    start = threading.Barrier(8)
    outcomes = []

    def claim(n):
        start.wait()
        try:
            # each thread opens the lock file itself, as another process would
            StorageAdmission(roots=adm.roots, capacity_gb=10, user_quota="").admit(
                tmp_path / f"workspaces/u{n}/w", data(6, owner=f"u{n}")
            )
            outcomes.append("admitted")
        except StorageRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["admitted"] + ["refused"] * 7
    assert sum(a.allocated_bytes for a in adm.allocations()) == 6 * GIB


def test_a_failed_creation_gives_its_claim_back_and_a_failed_growth_keeps_what_exists(tmp_path):
    adm = admission(tmp_path)
    new = tmp_path / "workspaces/alice/new"
    adm.admit(new, data(6))
    adm.settle(new)  # mkfs failed: no image
    assert not (new / RECORD_NAME).exists() and adm.usage("alice") == 0
    grown = tmp_path / "workspaces/alice/grown"
    sparse(grown / "data.ext4", 2)
    adm.admit(grown, data(8))
    adm.settle(grown)  # resize failed: still 2 GB
    assert json.loads((grown / RECORD_NAME).read_text())["bytes"] == 2 * GIB
    adm.settle(tmp_path / "workspaces/alice/unknown")  # nothing claimed: nothing to do


def test_a_check_of_new_scratch_claims_nothing(tmp_path):
    adm = admission(tmp_path)
    request = StorageRequest("scratch_gb", "alice", 3 * GIB, units=4, what="/scratch")
    verdict = adm.check(tmp_path / "scratch", request)
    assert not verdict.admitted and "choose at most 2 GB per member" in verdict.message
    assert adm.allocations() == []


def test_the_lock_file_is_shared_by_processes_that_list_the_same_roots(tmp_path):
    hub = StorageAdmission(
        roots=[tmp_path / "workspaces"], volume_roots=[str(tmp_path / "scratch")]
    )
    clusters = StorageAdmission(
        roots=[tmp_path / "scratch"], volume_roots=[str(tmp_path / "workspaces")]
    )
    assert hub.roots == clusters.roots


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("user_quota", "lots", "write a size in GB"),
        ("overcommit", 0.0, "above 0"),
        ("capacity_gb", -1.0, "0 or more"),
        ("reserve_percent", -5.0, "0 or more"),
    ],
)
def test_bad_settings_say_how_to_fix_them(tmp_path, setting, value, says):
    with pytest.raises((TraitError, ValueError), match=says):
        StorageAdmission(roots=[tmp_path], **{setting: value})
