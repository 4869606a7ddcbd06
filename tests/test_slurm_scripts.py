"""The SLURM examples' command lines, without a cluster: every sbatch script run by bash, its
apptainer calls recorded by a stand-in, with paths that hold spaces (tests/test_slurm.py runs them
on a real cluster)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

EXAMPLES = ROOT / "examples" / "slurm"


@pytest.fixture
def site(tmp_path) -> dict[str, Path]:
    """A user's folders, each with a space in its path, and a stand-in apptainer (itself in one)."""
    paths = {
        "samples": tmp_path / "my data" / "Samples 2024",
        "output": tmp_path / "my runs" / "run 1",
        "model": tmp_path / "my models" / "run 1" / "model",
        "videos": tmp_path / "camera 3" / "videos",
        "images": tmp_path / "camera 3" / "images",
        "md": tmp_path / "MegaDetector results" / "md v5.json",
        "sif": tmp_path / "containers" / "meerkat 1.0.sif",
        "apptainer": tmp_path / "bin dir" / "apptainer",
        "record": tmp_path / "calls.jsonl",
    }
    for name in ("samples", "model", "videos", "images"):
        paths[name].mkdir(parents=True)
    for name in ("md", "sif", "apptainer"):
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text("")
    paths["apptainer"].write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "with open(os.environ['RECORD'], 'a') as f:\n    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    paths["apptainer"].chmod(0o755)
    return paths


def calls(site: dict[str, Path], script: str, **env: str) -> list[list[str]]:
    """Run examples/slurm/SCRIPT as array task 1 of 2 through the SIF; the apptainer command lines it ran."""
    variables = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MEERKAT_"))},
        "MEERKAT_EXAMPLES": str(EXAMPLES),
        "MEERKAT_SIF": str(site["sif"]),
        "MEERKAT_APPTAINER": str(site["apptainer"]),
        "MEERKAT_APPTAINER_FLAGS": "--no-privs --cleanenv",  # options, split at spaces
        "MEERKAT_GPUS": "1",
        "MEERKAT_TASKS": "2",
        "SLURM_ARRAY_TASK_ID": "1",
        "MEERKAT_SAMPLES": str(site["samples"]),
        "MEERKAT_OUTPUT": str(site["output"]),
        "RECORD": str(site["record"]),
        **env,
    }
    proc = subprocess.run(["bash", str(EXAMPLES / script)], env=variables, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in site["record"].read_text().splitlines()]


def apptainer(*binds: Path, sif: Path) -> list[str]:
    """How an sbatch script's meerkat starts: the SIF's, with the GPUs, the given options and these folders."""
    return ["exec", "--nv", "--no-privs", "--cleanenv", *[a for b in binds for a in ("--bind", str(b))], str(sif)]


def test_createdocs_preprocess_and_train_keep_each_path_one_argument(site):
    s, out = site["samples"], site["output"]
    start = apptainer(s, out, sif=site["sif"])
    assert calls(site, "createdocs.sbatch") == [[*start, "meerkat", "createdocs", str(s), "--output", str(out)]]
    site["record"].unlink()
    assert calls(site, "preprocess.sbatch") == [
        [*start, "meerkat", "preprocess", "--input-path", f"{out}/docs/{csv}.csv", "--input-dict",
         f"{out}/docs/dict.txt", "--output-path", f"{out}/records/{name}", "--shard-index", "1",
         "--num-shards", "2", "--cache-dir", f"{out}/cache/shard-1"]
        for name, csv in (("train", "trainingdata"), ("eval", "testingdata"))
    ]  # fmt: skip
    site["record"].unlink()
    assert calls(site, "train.sbatch") == [
        [*start, "meerkat", "train", "--train-data", f"{out}/records/train", "--eval-data", f"{out}/records/eval",
         "--input-dict", f"{out}/docs/dict.txt", "--output-dir", str(out)]
    ]  # fmt: skip


def test_scan_binds_a_model_whose_path_holds_spaces_as_one_folder(site):
    model, videos, out = site["model"], site["videos"], site["output"] / "scans"
    got = calls(
        site,
        "scan.sbatch",
        MEERKAT_SCAN_MODEL=str(model),
        MEERKAT_VIDEOS=str(videos),
        MEERKAT_SCAN_OUTPUT=str(out),
        MEERKAT_SCAN_FLAGS="--threshold 0.05 --fps 5",  # options, split at spaces
    )
    assert got == [
        [*apptainer(videos, out, model, sif=site["sif"]), "meerkat", "scan", str(model), str(videos),
         "--output", str(out), "--shard-index", "1", "--num-shards", "2", "--threshold", "0.05", "--fps", "5"]
    ]  # fmt: skip
    assert out.is_dir()  # made before the call: apptainer binds only a folder that exists


def test_detections_binds_the_model_and_the_results_files_folder_as_one_folder_each(site):
    model, images, md, out = site["model"], site["images"], site["md"], site["output"] / "classified"
    got = calls(
        site,
        "detections.sbatch",
        MEERKAT_SCAN_MODEL=str(model),
        MEERKAT_DETECTIONS=str(md),
        MEERKAT_IMAGE_ROOT=str(images),
        MEERKAT_SCAN_OUTPUT=str(out),
    )
    assert got == [
        [*apptainer(images, out, model, md.parent, sif=site["sif"]), "meerkat", "scan", str(model),
         "--detections", str(md), "--image-root", str(images), "--output", str(out), "--shard-index", "1",
         "--num-shards", "2"]
    ]  # fmt: skip
