"""Where --weights imagenet finds its file, and what happens offline when it cannot."""

import ast
import importlib.util
import shutil
from pathlib import Path

import pytest
from conftest import assert_user_error, in_fresh_process, make_samples, needs_shared

from meerkat.core.config import BackboneConfig
from meerkat.core.errors import MeerkatError, UsageError
from meerkat.embed import backbones, weights, weights_fit

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


def keras_hashes(module: str) -> dict[str, str]:
    """The hashes keras/src/applications/<module>.py checks its downloads against, by file name, read
    from the installed Keras source (without importing Keras): the file_hash of get_file("<file>", ...)
    calls (inception_v3.py), and efficientnet_v2.py's WEIGHTS_HASHES, {size ("b0", "-s"): (with top,
    without top)} for its files efficientnetv2-<b0, s>.h5 and efficientnetv2-<b0, s>_notop.h5."""
    source = Path(importlib.util.find_spec("keras").origin).parent / "src" / "applications" / f"{module}.py"
    found = {}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get_file":
            file_hash = next((k.value for k in node.keywords if k.arg == "file_hash"), None)
            if isinstance(node.args[0], ast.Constant) and isinstance(file_hash, ast.Constant):
                found[node.args[0].value] = file_hash.value
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["WEIGHTS_HASHES"]:
            for size, (top, no_top) in ast.literal_eval(node.value).items():
                name = f"efficientnetv2-{size.lstrip('-')}"
                found |= {f"{name}.h5": top, f"{name}_notop.h5": no_top}
    return found


def test_published_hashes_are_keras_own():
    """meerkat checks the weights of each backbone it offers against the very hash Keras does (none for
    MobileNetV2): a Keras that publishes another hash, or a hash copied wrong, fails here."""
    keras_own = {}
    for arch in backbones.ARCHITECTURES.values():
        module, filename = arch.weights_file(1.0).split("/")  # Keras' folder for a backbone's files: its module
        hashes = keras_hashes(module)
        if filename in hashes:
            keras_own[filename] = hashes[filename]
    assert weights.PUBLISHED_HASHES == keras_own and INCEPTION in keras_own


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
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
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
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    result = cli("run", samples, tmp_path / "out", "--backbone", "inception_v3")
    assert_user_error(result, 1, f"weights file {baked / INCEPTION}", "MEERKAT_WEIGHTS_DIR", "damaged")
    assert (baked / INCEPTION).read_bytes() == b"not the weights"


