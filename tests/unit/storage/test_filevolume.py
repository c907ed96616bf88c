"""Volume files on a plain directory: the claim that lets a rollback tell its own
half-created volume from another volume created under the same id."""

import pytest

from vdsm import errors
from vdsm.storage import filevolume as fv

VOL = "7a7a7a7a-0000-4000-8000-000000000001"


def test_a_claimed_volume_is_removed_by_its_own_rollback_only(tmp_path):
    image = tmp_path / "img"
    paths = fv.VolumePaths.of(image, VOL)
    fv.start_volume(image, paths, VOL, "task-a")
    paths.meta.write_text("x")
    paths.lease.write_text("x")
    # Another task claiming the same volume is refused, and its rollback removes nothing.
    with pytest.raises(errors.VolumeAlreadyExists):
        fv.start_volume(image, paths, VOL, "task-b")
    assert fv.remove_claimed(paths, "task-b") is False
    assert paths.data.exists() and paths.meta.exists()
    # The owner's rollback removes every file of the volume and the claim.
    assert fv.remove_claimed(paths, "task-a") is True
    assert sorted(p.name for p in image.iterdir()) == []


def test_a_completed_creation_is_no_longer_rolled_back(tmp_path):
    image = tmp_path / "img"
    paths = fv.VolumePaths.of(image, VOL)
    fv.start_volume(image, paths, VOL, "task-a")
    fv.end_claim(paths, "task-a")
    assert fv.remove_claimed(paths, "task-a") is False
    assert paths.data.exists()
    assert fv.list_volumes(image) == []  # no metadata yet: not a volume to list
    paths.meta.write_text("x")
    assert fv.list_volumes(image) == [VOL]
