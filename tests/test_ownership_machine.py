"""The ownership rule as a state machine over one output folder (issue 16).

Random sequences of a user's writes (new files, files rewritten in place, names meerkat used, edits
of meerkat's outputs, hidden names, names shaped like temporaries), meerkat's writes, rewrites of its
own outputs, replacements and removals through core.atomic, a real `meerkat demo-samples` into a
subfolder, writes SIGKILLed at every step, reruns and cleanups. The invariant: no byte a user wrote
is ever lost, meerkat's own files are whole, and every operation of meerkat's either finishes or
refuses with one line naming the user's file. Run over a folder meerkat made and over a user's
folder (where no hidden file of meerkat's may stay).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule
from typer.testing import CliRunner

from meerkat.cli import app
from meerkat.core import atomic, ownership, temporaries
from meerkat.core.errors import MeerkatError

# Few names, so that the user and meerkat meet at them often: an output name, and hidden names
# shaped like temporaries (a user's `.notes.v2.1.tmp`, and one shaped like meerkat's old ones).
NAMES = st.sampled_from(["scores.csv", ".notes.v2.1.tmp", ".scores.csv.myhost.12.tmp"])
DEMO = "demo"
USERS_CROP = f"{DEMO}/Training/Positives/mine.jpg"
pytestmark = pytest.mark.slow  # a few seconds: subprocesses killed, and demo-samples run
KILL_POINTS = st.sampled_from(["mid-write", "atomic:written", "atomic:claimed", "atomic:placed"])
# Sizes apart: a rewrite in place that keeps the size within one tick of a file system's clock is
# the rule's documented blind spot (Linux 6.13+ gives ext4, xfs, btrfs and tmpfs finer times).
USERS_BYTES = st.binary(min_size=1, max_size=6)
MEERKATS_BYTES = st.binary(min_size=7, max_size=12)

KILLED_WRITE = """
import os, signal, sys
from meerkat.core import atomic, ownership, temporaries
data = bytes.fromhex(sys.argv[2])
with atomic.atomic_open(sys.argv[1], "wb") as f:
    f.write(data[:3])
    f.flush()
    if sys.argv[3] == "mid-write":
        os.kill(os.getpid(), signal.SIGKILL)
    f.write(data[3:])
