"""Writing MegaDetector's format (megadetector/write.py, merge.py): the input plus meerkat's classes,
nothing lost, the same bytes however the work was split. MegaDetector's own validator, preview and
CSV converter read these files in tests/test_megadetector_peers.py.
"""

import calendar
import copy
import io
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_megadetector_format import addaxai_file, spec_file, write

from meerkat import __version__
from meerkat.core.errors import MeerkatError
from meerkat.megadetector.merge import combine, dumps_part, loads_part
from meerkat.megadetector.read import load
from meerkat.megadetector.write import (
    FAILURE,
    MOTION_CATEGORY,
    Classifier,
    Scores,
    classifications,
    completion_time,
    dumps,
    motion_entry,
    motion_output,
)
from meerkat.megadetector.write import write as stream

MODEL = Classifier(labels=("Positives", "Negatives"), threshold=0.7, metadata={"model_sha256": "ab" * 32})
EPOCH = "1714000000"


@pytest.fixture(autouse=True)
def epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


def probabilities(i: int, j: int) -> tuple[float, float]:
    """A model's softmax for detection j of entry i: any two numbers summing to 1 serve the format."""
    p = ((i * 7919 + j * 104729) % 1000) / 999
    return (p, 1 - p)


def all_scores(r) -> Scores:
    return Scores(
        classifications={(e.index, d.index): probabilities(e.index, d.index) for e in r.entries for d in e.detections}
    )


def streamed(r, scores: Scores, clf: Classifier = MODEL) -> bytes:
    """meerkat's file as write.write streams it."""
    out = io.BytesIO()
    stream(r, scores, clf, out)
    return out.getvalue()


def output(r, scores: Scores, clf: Classifier = MODEL) -> dict:
    """meerkat's file, parsed; its streamed bytes are those of json.dumps of the whole."""
    raw = streamed(r, scores, clf)
    data = json.loads(raw)
    assert raw == dumps(data)
    return data


def exactly(value) -> str:
    """`value` as JSON text, to compare types and key order too: Python takes 1 for 1.0, the 1.6 validator does not."""
    return json.dumps(value, ensure_ascii=False)


def as_read(r) -> dict:
    """What `load` holds of the file, as one dict again."""
    return {**r.header, "images": [r.entries.raw(i) for i in range(len(r.entries))]}


def strip_meerkat(data: dict) -> dict:
    """`data` without what meerkat adds: what is left must be the input."""
    data = copy.deepcopy(data)
    for key in ("classifier", "classification_completion_time", "classifier_metadata"):
        data["info"].pop(key)
    data.pop("classification_categories")
    for im in data["images"]:
        im.pop(FAILURE, None)
        for det in im.get("detections") or ():
            det.pop("classifications", None)
            det.pop(FAILURE, None)
    return data


def test_the_output_is_the_input_plus_meerkat_s_classes(tmp_path):
    source = spec_file("1.6")
    r = load(write(tmp_path / "md.json", source))
    out = output(r, all_scores(r), MODEL)
    assert exactly(strip_meerkat(out)) == exactly(source) and list(out) == [
        "images",
        "detection_categories",
        "classification_categories",
        "info",
    ]
    assert out["classification_categories"] == {"0": "Positives", "1": "Negatives"}
    assert out["info"] == source["info"] | {
        "classifier": f"meerkat {__version__}",
        "classification_completion_time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(EPOCH))),
        "classifier_metadata": {"typical_classification_threshold": 0.7, "model_sha256": "ab" * 32},
    }
    for e in r.entries:
        dets = out["images"][e.index]["detections"] or []
        chosen = {d.index for d in e.detections}
        for j, det in enumerate(dets):
            assert ("classifications" in det) == (j in chosen)
            if j in chosen:
                p = probabilities(e.index, j)
                assert sorted(det["classifications"]) == [["0", round(p[0], 6)], ["1", round(p[1], 6)]]
    assert as_read(r) == source  # the Results are left as they were


