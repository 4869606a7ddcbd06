"""Where --weights imagenet finds its file, and what happens offline when it cannot."""

import shutil

import pytest
from conftest import assert_user_error, make_samples

from meerkat.core.config import BackboneConfig
from meerkat.core.errors import MeerkatError, UsageError
from meerkat.embed import backbones, weights

MOBILENET_035 = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
INCEPTION = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def resolve(name, alpha, weights_option):
    return backbones.resolve(BackboneConfig(name, alpha, weights_option))


OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # a closed port: fails at once


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Empty weights folder and Keras cache, no network: returns (weights dir, Keras cache)."""
    env = {"MEERKAT_WEIGHTS_DIR": str(tmp_path / "baked"), "KERAS_HOME": str(tmp_path / "keras"), **OFFLINE}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for d in ("baked", "keras/models"):
        (tmp_path / d).mkdir(parents=True)
    return tmp_path / "baked", tmp_path / "keras" / "models"


def test_imagenet_weights_come_from_the_baked_in_folder_first(offline):
    from conftest import WEIGHTS

    if not WEIGHTS.exists():
        pytest.skip(f"shared weights not found at {WEIGHTS}")
    baked, cache = offline
    for d in offline:  # a whole HDF5 file: Keras publishes no hash for MobileNetV2
        shutil.copy(WEIGHTS, d / MOBILENET_035)
    spec = resolve("mobilenet_v2", 0.35, "imagenet")
    assert spec.weights == str(baked / MOBILENET_035)
    assert spec.weights_sha256 == weights.sha256(WEIGHTS)
    (baked / MOBILENET_035).unlink()
    assert resolve("mobilenet_v2", 0.35, "imagenet").weights == str(cache / MOBILENET_035)


def test_weights_hash_check_against_a_hash_worked_out_here(tmp_path, monkeypatch):
    path = tmp_path / INCEPTION
    path.write_bytes(b"abc")
    # md5(b"abc") and sha256(b"abc"), the RFC 1321 and FIPS 180-2 test vectors.
    for digest in (
        "900150983cd24fb0d6963f7d28e17f72",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ):
        monkeypatch.setitem(weights.PUBLISHED_HASHES, INCEPTION, digest)
        assert weights.weights_problem(path) is None
    monkeypatch.setitem(weights.PUBLISHED_HASHES, INCEPTION, "0" * 32)
    assert "its md5 is 900150983cd24fb0d6963f7d28e17f72" in weights.weights_problem(path)


def test_published_hashes_are_keras_own():
    # Copied from keras/src/applications/inception_v3.py and efficientnet_v2.py.
    assert weights.PUBLISHED_HASHES == {
        INCEPTION: "bcbd6486424b2319ff4ef7d526e38f63",
        "efficientnetv2-b0_notop.h5": "893217f2bb855e2983157299931e43ff",
    }
    for name, arch in backbones.ARCHITECTURES.items():
        filename = arch.weights_file(1.0).rsplit("/", 1)[1]
        assert (filename in weights.PUBLISHED_HASHES) == (name != "mobilenet_v2")


def test_a_cached_file_that_matches_the_published_hash_is_used(offline, monkeypatch):
    _, cache = offline
    (cache / INCEPTION).write_bytes(b"abc")
    monkeypatch.setitem(weights.PUBLISHED_HASHES, INCEPTION, "900150983cd24fb0d6963f7d28e17f72")
    spec = resolve("inception_v3", None, "imagenet")
    assert spec.weights == str(cache / INCEPTION) and (cache / INCEPTION).exists()


def cut_off_download(path, data: bytes):
    """What a download of meerkat's that was cut short leaves: part of the file, claimed as meerkat's."""
    from meerkat.core import ownership

    path.write_bytes(data)
    ownership.claim_growing(path)


def test_a_truncated_download_in_the_keras_cache_is_removed(offline, tmp_path, cli):
    _, cache = offline
    cut_off_download(cache / INCEPTION, b"\x89HDF\r\n\x1a\n" + bytes(1000))
    samples = make_samples(tmp_path / "S", train=(2, 2), test=(1, 1))
    result = cli("run", samples, tmp_path / "out", "--backbone", "inception_v3")
    assert_user_error(result, 1, f"cached file {cache / INCEPTION} was corrupt", "removed", "--weights PATH")
    assert not (cache / INCEPTION).exists()


def test_a_cut_off_mobilenet_file_without_a_published_hash_is_caught_too(offline):
    from conftest import WEIGHTS

    if not WEIGHTS.exists():
        pytest.skip(f"shared weights not found at {WEIGHTS}")
    _, cache = offline
    cut_off_download(cache / MOBILENET_035, WEIGHTS.read_bytes()[:100_000])
    with pytest.raises(MeerkatError, match=f"cached file {cache / MOBILENET_035} was corrupt .*truncated file"):
        resolve("mobilenet_v2", 0.35, "imagenet")
    assert not (cache / MOBILENET_035).exists()


def test_a_damaged_file_meerkat_did_not_download_is_named_and_kept(offline):
    _, cache = offline
    (cache / INCEPTION).write_bytes(b"someone else's file")
    with pytest.raises(MeerkatError, match=f"{cache / INCEPTION} is damaged .* meerkat did not download it"):
        resolve("inception_v3", None, "imagenet")
    assert (cache / INCEPTION).read_bytes() == b"someone else's file"


def test_a_bad_file_in_the_weights_dir_is_named_and_kept(offline, tmp_path, cli):
    baked, _ = offline
    (baked / INCEPTION).write_bytes(b"not the weights")
    samples = make_samples(tmp_path / "S", train=(2, 2), test=(1, 1))
    result = cli("run", samples, tmp_path / "out", "--backbone", "inception_v3")
    assert_user_error(result, 1, f"weights file {baked / INCEPTION}", "MEERKAT_WEIGHTS_DIR", "damaged")
    assert (baked / INCEPTION).read_bytes() == b"not the weights"


def test_offline_without_a_file_fails_with_one_line_naming_it(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(2, 2), test=(1, 1))
    env = {
        "KERAS_HOME": str(tmp_path / "empty-keras"),
        "MEERKAT_WEIGHTS_DIR": str(tmp_path / "empty-weights"),
        "HTTPS_PROXY": "http://127.0.0.1:9",  # a closed port: offline, at once
        "https_proxy": "http://127.0.0.1:9",
    }
    result = cli("run", samples, tmp_path / "out", "--backbone", "inception_v3", env=env)
    assert_user_error(
        result, 1, "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "--weights PATH", "MEERKAT_WEIGHTS_DIR"
    )


def test_alpha_is_checked_against_the_backbone():
    with pytest.raises(UsageError, match="only to mobilenet_v2"):
        resolve("inception_v3", 0.5, "none")
    with pytest.raises(UsageError, match="received 0.3"):
        resolve("mobilenet_v2", 0.3, "none")
    with pytest.raises(UsageError, match="unknown backbone 'resnet'"):
        resolve("resnet", None, "none")


@pytest.mark.slow
def test_weights_of_another_backbone_are_refused_by_name(tmp_path):
    from conftest import WEIGHTS

    if not WEIGHTS.exists():
        pytest.skip(f"shared weights not found at {WEIGHTS}")
    spec = resolve("mobilenet_v2", 1.0, str(WEIGHTS))  # the file is for alpha 0.35
    with pytest.raises(MeerkatError, match="does not fit backbone mobilenet_v2 --alpha 1.0"):
        backbones.build(spec)


def test_changed_weights_file_is_refused(tmp_path):
    from conftest import WEIGHTS

    if not WEIGHTS.exists():
        pytest.skip(f"shared weights not found at {WEIGHTS}")
    copy = str(shutil.copy(WEIGHTS, tmp_path / "w.weights.h5"))
    spec = resolve("mobilenet_v2", 0.35, copy)
    (tmp_path / "w.weights.h5").write_bytes(b"different")
    with pytest.raises(MeerkatError, match="changed since these records were made"):
        backbones.build(spec)


def test_random_weights_come_with_a_loud_warning(caplog, monkeypatch):
    import logging

    monkeypatch.setattr(logging.getLogger("meerkat"), "propagate", True)  # the CLI turns it off
    spec = resolve("mobilenet_v2", 0.35, "none")
    assert spec.weights == "none" and spec.weights_sha256 is None
    assert "will NOT be useful" in caplog.text
