"""The SLURM examples on a real single-node cluster (make slurm-test starts it and sets SLURM_CONF).

Every path a user gives them holds a space (the samples, the outputs, the model, the videos, the
images), as a lab's folders do; tests/test_slurm_scripts.py checks the command lines they become.
"""

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES, SHARED, WEIGHTS, needs_shared
from scenes import detection, results, samples, scene, write_results

from meerkat.embed import tfrecords

pytestmark = [
    pytest.mark.slow,
    needs_shared(),
    pytest.mark.skipif(not os.environ.get("TEST_SLURM"), reason="needs a SLURM cluster: run `make slurm-test`"),
]
EXAMPLES = ROOT / "examples" / "slurm"
TASKS = 4


def host_binds(*paths: Path) -> str:
    """APPTAINER_BINDS for scripts/apptainer-here.sh, which makes the host's folders visible where
    Apptainer runs: a list split at spaces, so each path's nearest folder without one."""
    return " ".join(str(next(p for p in (path, *path.parents) if " " not in str(p))) for path in paths)


def env(out: Path, samples: Path = SAMPLES, **extra) -> dict:
    e = {**os.environ, "SAMPLES": str(samples), "OUTPUT": str(out), "TASKS": str(TASKS), **extra}
    if os.environ.get("TEST_SLURM_SIF"):  # the container, as on a cluster
        e["SIF"] = os.environ["TEST_SLURM_SIF"]
        e["MEERKAT_APPTAINER"] = os.environ.get("APPTAINER", "apptainer")
        e["MEERKAT_APPTAINER_FLAGS"] = "--no-privs" if os.geteuid() == 0 else ""
        # a test may bind more (its own model and inputs)
        e["APPTAINER_BINDS"] = extra.get("APPTAINER_BINDS") or host_binds(samples, out, Path(e["SIF"]).parent)
    else:  # the installed meerkat, with the small offline backbone
        e["SIF"] = ""
        e.update(MEERKAT_BACKBONE="mobilenet_v2", MEERKAT_ALPHA="0.35", MEERKAT_WEIGHTS=str(WEIGHTS))
    return e


def meerkat(*args, root: Path, samples: Path = SAMPLES) -> subprocess.CompletedProcess:
    """`meerkat ARGS` the way the sbatch scripts run it (through the SIF when there is one);
    every path in ARGS must lie under `root` or `samples`, which are bound into the container."""
    e = env(root, samples, MEERKAT_SIF=env(root)["SIF"], MEERKAT_SAMPLES=str(samples), MEERKAT_OUTPUT=str(root))
    script = f'source {shlex.quote(str(EXAMPLES / "meerkat.sh"))}; meerkat "$@"'
    return subprocess.run(["bash", "-c", script, "meerkat", *map(str, args)], capture_output=True, text=True, env=e)


def wait(job: str, timeout=900) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        states = set(s.split()[0] for s in info.split("JobState=")[1:])
        if states and states <= {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}:
            return "COMPLETED" if states == {"COMPLETED"} else ",".join(sorted(states))
        time.sleep(1)
    raise TimeoutError(f"job {job} did not finish in {timeout} s")


def submit(out: Path, *args, samples: Path = SAMPLES, **extra) -> dict:
    proc = subprocess.run(
        ["bash", str(EXAMPLES / "submit.sh"), *args], capture_output=True, text=True, env=env(out, samples, **extra)
    )
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    return dict(
        line.split()[:2]
        for line in proc.stdout.splitlines()
        if line.split()[0] in ("createdocs", "preprocess", "train", "detections")
    )


@pytest.fixture(scope="module")
def lab_samples(tmp_path_factory) -> Path:
    """DeepMeerkat's sample crops in a folder whose path holds spaces."""
    return Path(shutil.copytree(SAMPLES, tmp_path_factory.mktemp("lab") / "my data" / "Samples 2024"))


