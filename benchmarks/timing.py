"""What the benchmarks time with: wall and CPU seconds of a with-block."""

import time


class Timer:
    """Wall and CPU seconds (this process, all of its threads) of a with-block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    @property
    def seconds(self) -> tuple[float, float]:
        return self.wall, self.cpu
