"""Where --weights imagenet finds its file, and what happens offline when it cannot."""

import shutil

import pytest

from conftest import assert_user_error, make_samples
from meerkat import backbones
from meerkat.errors import MeerkatError, UsageError


def test_imagenet_weights_come_from_the_baked_in_folder_first(tmp_path, monkeypatch):
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    (tmp_path / name).write_bytes(b"weights")
    monkeypatch.setenv("MEERKAT_WEIGHTS_DIR", str(tmp_path))
    spec = backbones.resolve("mobilenet_v2", 0.35, "imagenet")
    assert spec.weights == str(tmp_path / name)
    assert spec.weights_sha256 == backbones.sha256(tmp_path / name)


def test_offline_without_a_file_fails_with_one_line_naming_it(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(2, 2), test=(1, 1))
    env = {
        "KERAS_HOME": str(tmp_path / "empty-keras"),
        "MEERKAT_WEIGHTS_DIR": str(tmp_path / "empty-weights"),
        "HTTPS_PROXY": "http://127.0.0.1:9",  # a closed port: offline, at once
        "https_proxy": "http://127.0.0.1:9",
    }
    result = cli("run", samples, tmp_path / "out", "--backbone", "inception_v3", env=env)
    assert_user_error(result, 1, "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "--weights PATH", "MEERKAT_WEIGHTS_DIR")


def test_alpha_is_checked_against_the_backbone():
    with pytest.raises(UsageError, match="only to mobilenet_v2"):
        backbones.resolve("inception_v3", 0.5, "none")
    with pytest.raises(UsageError, match="received 0.3"):
        backbones.resolve("mobilenet_v2", 0.3, "none")
    with pytest.raises(UsageError, match="unknown backbone 'resnet'"):
        backbones.resolve("resnet", None, "none")


def test_weights_of_another_backbone_are_refused_by_name(tmp_path):
    from conftest import WEIGHTS

    if not WEIGHTS.exists():
        pytest.skip(f"shared weights not found at {WEIGHTS}")
    spec = backbones.resolve("mobilenet_v2", 1.0, str(WEIGHTS))  # the file is for alpha 0.35
    with pytest.raises(MeerkatError, match="does not fit backbone mobilenet_v2 --alpha 1.0"):
        backbones.build(spec)


def test_changed_weights_file_is_refused(tmp_path):
    from conftest import WEIGHTS

    if not WEIGHTS.exists():
        pytest.skip(f"shared weights not found at {WEIGHTS}")
    copy = str(shutil.copy(WEIGHTS, tmp_path / "w.weights.h5"))
    spec = backbones.resolve("mobilenet_v2", 0.35, copy)
    (tmp_path / "w.weights.h5").write_bytes(b"different")
    with pytest.raises(MeerkatError, match="changed since these records were made"):
        backbones.build(spec)


def test_random_weights_come_with_a_loud_warning(caplog, monkeypatch):
    import logging

    monkeypatch.setattr(logging.getLogger("meerkat"), "propagate", True)  # the CLI turns it off
    spec = backbones.resolve("mobilenet_v2", 0.35, "none")
    assert spec.weights == "none" and spec.weights_sha256 is None
    assert "will NOT be useful" in caplog.text
