"""`meerkat tensorboard OUTPUT` serves OUTPUT/logs over HTTP on loopback until stopped."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from conftest import assert_user_error

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def wait_for_http(url: str, proc=None, timeout: float = START_TIMEOUT_S) -> bytes:
    """The body of the first HTTP 200 from `url`, polled until `timeout`; fails early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode} before answering")
        try:
            status, body = get(url, timeout=2)
            if status == 200:
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"no HTTP 200 from {url} within {timeout} s")


def meerkat(*args, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "meerkat", *map(str, args)], env={**os.environ, **(env or {})}, **kwargs
    )


def test_serves_the_runs_scalars_on_loopback_and_stops_on_sigterm(tiny_run, tmp_path):
    port = free_port()
    out, err = open(tmp_path / "stdout", "w+"), open(tmp_path / "stderr", "w+")
    proc = meerkat("tensorboard", tiny_run, env={"MEERKAT_TENSORBOARD_PORT": str(port)}, stdout=out, stderr=err)
    try:
        page = wait_for_http(f"http://127.0.0.1:{port}/", proc)
        assert b"<title>TensorBoard</title>" in page
        status, body = get(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        assert status == 200
        tags = json.loads(body)
        assert "train" in tags, tags
        assert any("loss" in t for t in tags["train"]) and any("accuracy" in t for t in tags["train"]), tags
    finally:
        proc.terminate()  # docker stop's SIGTERM
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    printed = (tmp_path / "stdout").read_text()
    errors = (tmp_path / "stderr").read_text()
    assert code == 0, printed + errors
    # The URL comes first, not buried under TensorBoard's own start-up lines.
    first = printed.splitlines()[0]
    assert f"http://127.0.0.1:{port}/" in first and str(tiny_run / "logs") in first, printed
    assert "Traceback" not in errors, errors


def test_missing_logs_is_one_line(cli, tmp_path):
    assert_user_error(cli("tensorboard", tmp_path), 1, "no TensorBoard logs", tmp_path / "logs")
    result = cli("tensorboard", env={"MEERKAT_OUTPUT": str(tmp_path / "nowhere")})
    assert_user_error(result, 1, tmp_path / "nowhere" / "logs")


def test_a_busy_port_is_one_line(tiny_run):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = meerkat(
            "tensorboard", tiny_run, "--port", port, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = proc.communicate(timeout=START_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, out + err
    lines = err.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("error: TensorBoard cannot listen on 127.0.0.1:")
        and "--port" in lines[0]
    ), err