@pytest.fixture(scope="module")
def array_run(tmp_path_factory, lab_samples):
    out = tmp_path_factory.mktemp("slurm") / "my runs" / "Output 1"
    jobs = submit(out, samples=lab_samples)
    for stage in ("createdocs", "preprocess", "train"):  # in order: a failed stage's dependents never start
        state = wait(jobs[stage])
        logs = "\n".join(p.read_text()[-1500:] for p in (out / "slurm-logs").iterdir())
        assert state == "COMPLETED", f"{stage}: {state}\n{logs}"
    return out


def test_array_job_trains_and_exports_as_well_as_one_process(array_run, tmp_path):
    single = meerkat("run", SAMPLES, tmp_path / "single", root=tmp_path)
    assert single.returncode == 0, single.stderr
    metrics, reference = (
        json.loads((d / "report" / "metrics.json").read_text()) for d in (array_run, tmp_path / "single")
    )
    print(f"\nSLURM array run accuracy: {metrics['accuracy']:.4f}, single process: {reference['accuracy']:.4f}")
    assert metrics["accuracy"] >= 0.72
    assert abs(metrics["accuracy"] - reference["accuracy"]) <= 0.02
    assert (array_run / "model" / "saved_model.pb").is_file()
    assert sorted(p.name for p in (array_run / "records").glob("train-*.tfrecord.gz")) == [
        f"train-{i:05d}-of-{TASKS:05d}.tfrecord.gz" for i in range(TASKS)
    ]
    logs = sorted(p.name for p in (array_run / "slurm-logs").iterdir())
    assert len([n for n in logs if n.startswith("meerkat-preprocess")]) == TASKS


def test_shards_together_equal_one_process(array_run, lab_samples, tmp_path):
    single = tmp_path / "single" / "train"
    shutil.copytree(array_run / "docs", tmp_path / "docs")
    proc = meerkat(
        "preprocess",
        "--input-path",
        tmp_path / "docs" / "trainingdata.csv",
        "--input-dict",
        tmp_path / "docs" / "dict.txt",
        "--output-path",
        single,
        "--cache-dir",
        tmp_path / "cache",
        root=tmp_path,
        samples=lab_samples,  # the docs list its crops
    )
    assert proc.returncode == 0, proc.stderr
    got = {}
    for prefix in (array_run / "records" / "train", single):
        shards, manifest = tfrecords.find_shards(str(prefix))
        uris, labels, vectors = tfrecords.read_shards(shards, manifest["embedding_dim"])
        order = np.argsort(uris)
        got[prefix] = ([uris[i] for i in order], labels[order], vectors[order])
    (u1, l1, v1), (u2, l2, v2) = got.values()
    assert u1 == u2 and (l1 == l2).all()
    np.testing.assert_allclose(v1, v2, rtol=1e-4, atol=1e-5)


def test_a_killed_task_is_rerun_alone_with_the_same_result(array_run, lab_samples, tmp_path):
    out = tmp_path / "my runs" / "Output 2"
    jobs = submit(out, samples=lab_samples, MEERKAT_KILL_AT="preprocess:train:2")  # task 2 dies as under `kill -9`
    assert wait(jobs["createdocs"]) == "COMPLETED"
    assert wait(jobs["preprocess"]) == "COMPLETED,FAILED"
    subprocess.run(["scancel", jobs["train"]], check=True)  # its dependency can never be met
    refused = meerkat(
        "train",
        "--train-data",
        out / "records" / "train",
        "--eval-data",
        out / "records" / "eval",
        "--output-dir",
        out,
        root=out,
    )
    assert refused.returncode == 1 and "shards 2 of 4 are missing or incomplete" in refused.stderr, refused.stderr

    jobs = submit(out, "rerun", "2", samples=lab_samples, MEERKAT_KILL_AT="")
    assert wait(jobs["preprocess"]) == "COMPLETED"
    assert wait(jobs["train"]) == "COMPLETED"
    assert (out / "report" / "metrics.json").read_bytes() == (array_run / "report" / "metrics.json").read_bytes()