@pytest.mark.slow
@settings(derandomize=True, max_examples=40, deadline=None)
@given(st.data())
def test_every_other_key_stays(tmp_path_factory, data):
    """Keys meerkat does not know, anywhere in the file, come out as they went in, in their order."""
    keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8).filter(
        lambda k: (
            k not in ("classifications", FAILURE, "classification_categories", "classifier", "format_version")
            and not k.startswith("prev_")
        )
    )
    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=6,
    )
    extra = st.dictionaries(keys, values, max_size=3)
    source = spec_file("1.6")
    places = [
        source,
        source["info"],
        *source["images"],
        *(d for im in source["images"] for d in im["detections"] or ()),
    ]
    for place in places:
        for k, v in data.draw(extra).items():
            place.setdefault(k, v)
    path = write(tmp_path_factory.mktemp("keys") / "md.json", source)
    r = load(path, categories="animal,person,vehicle", threshold=0)
    out = output(r, all_scores(r), MODEL)
    assert strip_meerkat(out) == source
    assert json.dumps(strip_meerkat(json.loads(dumps(out)))) == json.dumps(source)  # the order too


def test_a_class_name_that_clashes_with_a_detection_category_is_renamed(tmp_path):
    r = load(write(tmp_path / "md.json", spec_file("1.6")))
    clf = Classifier(labels=("Animal", "person (meerkat)", "bird"), threshold=0.5)
    out = output(r, Scores(), clf)
    assert out["classification_categories"] == {"0": "Animal (meerkat)", "1": "person (meerkat)", "2": "bird"}
    data = spec_file("1.6")
    data["detection_categories"]["4"] = "Animal (meerkat)"
    out = output(load(write(tmp_path / "b.json", data)), Scores(), clf)
    assert out["classification_categories"]["0"] == "Animal (meerkat) (meerkat)"


def test_another_classifier_s_results_move_aside(tmp_path):
    source = addaxai_file()
    source["info"] |= {
        "classifier": "addaxai-namibia-v1",
        "classifier_metadata": {"typical_classification_threshold": 0.6},
    }
    source["classification_category_descriptions"] = {"0": "canidae;vulpes", "1": "mustelidae;meles"}
    r = load(write(tmp_path / "addax.json", source))
    out = output(r, all_scores(r), MODEL)
    dets = out["images"][0]["detections"]
    assert [d.get("prev_classifications") for d in dets] == [
        d.get("classifications") for d in source["images"][0]["detections"]
    ]
    assert ["classifications" in d for d in dets] == [True, True, False, False]  # the animals meerkat classified
    assert [d["category"] for d in dets] == ["4", "1", "5", "2"] and dets[0]["prev_category"] == "1"  # AddaxAI's kept
    assert out["prev_classification_categories"] == source["classification_categories"]
    assert out["prev_classification_category_descriptions"] == source["classification_category_descriptions"]
    assert "classification_category_descriptions" not in out and out["classification_categories"]["0"] == "Positives"
    assert out["info"]["prev_classifier"] == "addaxai-namibia-v1"
    assert out["info"]["prev_classifier_metadata"] == {"typical_classification_threshold": 0.6}
    assert list(out)[:4] == [
        "images",
        "detection_categories",
        "classification_categories",
        "prev_classification_categories",
    ]

    # meerkat's own file, scanned again with another model: meerkat's classes replaced, AddaxAI's kept aside.
    again = load(write(tmp_path / "again.json", json.loads(dumps(out))))
    other = Classifier(labels=("yes", "no", "maybe"), threshold=0.5)
    twice = output(again, Scores(classifications={(0, 1): (0.2, 0.3, 0.5)}), other)
    dets = twice["images"][0]["detections"]
    assert [d.get("classifications") for d in dets] == [None, [["2", 0.5], ["1", 0.3], ["0", 0.2]], None, None]
    assert [d.get("prev_classifications") for d in dets] == [
        d.get("prev_classifications") for d in out["images"][0]["detections"]
    ]
    assert twice["prev_classification_categories"] == source["classification_categories"]
    assert twice["classification_categories"] == {"0": "yes", "1": "no", "2": "maybe"}

    # A file where another tool already set one classifier's results aside: refused, nothing dropped.
    foreign = json.loads(dumps(out))
    foreign["info"]["classifier"] = "speciesnet"
    with pytest.raises(MeerkatError, match="already holds prev_classification_categories"):
        output(load(write(tmp_path / "foreign.json", foreign)), Scores(), MODEL)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=6))
