"""The files `meerkat sort` moves: no crop is ever lost or doubled, a user's own files in Training are
never touched, the log says where each crop is, and undo puts every crop back under its own name,
whatever the names, the order of the key presses, a kill or a move across file systems."""

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from meerkat.core.errors import MeerkatError
from meerkat.core.names import folded
from meerkat.core.temporaries import MARK
from meerkat.sort import moves
from meerkat.sort.paths import Refused, below
from meerkat.sort.session import Session

# Crops whose names collide across sub-folders, with a name `-2` would make, in case only, and with
# the user's files already in the class folders.
CROPS = ["v1/a.jpg", "v1/A.jpg", "v1/b.jpg", "v1/a-2.jpg", "v2/a.jpg", "v2/B.JPG", "v2/deep/a.jpg", "c.png"]
USER = ["deer/a.jpg", "deer/A-3.jpg", "deer/notes.txt", "Elk/b.jpg", "Elk/sub/a.jpg"]
CLASSES = ["deer", "DEER", "Elk", "elk", "Moose"]  # Moose only once made


def make(tmp: Path, crops=CROPS, user=USER) -> tuple[Path, Path]:
    for rel in crops:
        path = tmp / "crops" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"crop " + rel.encode())  # names only matter here: every file's bytes its own
    for rel in user:
        path = tmp / "samples" / "Training" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"user's " + rel.encode())
    return tmp / "crops", tmp / "samples"


def files(root: Path) -> dict[str, bytes]:
    """The files below `root` by path, meerkat's state folder left out; a link found fails the test."""
    found = {}
    for top, dirs, here in os.walk(root):
        dirs[:] = [d for d in dirs if d != "meerkat-sort"]
        for name in here + [d for d in dirs if os.path.islink(os.path.join(top, d))]:  # walk lists those as dirs
            path = Path(top, name)
            assert path.is_file() and not path.is_symlink(), path
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


def names(path: Path) -> int:
    return os.lstat(path).st_nlink


class Killed(BaseException):
    """Where a kill -9 would stop the process: nothing of the session runs after it."""


class Sorting(RuleBasedStateMachine):
    """Random key presses on a session, a restart now and then; after each, nothing lost or doubled."""

    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="sort-moves-"))
        self.crops, self.samples = make(self.tmp)
        self.training = self.samples / "Training"
        self.original = files(self.crops)
        self.user = files(self.training)
        self.contents = sorted([*self.original.values(), *self.user.values()])
        self.session = Session(self.crops, self.samples)

    def teardown(self):
        try:
            for _ in range(100):  # undo everything: CROPS is as it was, Training holds the user's files only
                if self.session.log.undoable() is None:
                    break
                answer = self.session.undo()
                assert not answer["problems"], answer["problems"]
            assert files(self.crops) == self.original
            assert files(self.training) == self.user
        finally:
            self.session.close()
            shutil.rmtree(self.tmp)

    def pending(self):
        return [c.id for c in self.session.crops_list if c.state == "pending"]

    @precondition(lambda self: self.pending())
    @rule(data=st.data(), name=st.sampled_from(CLASSES))
    def assign(self, data, name):
        ids = data.draw(st.lists(st.sampled_from(self.pending()), min_size=1, unique=True))
        known = any(folded(c) == folded(name) for c in self.session.classes)
        if not known:
            with pytest.raises(Refused):
                self.session.assign(ids, name)
            return
        answer = self.session.assign(ids, name)
        assert not answer["problems"]
        assert len(answer["moved"]) == len(ids)
        for moved in answer["moved"]:
            folder = moved["to"].split("/")[1]
            assert folded(folder) == folded(name)
            assert folder in os.listdir(self.training)

    @rule(name=st.sampled_from(["Moose", "moose", "elk", "Elk", "x/y", ".hidden"]))
    def add_class(self, name):
        other_case = [c for c in self.session.classes if folded(c) == folded(name) and c != name]
        try:
            self.session.add_class(name)
        except Refused:
            assert other_case or name in ("x/y", ".hidden")
            return
        assert not other_case and (self.training / name).is_dir()

    @precondition(lambda self: self.pending())
    @rule(data=st.data())
    def skip(self, data):
        ids = data.draw(st.lists(st.sampled_from(self.pending()), min_size=1, unique=True))
        assert sorted(self.session.skip(ids)["skipped"]) == sorted(ids)

    @rule()
    def undo(self):
        answer = self.session.undo()
        assert answer["restored"] or answer["problems"] == [{"why": "nothing to undo"}]
        assert all(p["why"] == "nothing to undo" for p in answer["problems"])

    @rule()
    def restart(self):
        self.session.close()
        self.session = Session(self.crops, self.samples)

    @precondition(lambda self: self.pending())
    @rule(data=st.data(), name=st.sampled_from(["deer", "Elk"]), point=st.sampled_from(["link_in", "release"]))
    def killed_midway(self, data, name, point):
        """A kill after some crops are linked (none logged yet), or after the log and some unlinks."""
        ids = data.draw(st.lists(st.sampled_from(self.pending()), min_size=1, unique=True))
        after, real = data.draw(st.integers(0, len(ids) - 1)), getattr(moves, point)

        def dying(*args, **kwargs):
            nonlocal after
            if after == 0:
                raise Killed
            after -= 1
            return real(*args, **kwargs)

        with patch.object(moves, point, dying), pytest.raises(Killed):
            self.session.assign(ids, name)
        self.restart()

    @invariant()
    def nothing_lost_or_doubled(self):
        now = {**{f"crops/{k}": v for k, v in files(self.crops).items()},
               **{f"Training/{k}": v for k, v in files(self.training).items()}}  # fmt: skip
        assert sorted(now.values()) == self.contents  # every file once, with its bytes
        for rel in now:
            assert names(self.tmp / ("samples/" + rel if rel.startswith("Training/") else rel)) == 1
        for rel, data in self.user.items():  # the user's files: same names, same bytes
            assert (self.training / rel).read_bytes() == data
        for folder in self.training.iterdir():
            listed = [folded(n) for n in os.listdir(folder)]
            assert len(listed) == len(set(listed)), f"two files of {folder} differ only in case"

    @invariant()
    def the_log_says_where_each_crop_is(self):
        log = moves.Log(self.samples / "meerkat-sort" / "moves.jsonl")
        logged = set()
        for move in log.pending_moves():
            there = below(self.samples, move.to)
            assert os.lstat(there).st_ino == move.ino
            assert b"crop " + move.frm.encode() == there.read_bytes()
            logged.add(move.to)
        meerkat_s = {f"Training/{k}" for k in files(self.training)} - {f"Training/{k}" for k in self.user}
        assert meerkat_s == logged
        pending = {c.rel for c in self.session.crops_list if c.state == "pending"}
        assert pending == set(files(self.crops))
        for crop in self.session.crops_list:
            if crop.state == "moved":
                assert crop.moved_to in logged


