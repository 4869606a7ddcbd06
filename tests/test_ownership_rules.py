"""The ownership rule at the level of single files: what meerkat may clean, replace and delete.

(a) only temporaries meerkat marked are cleaned, never a user's name that merely looks like one;
(b) a file is meerkat's only while it is the very file meerkat wrote, unchanged;
(c) a folder meerkat does not own never keeps a hidden file of meerkat's.
"""

import errno
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meerkat.core import atomic, ownership, temporaries
from meerkat.core.errors import MeerkatError


def refused(call, *words) -> str:
    """The one-line MeerkatError `call` raises; each of `words` must be in it."""
    with pytest.raises(MeerkatError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message
    for w in words:
        assert str(w) in message, message
    return message


def hidden(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


# --- (a) temporaries ---------------------------------------------------------------------------


def test_a_users_file_named_like_a_temporary_is_never_cleaned(tmp_path):
    out = atomic.ensure_dir(tmp_path / "out")
    atomic.write_text(out / "scores.csv", "meerkat's\n")
    mine = {".notes.v2.1.tmp": b"draft two", ".scores.csv.myhost.12.tmp": b"my backup"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    assert temporaries.remove_stale(out) == 0
    atomic.write_text(out / "scores.csv", "again\n")  # a rerun's write sweeps dead temporaries too
    assert {n: (out / n).read_bytes() for n in mine} == mine
    refused(lambda: ownership.remove(out), out / ".notes.v2.1.tmp", "meerkat did not write it")
    assert not any(temporaries.is_temp(out / n) for n in mine)


def test_a_dead_writers_temporary_is_cleaned_and_a_live_ones_is_not(tmp_path):
    out = atomic.ensure_dir(tmp_path / "out")
    with atomic.atomic_open(out / "live.csv") as f:
        f.write("half")
        (temp,) = [p for p in out.iterdir() if temporaries.is_temp(p)]
        assert temporaries.remove_stale(out) == 0 and temp.exists()
    assert not temp.exists() and (out / "live.csv").read_text() == "half"


# --- (b) a file that changed is not meerkat's ----------------------------------------------------


@pytest.mark.parametrize("how", ["new file", "rewritten in place", "appended to", "renamed over it"])
def test_a_users_file_at_a_name_meerkat_used_is_never_replaced(tmp_path, how):
    out = atomic.ensure_dir(tmp_path / "out")
    scores = out / "scores.csv"
    atomic.write_text(scores, "path,score\na.jpg,0.9\n")
    if how == "new file":
        scores.unlink()
        scores.write_text("my,own\n")
    elif how == "rewritten in place":
        with open(scores, "r+") as f:
            f.write("path,score\na.jpg,0.1\nb.jpg,1\n")
    elif how == "appended to":
        with open(scores, "a") as f:
            f.write("b.jpg,0.2\n")
    else:
        (tmp_path / "mine.csv").write_text("path,score\n")
        os.replace(tmp_path / "mine.csv", scores)
    theirs = scores.read_bytes()
    refused(lambda: atomic.write_text(scores, "new\n"), scores, "is in the way")
    refused(lambda: ownership.remove(scores), scores)
    refused(lambda: ownership.remove(out), scores)
    assert scores.read_bytes() == theirs


def test_meerkats_own_file_is_replaced_and_removed(tmp_path):
    for folder in (atomic.ensure_dir(tmp_path / "made"), tmp_path):  # a folder of meerkat's, and one of the user's
        atomic.write_text(folder / "scores.csv", "one\n")
        atomic.write_text(folder / "scores.csv", "two\n")
        assert (folder / "scores.csv").read_text() == "two\n"
        ownership.remove(folder / "scores.csv")
        assert not (folder / "scores.csv").exists()
    ownership.remove(tmp_path / "made")
    assert not (tmp_path / "made").exists()


def test_a_file_meerkat_writes_in_place_stays_meerkats_as_it_grows(tmp_path):
    logs = atomic.ensure_dir(tmp_path / "logs" / "train")
    events = logs / "events.out.tfevents.1.host.2.v2"
    with open(events, "wb") as f:  # as TensorFlow's summary writer: created, claimed, then appended to
        f.write(b"header")
        f.flush()
        ownership.claim_growing(events)
        f.write(b"epoch 1" * 1000)
    ownership.remove(tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


# Any name a file system takes: spaces, backslashes, newlines, undecodable bytes, leading dashes.
NAME = st.one_of(
    st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=30),
    st.binary(min_size=1, max_size=30).filter(lambda b: b"/" not in b and b"\0" not in b).map(os.fsdecode),
).filter(lambda n: n not in (".", "..", ownership.OWNED))


@settings(max_examples=30, derandomize=True, deadline=None)
@given(names=st.lists(NAME, min_size=2, max_size=4, unique=True))
def test_any_name_is_claimed_exactly_and_only_that_file_is_meerkats(tmp_path_factory, names):
    out = atomic.ensure_dir(tmp_path_factory.mktemp("names") / "out")
    for name in names * 2:  # written, then replaced: each is meerkat's own
        atomic.write_text(out / name, repr(name))
    (out / names[0]).unlink()
    (out / names[0]).write_bytes(b"the user's")
    refused(lambda: atomic.write_text(out / names[0], "x"), "is in the way")
    assert [ownership.not_ours(out / n) for n in names] == [out / names[0], *[None] * (len(names) - 1)]
    assert ownership.not_ours(out) == out / names[0] and (out / names[0]).read_bytes() == b"the user's"


def test_a_copy_of_meerkats_file_is_the_users(tmp_path):
    """The signature holds the inode: a copy (even one keeping times and attributes) is a new file."""
    atomic.write_text(tmp_path / "scores.csv", "meerkat's\n")
    atomic.ensure_dir(tmp_path / "out")
    copy = tmp_path / "out" / "scores.csv"
    subprocess.run(["cp", "-a", tmp_path / "scores.csv", copy], check=True)
    assert ownership.not_ours(copy) == copy


# --- (c) no hidden file in a folder meerkat does not own -----------------------------------------


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def no_xattrs(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refuse)
    monkeypatch.setattr(os, "getxattr", refuse)


@pytest.mark.parametrize("xattrs", [True, False], ids=["xattrs", "no-xattrs"])
def test_an_output_file_in_a_users_folder_leaves_no_hidden_file(tmp_path, state_home, monkeypatch, xattrs):
    if not xattrs:
        no_xattrs(monkeypatch)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("mine")
    for text in ("first\n", "second\n"):  # the rerun replaces what the first run wrote
        atomic.write_text(home / "scores.csv", text)
        atomic.write_text(home / "scores.skipped.csv", text)
        assert hidden(home) == [".bashrc"]
    assert (home / "scores.csv").read_text() == "second\n"
    (home / "scores.csv").unlink()
    (home / "scores.csv").write_text("my own scores\n")
    refused(lambda: atomic.write_text(home / "scores.csv", "third\n"), home / "scores.csv")
    assert (home / "scores.csv").read_text() == "my own scores\n"
    assert hidden(home) == [".bashrc"]


def test_without_xattrs_or_a_state_folder_a_rerun_refuses_by_name(tmp_path, monkeypatch, caplog):
    import logging

    no_xattrs(monkeypatch)
    monkeypatch.setenv("XDG_STATE_HOME", "/proc/meerkat-cannot-write-here")
    monkeypatch.setattr(logging.getLogger("meerkat"), "propagate", True)
    atomic.write_text(tmp_path / "scores.csv", "first\n")
    assert "cannot mark" in caplog.text and str(tmp_path / "scores.csv") in caplog.text
    refused(lambda: atomic.write_text(tmp_path / "scores.csv", "again\n"), tmp_path / "scores.csv")
    assert hidden(tmp_path) == []


def test_a_folder_meerkat_makes_holds_its_list_and_a_users_folder_none(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    atomic.ensure_dir(user / "new" / "deeper")
    atomic.write_text(user / "new" / "deeper" / "x.csv", "x\n")
    assert hidden(user) == [] and hidden(user / "new") == [ownership.OWNED]
    ownership.remove(user / "new")  # meerkat made it and all in it
    assert list(user.iterdir()) == []


def test_a_folder_named_as_output_folder_is_meerkats_and_keeps_the_users_files_theirs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert atomic.output_dir(out) == out and hidden(out) == [ownership.OWNED]
    atomic.write_text(out / "scan.csv", "video,status\n")
    assert os.listxattr(out / "scan.csv") == []  # listed in the folder's list, not marked on the file
    assert "scan.csv" in (out / ownership.OWNED).read_text()
    ownership.remove(out / "scan.csv")
    refused(lambda: ownership.remove(out), out / "notes.txt", "meerkat did not write it")
    assert (out / "notes.txt").read_text() == "mine"


# --- kills: every step of a write, then the rerun ------------------------------------------------

KILLED_WRITE = """
import sys
from meerkat.core import atomic, ownership, temporaries
with atomic.atomic_open(sys.argv[1], "w") as f:
    f.write("half of the new")
    if sys.argv[2] == "mid-write":
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    f.write(" file")
"""


@pytest.mark.parametrize("folder_kind", ["meerkat's", "the user's"])
@pytest.mark.parametrize("point", ["mid-write", "atomic:written", "atomic:claimed", "atomic:placed"])
def test_a_write_killed_at_any_step_never_blocks_the_rerun(tmp_path, state_home, folder_kind, point):
    out = atomic.ensure_dir(tmp_path / "out") if folder_kind == "meerkat's" else tmp_path
    target = out / "scores.csv"
    atomic.write_text(target, "old\n")
    env = {**os.environ, "MEERKAT_KILL_AT": point}
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(target), point], env=env)
    assert killed.returncode == -9
    assert target.read_text() == ("half of the new file" if point == "atomic:placed" else "old\n")
    atomic.write_text(target, "rerun\n")
    assert target.read_text() == "rerun\n"
    assert hidden(out) == ([ownership.OWNED] if folder_kind == "meerkat's" else [])
    # The claims the killed run left never make a user's file look like meerkat's.
    target.unlink()
    target.write_text("mine\n")
    refused(lambda: atomic.write_text(target, "x"), target)


KILLED_DIR = """
import sys
from meerkat.core import atomic, ownership, temporaries
with atomic.atomic_dir(sys.argv[1]) as tmp:
    (tmp / "a.txt").write_text(sys.argv[2])
"""


@pytest.mark.parametrize("point", ["atomic:claimed", "atomic:old-moved"])
def test_a_folder_replacement_killed_between_its_renames_never_blocks_the_rerun(tmp_path, point):
    model = tmp_path / "out" / "model"
    with atomic.atomic_dir(model) as tmp:
        (tmp / "a.txt").write_text("one")
    env = {**os.environ, "MEERKAT_KILL_AT": point}
    assert subprocess.run([sys.executable, "-c", KILLED_DIR, str(model), "two"], env=env).returncode == -9
    with atomic.atomic_dir(model) as tmp:
        (tmp / "a.txt").write_text("three")
    assert (model / "a.txt").read_text() == "three"
    assert sorted(os.listdir(tmp_path / "out")) == [ownership.OWNED, "model"]


def test_a_folder_creation_killed_halfway_never_blocks_the_rerun(tmp_path):
    script = f"from meerkat.core import atomic; atomic.ensure_dir({str(tmp_path / 'out' / 'logs')!r})"
    env = {**os.environ, "MEERKAT_KILL_AT": "atomic:folder-ready"}
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == -9
    atomic.ensure_dir(tmp_path / "out" / "logs")
    atomic.write_text(tmp_path / "out" / "logs" / "x.txt", "x")
    ownership.remove(tmp_path / "out")  # every folder is meerkat's, with its list: nothing blocks the cleanup
    assert list(tmp_path.iterdir()) == []
