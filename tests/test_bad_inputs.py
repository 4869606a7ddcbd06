"""Messy camera-trap exports: every kind of file a user has sent us, each used or skipped with a reason."""

import csv
import functools
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY, assert_user_error, embed, fit, make_samples, write_image
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from meerkat.core.errors import MeerkatError
from meerkat.core.settings import MAX_PIXELS


def rgb(seed=0, h=60, w=80):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def pil_bytes(image: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    image.save(b, fmt, **kw)
    return b.getvalue()


def huge_png(width=20000, height=20000) -> bytes:
    """A real, valid 1-bit PNG of width x height (about 50 kB: all black)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + bytes((width + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def animated_gif(frames: int, side: int) -> bytes:
    """`frames` frames of side x side pixels, frame i all grey (7i + 3) % 256: a few kB a frame on
    disk, side² bytes a frame to a decoder that holds them all."""
    grey = [v for i in range(256) for v in (i, i, i)]
    images = []
    for i in range(frames):
        image = Image.new("P", (side, side), (7 * i + 3) % 256)
        image.putpalette(grey)
        images.append(image)
    return pil_bytes(images[0], "GIF", save_all=True, append_images=images[1:], optimize=False)


# Run in a process of its own, `python -c PEAK_PROBE SETUP CALL`: SETUP, then how far CALL raises the
# peak resident memory above what was resident before it, in MB. In the test's own process, memory
# that Pillow freed there would be reused and hide the growth.
PEAK_PROBE = """
import sys
from pathlib import Path

def mb(field):
    return int(next(x for x in open("/proc/self/status") if x.startswith(field + ":")).split()[1]) / 1024

exec(sys.argv[1])
Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from what is resident now
before = mb("VmRSS")
exec(sys.argv[2])
print(mb("VmHWM") - before)
"""


def peak_rss_growth_mb(setup: str, call: str) -> float:
    proc = subprocess.run([sys.executable, "-c", PEAK_PROBE, setup, call], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.split()[-1])


USABLE = {
    "png named.jpg": lambda: cv2.imencode(".png", rgb(1))[1].tobytes(),
    "gif named.jpg": lambda: pil_bytes(Image.fromarray(rgb(2)), "GIF"),
    "own.png": lambda: cv2.imencode(".png", rgb(3))[1].tobytes(),
    "own.gif": lambda: pil_bytes(Image.fromarray(rgb(4)), "GIF"),
    "own.bmp": lambda: cv2.imencode(".bmp", rgb(5))[1].tobytes(),
    "own.tif": lambda: cv2.imencode(".tiff", rgb(6))[1].tobytes(),
    "tiff named.jpg": lambda: cv2.imencode(".tiff", rgb(7))[1].tobytes(),
    "own.webp": lambda: cv2.imencode(".webp", rgb(8))[1].tobytes(),
    "cmyk.jpg": lambda: pil_bytes(Image.fromarray(rgb(9)).convert("CMYK"), "JPEG"),
    "gray.jpg": lambda: cv2.imencode(".jpg", rgb(10)[:, :, 0])[1].tobytes(),
    "deep16.png": lambda: cv2.imencode(".png", rgb(11).astype(np.uint16) * 257)[1].tobytes(),
    "alpha.png": lambda: cv2.imencode(".png", np.dstack([rgb(12), rgb(13)[:, :, :1]]))[1].tobytes(),
    "animated.gif": lambda: pil_bytes(
        Image.fromarray(rgb(14)), "GIF", save_all=True, append_images=[Image.fromarray(rgb(15))]
    ),
    "one pixel.jpg": lambda: cv2.imencode(".jpg", rgb(16, 1, 1))[1].tobytes(),
    "UPPER.JPEG": lambda: cv2.imencode(".jpg", rgb(17))[1].tobytes(),
    "colibrí, ünïcode.jpg": lambda: cv2.imencode(".jpg", rgb(18))[1].tobytes(),
    "exif rotated.jpg": lambda: pil_bytes(Image.fromarray(rgb(19)), "JPEG", exif=_exif_orientation(6)),
}
SKIPPED = {
    "truncated.jpg": (lambda: cv2.imencode(".jpg", rgb(20, 200, 200))[1].tobytes()[:3000], "cannot decode"),
    "zero.jpg": (lambda: b"", "empty file (0 bytes)"),
    "page.jpg": (
        lambda: b"<!DOCTYPE html><html><body>404</body></html>",
        "not an image (text starting '<!DOCTYPE html><html'",
    ),
    "huge.png": (huge_png, f"20000x20000 pixels is over the limit of {MAX_PIXELS // 1_000_000} megapixels"),
}


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    samples = make_samples(root / "Samples", train=(3, 8), test=(2, 2))
    pos = samples / "Training" / "Positives"
    for name, make in USABLE.items():
        (pos / name).write_bytes(make())
    for name, (make, _) in SKIPPED.items():
        (pos / name).write_bytes(make())
    (pos / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (pos / "._p0.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    elsewhere = write_image(root / "elsewhere" / "linked.jpg", seed=30, positive=True)
    (pos / "link to file.jpg").symlink_to(elsewhere)
    write_image(root / "album" / "in linked folder.jpg", seed=31, positive=True)
    (pos / "linked folder").symlink_to(root / "album", target_is_directory=True)
    (pos / "loop").symlink_to(pos, target_is_directory=True)  # must not recurse forever, nor count a crop twice

    out = root / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "meerkat", "run", str(samples), str(out), *TINY, "--epochs", "1", "--no-balance"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return samples, out, proc


def test_run_finishes_with_exit_0(messy):
    _, _, proc = messy
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_decodable_image_is_used_and_counts_add_up(messy):
    samples, out, _ = messy
    manifest = json.loads((out / "records" / "train-00000-of-00001.json").read_text())
    listed = list(csv.reader(open(out / "docs" / "trainingdata.csv", encoding="utf-8")))
    assert manifest["records"] + manifest["skipped"] == len(listed)
    skipped = dict(list(csv.reader(open(out / "records" / "train-00000-of-00001.skipped.csv", encoding="utf-8")))[1:])
    used = {Path(p).name for p, _ in listed if p not in skipped}
    assert set(USABLE) <= used
    assert manifest["records"] == len(used) == 3 + 8 + len(USABLE)


def test_each_unusable_file_is_skipped_with_its_reason(messy, capsys):
    samples, out, proc = messy
    skipped = dict(list(csv.reader(open(out / "records" / "train-00000-of-00001.skipped.csv", encoding="utf-8")))[1:])
    by_name = {Path(p).name: reason for p, reason in skipped.items()}
    assert set(by_name) == set(SKIPPED)
    for name, (_, reason) in SKIPPED.items():
        assert by_name[name].startswith(reason), (name, by_name[name])
        assert name in proc.stderr
    with capsys.disabled():
        print("\nskipped files and reasons:")
        for name, reason in by_name.items():
            print(f"  {name}: {reason}")


def test_hidden_and_macos_files_and_links_out_of_the_class_are_ignored_not_listed(messy):
    samples, out, _ = messy
    ignored = {Path(p).name: reason for p, reason in csv.reader(open(out / "docs" / "ignored.txt", encoding="utf-8"))}
    assert ignored[".DS_Store"] == "hidden file" and ignored["._p0.jpg"] == "macOS resource fork (._ file)"
    # A class folder's crops are the files inside it: a link out of it is listed, not followed.
    leaves = "a link that leaves Training/Positives/: it leads to "
    assert ignored["link to file.jpg"] == leaves + str((samples.parent / "elsewhere" / "linked.jpg").resolve())
    assert ignored["linked folder"] == leaves + str((samples.parent / "album").resolve())
    listed = (out / "docs" / "trainingdata.csv").read_text()
    assert ".DS_Store" not in listed and "linked" not in listed


def _with_exif_orientation(jpeg: bytes, value: int) -> bytes:
    """The same JPEG bytes with an APP1/EXIF segment added after SOI (and APP0): pixels untouched."""
    payload = _exif_orientation(value)  # b"Exif\0\0" + TIFF header + IFD
    at = 4 + int.from_bytes(jpeg[4:6], "big") if jpeg[2:4] == b"\xff\xe0" else 2
    return jpeg[:at] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[at:]


def test_exif_orientation_is_not_applied_in_training_or_serving(messy):
    """A rotation tag changes no score; rotating the pixels themselves does, so the test can tell."""
    import tensorflow as tf
    from contract import check_tf2

    from meerkat.embed.decode import decode_and_resize

    _, out, _ = messy
    pixels = rgb(19)
    pixels[5:25, 5:30] = (0, 200, 255)  # off-centre, so a rotation changes what the backbone sees
    plain = cv2.imencode(".jpg", pixels)[1].tobytes()
    tagged = _with_exif_orientation(plain, 6)
    rotated = cv2.imencode(".jpg", np.ascontiguousarray(np.rot90(pixels, -1)))[1].tobytes()  # what 6 asks for
    assert (
        Image.open(io.BytesIO(tagged)).getexif()[0x0112] == 6 and 0x0112 not in Image.open(io.BytesIO(plain)).getexif()
    )

    # preprocess (training) feeds the backbone decode_and_resize's output; the model serves through it too
    seen = [decode_and_resize(tf.constant(b), 224).numpy() for b in (plain, tagged, rotated)]
    np.testing.assert_array_equal(seen[1], seen[0])
    assert not np.array_equal(seen[2], seen[0])
    scores = check_tf2(out / "model", [plain, tagged, rotated])["scores"]
    np.testing.assert_array_equal(scores[1], scores[0])
    assert np.abs(scores[2] - scores[0]).max() > 1e-3, scores


@pytest.mark.slow
def test_an_animated_gif_is_decoded_one_frame_only(tmp_path):
    """150 frames of 1000x1000 are 0.4 MB on disk and 150 MB to a decoder that holds every frame:
    decode_and_resize (preprocess's decode, and the exported model's) decodes the first alone."""
    (tmp_path / "big.gif").write_bytes(animated_gif(150, 1000))
    (tmp_path / "small.gif").write_bytes(animated_gif(3, 32))
    setup = (
        "from meerkat.embed.decode import decode_and_resize\n"
        f"decode_and_resize(open({str(tmp_path / 'small.gif')!r}, 'rb').read(), 224)\n"  # first-use allocations
        f"big = open({str(tmp_path / 'big.gif')!r}, 'rb').read()"
    )
    growth = peak_rss_growth_mb(
        setup, "assert (decode_and_resize(big, 224).numpy() == 3).all()  # the first frame's grey"
    )
    assert growth < 50, f"decoding a 150-frame GIF raised the peak by {growth:.0f} MB"


@pytest.mark.slow
@settings(derandomize=True, max_examples=40, deadline=None)
@given(
    frames=st.integers(1, 4),
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    mode=st.sampled_from(["RGB", "L", "P", "RGBA"]),
    options=st.fixed_dictionaries(
        {"interlace": st.booleans(), "optimize": st.booleans(), "disposal": st.integers(0, 3)},
        optional={
            "comment": st.binary(min_size=1, max_size=600),
            "loop": st.integers(0, 3),
            "transparency": st.just(0),
        },
    ),
    seed=st.integers(0, 2**16),
)
def test_a_gifs_first_image_alone_decodes_to_the_pixels_of_its_first_frame(frames, size, mode, options, seed):
    """The cut (decode.first_frame) changes no pixel: eager as in preprocess's checks, in a graph as in
    tf.data and the exported model; GIFs as Pillow writes them, with local palettes, interlacing, comments."""
    import tensorflow as tf

    from meerkat.embed.decode import first_frame

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (*size, 4), np.uint8), "RGBA").convert(mode) for _ in range(frames)]
    gif = pil_bytes(images[0], "GIF", save_all=True, append_images=images[1:], **options)
    whole = tf.io.decode_image(gif, channels=3, expand_animations=False).numpy()
    for cut in (first_frame(tf.constant(gif)), _cut_in_a_graph()(tf.constant(gif))):
        assert len(cut.numpy()) <= len(gif)
        np.testing.assert_array_equal(tf.io.decode_image(cut, channels=3, expand_animations=False).numpy(), whole)


@functools.cache
def _cut_in_a_graph():
    import tensorflow as tf

    from meerkat.embed.decode import first_frame

    return tf.function(first_frame, input_signature=[tf.TensorSpec([], tf.string)])


@pytest.mark.slow
def test_a_file_that_disappears_after_createdocs_is_skipped(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    assert cli("createdocs", samples, "--output", tmp_path / "o").exit_code == 0
    (samples / "Training" / "Positives" / "p1.jpg").unlink()
    docs = tmp_path / "o" / "docs"
    result = embed(cli, docs, tmp_path / "o" / "records" / "train")
    assert result.exit_code == 0, result.output
    assert "p1.jpg: file not found" in result.output


@pytest.mark.slow
def test_too_few_usable_images_in_a_class_is_one_line(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    for name in ("p0.jpg", "p1.jpg"):
        (samples / "Training" / "Positives" / name).write_bytes(b"")
    result = cli("run", samples, tmp_path / "o", *TINY, "--epochs", 1)
    assert_user_error(result, 1, "train set has 1 usable positive images", "minimum of 2")


def test_images_directly_in_samples(tmp_path, cli):
    write_image(tmp_path / "S" / "a.jpg")
    assert_user_error(
        cli("createdocs", tmp_path / "S", "--output", tmp_path / "o"), 1, "found 1 images but no Training folder"
    )


@pytest.mark.slow
def test_records_of_another_backbone_are_named_before_training(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    assert cli("createdocs", samples, "--output", tmp_path / "o").exit_code == 0
    docs = tmp_path / "o" / "docs"
    for name, csv_name, alpha in (("train", "trainingdata.csv", "0.35"), ("eval", "testingdata.csv", "0.5")):
        # The later --alpha and --weights win over the tiny backbone's.
        result = embed(cli, docs, tmp_path / "r" / name, "--alpha", alpha, "--weights", "none", csv_name=csv_name)
        assert result.exit_code == 0, result.output
    result = fit(cli, tmp_path / "r" / "train", tmp_path / "r" / "eval", tmp_path / "t")
    assert_user_error(result, 1, str(tmp_path / "r" / "train"), str(tmp_path / "r" / "eval"), "same backbone")


def test_full_disk_is_one_line(tmp_path, cli):
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root); the full-disk path is not exercised")
    try:
        samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
        result = cli("run", samples, disk / "out", *TINY, "--epochs", 1)
        assert_user_error(result, 1)
        assert "No space left on device" in result.output or "disk is full" in result.output, result.output
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_a_file_that_is_not_a_docs_csv_or_dict_is_one_line(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(2, 2), test=(2, 2))
    assert cli("createdocs", samples, "--output", tmp_path / "o").exit_code == 0
    docs, crop = tmp_path / "o" / "docs", samples / "Training" / "Positives" / "p0.jpg"
    pre = ["preprocess", "--output-path", tmp_path / "r" / "t", *TINY]
    assert_user_error(
        cli(*pre, "--input-path", crop, "--input-dict", docs / "dict.txt"), 1, str(crop), "not a docs CSV"
    )
    wrong = ["--input-path", docs / "trainingdata.csv", "--input-dict", crop]
    assert_user_error(cli(*pre, *wrong), 1, str(crop), "it is not text: expected a class name a line")


def test_shards_of_another_meerkat_version_are_named(tmp_path, cli, tiny_run):
    import shutil

    records = tmp_path / "records"
    shutil.copytree(tiny_run / "records", records, ignore=shutil.ignore_patterns("cache", ".meerkat-owned"))
    manifest = records / "train-00000-of-00001.json"
    older = json.loads(manifest.read_text())
    del older["embedding_code"]  # as 0.1.0 wrote it
    manifest.write_text(json.dumps(older))
    result = fit(cli, records / "train", records / "eval", tmp_path / "t")
    assert_user_error(result, 1, str(manifest), "made by another version of meerkat", "rerun `meerkat preprocess`")


def test_an_unreadable_checkpoint_is_trained_over_from_the_start(tmp_path):
    import keras

    from meerkat.core.config import TrainConfig
    from meerkat.train.checkpoint import restore
    from meerkat.train.fit import build_head

    head = build_head(8, 2, TrainConfig())
    optimizer = keras.optimizers.Adam()
    optimizer.build(head.trainable_variables)
    fresh = [v.numpy() for v in head.variables]
    damaged = tmp_path / "head.npz"
    damaged.write_bytes(b"PK\x03\x04 cut short")
    state = restore(damaged, "fingerprint", head, optimizer)
    assert state.step == 0 and state.history == []
    assert all((a == v.numpy()).all() for a, v in zip(fresh, head.variables, strict=True))


BOM = "\ufeff"  # what Excel and Notepad put at the start of a UTF-8 file they save


@pytest.mark.slow
def test_a_dict_and_a_csv_saved_with_a_byte_order_mark_are_read_as_without(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    assert cli("createdocs", samples, "--output", tmp_path / "o").exit_code == 0
    docs, edited = tmp_path / "o" / "docs", tmp_path / "edited"
    edited.mkdir()
    for name in ("dict.txt", "trainingdata.csv", "testingdata.csv"):  # as Excel saves them: CRLF too
        text = (docs / name).read_text(encoding="utf-8").replace("\n", "\r\n")
        (edited / name).write_bytes((BOM + text).encode("utf-8"))
    for name, csv_name in (("train", "trainingdata.csv"), ("eval", "testingdata.csv")):
        result = embed(cli, edited, tmp_path / "r" / name, csv_name=csv_name)
        assert result.exit_code == 0 and "skipped" not in result.output, result.output
        manifest = json.loads((tmp_path / "r" / f"{name}-00000-of-00001.json").read_text())
        assert manifest["records"] == len((docs / csv_name).read_text().splitlines()), manifest
    result = fit(cli, tmp_path / "r" / "train", tmp_path / "r" / "eval", tmp_path / "t", "--input-dict",
                 edited / "dict.txt", "--epochs", 1)  # fmt: skip
    assert result.exit_code == 0, result.output


def test_labels_that_differ_invisibly_are_shown_apart(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(2, 2), test=(2, 2))
    assert cli("createdocs", samples, "--output", tmp_path / "o").exit_code == 0
    docs = tmp_path / "o" / "docs"
    pre = ["preprocess", "--input-path", docs / "trainingdata.csv", "--output-path", tmp_path / "r" / "t", *TINY]
    odd = tmp_path / "dict.txt"
    odd.write_text("positive\u200b\nnegative\n", encoding="utf-8")  # a zero-width space, pasted from a web page
    result = cli(*pre, "--input-dict", odd)
    assert_user_error(result, 1, str(odd), "expected one of 'positive\\u200b', 'negative'")


def test_a_models_dict_saved_with_a_byte_order_mark_names_the_same_classes(tmp_path):
    """model/dict.txt names the classes in what scan writes (MegaDetector's classification_categories)."""
    from meerkat.apply.scorer import labels

    (tmp_path / "dict.txt").write_bytes((BOM + "positive\r\nnegative\r\n").encode("utf-8"))
    assert labels(tmp_path) == ("positive", "negative")


def test_a_models_dict_that_is_not_utf8_is_one_line(tmp_path):
    from meerkat.apply.scorer import labels

    (tmp_path / "dict.txt").write_bytes("positiv\xe9\nnegative\n".encode("latin-1"))
    with pytest.raises(MeerkatError, match="cannot read dict.txt in .*: it is not UTF-8 text"):
        labels(tmp_path)
