"""meerkat sort's listing (sort/catalog.py): every image below CROPS, in video and frame order, whatever the names."""

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from meerkat.sort import catalog


def test_crops_are_listed_in_video_and_frame_order_with_digits_of_any_kind(tmp_path: Path):
    names = ["v10/v10_10_0.jpg", "v2/v2_9_1.jpg", "v2/v2_9_0.jpg", "v2/v2_10_0.jpg", "v2/a1²2.jpg", "v٣/x.jpg"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"\xff\xd8")
    listing = catalog.list_crops(tmp_path)
    assert [c.rel for c in listing.crops] == [
        "v2/a1²2.jpg", "v2/v2_9_0.jpg", "v2/v2_9_1.jpg", "v2/v2_10_0.jpg", "v٣/x.jpg", "v10/v10_10_0.jpg"
    ]  # fmt: skip
    assert [c.id for c in listing.crops] == list(range(len(names)))  # the page's order falls back on ids


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8), st.integers(0, 10**6))
def test_any_name_has_a_key_and_numbers_compare_as_numbers(names, n):
    sorted(names, key=catalog.natural)  # no name stops the listing
    for name in names:
        assert catalog.natural(f"{name}/f{n}.jpg") < catalog.natural(f"{name}/f{n + 1}0.jpg")
