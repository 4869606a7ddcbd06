"""The built image, tested from the outside as a user runs it (make smoke sets TEST_IMAGE)."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES, SHARED, needs_shared

from meerkat.core import temporaries

IMAGE = os.environ.get("TEST_IMAGE")
ENGINE = os.environ.get("CONTAINER_ENGINE", "podman")
pytestmark = [
    pytest.mark.slow,
    needs_shared(),
    pytest.mark.skipif(not IMAGE, reason="no image to test: `make image smoke` builds one and sets TEST_IMAGE"),
]
UID = 12345


def container(*args, mounts=(), user=f"{UID}:{UID}", env=(), timeout=900, engine=(ENGINE, "run", "--rm")):
    cmd = [*engine, "--read-only", "--tmpfs", "/tmp", "--user", user]
    for m in mounts:
        cmd += ["-v", m]
    for e in env:
        cmd += ["-e", e]
    return subprocess.run([*cmd, IMAGE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "Output"
    out.mkdir()
    os.chown(out, UID, UID)
    result = container(mounts=[f"{SAMPLES}:/data/Samples:ro", f"{out}:/data/Output"])
    print(result.stdout[-3000:], result.stderr[-2000:])
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_default_command_trains_on_read_only_samples_as_any_user(smoke):
    out, result = smoke
    assert (out / "model" / "saved_model.pb").is_file()
    assert list((out / "logs" / "train").glob("events.out.tfevents.*"))
    assert list((out / "logs" / "validation").glob("events.out.tfevents.*"))
    assert list((out / "logs" / "eval").glob("events.out.tfevents.*"))
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    print(f"\nsmoke accuracy in the image: {metrics['accuracy']:.4f}")
    assert metrics["accuracy"] >= 0.72
    run = json.loads((out / "report" / "run.json").read_text())
    assert run["backbone"]["weights"].startswith("/opt/meerkat/weights/")
    for p in [out, *out.rglob("*")]:
        assert p.stat().st_uid == UID, f"{p} is owned by {p.stat().st_uid}"
    assert "Traceback" not in result.stderr


def test_a_killed_container_resumes_and_ends_like_an_uninterrupted_run(smoke, tmp_path):
    """`docker kill` mid-training: meerkat was pid 1 of a container whose host name is gone. The
    next container on the same Output takes over the lock, reuses the shards and the checkpoint."""
    reference, _ = smoke
    out = tmp_path / "Output"
    out.mkdir()
    os.chown(out, UID, UID)
    mounts = [f"{SAMPLES}:/data/Samples:ro", f"{out}:/data/Output"]
    killed = container(mounts=mounts, env=["MEERKAT_KILL_AT=train:epoch-2"])
    assert killed.returncode == 137, killed.stdout + killed.stderr
    assert json.loads((out / ".meerkat.lock").read_text())["pid"] == 1
    again = container(mounts=mounts)
    print(again.stdout[-1500:], again.stderr[-800:])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Reusing finished shard" in again.stdout and "Resuming training from the checkpoint" in again.stdout
    assert "ended without finishing" in again.stderr
    assert (out / "report" / "metrics.json").read_bytes() == (reference / "report" / "metrics.json").read_bytes()
    assert not [p for p in out.rglob("*") if temporaries.is_temp(p)] and not (out / ".meerkat.lock").exists()


def test_clips_and_scan_run_read_only_and_map_the_video_path_for_the_host(smoke, tmp_path):
    """The whole loop's video half, in the image: crops from a read-only video folder, then the
    trained model applied to it, with source_video written as the host sees it."""
    out, _ = smoke
    videos = SHARED / "data" / "videos"
    work = tmp_path / "Work"
    work.mkdir()
    os.chown(work, UID, UID)
    mounts = [f"{videos}:/data/Videos:ro", f"{out}:/data/Output:ro", f"{work}:/data/Work"]
    clipped = container("clips", "/data/Videos", "--output", "/data/Work/crops", mounts=mounts)
    assert clipped.returncode == 0, clipped.stdout + clipped.stderr
    assert len(list((work / "crops" / "chimp").glob("chimp_*_*.jpg"))) == 25
    scanned = container(
        "scan",
        "/data/Output/model",
        "/data/Videos",
        "--output",
        "/data/Work/scan",
        "--path-map",
        f"/data/Videos={videos}",
        mounts=mounts,
    )
    assert scanned.returncode == 0, scanned.stdout + scanned.stderr
    params = dict(line.split(",", 1) for line in (work / "scan" / "chimp" / "parameters.csv").read_text().splitlines())
    assert params["source_video"] == str(videos / "chimp.mp4")
    assert (work / "scan" / "scan.csv").read_text().count("\n") == 2


def test_scan_detections_classifies_megadetectors_boxes_as_the_host_does(smoke, tmp_path):
    """scan --detections in the image, as docs/megadetector.md shows it: the images (with MegaDetector's
    file) read-only, the model read-only; every selected box classified, as the host's meerkat does."""
    from scenes import detection, results, samples, scene, write_results
    from typer.testing import CliRunner

    from meerkat.cli import app

    out, _ = smoke
    images = tmp_path / "images"
    crops = samples("Positives", 3) + samples("Negatives", 3)
    entries = []
    for i in range(3):
        boxes = scene(images / "cam" / f"IMG_{i:04d}.JPG", crops[2 * i : 2 * i + 2], size=(1200, 900), seed=i)
        entries.append({"file": f"cam/IMG_{i:04d}.JPG", "detections": [detection(b) for b in boxes]})
    write_results(images / "md.json", results(entries))
    work = tmp_path / "Work"
    work.mkdir()
    os.chown(work, UID, UID)
    mounts = [f"{images}:/data/Images:ro", f"{out}:/data/Output:ro", f"{work}:/data/Work"]
    scanned = container(
        "scan", "/data/Output/model", "--detections", "/data/Images/md.json", "--output", "/data/Work/scan",
        mounts=mounts,
    )  # fmt: skip
    assert scanned.returncode == 0, scanned.stdout + scanned.stderr
    assert "Traceback" not in scanned.stderr
    host = CliRunner().invoke(app, ["scan", str(out / "model"), "--detections", str(images / "md.json"),
                                    "--output", str(tmp_path / "host")])  # fmt: skip
    assert host.exit_code == 0, host.output
    inside, outside = (json.loads((d / "detections.json").read_text()) for d in (work / "scan", tmp_path / "host"))

    def scores(data):
        return [dict(det["classifications"]) for im in data["images"] for det in im["detections"]]

    assert len(scores(inside)) == 6 and all(set(s) == {"0", "1"} for s in scores(inside))
    for a, b in zip(scores(inside), scores(outside), strict=True):
        assert abs(a["0"] - b["0"]) <= 1e-5, (a, b)
    assert inside["classification_categories"] == outside["classification_categories"]
    assert (work / "scan" / "scan.csv").read_text().count("\n") == 4  # a header and a row per image
    for p in [work, *work.rglob("*")]:
        assert p.stat().st_uid == UID, f"{p} is owned by {p.stat().st_uid}"


