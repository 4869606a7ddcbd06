"""The SIF, run as an HPC user runs it: `apptainer run` with binds (make sif-test sets TEST_SIF)."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import SAMPLES, needs_shared

SIF = os.environ.get("TEST_SIF")
APPTAINER = os.environ.get("APPTAINER", "apptainer")
pytestmark = [
    pytest.mark.slow,
    needs_shared(),
    pytest.mark.skipif(not SIF, reason="no SIF to test: `make image sif sif-test` builds one and sets TEST_SIF"),
]


def apptainer(*args, binds=()):
    # As root Apptainer must drop privileges it cannot hold here; a normal user needs nothing.
    privs = ["--no-privs"] if os.geteuid() == 0 and args[0] in ("run", "exec", "test") else []
    cmd = [APPTAINER, args[0], *privs]
    for b in binds:
        cmd += ["--bind", b]
    env = {**os.environ, "APPTAINER_BINDS": " ".join(b.split(":")[0] for b in binds)}
    return subprocess.run([*cmd, *args[1:]], capture_output=True, text=True, timeout=900, env=env)


def test_apptainer_run_trains_with_the_default_command(tmp_path):
    out = tmp_path / "Output"
    out.mkdir()
    result = apptainer("run", str(Path(SIF).resolve()), binds=[f"{SAMPLES}:/data/Samples:ro", f"{out}:/data/Output"])
    print(result.stdout[-2500:], result.stderr[-1500:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "model" / "saved_model.pb").is_file()
    assert list((out / "logs" / "train").glob("events.out.tfevents.*"))
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    print(f"\nSIF smoke accuracy: {metrics['accuracy']:.4f}")
    assert metrics["accuracy"] >= 0.72


def test_apptainer_run_without_the_output_bind_stops_at_once():
    """Issue 22: in the read-only SIF, /data/Output without --bind is not a place to train into."""
    result = apptainer("run", str(Path(SIF).resolve()), binds=[f"{SAMPLES}:/data/Samples:ro"])
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Output folder /data/Output is not a mount"), lines
    assert "--bind $PWD/Output:/data/Output" in lines[0]


def test_apptainer_exec_runs_any_meerkat_command():
    result = apptainer("exec", str(Path(SIF).resolve()), "meerkat", "doctor")
    assert result.returncode == 0, result.stderr
    assert "weights: /opt/meerkat/weights/" in result.stdout
    # The OCI image's record of its files, carried over: the SIF has an id of its own (its sha256).
    assert "\nimage files: sha256:" in result.stdout and "\nSIF: " in result.stdout, result.stdout


def test_the_sif_holds_the_files_the_image_was_built_with():
    """The digest the image's build recorded over /opt and /usr, recomputed inside the SIF."""
    result = apptainer("exec", str(Path(SIF).resolve()), "python", "-P", "-m", "meerkat.doctor", "--verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith(": as built\n"), result.stdout


def test_help_and_built_in_test():
    sif = str(Path(SIF).resolve())
    help_ = apptainer("run-help", sif)
    assert help_.returncode == 0 and "apptainer run --bind" in help_.stdout, help_.stderr
    built_in = apptainer("test", sif)
    assert built_in.returncode == 0, built_in.stdout + built_in.stderr
    assert "meerkat 0." in built_in.stdout
