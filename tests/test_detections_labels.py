"""`clips --detections --by-class`: crops sorted into crops/<class>/ by another classifier's labels in
the file (detections/labels.py), on ena24_small's real file (ecosystem1_v2's classifications) and on
AddaxAI-style files made from the shared sample crops."""

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import SHARED, assert_user_error, needs_shared
from hypothesis import given, settings
from hypothesis import strategies as st
from scenes import detection, results, samples, scene, write_results

from meerkat.core.names import folded
from meerkat.detections import labels

pytestmark = needs_shared()

ENA24 = SHARED / "data" / "ena24_small"
BASE = ["crop", "file", "frame_number", "detection", "category", "conf", "bbox"]
# crops.csv of ena24_small without --by-class, as clips wrote it before the option existed.
ENA24_CROPS_CSV = "3b2fee598834d6700d6b715c22b2220a6e37da5b1f0b5b65b45970d4a580e5a8"


def table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.jpg")}


def truth() -> dict[str, str]:
    """ena24_small's labels.csv: file -> its species as a folder name (`Virginia Opossum` -> virginia_opossum)."""
    rows = table(ENA24 / "labels.csv")
    return {r["filepath"]: r["label"].lower().replace(" ", "_") for r in rows}


@pytest.fixture(scope="module")
def ena24(tmp_path_factory):
    """clips of ena24_small's file without and with --by-class."""
    from typer.testing import CliRunner

    from meerkat.cli import app

    out = tmp_path_factory.mktemp("ena24")
    md = ENA24 / "md_annotations.json"
    runs = {}
    for name, extra in [("plain", []), ("by_class", ["--by-class"])]:
        result = CliRunner().invoke(app, ["clips", "--detections", str(md), "--output", str(out / name), *extra])
        assert result.exit_code == 0, result.output
        runs[name] = out / name
    return runs


@pytest.mark.slow
def test_without_the_option_clips_writes_todays_bytes(ena24):
    out = ena24["plain"]
    assert hashlib.sha256((out / "crops.csv").read_bytes()).hexdigest() == ENA24_CROPS_CSV
    assert sorted(p.name for p in (out / "crops").iterdir() if not p.name.startswith(".")) == sorted(
        f"{Path(f).stem}_0.jpg" for f in truth()
    )


@pytest.mark.slow
def test_ena24_crops_go_to_their_species_folder_at_the_files_threshold(ena24):
    out = ena24["by_class"]
    rows = table(out / "crops.csv")
    assert list(rows[0]) == [*BASE, "class", "class_score", "folder"]
    species = truth()
    assert {r["file"]: r["folder"] for r in rows} == species  # ecosystem1_v2 is right on all 21
    assert {r["class"] for r in rows} == set(species.values())
    assert all(float(r["class_score"]) >= 0.75 for r in rows)  # the file's typical_classification_threshold
    assert sorted(files_under(out / "crops")) == sorted(f"{r['folder']}/{r['crop']}" for r in rows)
    # The same crops as without the option, only in folders; the base columns unchanged.
    plain = files_under(ena24["plain"] / "crops")
    assert {Path(k).name: v for k, v in files_under(out / "crops").items()} == plain
    assert [[r[c] for c in BASE] for r in rows] == [[r[c] for c in BASE] for r in table(ena24["plain"] / "crops.csv")]


@pytest.mark.slow
def test_the_class_folders_move_into_samples_and_createdocs_takes_them(ena24, cli, tmp_path):
    for folder in (ena24["by_class"] / "crops").iterdir():
        if folder.is_dir() and folder.name != "unclassified":
            shutil.copytree(folder, tmp_path / "Samples" / "Training" / folder.name)
            (tmp_path / "Samples" / "Testing" / folder.name).mkdir(parents=True)  # 3 crops a class: 1 held out
            first = min((tmp_path / "Samples" / "Training" / folder.name).glob("*.jpg"))
            first.rename(tmp_path / "Samples" / "Testing" / folder.name / first.name)
    result = cli("createdocs", tmp_path / "Samples", "--output", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "docs" / "dict.txt").read_text().split() == sorted(set(truth().values()))


@pytest.mark.slow
def test_a_higher_threshold_leaves_the_unsure_crops_unclassified(cli, tmp_path):
    md = ENA24 / "md_annotations.json"
    assert (
        cli("clips", "--detections", md, "--output", tmp_path, "--by-class", "--class-threshold", 0.93).exit_code == 0
    )
    rows = table(tmp_path / "crops.csv")
    scores = json.loads(md.read_text())
    top = {im["file"]: im["detections"][0]["classifications"][0][1] for im in scores["images"]}
    assert {r["file"] for r in rows if r["folder"] == "unclassified"} == {f for f, s in top.items() if s < 0.93}
    assert {r["file"]: r["folder"] for r in rows if r["folder"] != "unclassified"} == {
        f: s for f, s in truth().items() if top[f] >= 0.93
    }
    unsure = [r for r in rows if r["folder"] == "unclassified"]
    assert unsure and all(r["class"] == truth()[r["file"]] for r in unsure)  # the label is still listed
    assert (tmp_path / "crops" / "unclassified" / unsure[0]["crop"]).is_file()


