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
    large = [
        c
        for c in listing.crops
        if c.rel != "v0/broken.jpg" and max(cv2.imread(str(crops / c.rel)).shape[:2]) > thumbs.AS_IS_SIDE
    ]
    assert len(made) == len(large) == 3  # the others are their own thumbnails
    for path in made:
        assert max(cv2.imread(str(path)).shape[:2]) <= thumbs.SIDE

    assert thumbs.make_all(folder, listing.root, listing.crops) == 1
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.jpg")} == made  # nothing written again

    changed = crops / large[0].rel
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    listing = catalog.list_crops(crops)
    assert thumbs.make_all(folder, listing.root, listing.crops) == 1
    assert len(set(folder.rglob("*.jpg")) - set(made)) == 1


def test_a_crop_about_a_thumbnail_s_size_is_its_own_and_a_large_one_gets_one_made(tmp_path: Path):
    """A clips crop (299 px JPEG) is served as it is, with its own type; a large or TIFF crop gets a JPEG made."""
    crops = tmp_path / "crops"
    crops.mkdir()
    cv2.imwrite(
        str(crops / "small.png"), cv2.imread(str(SAMPLES / "Training" / "Positives" / "120680.jpg"))[:200, :200]
    )
    big = cv2.resize(cv2.imread(str(SAMPLES / "Training" / "Positives" / "120680.jpg")), (1200, 900))
    cv2.imwrite(str(crops / "big.jpg"), big)
    cv2.imwrite(str(crops / "small.tif"), big[:100, :100])
    listing = catalog.list_crops(crops)
    found = {c.rel: thumbs.make(tmp_path / "thumbs", listing.root, c) for c in listing.crops}
    assert found["small.png"] == (crops / "small.png", "image/png")
    for name in ("big.jpg", "small.tif"):
        path, kind = found[name]
        assert kind == "image/jpeg" and path.is_relative_to(tmp_path / "thumbs")
        assert max(cv2.imread(str(path)).shape[:2]) == min(thumbs.SIDE, max(cv2.imread(str(crops / name)).shape[:2]))