TestSorting = Sorting.TestCase
TestSorting.settings = settings(
    max_examples=20, stateful_step_count=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- a kill in the middle of a move ------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path):
    return make(tmp_path)


def test_a_kill_between_the_link_and_the_log_leaves_the_crop_with_one_name(folders, monkeypatch):
    crops, samples = folders
    session = Session(crops, samples)
    crop = session.by_rel["v1/b.jpg"]

    def killed(self, events):
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(moves.Log, "write", killed)
        with pytest.raises(Killed):
            session.assign([crop.id], "Elk")
    assert names(crops / "v1" / "b.jpg") == 2  # the link is made, the log has no line of it
    session.close()

    again = Session(crops, samples)  # the key was pressed: the move is logged and finished
    try:
        here, there = crops / "v1" / "b.jpg", samples / "Training" / "Elk" / "b-2.jpg"
        assert not here.exists() and names(there) == 1 and there.read_bytes() == b"crop v1/b.jpg"
        assert [(m.frm, m.to) for m in again.log.pending_moves()] == [("v1/b.jpg", "Training/Elk/b-2.jpg")]
        assert "v1/b.jpg" not in again.by_rel and again.classes["Elk"] == 3  # b.jpg and sub/a.jpg are the user's
        again.undo()
        assert here.read_bytes() == b"crop v1/b.jpg" and not there.exists()
        assert files(samples / "Training") == files_of_user(samples)
    finally:
        again.close()


def files_of_user(samples):
    return {rel: data for rel, data in files(samples / "Training").items() if data.startswith(b"user's ")}


def test_a_kill_between_the_log_and_the_unlink_is_finished_by_the_next_session(folders, monkeypatch):
    crops, samples = folders
    session = Session(crops, samples)
    ids = [session.by_rel["v1/b.jpg"].id, session.by_rel["v2/a.jpg"].id]

    def killed(old, new):
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(moves, "release", killed)
        with pytest.raises(Killed):
            session.assign(ids, "deer")
    assert names(crops / "v1" / "b.jpg") == 2 and names(crops / "v2" / "a.jpg") == 2
    session.close()

    again = Session(crops, samples)
    try:
        assert not (crops / "v1" / "b.jpg").exists() and not (crops / "v2" / "a.jpg").exists()
        for move in again.log.pending_moves():
            assert names(samples / move.to) == 1 and (samples / move.to).read_bytes() == b"crop " + move.frm.encode()
        assert {m.to for m in again.log.pending_moves()} == {"Training/deer/b.jpg", "Training/deer/a-2.jpg"}
        assert {c.rel for c in again.crops_list if c.state == "pending"} == set(CROPS) - {"v1/b.jpg", "v2/a.jpg"}
        assert again.classes["deer"] == 4
        again.undo()
        assert files(crops) == {rel: b"crop " + rel.encode() for rel in CROPS}
        assert files_of_user(samples) == files(samples / "Training")
    finally:
        again.close()