def addaxai(root: Path, names: dict[str, str] | None = None) -> Path:
    """An AddaxAI-style file on scenes of sample crops: species as the detection's category
    (MegaDetector's in prev_category), classifications beside it, one tie and one unclassified box."""
    crops = samples("Positives", 4)
    boxes = scene(root / "a.jpg", crops, seed=1)
    names = names or {"0": "fox", "1": "badger"}
    dets = [
        detection(boxes[0], 0.97, "4", prev_category="1", prev_conf=0.61, classifications=[["0", 0.97], ["1", 0.03]]),
        detection(boxes[1], 0.44, "1", classifications=[["1", 0.5], ["0", 0.5]]),  # a tie: no label
        detection(boxes[2], 0.9, "5", prev_category="1", prev_conf=0.7),  # AddaxAI's species alone
        detection(boxes[3], 0.9, "1"),  # no classifier ran on it
    ]
    data = results([{"file": "a.jpg", "detections": dets}], threshold=None, forbidden_classes=[])
    data["detection_categories"] = {"1": "unidentified animal", "2": "person", "3": "vehicle", "4": "fox",
                                    "5": "badger"}  # fmt: skip
    data["classification_categories"] = names
    return write_results(root / "addax.json", data)


def test_addaxai_species_and_classifications_sort_the_crops(cli, tmp_path):
    md = addaxai(tmp_path / "images")
    result = cli("clips", "--detections", md, "--output", tmp_path / "out", "--by-class")
    assert result.exit_code == 0, result.output
    rows = table(tmp_path / "out" / "crops.csv")
    got = [(r["detection"], r["class"], r["class_score"], r["folder"]) for r in rows]
    assert got == [
        ("0", "fox", "0.97", "fox"),
        ("1", "badger", "0.5", "unclassified"),  # tied with fox at the top: unsure at any threshold
        ("2", "badger", "0.9", "badger"),  # the category AddaxAI wrote, its conf the species' score
        ("3", "", "", "unclassified"),
    ]
    assert sorted(files_under(tmp_path / "out" / "crops")) == [
        "badger/a_2.jpg", "fox/a_0.jpg", "unclassified/a_1.jpg", "unclassified/a_3.jpg"
    ]  # fmt: skip


def test_a_file_without_labels_is_one_line(cli, tmp_path):
    md = write_results(tmp_path / "md.json", results([{"file": "a.jpg", "detections": []}]))
    result = cli("clips", "--detections", md, "--output", tmp_path / "out", "--by-class")
    assert_user_error(result, 1, md, "holds no other classifier's labels", "leave out --by-class")
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize(
    "args, words",
    [
        (["VIDEO", "--by-class"], "--by-class needs --detections"),
        (["--detections", "MD", "--class-threshold", "0.3"], "--class-threshold needs --by-class"),
    ],
)
def test_options_out_of_place_are_one_line(cli, tmp_path, args, words):
    (tmp_path / "v.mp4").write_bytes(b"")
    md = write_results(tmp_path / "md.json", results([{"file": "a.jpg", "detections": []}]))
    args = [{"VIDEO": tmp_path / "v.mp4", "MD": md}.get(a, a) for a in args]
    assert_user_error(cli("clips", *args, "--output", tmp_path / "out"), 2, words)


@pytest.mark.slow
def test_unsafe_category_names_become_folders_inside_crops(cli, tmp_path):
    names = {"0": "../up", "1": "a/b", "2": "A_b", "3": "unclassified", "4": "CON", "5": ".hidden"}
    md = addaxai(tmp_path / "images", names)
    data = json.loads(md.read_text())
    dets = data["images"][0]["detections"]
    for k, det in enumerate(dets):
        det["classifications"] = [[str(k), 0.9]]
    write_results(md, data)
    assert cli("clips", "--detections", md, "--output", tmp_path / "out", "--by-class").exit_code == 0
    rows = table(tmp_path / "out" / "crops.csv")
    assert [r["class"] for r in rows] == ["../up", "a/b", "A_b", "unclassified"]
    folders = [r["folder"] for r in rows]
    assert folders[0] == "_up" and folders[2].startswith("A_b_") and folders[3].startswith("unclassified_")
    assert len({folded(f) for f in folders}) == 4
    assert sorted(files_under(tmp_path / "out" / "crops")) == sorted(f"{r['folder']}/{r['crop']}" for r in rows)
    assert [p.name for p in (tmp_path / "out").iterdir() if p.is_dir() and p.name != "clips-parts"] == ["crops"]


