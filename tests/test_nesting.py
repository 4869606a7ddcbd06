"""An output folder inside an input, or an input inside the output, is refused before any work
(core/nesting.py): exit 2, one line naming both, nothing written. meerkat reads Samples and folders
of videos recursively, so an output inside them would be read back as data on the next run."""

from pathlib import Path

import pytest
from conftest import TINY, assert_user_error, in_fresh_process, make_samples
from videos import moving_square


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_run_into_a_folder_of_samples_is_refused_every_time_and_reads_nothing_back(cli, tmp_path):
    """The report's PNGs and mistakes thumbnails of a first run became negatives of the second."""
    samples = make_samples(tmp_path / "S")
    before = listing(samples)
    out = samples / "Training" / "Negatives" / "out"
    for _ in range(2):
        result = cli("run", samples, out, *TINY, "--epochs", "1")
        assert_user_error(result, 2, f"OUTPUT {out}", f"SAMPLES {samples}")
        assert listing(samples) == before  # not even an empty OUTPUT folder


def test_samples_inside_the_output_is_refused(cli, tmp_path):
    out = tmp_path / "out"
    samples = make_samples(out / "Samples")
    assert_user_error(cli("run", samples, out, *TINY), 2, f"SAMPLES {samples}", f"OUTPUT {out}")
    assert_user_error(cli("createdocs", samples, "--output", out), 2, f"SAMPLES {samples}", f"--output {out}")
    assert not (out / "docs").exists()


def test_createdocs_into_samples_and_a_cache_in_samples_are_refused(cli, tmp_path):
    samples = make_samples(tmp_path / "S")
    before = listing(samples)
    inside = samples / "docs-here"
    assert_user_error(cli("createdocs", samples, "--output", inside), 2, f"--output {inside}", f"SAMPLES {samples}")
    assert_user_error(cli("createdocs", samples, "--output", samples), 2, f"--output {samples} is SAMPLES {samples}")
    cache = samples / "cache"
    refused = cli("run", samples, tmp_path / "out", *TINY, "--cache-dir", cache)
    assert_user_error(refused, 2, f"--cache-dir {cache}", f"SAMPLES {samples}")  # meerkat never writes into Samples
    assert listing(samples) == before


def test_a_symlink_does_not_hide_the_nesting(cli, tmp_path):
    samples = make_samples(tmp_path / "S")
    link = tmp_path / "elsewhere"
    link.symlink_to(samples / "Training")
    refused = cli("run", samples, link / "out", *TINY)
    assert_user_error(refused, 2, f"OUTPUT {link / 'out'}", str(samples / "Training" / "out"), f"SAMPLES {samples}")
    out = tmp_path / "out"
    (tmp_path / "samples-link").symlink_to(out / "Samples")
    make_samples(out / "Samples")
    assert_user_error(cli("run", tmp_path / "samples-link", out, *TINY), 2, "lies inside OUTPUT")
    assert not (samples / "Training" / "out").exists() and not (out / "docs").exists()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos") / "videos"
    video, _ = moving_square(folder / "a.avi", frames=8)
    return video


def test_clips_and_scan_refuse_an_output_inside_a_folder_of_videos(cli, clip, tmp_path):
    folder = clip.parent
    out = folder / "crops"
    for command in (["clips"], ["scan", tmp_path / "no-model-needed"]):
        result = cli(*command, folder, "--output", out)
        assert_user_error(result, 2, f"--output {out}", f"VIDEO {folder}")
        assert not out.exists()
    # A video file given alone is no folder that would be read back: an output beside it is fine.
    assert cli("clips", clip, "--output", folder / "crops").exit_code == 0


def test_clips_and_scan_refuse_a_video_inside_the_output(cli, clip, tmp_path):
    out = tmp_path / "out"
    inside = out / "a.avi"
    out.mkdir()
    inside.write_bytes(clip.read_bytes())
    for command in (["clips"], ["scan", tmp_path / "no-model-needed"]):
        assert_user_error(cli(*command, inside, "--output", out), 2, f"VIDEO {inside}", f"--output {out}")
        assert_user_error(cli(*command, out, "--output", out), 2, f"--output {out} is VIDEO {out}")
    assert sorted(p.name for p in out.iterdir()) == ["a.avi"]


@pytest.mark.slow
def test_the_refusal_comes_before_tensorflow_loads(tmp_path, clip):
    samples = make_samples(tmp_path / "S")
    imported, _ = in_fresh_process(
        (["run", samples, samples / "out"], 2),
        (["scan", tmp_path, clip.parent, "--output", clip.parent / "out"], 2),
    )
    assert not imported