def test_classifications_are_sorted_highest_first(ps):
    got = classifications(ps)
    assert sorted(int(i) for i, _ in got) == list(range(len(ps)))
    assert all(isinstance(i, str) and isinstance(p, float) for i, p in got)
    assert got == sorted(got, key=lambda c: (-c[1], int(c[0])))
    assert all(p == round(ps[int(i)], 6) for i, p in got)


def test_failures_are_recorded_without_losing_the_detector_s_boxes(tmp_path):
    source = spec_file("1.6")
    source["images"][1]["detections"][0]["bbox"] = [0.9, 0.1, 0.5, 0.2]  # beyond the image: read.py's problem
    r = load(write(tmp_path / "md.json", source))
    scores = Scores(
        classifications={(2, 0): (0.9, 0.1)},
        failures={0: "cannot decode site 0/IMG_0000.JPG (a corrupt JPEG)"},
        detection_failures={(2, 1): "the box is 0 px wide in the image"},
    )
    out = output(r, scores, MODEL)
    images = out["images"]
    assert images[0][FAILURE] == "cannot decode site 0/IMG_0000.JPG (a corrupt JPEG)"
    assert exactly(images[0]["detections"]) == exactly(source["images"][0]["detections"]) and "failure" not in images[0]
    assert "lies outside the image" in images[1]["detections"][0][FAILURE]
    assert images[2]["detections"][1][FAILURE] == "the box is 0 px wide in the image"
    assert exactly(images[3]) == exactly(source["images"][3])  # the detector's own failure, carried through


def test_an_older_file_is_upgraded_to_what_1_6_requires(tmp_path):
    source = spec_file("1.3", as_number=True)
    source["detection_categories"]["3"] = " "
    source["images"] += [
        {
            "file": "old.mp4",
            "detections": [{"category": 1, "conf": 1, "bbox": [0.1, 0.1, 0.2, 0.2], "frame_number": 7}],
        },
        {"file": "gone.avi", "failure": "Failure video access", "detections": None},
    ]
    r = load(write(tmp_path / "md.json", source))
    out = output(r, Scores(frame_rates={len(source["images"]) - 2: 29.97}), MODEL)
    assert out["info"]["format_version"] == "1.6" and out["detection_categories"]["3"] == "category 3"
    old, gone = out["images"][-2:]
    assert exactly(old) == exactly(
        {
            "file": "old.mp4",
            "detections": [{"category": "1", "conf": 1.0, "bbox": [0.1, 0.1, 0.2, 0.2], "frame_number": 7}],
            "frame_rate": 29.97,
            "frames_processed": [7],
        }
    )
    assert exactly([gone["frame_rate"], gone["frames_processed"], gone["detections"]]) == exactly([-1.0, [], None])


def test_the_completion_time_comes_from_source_date_epoch(monkeypatch):
    assert completion_time() == "2024-04-24 23:06:40"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    written = calendar.timegm(time.strptime(completion_time(), "%Y-%m-%d %H:%M:%S"))
    assert abs(written - time.time()) < 5  # now, in UTC


@pytest.mark.slow
def test_the_same_input_and_scores_give_the_same_bytes(tmp_path):
    r = load(write(tmp_path / "md.json", spec_file("1.5")))
    first = streamed(r, all_scores(r), MODEL)
    time.sleep(1.1)
    again = load(write(tmp_path / "copy" / "md.json", spec_file("1.5")))
    assert streamed(again, all_scores(again), MODEL) == first
    assert first.endswith(b"}\n") and first.decode("utf-8").startswith('{\n "images": [\n')