@pytest.mark.slow
def test_resume_and_parts_work_with_by_class(cli, tmp_path, monkeypatch):
    from meerkat.apply import suggest
    from meerkat.detections import parts

    monkeypatch.setattr(parts, "PART_BATCHES", 1)
    monkeypatch.setattr(suggest, "SCORE_BATCH", 1)
    md = addaxai(tmp_path / "images")
    for k, name in enumerate(["b.jpg", "c.jpg"]):
        scene(tmp_path / "images" / name, samples("Negatives", 2), seed=5 + k)
    data = json.loads(md.read_text())
    data["images"] += [{"file": n, "detections": data["images"][0]["detections"]} for n in ("b.jpg", "c.jpg")]
    write_results(md, data)
    run = ["clips", "--detections", md, "--by-class", "--output"]
    assert cli(*run, tmp_path / "one").exit_code == 0
    failed = cli(*run, tmp_path / "two", env={"MEERKAT_FAIL_AT": "detections:clips-part:1"})
    assert failed.exit_code != 0
    again = cli(*run, tmp_path / "two")
    assert again.exit_code == 0 and "Reusing 2 finished parts" in again.output, again.output
    for name in ("one", "two"):
        assert len(files_under(tmp_path / name / "crops")) == 12
    assert files_under(tmp_path / "two" / "crops") == files_under(tmp_path / "one" / "crops")
    assert (tmp_path / "two" / "crops.csv").read_bytes() == (tmp_path / "one" / "crops.csv").read_bytes()
    stricter = cli(*run, tmp_path / "two", "--class-threshold", 0.95)  # other folders: the parts cut again
    assert stricter.exit_code == 0 and "Reusing" not in stricter.output
    assert {r["folder"] for r in table(tmp_path / "two" / "crops.csv")} == {"fox", "unclassified"}
    plain = cli("clips", "--detections", md, "--output", tmp_path / "two")  # the option dropped: flat again
    assert plain.exit_code == 0 and "Reusing" not in plain.output
    assert sorted(files_under(tmp_path / "two" / "crops")) == sorted(
        Path(k).name for k in files_under(tmp_path / "one" / "crops")
    )


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=120) | st.text("aA/_. \u00e9\u0301:", max_size=5), max_size=8))  # and clashes
def test_every_label_gets_a_safe_folder_of_its_own(names):
    found = labels.folders(names)
    folders = list(found.values())
    assert len({folded(f) for f in folders} | {folded(labels.UNSURE)}) == len(folders) + 1
    for folder in folders:
        assert folder not in ("", ".", "..") and not folder.startswith(".") and folder == folder.strip().rstrip(".")
        assert not set(folder) & set('/\\:*?"<>|\x00') and len(folder.encode("utf-8", "surrogatepass")) <= 100
        assert folder.split(".")[0].upper() not in ("CON", "PRN", "AUX", "NUL")


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("012"), st.floats(0, 1)), min_size=1, max_size=4),
    st.floats(0, 1),
)
def test_a_crop_takes_its_top_label_when_it_reaches_the_threshold_and_no_other_ties_it(pairs, threshold):
    found = labels.Labels({"0": "fox", "1": "badger", "2": "hare"}, threshold)
    name, score, folder = found.label({"category": "1", "conf": 0.9, "classifications": [list(p) for p in pairs]})
    best = max(s for _, s in pairs)
    top = {c for c, s in pairs if s == best}
    assert score == best and name in {"fox", "badger", "hare"}
    assert folder == (name if best >= threshold and len(top) == 1 else "unclassified")


@pytest.mark.slow  # trains the tiny model (tiny_run)
def test_with_a_model_too_the_suggestions_copy_the_crops_from_their_class_folders(cli, tiny_run, tmp_path):
    md = addaxai(tmp_path / "images")
    result = cli("clips", "--detections", md, "--output", tmp_path / "out", "--by-class", "--model", tiny_run / "model")
    assert result.exit_code == 0, result.output
    rows = table(tmp_path / "out" / "crops.csv")
    assert list(rows[0])[:10] == [*BASE, "class", "class_score", "folder"] and "suggested" in rows[0]
    assert [r["folder"] for r in rows] == ["fox", "unclassified", "badger", "unclassified"]
    copies = {p.name: p.read_bytes() for p in (tmp_path / "out" / "suggested").rglob("*.jpg")}
    assert copies == {r["crop"]: (tmp_path / "out" / "crops" / r["folder"] / r["crop"]).read_bytes() for r in rows}


def test_a_label_spelled_as_another_labels_marked_folder_gets_a_folder_of_its_own():
    mark = hashlib.sha256(b"fox").hexdigest()[:6]
    found = labels.folders(["Fox", "fox", f"fox_{mark}"])
    assert found[f"fox_{mark}"] == f"fox_{mark}"  # a plain name keeps its folder
    assert len({folded(f) for f in found.values()}) == 3