def test_exported_model_meets_the_contract_on_the_host(smoke):
    from contract import check_dict, check_tf1, check_tf2, jpeg_of

    out, _ = smoke
    check_dict(out / "model")
    crops = sorted((SAMPLES / "Testing" / "Positives").glob("*.jpg"))[:4]
    served = check_tf2(out / "model", [p.read_bytes() for p in crops])
    check_tf1(out / "model", [jpeg_of(p) for p in crops])
    assert served["scores"].shape == (4, 2)


def test_missing_samples_mount_is_one_line(tmp_path):
    out = tmp_path / "Output"
    out.mkdir()
    os.chown(out, UID, UID)
    result = container(mounts=[f"{out}:/data/Output"])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Samples folder /data/Samples is empty"), result.stderr


@pytest.mark.parametrize("user", [None, "0:0"])
def test_a_run_without_the_output_mount_stops_at_once_and_writes_nothing(user):
    """Issue 22: `podman run --rm -e MEERKAT_EPOCHS=2 -v $PWD/small:/data/Samples:ro meerkat:cpu` trained
    into the image's /data/Output, printed `Done in 13.1 s`, exited 0 and left nothing on the host. As
    the image's user or as root, on a writable root (no --read-only): one line with the -v to add."""
    name = f"meerkat-no-output-{os.getpid()}-{user or 'default'}".replace(":", "-")
    cmd = [ENGINE, "run", "--name", name, "-e", "MEERKAT_EPOCHS=2", "-v", f"{SAMPLES}:/data/Samples:ro"]
    try:
        result = subprocess.run([*cmd, *(["--user", user] if user else []), IMAGE], capture_output=True, text=True,
                                timeout=900)  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: Output folder /data/Output is not a mount"), lines
        assert "-v $PWD/Output:/data/Output" in lines[0] and "--bind $PWD/Output:/data/Output" in lines[0]
        changed = subprocess.run([ENGINE, "diff", name], capture_output=True, text=True, timeout=120)
        assert changed.returncode == 0, changed.stderr
        assert not [line for line in changed.stdout.splitlines() if "/data" in line], changed.stdout
    finally:
        subprocess.run([ENGINE, "rm", "-f", name], capture_output=True, timeout=120)