"""


class OwnershipOfOneFolder(RuleBasedStateMachine):
    meerkats_folder = True
    # Names meerkat wrote a file at, where a user's edit and meerkat's rerun meet: the hole a rule by
    # name alone leaves. With names drawn from NAMES alone, 1 run in 100 had a user write over a file
    # of meerkat's, and none had meerkat write there again.
    placed = Bundle("placed")

    def __init__(self):
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="meerkat-ownership-"))
        self.saved_state_home = os.environ.get("XDG_STATE_HOME")
        os.environ["XDG_STATE_HOME"] = str(self.root / "state")
        self.out = self.root / "out"
        if self.meerkats_folder:
            atomic.ensure_dir(self.out)
        else:
            self.out.mkdir()
        self.users: dict[str, bytes] = {}  # what the user wrote, by path below out/
        self.meerkats: dict[str, bytes] = {}  # what meerkat placed and nobody touched since
        self.killed: tuple[str, bytes] | None = None  # a killed write, to be rerun
        self.leftovers = False  # a killed write's temporary may lie in out/ until a write or cleanup there

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)
        if self.saved_state_home is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = self.saved_state_home

    def in_the_way(self, name: str) -> bool:
        return any(p == name or p.startswith(name + "/") for p in self.users)

    def refused(self, message: str, name: str) -> None:
        assert self.in_the_way(name), f"refused with nothing of the user's at {name}: {message}"
        assert "\n" not in message and "is in the way" in message, message
        assert str(self.out / name) in message, message

    # --- the user ---

    @rule(name=NAMES, data=USERS_BYTES, in_place=st.booleans())
    def user_writes(self, name, data, in_place):
        path = self.out / name
        if in_place and path.is_file():
            with open(path, "r+b") as f:  # an editor that saves in place, a script appending
                f.truncate(0)
                f.write(data)
        else:
            path.unlink(missing_ok=True)
            path.write_bytes(data)
        if name in self.meerkats:
            event("the user wrote over a file of meerkat's")
        self.users[name] = data
        self.meerkats.pop(name, None)

    @rule(name=placed, data=USERS_BYTES)
    def user_edits_meerkats_output(self, name, data):
        """scores.csv saved in place by an editor or a script: the file keeps its inode and, outside
        meerkat's folder, its extended attribute; only its size and time show it is no longer meerkat's."""
        self.user_writes(name, data, in_place=True)

    @rule(name=NAMES)
    def user_deletes(self, name):
        (self.out / name).unlink(missing_ok=True)
        self.users.pop(name, None)
        self.meerkats.pop(name, None)

    @rule(data=USERS_BYTES)
    def user_adds_a_crop_to_the_demo_folder(self, data):
        (self.out / USERS_CROP).parent.mkdir(parents=True, exist_ok=True)
        (self.out / USERS_CROP).write_bytes(data)
        self.users[USERS_CROP] = data

    # --- meerkat ---

    def write(self, name, data) -> bool:
        try:
            with atomic.atomic_open(self.out / name, "wb") as f:
                f.write(data)
        except MeerkatError as e:
            self.refused(str(e), name)
            event("a write refused")
            return False
        assert not self.in_the_way(name)
        self.meerkats[name] = data
        self.leftovers = False  # a write clears dead temporaries beside it
        return True

    @rule(target=placed, name=NAMES, data=MEERKATS_BYTES)
    def meerkat_writes(self, name, data):
        return name if self.write(name, data) else multiple()

    @initialize(target=placed, name=NAMES, data=MEERKATS_BYTES)
    def meerkat_wrote_before(self, name, data):
        """An earlier run's output is there from the start."""
        return self.meerkat_writes(name, data)

    @rule(name=placed, data=MEERKATS_BYTES)
    def meerkat_writes_its_output_again(self, name, data):
        """A rerun (--force): meerkat's own file replaced, a user's edit of it refused."""
        self.write(name, data)

    @rule(name=NAMES)
    def meerkat_removes(self, name):
        try:
            ownership.remove(self.out / name)
        except MeerkatError as e:
            self.refused(str(e), name)
            event("a removal refused")
        else:
            assert not self.in_the_way(name) and not (self.out / name).exists()
            self.meerkats.pop(name, None)

    @rule(name=NAMES, data=MEERKATS_BYTES, point=KILL_POINTS)
    def meerkat_is_killed_while_writing(self, name, data, point):
        env = {**os.environ, "MEERKAT_KILL_AT": point}
        run = subprocess.run(
            [sys.executable, "-c", KILLED_WRITE, str(self.out / name), data.hex(), point],
            env=env,
            capture_output=True,
            text=True,
        )
        if self.in_the_way(name):  # refused before any work
            assert run.returncode == 1 and "MeerkatError" in run.stderr, run.stderr
            event("a killed write refused before its work")
            return
        assert run.returncode == -9, run.stderr
        event(f"killed at {point}")
        if point == "atomic:placed":
            self.meerkats[name] = data
        self.killed, self.leftovers = (name, data), True

    @precondition(lambda self: self.killed)
    @rule()
    def rerun(self):
        self.write(*self.killed)
        self.killed = None

    @rule()
    def cleanup(self):
        temporaries.remove_stale(self.out)
        self.leftovers = False

    @rule()
    def demo_samples(self):
        result = CliRunner().invoke(
            app, ["demo-samples", str(self.out / DEMO), "--train-per-class", "2", "--test-per-class", "1"]
        )
        if result.exit_code == 0:
            assert not self.in_the_way(DEMO)
            self.leftovers = False
            return
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
        self.refused(errors[0], DEMO)
        event("demo-samples refused")

    # --- what always holds ---

    @invariant()
    def no_byte_of_the_users_is_lost(self):
        for name, data in self.users.items():
            assert (self.out / name).read_bytes() == data, name

    @invariant()
    def meerkats_files_are_whole(self):
        for name, data in self.meerkats.items():
            assert (self.out / name).read_bytes() == data, name

    @invariant()
    def no_hidden_file_of_meerkats_stays(self):
        """Only the list in meerkat's own folder; a killed write's temporary only until the next
        write or cleanup."""
        asked = {*self.users, *self.meerkats, *([ownership.OWNED] if self.meerkats_folder else [])}
        stray = {n for n in os.listdir(self.out) if n.startswith(".")} - asked
        if self.leftovers:
            stray = {n for n in stray if not temporaries.is_temp(n)}
        assert not stray, stray


class OwnershipOfAUsersFolder(OwnershipOfOneFolder):
    meerkats_folder = False


# A rule that goes by name alone (a user's edited file counted as meerkat's and replaced) fails both
# machines at every budget from 10 to 100 runs, and in 30 and 29 of 30 runs with random seeds; before
# `placed`, 8 runs of 12 steps missed it. Both machines take 7 s here (3.7 s before).
SETTINGS = settings(
    max_examples=20,
    stateful_step_count=20,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOwnershipOfMeerkatsFolder = OwnershipOfOneFolder.TestCase
TestOwnershipOfMeerkatsFolder.settings = SETTINGS
TestOwnershipOfAUsersFolder = OwnershipOfAUsersFolder.TestCase
TestOwnershipOfAUsersFolder.settings = SETTINGS