def test_scan_array_splits_the_videos_and_reports_them_all(array_run, tmp_path):
    """examples/slurm/scan.sbatch as a 2-task array over 3 videos, with the model the array job made."""
    videos = tmp_path / "camera 3" / "videos"
    videos.mkdir(parents=True)
    for name in ("a", "b", "c"):
        shutil.copy(SHARED / "data" / "videos" / "chimp.mp4", videos / f"chimp-{name}.mp4")
    model = Path(shutil.copytree(array_run / "model", tmp_path / "my models" / "run 1" / "model"))
    out = tmp_path / "my scans"
    e = env(
        tmp_path,
        MEERKAT_SCAN_MODEL=str(model),
        MEERKAT_VIDEOS=str(videos),
        MEERKAT_SCAN_OUTPUT=str(out),
        MEERKAT_EXAMPLES=str(EXAMPLES),
        MEERKAT_SIF=env(tmp_path)["SIF"],
    )
    proc = subprocess.run(
        ["sbatch", "--parsable", "--array=0-1", "--export=ALL", f"--output={tmp_path}/scan-%A_%a.out",
         str(EXAMPLES / "scan.sbatch")],
        capture_output=True, text=True, env=e,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    state = wait(proc.stdout.strip())
    logs = "\n".join(p.read_text()[-1500:] for p in tmp_path.glob("scan-*.out"))
    assert state == "COMPLETED", logs
    table = (out / "scan.csv").read_text().splitlines()
    print("\n".join(table))
    assert len(table) == 4 and all(",done," in row for row in table[1:])
    assert sorted(p.name for p in out.iterdir() if (p / "parameters.csv").is_file()) == [
        "chimp-a",
        "chimp-b",
        "chimp-c",
    ]


def test_detections_array_gives_the_bytes_of_one_process_and_a_lost_part_is_redone_alone(
    array_run, tmp_path, monkeypatch
):
    """examples/slurm/detections.sbatch through `submit.sh detections`: 160 scenes at --batch-size 1
    are four parts (detections/parts.py), one a task; the model is the array job's."""
    crops = samples("Positives", 80) + samples("Negatives", 80)
    images = []
    for i, crop in enumerate(crops):
        (bbox,) = scene(tmp_path / "my images" / "cam 1" / f"{i:03d}.jpg", [crop], size=(320, 240), seed=i)
        images.append({"file": f"cam 1/{i:03d}.jpg", "detections": [detection(bbox)]})
    md = write_results(tmp_path / "my images" / "md v5.json", results(images))
    model = tmp_path / "my models" / "run 1" / "model"
    shutil.copytree(array_run / "model", model)  # under tmp_path, which meerkat() binds into the container
    out = tmp_path / "my output"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the same completion time in every run
    extra = {"DETECTIONS": str(md), "MODEL": str(model), "CLASSIFIED": str(out / "classified"),
             "MEERKAT_SCAN_FLAGS": "--batch-size 1"}  # fmt: skip
    if os.environ.get("TEST_SLURM_SIF"):
        extra["APPTAINER_BINDS"] = f"{env(out)['APPTAINER_BINDS']} {tmp_path}"

    def logs() -> str:
        return "\n".join(p.read_text()[-1500:] for p in (out / "slurm-logs").glob("meerkat-detections*"))

    job = submit(out, "detections", **extra)["detections"]
    assert wait(job) == "COMPLETED", logs()
    classified = out / "classified"
    parts = sorted(p.name for p in (classified / "detections-parts").glob("*.json"))
    assert parts == [f"part-{k:05d}-of-{TASKS:05d}.json" for k in range(TASKS)]
    single = meerkat("scan", model, "--detections", md, "--output", tmp_path / "single", "--batch-size", "1",
                     root=tmp_path)  # fmt: skip
    assert single.returncode == 0, single.stderr
    expected = {name: (tmp_path / "single" / name).read_bytes() for name in ("detections.json", "scan.csv")}
    assert {name: (classified / name).read_bytes() for name in expected} == expected

    # Task 2's part lost (as if the task had been killed before it was done): rerun that task alone.
    (classified / "detections-parts" / parts[2]).unlink()
    (classified / "detections.json").unlink()
    job = submit(out, "detections", "2", **extra)["detections"]
    assert wait(job) == "COMPLETED", logs()
    assert {name: (classified / name).read_bytes() for name in expected} == expected