def test_any_mounted_output_and_every_variable_work_through_the_entrypoint(smoke, tmp_path):
    """MEERKAT_OUTPUT on another mount, and preprocessed sets given as variables with no Samples
    mounted (issue 22: the entrypoint looked for --preprocessed-train-set on the command line only)."""
    previous, _ = smoke
    work = tmp_path / "Work"
    work.mkdir()
    os.chown(work, UID, UID)
    env = [
        "MEERKAT_OUTPUT=/data/Work/run",
        "MEERKAT_PREPROCESSED_TRAIN_SET=/data/Previous/records/train",
        "MEERKAT_PREPROCESSED_EVAL_SET=/data/Previous/records/eval",
        "MEERKAT_EPOCHS=1",
    ]
    result = container(mounts=[f"{previous}:/data/Previous:ro", f"{work}:/data/Work"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Using preprocessed sets" in result.stdout + result.stderr
    assert (work / "run" / "model" / "saved_model.pb").is_file()


def test_doctor_and_help_need_no_mount():
    doctor = container("doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert "Output: problem: Output folder /data/Output is not a mount" in doctor.stdout, doctor.stdout
    helped = container("--help")
    assert helped.returncode == 0 and "Usage: meerkat" in helped.stdout, helped.stdout + helped.stderr


def test_unwritable_output_is_one_line_with_the_fix(tmp_path):
    out = tmp_path / "Output"
    out.mkdir()
    out.chmod(0o755)  # owned by root: uid 12345 cannot write
    result = container(mounts=[f"{SAMPLES}:/data/Samples:ro", f"{out}:/data/Output"])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write to /data/Output" in lines[0] and "--user" in lines[0], result.stderr


def test_doctor_reports_weights_and_cpu(tmp_path):
    result = container("doctor")
    assert result.returncode == 0, result.stderr
    assert "TensorFlow CUDA build: no" in result.stdout and "Samples: problem:" in result.stdout
    assert "weights: /opt/meerkat/weights/" in result.stdout and "sha256" in result.stdout


def inspect_image():
    result = subprocess.run([ENGINE, "image", "inspect", IMAGE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def test_the_config_is_oci_and_dated_from_the_fixed_epoch():
    """Two builds of one commit gave the same layers but other ids (issue 16): the docker-format
    config named the build container and its host name, so every intermediate image had an id of
    its own, which the history names. make builds OCI (no such fields), without the label that names
    podman's version, and dates every layer IMAGE_EPOCH, a fixed time: podman's cache does not key
    on the date, so a date from the commit left a warm build's cached steps dated from an earlier
    commit. The commit's time is the created label. make image-reproducible checks the id itself."""
    info = inspect_image()
    labels = info.get("Labels") or info["Config"].get("Labels") or {}
    assert "io.buildah.version" not in labels
    epoch = int(re.search(r"^IMAGE_EPOCH := (\d+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)[1])
    dated = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    assert info["Created"].startswith(dated), (info["Created"], dated)
    own = [h for h in info.get("History") or [] if "meerkat.doctor --write" in h.get("created_by", "")]
    assert len(own) == 1 and own[0]["created"].startswith(dated), own
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"]), labels
    if ENGINE == "podman":
        assert info["ManifestType"] == "application/vnd.oci.image.manifest.v1+json"


def test_doctor_shows_the_files_and_revision_of_the_build_line():
    """`make image` ends with the line to cite (scripts/image-id.sh); `meerkat doctor` in the container
    names the same files digest and revision, so its output can be matched with that line."""
    env = {**os.environ, "CONTAINER_ENGINE": ENGINE}
    built = subprocess.run(
        [ROOT / "scripts" / "image-id.sh", IMAGE], capture_output=True, text=True, timeout=120, env=env
    )
    assert built.returncode == 0, built.stderr
    print(built.stdout)
    image_id = inspect_image()["Id"].removeprefix("sha256:")
    line = re.fullmatch(
        rf"{re.escape(IMAGE)}: image id sha256:{image_id}(, digest sha256:[0-9a-f]{{64}})?, "
        r"files (sha256:[0-9a-f]{64}), revision (\S+)\n",
        built.stdout,
    )
    assert line, built.stdout
    doctor = container("doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert f"\nimage files: {line[2]} (" in doctor.stdout, doctor.stdout
    assert f", revision {line[3]}, created " in doctor.stdout, doctor.stdout


def test_the_files_are_as_built_for_any_user():
    """`python -m meerkat.doctor --verify` recomputes the digest of /opt and /usr in a read-only
    container run as an arbitrary user: every file there is readable, and none has changed."""
    cmd = [ENGINE, "run", "--rm", "--read-only", "--user", f"{UID}:{UID}", "--entrypoint", "python"]
    result = subprocess.run(
        [*cmd, IMAGE, "-P", "-m", "meerkat.doctor", "--verify"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("image files: sha256:") and result.stdout.endswith(": as built\n")


@pytest.mark.skipif(ENGINE != "podman", reason="podman writes the image id into /run/.containerenv")
def test_doctor_names_the_image_id_where_podman_tells_it():
    """podman fills /run/.containerenv only for --privileged containers: then doctor prints the id."""
    image_id = inspect_image()["Id"].removeprefix("sha256:")
    result = subprocess.run(
        [ENGINE, "run", "--rm", "--privileged", IMAGE, "doctor"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert f"\nimage id: sha256:{image_id} (podman-" in result.stdout, result.stdout


def test_tensorboard_answers_on_the_published_port_and_stops_at_once(smoke):
    """`docker run -p 127.0.0.1:6006:6006 -v ...:/data/Output meerkat:cpu tensorboard`: the entrypoint makes
    it listen on every address of the container; it answers through the published port, and as pid 1
    it leaves at `docker stop`'s SIGTERM instead of waiting for the SIGKILL."""
    from test_tensorboard import free_port, get, wait_for_http

    out, _ = smoke
    port = free_port()
    name = f"meerkat-tensorboard-test-{os.getpid()}-{port}"
    run = [ENGINE, "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--user", f"{UID}:{UID}"]
    run += ["-p", f"127.0.0.1:{port}:6006", "-v", f"{out}:/data/Output:ro", IMAGE, "tensorboard"]
    try:
        started = subprocess.run(run, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        page = wait_for_http(f"http://127.0.0.1:{port}/")
        assert b"<title>TensorBoard</title>" in page
        status, body = get(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        assert status == 200 and "train" in json.loads(body), body
        logs = subprocess.run([ENGINE, "logs", name], capture_output=True, text=True, timeout=60)
        assert "TensorBoard for /data/Output/logs at http://localhost:6006/" in logs.stdout, logs.stdout + logs.stderr
        begin = time.monotonic()
        stopped = subprocess.run([ENGINE, "stop", "-t", "30", name], capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert time.monotonic() - begin < 20, "SIGTERM was ignored: the container waited for the SIGKILL"
    finally:
        subprocess.run([ENGINE, "rm", "-f", name], capture_output=True, timeout=120)


def listening(port: int) -> set[str]:
    """The local addresses of the host's TCP sockets listening on `port` (/proc/net/tcp, tcp6: hex)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_tensorboard_under_network_host_stays_on_loopback(smoke):
    """Issue 22: with --network host the entrypoint set 0.0.0.0, which there is every address of the host."""
    from test_tensorboard import free_port, wait_for_http

    out, _ = smoke
    port = free_port()
    name = f"meerkat-tensorboard-host-{os.getpid()}-{port}"
    engine = (ENGINE, "run", "-d", "--name", name, "--network", "host")
    mounts = [f"{out}:/data/Output:ro"]
    try:
        started = container("tensorboard", mounts=mounts, env=[f"MEERKAT_TENSORBOARD_PORT={port}"], engine=engine)
        assert started.returncode == 0, started.stdout + started.stderr
        assert b"<title>TensorBoard</title>" in wait_for_http(f"http://127.0.0.1:{port}/")
        assert listening(port) == {"0100007F"}, listening(port)  # 127.0.0.1, and no wildcard
        logs = subprocess.run([ENGINE, "logs", name], capture_output=True, text=True, timeout=60)
        assert f"TensorBoard for /data/Output/logs at http://127.0.0.1:{port}/" in logs.stdout, (
            logs.stdout + logs.stderr
        )
    finally:
        subprocess.run([ENGINE, "rm", "-f", name], capture_output=True, timeout=120)


def test_sort_serves_the_page_on_the_published_port_behind_its_token(tmp_path):
    """`docker run -p 127.0.0.1:8765:8765 -v crops:/data/Crops -v Samples:/data/Samples meerkat:cpu sort
    /data/Crops`: the entrypoint makes it listen on the container's addresses, every request needs the
    printed token, a key press's request moves the crop on the host's disk, and SIGTERM ends it at once."""
    import shutil
    import urllib.error
    import urllib.request

    from test_tensorboard import free_port

    crops, samples = tmp_path / "crops", tmp_path / "Samples"
    (crops / "v1").mkdir(parents=True)
    samples.mkdir()
    for crop in sorted((SAMPLES / "Testing" / "Positives").glob("*.jpg"))[:3]:
        shutil.copy(crop, crops / "v1" / crop.name)
    for p in (crops, crops / "v1", samples, *crops.rglob("*.jpg")):
        os.chown(p, UID, UID)
    port = free_port()
    name = f"meerkat-sort-test-{os.getpid()}-{port}"
    run = [ENGINE, "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--user", f"{UID}:{UID}"]
    run += ["-p", f"127.0.0.1:{port}:8765", "-v", f"{crops}:/data/Crops", "-v", f"{samples}:/data/Samples"]
    try:
        started = subprocess.run([*run, IMAGE, "sort", "/data/Crops"], capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        deadline, token = time.monotonic() + 120, None
        while token is None and time.monotonic() < deadline:
            logs = subprocess.run([ENGINE, "logs", name], capture_output=True, text=True, timeout=60)
            found = re.search(r"open http://localhost:8765/\?token=(\S+)", logs.stdout + logs.stderr)
            token = found and found.group(1)
            time.sleep(0.5)
        assert token, logs.stdout + logs.stderr
        base = f"http://127.0.0.1:{port}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/crops", timeout=10)
        assert refused.value.code == 403
        listed = urllib.request.Request(f"{base}/api/crops", headers={"X-Meerkat-Token": token})
        items = json.loads(urllib.request.urlopen(listed, timeout=10).read())["items"]
        assert len(items) == 3
        move = urllib.request.Request(
            f"{base}/api/class", data=json.dumps({"name": "deer"}).encode(), method="POST",
            headers={"X-Meerkat-Token": token, "Content-Type": "application/json"},
        )  # fmt: skip
        urllib.request.urlopen(move, timeout=10)
        move.full_url, move.data = f"{base}/api/assign", json.dumps({"ids": [items[0]["id"]], "class": "deer"}).encode()
        assert json.loads(urllib.request.urlopen(move, timeout=10).read())["moved"]
        moved = samples / "Training" / "deer" / items[0]["name"].split("/")[-1]
        assert moved.is_file() and not (crops / items[0]["name"]).exists()
        begin = time.monotonic()
        stopped = subprocess.run([ENGINE, "stop", "-t", "30", name], capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0 and time.monotonic() - begin < 20, stopped.stderr
    finally:
        subprocess.run([ENGINE, "rm", "-f", name], capture_output=True, timeout=120)
