"""Progress: plain lines at a steady cadence without a terminal, a rich bar on one."""

import io
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
import types

import pytest
from conftest import embed, make_samples

from meerkat.core import progress as progress_mod
from meerkat.core.progress import Progress, format_duration, use_bar


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def lines(monkeypatch):
    """The progress log lines, with stderr not a terminal (even under `pytest -s`)."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    handler = Lines()
    logger = logging.getLogger("meerkat.core.progress")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def clock(monkeypatch):
    """A fake perf_counter for meerkat.core.progress: `clock.now` is what it returns."""
    fake = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(progress_mod, "time", types.SimpleNamespace(perf_counter=lambda: fake.now))
    return fake


def test_without_a_terminal_a_line_at_most_every_interval(lines, clock):
    p = Progress("embed", 120, "images", every=5)
    for done in range(1, 121):  # 2 images/s for a minute
        clock.now += 0.5
        p.update(done)
    p.close()
    assert len(lines) == 12, lines  # at 5 s, 10 s, ... 60 s: never more than one per 5 s
    assert lines[0] == "embed: 10 of 120 images (8 %), 2.0 images/s, ETA 0:00:55"
    assert lines[-1] == "embed: 120 of 120 images (100 %), 2.0 images/s, ETA 0:00:00"


def test_a_fast_loop_logs_nothing_before_the_first_interval(lines, clock):
    p = Progress("hash", 10_000, "files", every=15)
    for done in range(1, 10_001):
        clock.now += 0.001  # 10 s in all
        p.update(done)
    p.close()
    assert lines == []


def test_an_unknown_total_gives_count_and_rate_and_a_resumed_count_is_left_out_of_the_rate(lines, clock):
    p = Progress("video.mp4", None, "frames", every=5)
    for done in range(1, 301):
        clock.now += 0.125
        p.update(done)
    assert lines[0] == "video.mp4: 40 frames, 8.0 frames/s"
    lines.clear()
    p = Progress("train", 30, "epochs", every=5, initial=10)
    for done in range(11, 31):
        clock.now += 2.5
        p.update(done)
    assert lines[0] == "train: 12 of 30 epochs (40 %), 0.40 epochs/s, ETA 0:00:45"


@pytest.mark.slow
def test_real_sleeps_keep_the_cadence(lines):
    p = Progress("sleepy", 100, "items", every=0.2)
    start = time.perf_counter()
    for done in range(1, 101):
        time.sleep(0.01)
        p.update(done)
    elapsed = time.perf_counter() - start
    assert 1 <= len(lines) <= elapsed / 0.2 + 1, lines


def test_durations_past_a_day_are_not_cut():
    assert format_duration(5) == "0:00:05"
    assert format_duration(3 * 86400 + 61) == "72:01:01"


def test_a_bar_only_on_a_terminal_and_not_with_debug(monkeypatch):
    tty = types.SimpleNamespace(isatty=lambda: True)
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setenv("TERM", "xterm")
    logger = logging.getLogger("meerkat")
    old_level = logger.level
    try:
        logger.setLevel(logging.INFO)
        assert use_bar()
        logger.setLevel(logging.DEBUG)
        assert not use_bar()
    finally:
        logger.setLevel(old_level)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not use_bar()
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setattr(sys, "stderr", tty)
    assert not use_bar()


SCRIPT = r"""
import logging, time
from meerkat.core.logs import configure_logging
from meerkat.core.progress import Progress

configure_logging(False)
log = logging.getLogger("meerkat.script")

def forgotten():  # never closed: clips and scan leave theirs to the garbage collector
    p = Progress("video.mp4", 10, "frames", every=0.05)
    for i in range(1, 11):
        time.sleep(0.02)
        p.update(i)

with Progress("epochs", 3, "epochs", every=0.05) as outer:
    for epoch in range(1, 4):
        with Progress("embed", 20, "images", every=0.05) as inner:
            for i in range(1, 21):
                time.sleep(0.02)
                inner.update(i)
                if epoch == 2 and i == 10:
                    log.info("LOG LINE in the middle")
        outer.update(epoch)
forgotten()
log.info("AFTER the bars")
"""


CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal control sequences: cursor moves, erase, colours


def run_on_a_pty(script: str, timeout: float = 60.0) -> tuple[int, str]:
    """Run `python -c script` with stdout and stderr on a pseudo-terminal; return (exit code, output)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_on_a_terminal_a_bar_that_log_lines_pass_and_that_ends_cleanly():
    code, out = run_on_a_pty(SCRIPT)
    assert code == 0, out
    assert "━" in out, out  # rich's bar
    assert "embed" in out and "/20" in out and "images/s" in out and "ETA" in out, out
    assert "video.mp4" in out and "epochs" in out
    # The plain lines are not printed on a terminal: the bar replaces them.
    assert "of 20 images (" not in out, out
    # The log line stands on a line of its own, not spliced into a bar.
    line = next(s for s in out.replace("\r\n", "\n").split("\n") if "LOG LINE" in s)
    assert CSI.sub("", line.rstrip("\r").split("\r")[-1]) == "LOG LINE in the middle", repr(line)
    # Transient: after the last bar the cursor is shown again and only the log line follows.
    tail = out[out.rindex("\x1b[?25h") :]
    assert "━" not in tail and CSI.sub("", tail).strip() == "AFTER the bars", repr(tail)
    assert "Traceback" not in out and "LiveError" not in out, out


@pytest.mark.slow
def test_piped_output_has_plain_lines_and_no_terminal_codes():
    script = SCRIPT.replace("every=0.05", "every=0.1")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "\x1b" not in out and "━" not in out, out
    assert "embed: " in result.stdout and "images/s" in result.stdout
    assert result.stdout.splitlines()[-1] == "AFTER the bars"
    # Each 20-image pass takes about 0.4 s: at most one line per 0.1 s of it.
    assert len([s for s in result.stdout.splitlines() if s.startswith("embed: ")]) <= 3 * 6, result.stdout


def test_preprocess_reports_images_rate_and_eta_without_a_terminal(tmp_path, cli, monkeypatch):
    from meerkat.embed import preprocess
    from meerkat.samples import createdocs

    monkeypatch.setattr(preprocess, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(createdocs, "PROGRESS_EVERY_S", 0.0)
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    copy = samples / "Testing" / "Positives" / "copy.jpg"  # the duplicate check hashes files that share a size
    copy.write_bytes((samples / "Training" / "Positives" / "p0.jpg").read_bytes())
    result = cli("createdocs", samples, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "Checking for duplicates: 11 of 11 files (100 %)" in result.output, result.output
    docs = tmp_path / "out" / "docs"
    result = embed(cli, docs, tmp_path / "rec" / "train", "--embed-batch-size", "2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "train-00000-of-00001: reading: 6 of 6 files (100 %)" in out, out
    line = next(s for s in out.splitlines() if "train-00000-of-00001: embedding: 6 of 6 images (100 %)" in s)
    assert "images/s, ETA 0:00:00" in line, line
