"""Progress: a live bar on a terminal, plain log lines at a steady cadence everywhere else.

On a terminal (stderr is a TTY, not --debug) a rich bar on stderr shows the name, the bar,
done/total, the rate and the ETA; it is transient, so when the work ends only the log lines stay.
Log lines printed meanwhile go above the bar, never through it. Elsewhere (a SLURM log, CI, a pipe)
`update` logs `NAME: done of total (pct), rate unit/s, ETA h:mm:ss` at most once every `every`
seconds, so a long job's log stays readable.

Several Progress objects may be open at once (an epoch bar around a batch bar): they share one
live display, which stops when the last one closes. A Progress closes with `close()`, at the end of
a `with` block, or when it is garbage collected (a caller's local going out of scope).
"""

import atexit
import logging
import os
import sys
import threading
import time

log = logging.getLogger(__name__)

BAR_REFRESH_S = 0.1  # at most this often is a bar told about an update


def format_duration(seconds: float) -> str:
    """h:mm:ss, hours unbounded (a long job's ETA is not cut at 24 h)."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def format_rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}" if rate >= 1 else f"{rate:.2f}"


def use_bar() -> bool:
    """A bar only on a terminal, and not with --debug, whose TensorFlow logs would cut through it."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False
    return tty and os.environ.get("TERM") != "dumb" and not logging.getLogger("meerkat").isEnabledFor(logging.DEBUG)


class _Bars:
    """The one rich live display that every open bar shares."""

    def __init__(self):
        self.lock = threading.RLock()
        self.progress = None

    def add(self, name: str, total: int | None, unit: str, done: int):
        with self.lock:
            if self.progress is None:
                self.progress = _make_progress()
                self.progress.start()
            return self.progress.add_task(name, total=total, completed=done, unit=unit)

    def update(self, task, done: int) -> None:
        with self.lock:
            if self.progress is not None:
                self.progress.update(task, completed=done)

    def remove(self, task) -> None:
        with self.lock:
            if self.progress is None:
                return
            self.progress.remove_task(task)
            if not self.progress.tasks:
                self.stop()

    def stop(self) -> None:
        with self.lock:
            if self.progress is not None:
                progress, self.progress = self.progress, None
                progress.stop()


def _make_progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            if not speed:
                return Text("")
            return Text(f"{format_rate(speed)} {task.fields['unit']}/s", style="progress.data.speed")

    class EtaColumn(TimeRemainingColumn):
        def render(self, task):
            text = super().render(task)
            return Text.assemble("ETA ", text) if task.total else Text("")

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        EtaColumn(),
        console=Console(stderr=True),
        transient=True,
        refresh_per_second=4,
        # Log lines to stdout pass above the bar when stdout is the same terminal; when it is a
        # file (`> run.log`), they go there untouched.
        redirect_stdout=sys.stdout.isatty() if sys.stdout else False,
        redirect_stderr=True,
    )


_bars = _Bars()
atexit.register(_bars.stop)  # leave the terminal's cursor visible, whatever happened


class Progress:
    """`update(done)` with the count done so far: a bar on a terminal, else a log line every `every` s.

    `total` None (or 0) means unknown: no percentage or ETA. `initial` is the count already done
    when the work starts (a resumed run), left out of the rate.
    """

    def __init__(self, name: str, total: int | None, unit: str = "frames", every: float = 5.0, initial: int = 0):
        self.name, self.total, self.unit, self.every = name, total or None, unit, every
        self.start = self.last = self.pushed = time.perf_counter()
        self.initial = self.done = initial
        self._task = _bars.add(name, self.total, unit, initial) if use_bar() else None

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def update(self, done: int) -> None:
        self.done = done
        now = time.perf_counter()
        if self._task is not None:
            if now - self.pushed >= BAR_REFRESH_S or (self.total and done >= self.total):
                self.pushed = now
                _bars.update(self._task, done)
            return
        if now - self.last < self.every:
            return
        self.last = now
        rate = self.rate()
        if self.total:
            eta = format_duration(max(0, self.total - done) / rate) if rate else "unknown"
            where = f"{done} of {self.total} {self.unit} ({100 * done / self.total:.0f} %)"
            log.info("%s: %s, %s %s/s, ETA %s", self.name, where, format_rate(rate), self.unit, eta)
        else:
            log.info("%s: %d %s, %s %s/s", self.name, done, self.unit, format_rate(rate), self.unit)

    def close(self) -> None:
        """Remove the bar (nothing to do for log lines); safe to call twice."""
        task, self._task = getattr(self, "_task", None), None
        if task is not None:
            _bars.remove(task)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit, modules may be half torn down
            pass
