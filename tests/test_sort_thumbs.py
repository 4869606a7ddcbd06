"""meerkat sort's thumbnails (sort/thumbs.py): made once for each crop, at most SIDE px a side, and made again
only for a crop that changed."""

import os
import shutil
from pathlib import Path

import cv2
from conftest import SAMPLES

from meerkat.sort import catalog, thumbs


def test_each_crop_gets_one_thumbnail_and_a_later_session_makes_none_again(tmp_path: Path):
    crops = tmp_path / "crops"
    for i, crop in enumerate(sorted((SAMPLES / "Training" / "Positives").glob("*.jpg"))[:12]):
        (crops / f"v{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(crop, crops / f"v{i % 2}" / f"v{i % 2}_{i}_0.jpg")
    (crops / "v0" / "broken.jpg").write_bytes(b"not a jpeg")
    listing = catalog.list_crops(crops)
    folder = tmp_path / "thumbs"

    assert thumbs.make_all(folder, listing.root, listing.crops) == 1  # broken.jpg
    made = {p: p.stat().st_mtime_ns for p in folder.rglob("*.jpg")}
    assert len(made) == 12
    for path in made:
        assert max(cv2.imread(str(path)).shape[:2]) <= thumbs.SIDE

    assert thumbs.make_all(folder, listing.root, listing.crops) == 1
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.jpg")} == made  # nothing written again

    changed = crops / "v1" / "v1_1_0.jpg"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    listing = catalog.list_crops(crops)
    assert thumbs.make_all(folder, listing.root, listing.crops) == 1
    assert len(set(folder.rglob("*.jpg")) - set(made)) == 1