def test_a_refused_crop_midway_leaves_no_crop_with_two_names(folders, tmp_path):
    """accept: the first crop's class is fine, the second's class folder is a link (found only then)."""
    crops, samples = folders
    (tmp_path / "outside").mkdir()
    session = Session(crops, samples)
    try:
        os.symlink(tmp_path / "outside", samples / "Training" / "wolf")
        first, second = session.by_rel["v1/b.jpg"], session.by_rel["v2/a.jpg"]
        first.guess, second.guess = "deer", "wolf"
        session.classes["wolf"] = 0  # a guess's class, as the session lists it before it is made
        answer = session.assign([first.id, second.id])
        assert [m["id"] for m in answer["moved"]] == [first.id]
        assert [p["id"] for p in answer["problems"]][:1] == [second.id] and "link" in answer["problems"][0]["why"]
        assert os.listdir(tmp_path / "outside") == []
        (samples / "Training" / "wolf").unlink()
        for rel in ("v1/b.jpg", "v2/a.jpg"):
            found = [*files(crops).values(), *files(samples).values()]
            assert found.count(b"crop " + rel.encode()) == 1
        assert names(crops / "v2" / "a.jpg") == 1 and names(samples / "Training" / "deer" / "b.jpg") == 1
        assert [m.frm for m in session.log.pending_moves()] == ["v1/b.jpg"]
    finally:
        session.close()


# --- the log: cut short, or edited by hand ------------------------------------------------------------


def test_a_half_written_last_line_is_passed_over_and_the_next_line_starts_afresh(folders):
    crops, samples = folders
    session = Session(crops, samples)
    session.assign([session.by_rel["v1/b.jpg"].id], "deer")
    session.close()
    log = samples / "meerkat-sort" / "moves.jsonl"
    with open(log, "a") as f:
        f.write('{"action": 7, "op": "move", "from": "v2/a.jpg", "to": "Trai')  # a kill mid-write

    again = Session(crops, samples)
    try:
        assert again.log.undoable() == 1 and again.log.next_action() == 2
        assert again.undo()["restored"][0]["name"] == "v1/b.jpg"
        assert (crops / "v1" / "b.jpg").read_bytes() == b"crop v1/b.jpg"
        lines = log.read_text().splitlines()
        assert lines[1].endswith('"to": "Trai') and json.loads(lines[2])["op"] == "undo"
    finally:
        again.close()


@pytest.mark.parametrize(
    "edit",
    [
        {"to": "../../x.jpg"},
        {"to": "../x.jpg"},
        {"to": "Training/deer/../../../x.jpg"},
        {"to": "TOP/x.jpg"},  # an absolute path: replaced below
        {"to": "Testing/p.jpg"},  # a user's file elsewhere in SAMPLES, its stat copied into the line
        {"to": "meerkat-sort/moves.jsonl"},
        {"from": "../../x.jpg"},
        {"from": "../x.jpg"},
        {"from": "TOP/x.jpg"},
        {"from": ""},
        {"from": "v1/"},
        {"from": "v1//b.jpg"},
        {"from": "./b.jpg"},
    ],
)
def test_undo_refuses_a_line_edited_to_point_elsewhere_and_touches_nothing(folders, tmp_path, edit):
    crops, samples = folders
    (tmp_path / "x.jpg").write_bytes(b"outside")
    (samples / "Testing").mkdir()
    (samples / "Testing" / "p.jpg").write_bytes(b"user's Testing file")
    session = Session(crops, samples)
    session.assign([session.by_rel["v1/b.jpg"].id], "deer")
    session.close()
    log = samples / "meerkat-sort" / "moves.jsonl"
    line = json.loads(log.read_text())
    key, value = next(iter(edit.items()))
    line[key] = value.replace("TOP", str(tmp_path))
    if key == "to" and (samples / line["to"]).is_file():  # the stat of what the line now names: only its place is wrong
        st = os.lstat(samples / line["to"])
        line.update(size=st.st_size, mtime_ns=st.st_mtime_ns, ino=st.st_ino)
    log.write_text(json.dumps(line) + "\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "meerkat-sort" not in p.parts}

    again = Session(crops, samples)
    try:
        answer = again.undo()
        assert answer["restored"] == [] and answer["problems"]
        after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "meerkat-sort" not in p.parts}
        assert after == before
    finally:
        again.close()


# --- files changed behind the page's back ----------------------------------------------------------------