def with_failures(r) -> Scores:
    scores = all_scores(r)
    return Scores(
        classifications=dict(scores.classifications),
        failures={e.index: f"cannot read {e.file}" for e in r.entries if e.index % 4 == 3},
        detection_failures={(0, 1): "0 px wide"},
        frame_rates={5: 30.0},
    )


@settings(derandomize=True, max_examples=20, deadline=None)
@given(st.data())
def test_parts_merge_to_the_bytes_of_one_process(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("parts")
    r = load(write(folder / "md.json", spec_file("1.5")), categories="animal,person", threshold=0)
    whole = with_failures(r)
    one = streamed(r, whole, MODEL)
    n = data.draw(st.integers(1, 5))
    owner = {e.index: data.draw(st.integers(0, n - 1)) for e in r.entries}  # entry -> the task that did it
    parts = []
    for task in data.draw(st.permutations(range(n))):
        mine = Scores(
            classifications={k: v for k, v in whole.classifications.items() if owner[k[0]] == task},
            failures={k: v for k, v in whole.failures.items() if owner[k] == task},
            detection_failures={k: v for k, v in whole.detection_failures.items() if owner[k[0]] == task},
            frame_rates={k: v for k, v in whole.frame_rates.items() if owner.get(k) == task},
        )
        part = folder / f"part-{task}.json"
        part.write_bytes(dumps_part(mine, key="run-1"))
        key, back = loads_part(part.read_bytes(), part)
        assert (key, back) == ("run-1", mine)  # floats read back exactly
        parts.append(back)
    assert streamed(r, combine(parts), MODEL) == one


def test_parts_that_disagree_or_are_not_parts_are_refused(tmp_path):
    a = Scores(classifications={(0, 0): (0.25, 0.75)})
    with pytest.raises(MeerkatError, match="two parts disagree on entry 0"):
        combine([a, Scores(classifications={(0, 0): (0.5, 0.5)})])
    assert combine([a, a]) == Scores(
        classifications={(0, 0): (0.25, 0.75)}, failures={}, detection_failures={}, frame_rates={}
    )
    for raw in (b"", b"{}", b'{"format": "meerkat detections part 1"}', dumps_part(a)[:-9]):
        with pytest.raises(MeerkatError, match="is not a part meerkat wrote") as e:
            loads_part(raw, tmp_path / "part-0.json")
        assert str(tmp_path / "part-0.json") in str(e.value)


def test_motion_scans_write_one_video_entry_each():
    entries = [
        motion_entry(
            "b/walk.mp4",
            frame_rate=25.0,
            frames_processed=[4, 2, 3, 2],
            size=(640, 480),
            boxes=[(3, (320, 0, 320, 480), (0.25, 0.75)), (2, (64, 48, 32, 24), None)],
        ),
        motion_entry("a/broken.avi", frame_rate=0, frames_processed=[], size=None, boxes=[], failure="cannot open"),
    ]
    out = motion_output(entries, MODEL)
    assert out["detection_categories"] == {MOTION_CATEGORY: "motion"} and out["info"]["format_version"] == "1.6"
    assert (
        out["info"]["detection_completion_time"] == out["info"]["classification_completion_time"] == completion_time()
    )
    broken, walk = out["images"]
    assert exactly(broken) == exactly(
        {
            "file": "a/broken.avi",
            "frame_rate": -1.0,
            "frames_processed": [],
            "failure": "cannot open",
            "detections": None,
        }
    )
    assert walk["frames_processed"] == [2, 3, 4]
    assert exactly(walk["detections"]) == exactly([
        {"category": MOTION_CATEGORY, "conf": 1.0, "bbox": [0.1, 0.1, 0.05, 0.05], "frame_number": 2},
        {"category": MOTION_CATEGORY, "conf": 1.0, "bbox": [0.5, 0.0, 0.5, 1.0], "frame_number": 3,
         "classifications": [["1", 0.75], ["0", 0.25]]},
    ])  # fmt: skip
