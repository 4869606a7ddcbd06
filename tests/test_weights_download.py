"""A Keras weights download: whole under Keras' name or absent, and no file of meerkat's in Keras' folder.

Keras itself is replaced by a stand-in whose get_file writes what a download would, so these run
offline and fast; the real get_file's arguments are the ones meerkat passes.
"""

import os
import subprocess
import sys
import types

import pytest
from conftest import WEIGHTS

from meerkat.core.errors import MeerkatError
from meerkat.embed import backbones, weights

pytestmark = pytest.mark.skipif(not WEIGHTS.exists(), reason=f"shared weights not found at {WEIGHTS}")
REMOTE = backbones.ARCHITECTURES["mobilenet_v2"].weights_file(0.35)
FILENAME = REMOTE.rsplit("/", 1)[1]


def fake_keras(data: bytes, fail: BaseException | None = None):
    """A `keras` whose get_file writes `data` where Keras' would, then raises `fail` if given."""

    def get_file(fname, origin, cache_subdir, cache_dir, file_hash, force_download=False):
        target = os.path.join(cache_dir, cache_subdir, fname)
        with open(target, "wb") as f:
            f.write(data)
        if fail:
            raise fail
        return target

    return types.SimpleNamespace(utils=types.SimpleNamespace(get_file=get_file))


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    for k, v in {"KERAS_HOME": tmp_path / "keras", "MEERKAT_WEIGHTS_DIR": tmp_path / "baked"}.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "keras"


def files_in(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_download_lands_whole_and_leaves_no_file_of_meerkats_in_keras_folder(keras_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", fake_keras(WEIGHTS.read_bytes()))
    path, digest = weights.locate("imagenet", REMOTE, "mobilenet_v2")
    assert path == str(keras_home / "models" / FILENAME) and digest == weights.sha256(WEIGHTS)
    assert files_in(keras_home) == ["models", f"models/{FILENAME}"]


def test_a_download_cut_short_leaves_nothing_under_keras_name(keras_home, monkeypatch):
    half = WEIGHTS.read_bytes()[:100_000]
    monkeypatch.setitem(sys.modules, "keras", fake_keras(half, OSError("connection reset")))
    with pytest.raises(MeerkatError, match="the download failed"):
        weights.locate("imagenet", REMOTE, "mobilenet_v2")
    monkeypatch.setitem(sys.modules, "keras", fake_keras(half))  # the server sends part of it and stops
    with pytest.raises(MeerkatError, match="the download failed"):
        weights.locate("imagenet", REMOTE, "mobilenet_v2")
    assert files_in(keras_home) == ["models"]


KILLED = f"""
import os, signal, sys, types
from meerkat.embed import weights
def get_file(fname, origin, cache_subdir, cache_dir, file_hash, force_download=False):
    with open(os.path.join(cache_dir, cache_subdir, fname), "wb") as f:
        f.write(b"half a download")
    os.kill(os.getpid(), signal.SIGKILL)
sys.modules["keras"] = types.SimpleNamespace(utils=types.SimpleNamespace(get_file=get_file))
weights.locate("imagenet", {REMOTE!r}, "mobilenet_v2")
"""


def test_a_download_killed_midway_is_fetched_again_and_leaves_nothing_behind(keras_home, monkeypatch):
    assert subprocess.run([sys.executable, "-c", KILLED]).returncode == -9
    assert not (keras_home / "models" / FILENAME).exists()  # the part lies under a marked temporary name
    monkeypatch.setitem(sys.modules, "keras", fake_keras(WEIGHTS.read_bytes()))
    assert weights.locate("imagenet", REMOTE, "mobilenet_v2")[0] == str(keras_home / "models" / FILENAME)
    assert files_in(keras_home) == ["models", f"models/{FILENAME}"]  # the killed one's temporary is gone