def test_offline_without_a_file_fails_with_one_line_naming_it(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
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


def wrong_weights(cli, tmp_path, weights_file, *options):
    """`meerkat run` with `weights_file` and `options`: the result, once it is known nothing else happened."""
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    result = cli("run", samples, tmp_path / "out", "--weights", weights_file, *options)
    assert not (tmp_path / "out").exists(), result.output  # refused before createdocs, before any crop is read
    return result


def test_a_text_file_as_weights_is_refused_by_name_before_any_work(tmp_path, cli):
    notes = tmp_path / "notes.h5"
    notes.write_text("the weights are on the lab server\n")
    result = wrong_weights(cli, tmp_path, notes, "--backbone", "mobilenet_v2", "--alpha", "0.5")
    assert_user_error(result, 1, f"weights file {notes}", "neither an HDF5 file", "--backbone mobilenet_v2 --alpha 0.5")


@needs_shared()
def test_a_cut_off_weights_file_or_a_zip_that_is_no_keras_file_is_refused_by_name(tmp_path):
    import zipfile

    from conftest import WEIGHTS

    cut = tmp_path / "cut.weights.h5"
    cut.write_bytes(WEIGHTS.read_bytes()[:100_000])
    with pytest.raises(MeerkatError, match=f"weights file {cut} is a damaged weights file .*truncated"):
        resolve("mobilenet_v2", 0.35, str(cut))
    with zipfile.ZipFile(tmp_path / "photos.keras", "w") as z:
        z.writestr("p.jpg", b"")
    with pytest.raises(MeerkatError, match="photos.keras is a zip without model.weights.h5"):
        resolve("mobilenet_v2", 0.35, str(tmp_path / "photos.keras"))


@needs_shared()
def test_weights_of_another_alpha_or_backbone_are_refused_by_name_before_any_work(tmp_path, cli):
    from conftest import WEIGHTS

    result = wrong_weights(cli, tmp_path, WEIGHTS, "--backbone", "mobilenet_v2", "--alpha", "0.5")
    holds = f"weights file {WEIGHTS} holds the weights of mobilenet_v2 --alpha 0.35"
    assert_user_error(result, 1, holds, "--backbone mobilenet_v2 --alpha 0.5", "pass --alpha 0.35")
    result = wrong_weights(cli, tmp_path, WEIGHTS, "--backbone", "inception_v3")
    assert_user_error(result, 1, holds, "--backbone inception_v3", "pass --backbone mobilenet_v2 --alpha 0.35")


@needs_shared()
def test_weights_of_a_network_meerkat_does_not_offer_are_refused_by_name(tmp_path, cli):
    from conftest import SHARED

    v1 = SHARED / "weights" / "mobilenet_v1_0.25_224_no_top.h5"  # Keras' own MobileNet (v1) 0.25
    result = wrong_weights(cli, tmp_path, v1, "--backbone", "mobilenet_v2", "--alpha", "0.35")
    assert_user_error(result, 1, f"weights file {v1}", "of none of meerkat's backbones", "mobilenet_v2 --alpha 0.35")


@needs_shared()
def test_preprocess_refuses_weights_of_another_alpha_before_reading_its_csv(tmp_path, cli):
    from conftest import WEIGHTS

    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    assert cli("createdocs", samples, "--output", tmp_path / "run").exit_code == 0
    docs = tmp_path / "run" / "docs"
    result = cli(
        "preprocess", "--input-path", docs / "trainingdata.csv", "--input-dict", docs / "dict.txt",
        "--output-path", tmp_path / "run" / "records" / "train", "--backbone", "mobilenet_v2", "--alpha", "1.0",
        "--weights", WEIGHTS,
    )  # fmt: skip
    assert_user_error(result, 1, f"weights file {WEIGHTS}", "mobilenet_v2 --alpha 0.35", "mobilenet_v2 --alpha 1.0")
    assert not (tmp_path / "run" / "records").exists() and not (tmp_path / "run" / "cache").exists()


@needs_shared()
@pytest.mark.slow
def test_wrong_weights_are_refused_before_tensorflow_loads(tmp_path):
    from conftest import WEIGHTS

    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    run = ["run", samples, tmp_path / "out", "--backbone", "mobilenet_v2", "--alpha", "0.5", "--weights", WEIGHTS]
    imported, _ = in_fresh_process((run, 1))
    assert not imported


@pytest.mark.slow
def test_each_backbone_has_a_signature_of_its_own_and_files_that_pass_the_check_load(tmp_path):
    import keras

    found = {}
    for name, arch in backbones.ARCHITECTURES.items():
        for alpha in backbones.MOBILENET_V2_ALPHAS if name == "mobilenet_v2" else (None,):
            model = arch.construct(alpha, None)  # as keras.applications builds it, random weights
            found[(name, alpha)] = weights_fit.signature([w.shape for w in model.weights])
    assert found == weights_fit.SIGNATURES
    assert len(set(found.values())) == len(found)

    model = backbones.ARCHITECTURES["mobilenet_v2"].construct(0.5, None)
    files = [tmp_path / "w.weights.h5", tmp_path / "w.keras", tmp_path / "whole-model.h5"]
    model.save_weights(files[0])  # Keras 3's layout
    model.save(files[1])
    model.save(files[2])  # Keras 2's layout, the weights in a whole model's file
    for path in files:
        spec = resolve("mobilenet_v2", 0.5, str(path))  # passes the check, and Keras loads it
        assert backbones.build(spec).count_params() == model.count_params()
        with pytest.raises(MeerkatError, match=f"{path} holds the weights of mobilenet_v2 --alpha 0.5, not those"):
            resolve("mobilenet_v2", 0.35, str(path))
    top = tmp_path / "top.weights.h5"  # ImageNet's classifier on top, as Keras' files without _no_top have it
    keras.applications.MobileNetV2(alpha=0.5, include_top=True, weights=None).save_weights(top)
    with pytest.raises(MeerkatError, match=f"{top} holds the weights of mobilenet_v2 --alpha 0.5 with a classifier"):
        resolve("mobilenet_v2", 0.5, str(top))
    for path, renamed, ending in ((files[0], "w.h5", ".weights.h5"), (files[2], "whole-model.weights.h5", ".h5;")):
        wrong = shutil.copy(path, tmp_path / renamed)
        with pytest.raises(MeerkatError, match=f"which Keras reads only from a name ending in {ending}"):
            resolve("mobilenet_v2", 0.5, str(wrong))


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
