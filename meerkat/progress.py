"""Progress as plain log lines at a steady cadence: readable in a terminal, a SLURM log and CI."""

import logging
import time

log = logging.getLogger(__name__)


class Progress:
    """`update(done)` logs `NAME: done of total (pct), rate unit/s, ETA h:mm:ss` every `every` seconds."""

    def __init__(self, name: str, total: int | None, unit: str = "frames", every: float = 5.0):
        self.name, self.total, self.unit, self.every = name, total or None, unit, every
        self.start = self.last = time.perf_counter()
        self.done = 0

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, done: int) -> None:
        self.done = done
        now = time.perf_counter()
        if now - self.last < self.every:
            return
        self.last = now
        rate = self.rate()
        if self.total:
            left = max(0, self.total - done) / rate if rate else 0
            eta = time.strftime("%H:%M:%S", time.gmtime(left)).removeprefix("0")
            where = f"{done} of {self.total} {self.unit} ({100 * done / self.total:.0f} %)"
            log.info("%s: %s, %.0f %s/s, ETA %s", self.name, where, rate, self.unit, eta)
        else:
            log.info("%s: %d %s, %.0f %s/s", self.name, done, self.unit, rate, self.unit)
