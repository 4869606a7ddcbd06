"""`make clean` removes what the build made and nothing a user ran: `make run` writes models to output/."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_clean_removes_the_venv_and_build_and_keeps_the_runs(tmp_path):
    """Issue 22: `make clean` deleted output/, where `make run SAMPLES=...` puts real models."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for folder in (".venv/bin", "build/demo-samples", "output/run/model"):
        (tmp_path / folder).mkdir(parents=True)
    model = tmp_path / "output" / "run" / "model" / "saved_model.pb"
    model.write_bytes(b"a user's model")
    result = subprocess.run(["make", "-C", str(tmp_path), "clean"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / ".venv").exists() and not (tmp_path / "build").exists()
    assert model.read_bytes() == b"a user's model"
    assert "output/" in result.stdout, "clean says where the runs stay"