def test_a_crop_rewritten_after_it_was_listed_is_not_moved(folders):
    crops, samples = folders
    session = Session(crops, samples)
    try:
        crop = session.by_rel["v1/b.jpg"]
        (crops / "v1" / "b.jpg").write_bytes(b"crop v1/b.jpg, retouched")
        answer = session.assign([crop.id], "deer")
        assert answer["moved"] == [] and "changed on disk" in answer["problems"][0]["why"]
        assert (crops / "v1" / "b.jpg").read_bytes() == b"crop v1/b.jpg, retouched"
        assert files(samples / "Training") == files_of_user(samples)
        assert session.log.pending_moves() == []
    finally:
        session.close()


def test_a_moved_crop_changed_in_samples_is_not_undone(folders):
    crops, samples = folders
    session = Session(crops, samples)
    try:
        session.assign([session.by_rel["v1/b.jpg"].id], "deer")
        moved = samples / "Training" / "deer" / "b.jpg"
        moved.write_bytes(b"crop v1/b.jpg, relabelled by hand")
        answer = session.undo()
        assert answer["restored"] == [] and "changed" in answer["problems"][0]["why"]
        assert moved.read_bytes() == b"crop v1/b.jpg, relabelled by hand"
        assert not (crops / "v1" / "b.jpg").exists()
        assert "v1/b.jpg" not in {c.rel for c in session.crops_list if c.state == "pending"}
    finally:
        session.close()


def test_a_training_folder_that_is_a_link_is_refused_before_anything_is_written(tmp_path):
    crops, samples = make(tmp_path, user=[])
    (tmp_path / "outside" / "deer").mkdir(parents=True)
    samples.mkdir()
    os.symlink(tmp_path / "outside", samples / "Training")
    with pytest.raises(MeerkatError, match="Training is a link"):
        Session(crops, samples)
    assert [p.name for p in (tmp_path / "outside").rglob("*")] == ["deer"]
    assert os.listdir(samples) == ["Training"]
    assert files(crops) == {rel: b"crop " + rel.encode() for rel in CROPS}


# --- across two file systems -------------------------------------------------------------------------------


def test_a_move_across_file_systems_copies_checks_and_only_then_removes(folders, monkeypatch):
    crops, samples = folders
    session = Session(crops, samples)
    real_link, calls, logged = os.link, [], []

    def link(src, dst, *args, **kwargs):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 1:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src), None, str(dst))
        return real_link(src, dst, *args, **kwargs)

    write = moves.Log.write

    def write_seeing(self, events):
        logged.append(((crops / "v1" / "a.jpg").exists(), (samples / "Training" / "deer" / "a-2.jpg").is_file()))
        write(self, events)

    try:
        monkeypatch.setattr(os, "link", link)
        monkeypatch.setattr(moves.Log, "write", write_seeing)
        answer = session.assign([session.by_rel["v1/a.jpg"].id], "deer")
        assert [m["to"] for m in answer["moved"]] == ["Training/deer/a-2.jpg"]  # deer/a.jpg is the user's
        target = samples / "Training" / "deer" / "a-2.jpg"
        assert target.read_bytes() == b"crop v1/a.jpg" and names(target) == 1
        assert calls[0] == ("a.jpg", "a-2.jpg") and calls[1][0].endswith(MARK)  # the copy, under a temporary
        assert logged == [(True, True)]  # logged while both were there: the old name went last
        assert not (crops / "v1" / "a.jpg").exists()
        assert not [n for n in os.listdir(target.parent) if MARK in n]
        assert session.log.pending_moves()[0].ino == os.lstat(target).st_ino
        assert files_of_user(samples) == {k: v for k, v in files(samples / "Training").items() if k != "deer/a-2.jpg"}

        calls.clear()  # and back, across again
        assert session.undo()["restored"][0]["name"] == "v1/a.jpg"
        assert (crops / "v1" / "a.jpg").read_bytes() == b"crop v1/a.jpg" and not target.exists()
        assert not [n for n in os.listdir(crops / "v1") if MARK in n]
    finally:
        session.close()


def test_a_copy_that_fails_leaves_no_temporary_and_the_crop_where_it_was(folders, monkeypatch):
    crops, samples = folders
    session = Session(crops, samples)

    def no_link(src, dst, *args, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    def full(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    try:
        monkeypatch.setattr(os, "link", no_link)
        monkeypatch.setattr(shutil, "copy2", full)
        try:
            answer = session.assign([session.by_rel["v1/b.jpg"].id], "deer")
            assert answer["moved"] == [] and answer["problems"]
        except OSError as e:
            assert e.errno == errno.ENOSPC
        assert (crops / "v1" / "b.jpg").read_bytes() == b"crop v1/b.jpg"
        assert files(samples / "Training") == files_of_user(samples)
        assert not [n for n in os.listdir(samples / "Training" / "deer") if MARK in n]
        assert session.log.pending_moves() == []
    finally:
        session.close()
