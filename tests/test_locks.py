"""The output lock is a kernel lock: a dead holder never keeps it, a live one always does.
And temporaries of live writers (array tasks) survive a cleanup; those of dead ones do not."""

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import TINY, assert_user_error, make_samples

from meerkat.core import atomic, locks, temporaries

HOLD = """
import sys, time
from meerkat.core import locks
with locks.output_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(120)
"""


def holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


@pytest.mark.slow
def test_a_live_holder_is_refused_by_pid_and_released_when_it_dies(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    out = tmp_path / "out"
    out.mkdir()
    proc = holder(out)
    try:
        assert_user_error(
            cli("run", samples, out, *TINY, "--epochs", 1), 1, "is in use by another meerkat run", f"pid {proc.pid}"
        )
    finally:
        proc.kill()
        proc.wait()
    # Killed, it left its lock file behind with its pid: that must not matter.
    assert json.loads((out / ".meerkat.lock").read_text())["pid"] == proc.pid
    result = cli("run", samples, out, *TINY, "--epochs", 1)
    assert result.exit_code == 0, result.output
    assert "ended without finishing" in result.output
    assert not (out / ".meerkat.lock").exists()


@pytest.mark.slow
def test_a_run_killed_as_pid_1_on_another_host_does_not_block_the_rerun(tmp_path):
    """What `docker kill` or a SLURM job killed on another node leaves: a lock naming pid 1 on a host
    that no longer exists. The rerun takes over and resumes."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to play a container (own pid and host name)")
    samples = make_samples(tmp_path / "S", train=(4, 4), test=(2, 2))
    out = tmp_path / "out"
    run = [sys.executable, "-m", "meerkat", "run", str(samples), str(out), *TINY, "--epochs", "3", "--batch-size", "4"]
    container = ["unshare", "--uts", "--pid", "--fork", "sh", "-c", 'hostname container-a && exec "$@"', "sh", *run]
    killed = subprocess.run(
        container, capture_output=True, text=True, env={**os.environ, "MEERKAT_KILL_AT": "train:epoch-2"}
    )
    assert killed.returncode == 137, killed.stderr  # pid 1 exits with 128 + SIGKILL
    assert json.loads((out / ".meerkat.lock").read_text()) | {"started": 0} == {
        "pid": 1,
        "host": "container-a",
        "started": 0,
    }
    again = subprocess.run(run, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "Resuming training from the checkpoint at step 4 of 6" in again.stdout
    assert "(pid 1 on container-a) ended without finishing" in again.stderr


@pytest.mark.parametrize("refusal", [errno.ENOLCK, errno.EBADF], ids=["nolock", "nfs-read-only-fd"])
def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch, caplog, refusal):
    import fcntl
    import logging

    def refuse(fd, op):
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(fcntl, "flock", refuse)
    monkeypatch.setattr(logging.getLogger("meerkat"), "propagate", True)
    with locks.output_lock(tmp_path):
        assert (tmp_path / ".meerkat.lock").is_file()
    assert "does not support locks" in caplog.text
    # Writes go on; a cleaner that cannot tell a live writer's temporary from a dead one's keeps it.
    with atomic.atomic_dir(tmp_path / "model") as tmp:
        (tmp / "a.txt").write_text("a")
        assert temporaries.remove_stale(tmp_path) == 0 and tmp.is_dir()
    assert (tmp_path / "model" / "a.txt").read_text() == "a"


WRITE = """
import sys, time
from meerkat.core import atomic, ownership, temporaries
with atomic.atomic_open(sys.argv[1]) as f:
    f.write("partial")
    f.flush()
    print("writing", flush=True)
    time.sleep(120)
"""


def test_cleanup_leaves_a_live_writers_temporary_and_removes_a_dead_ones(tmp_path):
    records = tmp_path / "records"
    worker = subprocess.Popen(
        [sys.executable, "-c", WRITE, str(records / "train-00001-of-00002.tfrecord.gz")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout.readline().strip() == "writing"
    temps = [p for p in records.iterdir() if temporaries.is_temp(p)]
    assert len(temps) == 1
    try:
        assert temporaries.remove_stale(records) == 0
        assert temps[0].exists(), "a live array task's work in progress was deleted"
    finally:
        worker.kill()
        worker.wait()
    assert temps[0].exists()
    assert temporaries.remove_stale(records) == 1
    assert not temps[0].exists()


@pytest.mark.parametrize("make_dir", [True, False])
def test_a_temporary_another_cleaner_takes_before_it_is_locked_is_given_up_for_a_new_one(
    tmp_path, monkeypatch, make_dir
):
    """Array tasks starting together: one's cleanup may lock and delete another's temporary in the
    instant between its creation and its lock (seen as 'cannot write to shared/cache')."""
    lock, raced = temporaries.try_lock, []

    def cleaner_first(fd):
        if not raced:  # another task's cleanup, in that instant
            raced.append(None)
            raced[0] = temporaries.remove_stale(tmp_path)
        return lock(fd)

    monkeypatch.setattr(temporaries, "try_lock", cleaner_first)
    with temporaries.held(tmp_path / "cache", make_dir=make_dir) as tmp:
        assert tmp.exists() and raced == [1]
    assert os.listdir(tmp_path) == []
