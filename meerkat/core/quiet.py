"""Hide TensorFlow's start-up chatter (absl's `I0000 ... oneDNN custom operations are on`).

Those lines come from C++ while `tensorflow` is imported, before any log level applies, so the
only way to hide them is to point file descriptor 2 at /dev/null for the import. `hush()` wraps
the first import of tensorflow, wherever it happens, so commands that never need TensorFlow do
not pay for importing it. `--debug` leaves all of it visible.
"""

import importlib.abc
import importlib.machinery
import os
import sys
from contextlib import contextmanager


@contextmanager
def stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with stderr_to_devnull():
            self.loader.exec_module(module)

    def __getattr__(self, name):  # resource readers and the like: the real loader's
        return getattr(self.loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def hush() -> None:
    """From now on, the first `import tensorflow` runs with stderr silenced."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
