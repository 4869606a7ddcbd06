"""The installed `meerkat` command as a shell sees it: help, version, env vars, exit codes."""

import os
import subprocess
import sys

import pytest
from conftest import make_samples

COMMANDS = ["createdocs", "preprocess", "train", "run", "predict", "demo-samples"]


def meerkat(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "meerkat", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = meerkat(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout


def test_version():
    from meerkat import __version__

    assert meerkat("--version").stdout.strip() == f"meerkat {__version__}"


@pytest.mark.slow
def test_user_error_is_one_line_without_traceback(tmp_path):
    result = meerkat("createdocs", tmp_path / "missing", "--output", tmp_path / "o")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: Samples folder not found: {tmp_path / 'missing'}; "
        "pass the folder that holds Training/Positives and Training/Negatives (or a folder a class)"
    ]
    debug = meerkat("--debug", "createdocs", tmp_path / "missing", "--output", tmp_path / "o")
    assert "Traceback" in debug.stderr


def test_options_come_from_meerkat_environment_variables(tmp_path):
    samples = make_samples(tmp_path / "S", train=(2, 5))
    result = meerkat(
        "createdocs",
        env={"MEERKAT_SAMPLES": str(samples), "MEERKAT_OUTPUT": str(tmp_path / "o"), "MEERKAT_BALANCE": "false"},
    )
    assert result.returncode == 0, result.stderr
    assert "Negative training samples: 5" in result.stdout


def test_demo_samples_make_a_valid_samples_folder(tmp_path, cli):
    assert cli("demo-samples", tmp_path / "demo", "--train-per-class", 3, "--test-per-class", 2).exit_code == 0
    result = cli("createdocs", tmp_path / "demo", "--output", tmp_path / "o")
    assert result.exit_code == 0 and "Positive training samples: 3" in result.output


@pytest.mark.slow
def test_doctor_reports_versions_and_folder_problems(tmp_path):
    result = meerkat("doctor", "--samples", tmp_path / "nope", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "TensorFlow CUDA build: no" in result.stdout and "GPUs visible: none" in result.stdout
    assert f"Samples: problem: Samples folder {tmp_path / 'nope'} not found" in result.stdout
    assert f"Output: {tmp_path / 'out'} ok" in result.stdout
    from meerkat.core import codeversion

    assert f"scan {codeversion.key('scan')}" in result.stdout  # the code keys a rerun compares
    quick = meerkat("doctor", "--mounts-only", "--samples", tmp_path / "nope")
    assert quick.returncode == 1 and quick.stderr.startswith("error: Samples folder")


@pytest.mark.slow
def test_start_is_quiet_unless_debug(tmp_path):
    """TensorFlow's absl start-up lines (`I0000 ... oneDNN custom operations are on`) stay hidden."""
    quiet = meerkat("doctor")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith("meerkat ")
    loud = meerkat("--debug", "doctor")
    assert "I0000" in loud.stderr or "oneDNN" in loud.stderr, "--debug must show what TensorFlow prints"


def test_the_callers_meerkat_variables_do_not_reach_the_tests():
    # conftest removes them: `export MEERKAT_BACKBONE=...` for a run must not change what is tested.
    assert not [name for name in os.environ if name.startswith("MEERKAT_")]


@pytest.mark.parametrize("option, shown, refused", [("--dropout", "[0<=x<1]", "1"), ("--learning-rate", "[0<x]", "0")])
def test_a_range_open_at_one_end_is_shown_so(cli, tmp_path, option, shown, refused):
    """Help shows the values an option takes: not 1 for --dropout (it drops every unit), not 0 for
    --learning-rate (Adam would not move)."""
    help_line = next(line for line in cli("train", "--help").output.splitlines() if option in line)
    assert shown in help_line, help_line
    records = ["--train-data", tmp_path / "t", "--eval-data", tmp_path / "e", "--output-dir", tmp_path / "o"]
    result = cli("train", *records, option, refused)
    assert result.exit_code == 2 and option in result.output, result.output
