"""Spreading preprocess batches over several devices gives the embeddings of one device.

There is no GPU here: two logical CPU devices stand in for two GPUs, through the same code path."""

import subprocess
import sys

from conftest import WEIGHTS

SCRIPT = f"""
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from meerkat import backbones
spec = backbones.resolve("mobilenet_v2", 0.35, {str(WEIGHTS) if WEIGHTS.exists() else "none"!r})
images = tf.random.stateless_uniform([7, 224, 224, 3], seed=[1, 2], maxval=255.0)
one = backbones.Embedder(spec, ["/CPU:0"]).embed(images).numpy()
two = backbones.Embedder(spec, ["/CPU:0", "/CPU:1"])
split = two.embed(images).numpy()
assert two.embed(images[:1]).shape == (1, 1280)  # a batch smaller than the device count
np.testing.assert_allclose(split, one, rtol=1e-4, atol=1e-5)
print("ok", split.shape)
"""


def test_batches_split_over_two_devices_match_one_device():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok (7, 1280)" in proc.stdout


def test_gpus_zero_runs_on_the_cpu(tmp_path, cli):
    from conftest import TINY, make_samples

    samples = make_samples(tmp_path / "S", train=(2, 2), test=(2, 2))
    result = cli("run", samples, tmp_path / "o", *TINY, "--epochs", 1, "--gpus", 0)
    assert result.exit_code == 0, result.output
    assert "Running on the CPU" in result.output
